"""The lag reading compaction weighs: records not yet consumed, and whether that is known."""

from __future__ import annotations

from service.delivery.lag import Lag
from service.delivery.offsets import OffsetTracker
from service.metrics import Metrics


def lag() -> tuple[Lag, OffsetTracker]:
    offsets = OffsetTracker()
    none_taken_over: set[object] = set()
    reading = Lag(lambda _tp: None, lambda _tp: None, offsets, none_taken_over, Metrics())  # type: ignore[arg-type]
    return reading, offsets


def test_unread_is_the_watermark_past_the_position_and_known_once_every_partition_is() -> None:
    reading, offsets = lag()
    owned = {("t", 0), ("t", 1)}
    for tp in owned:
        offsets.assign(tp)
    reading.update({("t", 0): 500, ("t", 1): 300}, owned, {("t", 0): 100, ("t", 1): None})
    assert (reading.unread, reading.known) == (400, False), "t[1]: no position, no commit yet"
    reading.update({("t", 0): 500, ("t", 1): 300}, owned, {("t", 0): 100, ("t", 1): 300})
    assert (reading.unread, reading.known) == (400, True)


def test_an_empty_partition_has_nothing_unread() -> None:
    # No record was ever consumed there, so the consumer has no position: without this, the
    # reading would never be known, a fill would always last its 30 s and compaction never stop.
    reading, offsets = lag()
    owned = {("t", 0), ("t", 1)}
    for tp in owned:
        offsets.assign(tp)
    reading.update({("t", 0): 500, ("t", 1): 0}, owned, {("t", 0): 500, ("t", 1): None})
    assert (reading.unread, reading.known) == (0, True)
