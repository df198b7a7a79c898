"""The dead-letter breaker's decision: when it opens, for how long, and when it does not."""

from __future__ import annotations

from structlog.testing import capture_logs

from service.config import load_settings
from service.delivery.breaker import DeadLetterBreaker, Example
from service.labels import DECODER_FAULT, DeadLetterReason
from tests.unit.delivery.fakes import ENV

FAULT = DECODER_FAULT
JSON = DeadLetterReason.INVALID_JSON.value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def example(offset: int) -> Example:
    return Example("t", 3, offset, f"KeyError: 'x' at {offset}")


def breaker(ratio: float = 0.5, window: int = 10, cooldown: float = 60.0) -> DeadLetterBreaker:
    return DeadLetterBreaker(ratio, window, cooldown, clock=CLOCK)


CLOCK = Clock()


def feed(b: DeadLetterBreaker, outcomes: str, start: int = 0) -> list[int]:
    """``outcomes``: ``.`` went through, ``x`` dead-lettered; returns the offsets it tripped at."""
    tripped, passed = [], 0
    for offset, outcome in enumerate(outcomes, start):
        if outcome == ".":
            passed += 1
            continue
        if b.dead_lettered(passed, FAULT, example(offset)):
            tripped.append(offset)
        passed = 0
    b.passed(passed)
    return tripped


def test_more_than_the_ratio_of_the_window_dead_lettered_opens_it() -> None:
    b = breaker()
    assert feed(b, ".....xxxxx") == []  # 5 of 10: not more than half
    assert not b.is_open()
    assert feed(b, "x", 10) == [10]  # 6 of the last 10
    assert b.is_open()


def test_the_first_records_of_a_run_cannot_open_it_alone() -> None:
    """Counted against the whole window: 1 of 1 is not 'more than half of the last 10'."""
    b = breaker()
    assert feed(b, "xxxxx") == []
    assert feed(b, "x", 5) == [5]  # the sixth: more than 0.5 x 10


def test_the_window_slides_old_dead_letters_out() -> None:
    b = breaker()
    assert feed(b, "xxxxx" + "." * 10) == []
    assert feed(b, "xxxxx", 15) == []  # the first five slid out: 5 of the last 10
    assert not b.is_open()
    assert feed(b, "......x", 20) == []  # 20..26: 4 of the last 10 (17, 18, 19 and 26)
    assert not b.is_open()
    assert feed(b, "xxxxx", 27) == [31]  # 26..31: 6 of the last 10 again


def test_scattered_dead_letters_below_the_ratio_never_open_it() -> None:
    b = breaker(window=100)
    assert feed(b, ".x" * 5000) == []  # exactly half, for ever


def test_it_stays_open_for_the_cooldown_then_rechecks_with_the_next_dead_letter() -> None:
    b = breaker(cooldown=60)
    assert feed(b, "xxxxxx") == [5]
    CLOCK.now += 59.9
    assert b.is_open()
    CLOCK.now += 0.2
    with capture_logs() as logs:
        assert not b.is_open()
    assert [e["event"] for e in logs] == ["dead_letter_breaker_retrying"]
    # The window is kept: still failing, the next dead letter opens it at once ...
    assert feed(b, "x", 6) == [6]
    assert b.is_open()
    CLOCK.now += 61
    assert not b.is_open()
    # ... and good records flowing again slide the old dead letters out.
    assert feed(b, "......x", 7) == []
    assert not b.is_open()


def test_a_restart_starts_with_an_empty_window() -> None:
    b = breaker()
    assert feed(b, "xxxxxx") == [5]
    assert feed(breaker(), "xxxxx") == []  # a new process: five more before it opens


def test_ratio_one_switches_it_off() -> None:
    b = breaker(ratio=1.0)
    assert not b.enabled
    assert feed(b, "x" * 1000) == []
    assert not b.is_open()


def test_opening_logs_one_sentence_naming_the_top_reason_with_an_example() -> None:
    b = breaker()
    b.dead_lettered(0, JSON, Example("t", 0, 7, "not UTF-8 JSON"))
    with capture_logs() as logs:
        feed(b, "xxxxx", 100)
    [line] = logs
    assert line["event"] == "dead_letter_breaker_open"
    assert line["log_level"] == "error"
    assert line["top_reason"] == "decoder_fault"
    assert line["reasons"] == {"invalid_json": 1, "decoder_fault": 5}
    sentence = line["message"]
    assert "6 of the last 6 records were dead-lettered" in sentence
    assert "decoder_fault (5)" in sentence
    assert "t[3]@104: KeyError: 'x' at 104" in sentence  # where, and the error
    assert "nothing more is committed" in sentence


def test_settings_describe_it_with_sane_defaults() -> None:
    settings = load_settings(ENV)
    b = DeadLetterBreaker.from_settings(settings)
    assert (b.ratio, b.window, b.cooldown) == (0.5, 1000, 60.0)
    custom = load_settings(
        {
            **ENV,
            "DLQ_BREAKER_RATIO": "1.0",
            "DLQ_BREAKER_WINDOW": "50",
            "DLQ_BREAKER_COOLDOWN_SECONDS": "5",
        }
    )
    assert (custom.dlq_breaker_ratio, custom.dlq_breaker_window) == (1.0, 50)
    assert custom.dlq_breaker_cooldown_seconds == 5.0
