"""When a backlog is compacted, and when the fill that holds dispatch ends."""

from __future__ import annotations

from service.delivery.compaction import (
    CAUGHT_UP,
    FILL_MAX_SECONDS,
    HORIZON,
    REQUESTS_PER_JOB,
    Compaction,
)
from service.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


RATE = 6.0  # requests a second: this instance's share of the key
THRESHOLD = RATE / REQUESTS_PER_JOB * 1000 * HORIZON  # 90,000 records


def step(c: Compaction, waiting: int, unread: int | None) -> None:
    """One fetch: the lag reading before it is ingested, then the ingest."""
    c.weigh(waiting)
    c.ingested(waiting, unread)


def compaction(max_bytes: int = 1 << 27) -> tuple[Compaction, Clock]:
    clock = Clock()
    return Compaction(max_bytes, 1000, lambda: RATE, Metrics(), clock), clock


def test_a_backlog_the_budget_clears_within_its_window_is_not_compacted() -> None:
    c, _ = compaction()
    step(c, int(THRESHOLD), int(THRESHOLD))
    assert not c.active
    assert not c.filling


def test_a_backlog_beyond_the_budget_is_compacted_until_it_falls_below_half() -> None:
    c, _ = compaction()
    step(c, int(THRESHOLD) + 1, int(THRESHOLD) + 1)
    assert c.active
    step(c, int(THRESHOLD * 0.4), CAUGHT_UP)
    assert c.active, "not while it fills: that would end the hold with the backlog half read"
    step(c, int(THRESHOLD * 0.6), 0)  # read: the fill ends
    assert c.active, "hysteresis: it stays until below half"
    step(c, int(THRESHOLD * 0.4), 0)
    assert not c.active


def test_off_at_zero_bytes() -> None:
    c, _ = compaction(max_bytes=0)
    step(c, 10**9, 10**9)
    assert not c.active


def test_the_fill_ends_once_less_than_a_fetch_is_left_unread() -> None:
    c, _ = compaction()
    step(c, 10**6, 10**6)
    assert c.filling
    step(c, 10**6, None)  # just assigned: a partition's position is not known yet
    assert c.filling
    step(c, 200_000, CAUGHT_UP)
    assert c.filling
    step(c, 200_000, CAUGHT_UP - 1)
    assert not c.filling
    assert c.active, "still compacting: the buffer drains at the budget's pace"


def test_the_fill_ends_when_the_memory_is_full() -> None:
    c, _ = compaction(max_bytes=1000)
    step(c, 10**6, 10**6)
    assert not c.full(999)
    assert c.filling
    assert c.full(1000)
    assert not c.filling


def test_the_fill_ends_after_its_longest_hold_and_on_shutdown() -> None:
    c, clock = compaction()
    step(c, 10**6, 10**6)
    assert c.fill_left() == FILL_MAX_SECONDS
    clock.now += FILL_MAX_SECONDS
    assert not c.filling
    step(c, 0, 0)
    step(c, 10**6, 10**6)  # compacting again: a new fill
    assert c.filling
    c.interrupt()
    assert not c.filling


def test_the_threshold_follows_the_budget_share() -> None:
    rate = [6.0]
    c = Compaction(1 << 27, 1000, lambda: rate[0], Metrics(), Clock())
    step(c, 50_000, 50_000)
    assert not c.active
    rate[0] = 2.0  # another instance joined: this one's share of the key shrank
    step(c, 50_000, 50_000)
    assert c.active


def test_partitions_assigned_while_compacting_start_a_new_fill() -> None:
    c, _ = compaction()
    c.assigned()
    assert not c.filling, "not compacting: nothing to hold"
    step(c, 10**6, 10**6)
    step(c, 10**6, 0)  # the backlog read: the fill ends, the buffer drains
    assert not c.filling
    c.assigned()  # taken-over windows are read before any of their customers is sent
    assert c.filling
    step(c, 10**6, 0)
    assert not c.filling
