"""The chaos checker on hand-made evidence: it must see every kind of failure it reports."""

from __future__ import annotations

from typing import Any

from tests.chaos.checker import DeadLetterEntry, check
from tests.chaos.driver import _pipeline_task
from tests.chaos.workload import digest

TOPIC = "src"


def produced(p: int, o: int, customer: str | None, version: int, expected: str) -> dict[str, Any]:
    key = customer or f"bad-{o}"
    return {"p": p, "o": o, "k": key, "c": customer, "v": version, "x": expected, "h": digest(b"v")}


def applied(customer: str, version: int, at: float, seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "customerId": customer,
        "customer": {"custom": {"version": version}},
        "at": at,
    }


def letter(p: int, o: int, reason: str, key: str, job: str | None = None) -> DeadLetterEntry:
    headers = {
        "dlq.reason": reason,
        "dlq.error": "e",
        "dlq.source.topic": TOPIC,
        "dlq.source.partition": str(p),
        "dlq.source.offset": str(o),
        "dlq.source.timestamp": "1",
        "dlq.attempts": "1",
    }
    if job:
        headers["dlq.job.id"] = job
    return DeadLetterEntry(key.encode(), b"v", headers)


MANIFEST = [
    produced(0, 0, "a", 1, "deliver"),
    produced(0, 1, "a", 2, "deliver"),
    produced(0, 2, None, 0, "invalid_json"),
    produced(0, 3, "b", 1, "deliver"),
    produced(0, 4, "b", 0, "skip"),
]


def test_a_clean_run_passes() -> None:
    report = check(
        MANIFEST,
        [applied("a", 1, 1.0, 0), applied("a", 2, 2.0, 1), applied("b", 1, 3.0, 2)],
        [],
        [letter(0, 2, "invalid_json", "bad-2")],
        topic=TOPIC,
        faults=[],
    )
    assert report.failures == []


def test_every_failure_is_seen() -> None:
    changed = letter(0, 5, "invalid_event", "bad-5")
    no_attempts = letter(0, 5, "invalid_event", "bad-5")
    del no_attempts.headers["dlq.attempts"]
    report = check(
        [*MANIFEST, produced(0, 5, None, 0, "invalid_event")],
        # b never applied (lost); a regresses 2 -> 1 with no fault near (ordering, stale)
        [applied("a", 2, 1.0, 0), applied("a", 1, 2.0, 1), applied("z", 9, 3.0, 2)],
        [],
        [
            letter(0, 4, "invalid_event", "b"),  # a skip dead-lettered
            letter(0, 0, "record_rejected", "a", job="job-1"),  # no rejection on record
            letter(7, 7, "invalid_json", "x"),  # from nowhere
            letter(0, 5, "invalid_json", "bad-5"),  # the wrong reason
            DeadLetterEntry(changed.key, b"not the produced bytes", changed.headers),
            no_attempts,
        ],
        topic=TOPIC,
        faults=[],
        quiet_since=0.0,
    )
    failed = {f.split(" = ")[0] for f in report.failures}
    assert failed == {
        "dlq records from no produced record",
        "bad records not dead-lettered",
        "skipped records dead-lettered",
        "good records dead-lettered, unexplained",
        "applied records never produced",
        "lost (latest change neither applied nor dead-lettered)",
        "stale (last applied version is not the latest)",
        "ordering regressions (older after newer, faults included)",
        "ordering regressions not after a fault",
        "ordering regressions in the quiet tail",
        "bad records with the wrong reason",
        "dlq records whose key or value changed",
        "dlq records without the required headers",
    }


def test_a_regression_right_after_a_kill_fails_too_but_is_told_apart() -> None:
    report = check(
        MANIFEST,
        [
            applied("a", 2, 10.0, 0),
            applied("a", 1, 12.0, 1),
            applied("a", 2, 13.0, 2),
            applied("b", 1, 14.0, 3),
        ],
        [],
        [letter(0, 2, "invalid_json", "bad-2")],
        topic=TOPIC,
        faults=[11.0],
    )
    # A new owner must never replay a customer's history: right after a kill is no excuse.
    assert report.failures == ["ordering regressions (older after newer, faults included) = 1"]
    assert report.numbers["ordering regressions not after a fault"] == 0
    assert report.numbers["duplicate applications (same customer and version)"] == 1


def test_a_watchdog_exit_with_pipeline_tasks_alive_is_ours_and_one_in_close_is_not() -> None:
    # The shutdown hang of Python 3.11's wait_for, as the watchdog reported it:
    ours = [
        "Task-1: app.py:130 serve > pipeline.py:158 run > pipeline.py:194 _shutdown",
        "Task-58: locks.py:213 wait",
        "commit: pipeline.py:458 _commit_periodically > tasks.py:476 wait_for",
        "http: server.py:90 serve > server.py:107 _serve > server.py:248 main_loop",
    ]
    # Only the shutdown itself left, waiting for consumer.close() on the Kafka thread:
    librdkafkas = [
        "Task-1: app.py:130 serve > pipeline.py:158 run > pipeline.py:214 _shutdown",
        "http: server.py:90 serve > server.py:107 _serve > server.py:248 main_loop",
    ]
    assert [_pipeline_task(t) for t in ours] == [False, False, True, False]
    assert not any(_pipeline_task(t) for t in librdkafkas)
