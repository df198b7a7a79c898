"""The commit watermark never passes an unsettled record."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.offsets import OffsetTracker

TP = ("t", 0)


def test_watermark_waits_for_the_lowest_unsettled_offset() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    for offset in (10, 11, 12):
        tracker.track(TP, offset)
    tracker.settle(TP, 12)
    tracker.settle(TP, 11)
    assert tracker.commit_candidates() == {TP: 10}
    tracker.settle(TP, 10)
    assert tracker.commit_candidates() == {TP: 13}


def test_gaps_in_offsets_commit_one_past_the_last_record() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 5)
    tracker.track(TP, 9)  # compaction or transaction markers in between
    tracker.settle(TP, 5)
    tracker.settle(TP, 9)
    assert tracker.commit_candidates() == {TP: 10}


def test_acknowledged_commits_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.settle(TP, 0)
    tracker.committed(tracker.commit_candidates())
    assert tracker.commit_candidates() == {}
    assert tracker.committed_offset(TP) == 1


def test_revoked_partitions_ignore_late_settlements() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    tracker.settle(TP, 0)
    tracker.track(TP, 1)
    assert tracker.commit_candidates() == {}
    assert not tracker.owns(TP)


def test_refetched_offsets_are_tracked_once() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.track(TP, 1)
    tracker.track(TP, 0)
    tracker.settle(TP, 0)
    assert tracker.commit_candidates() == {TP: 1}
    assert tracker.pending_count(TP) == 1


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32),
    gap=st.integers(min_value=1, max_value=3),
)
def test_watermark_matches_a_simple_model_under_any_settle_order(
    count: int, seed: int, gap: int
) -> None:
    rng = random.Random(seed)
    offsets = [100 + i * gap for i in range(count)]
    order = offsets[:]
    rng.shuffle(order)
    tracker = OffsetTracker()
    tracker.assign(TP)
    for offset in offsets:
        tracker.track(TP, offset)
    settled: set[int] = set()
    for offset in order:
        tracker.settle(TP, offset)
        settled.add(offset)
        unsettled = [o for o in offsets if o not in settled]
        expected = unsettled[0] if unsettled else offsets[-1] + 1
        assert tracker.commit_candidates() == {TP: expected}


def test_each_assignment_of_a_partition_has_its_own_generation() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    first = tracker.track(TP, 0)
    assert first == tracker.generation(TP) != 0
    assert tracker.track(TP, 0) == 0  # already tracked: not ours to process again
    tracker.revoke(TP)
    assert tracker.generation(TP) == 0
    assert tracker.track(TP, 1) == 0  # fetched after the revocation
    tracker.assign(TP)  # back again: the same offsets are a new copy
    second = tracker.track(TP, 0)
    assert second == tracker.generation(TP) not in (0, first)
