"""The commit watermark never passes an unsettled record, and its window says what is above it."""

from __future__ import annotations

import random
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.delivery.ledger import Ledger
from service.delivery.offsets import Mark, OffsetTracker, PartitionKey
from service.delivery.records import PendingRecord

TP, OTHER = ("t", 0), ("t", 1)


def record(offset: int, generation: int, tp: PartitionKey = TP) -> PendingRecord:
    return PendingRecord(*tp, offset, 0, None, b"{}", "c", b"{}", generation=generation)


def marks(tracker: OffsetTracker) -> dict[PartitionKey, int]:
    """The offsets a commit would commit now."""
    return {tp: window.offset for tp, window in tracker.commit_candidates().items()}


def test_watermark_waits_for_the_lowest_unsettled_offset() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    for offset in (10, 11, 12):
        tracker.track(TP, offset)
    tracker.settle(TP, 12, Mark.SUCCEEDED)
    tracker.settle(TP, 11, Mark.SUCCEEDED)
    assert marks(tracker) == {TP: 10}
    tracker.settle(TP, 10, Mark.SUCCEEDED)
    assert marks(tracker) == {TP: 13}


def test_gaps_in_offsets_commit_one_past_the_last_record() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 5)
    tracker.track(TP, 9)  # compaction or transaction markers in between
    tracker.settle(TP, 5, Mark.SUCCEEDED)
    tracker.settle(TP, 9, Mark.SUCCEEDED)
    assert marks(tracker) == {TP: 10}


def test_acknowledged_commits_are_not_offered_again() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.settle(TP, 0, Mark.SUCCEEDED)
    tracker.committed(tracker.commit_candidates())
    assert tracker.commit_candidates() == {}
    assert tracker.committed_offset(TP) == 1


def test_revoked_partitions_ignore_late_settlements() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.revoke(TP)
    tracker.settle(TP, 0, Mark.SUCCEEDED)
    tracker.track(TP, 1)
    assert tracker.commit_candidates() == {}
    assert not tracker.owns(TP)


def test_refetched_offsets_are_tracked_once() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    tracker.track(TP, 0)
    tracker.track(TP, 1)
    tracker.track(TP, 0)
    tracker.settle(TP, 0, Mark.SUCCEEDED)
    assert marks(tracker) == {TP: 1}
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
        tracker.settle(TP, offset, Mark.SUCCEEDED)
        settled.add(offset)
        unsettled = [o for o in offsets if o not in settled]
        expected = unsettled[0] if unsettled else offsets[-1] + 1
        assert marks(tracker) == {TP: expected}


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


class TrackerModel(RuleBasedStateMachine):
    """Any interleaving of track / settle / commit / revoke / assign against a plain model.

    The model is the definition: for an owned partition the watermark is the
    lowest tracked-and-unsettled offset, else one past the highest tracked
    offset; above it, each offset's mark says settled (with its outcome),
    pending, or a gap (never tracked); a revoked partition offers nothing and
    forgets everything; a commit is offered when the window (watermark or
    marks) differs from the last acknowledged one. Offsets are fetched in
    increasing order with gaps (compaction, transaction markers), and
    re-fetches of old offsets happen.
    """

    partitions = st.sampled_from([("t", 0), ("t", 1), ("u", 0)])
    outcomes = st.sampled_from([Mark.SUCCEEDED, Mark.DEAD_LETTERED, Mark.SKIPPED, Mark.COALESCED])

    def __init__(self) -> None:
        super().__init__()
        self.tracker = OffsetTracker()
        self.owned: set[tuple[str, int]] = set()
        self.tracked: dict[tuple[str, int], list[int]] = {}
        self.settled: dict[tuple[str, int], dict[int, int]] = {}
        self.acked: dict[tuple[str, int], tuple[int, bytes]] = {}
        self.next: dict[tuple[str, int], int] = {}

    @rule(tp=partitions, back=st.integers(min_value=0, max_value=8))
    def assign(self, tp: tuple[str, int], back: int) -> None:
        """(Re-)assigned: fetching restarts at the committed offset, usually below the last one."""
        self.next[tp] = max(0, self.next.get(tp, 0) - back)
        self.tracker.assign(tp)
        self.owned.add(tp)
        self.tracked[tp], self.settled[tp] = [], {}
        self.acked.pop(tp, None)

    @rule(tp=partitions)
    def revoke(self, tp: tuple[str, int]) -> None:
        self.tracker.revoke(tp)
        self.owned.discard(tp)
        self.tracked.pop(tp, None)
        self.settled.pop(tp, None)
        self.acked.pop(tp, None)

    @rule(tp=partitions, gap=st.integers(min_value=1, max_value=3))
    def track(self, tp: tuple[str, int], gap: int) -> None:
        offset = self.next.get(tp, 0)
        self.next[tp] = offset + gap
        self.tracker.track(tp, offset)
        if tp in self.owned:
            self.tracked[tp].append(offset)

    @rule(tp=partitions, back=st.integers(min_value=1, max_value=5))
    def refetch(self, tp: tuple[str, int], back: int) -> None:
        """An offset below the highest tracked one comes again (a seek): nothing changes."""
        if self.tracked.get(tp):
            self.tracker.track(tp, max(0, self.tracked[tp][-1] - back))

    @rule(tp=partitions, pick=st.integers(min_value=0), outcome=outcomes)
    def settle(self, tp: tuple[str, int], pick: int, outcome: int) -> None:
        """Settle a tracked record (possibly again); after a revoke it is ignored."""
        offsets = self.tracked.get(tp)
        if offsets:
            offset = offsets[pick % len(offsets)]
            self.tracker.settle(tp, offset, outcome)
            if offset >= self.watermark(tp):  # below it the window is gone: nothing changes
                self.settled[tp][offset] = outcome
        elif self.next.get(tp):
            self.tracker.settle(tp, pick % self.next[tp], outcome)  # a late one: no effect

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        offered = self.tracker.commit_candidates()
        acked = data.draw(st.sampled_from([offered, {}]), label="broker acknowledged")
        self.tracker.committed(acked)
        for tp, window in acked.items():
            self.acked[tp] = (window.offset, window.marks)

    def watermark(self, tp: tuple[str, int]) -> int:
        offsets = self.tracked[tp]
        unsettled = [o for o in offsets if o not in self.settled[tp]]
        if unsettled:
            return unsettled[0]
        return offsets[-1] + 1 if offsets else -1

    def window(self, tp: tuple[str, int]) -> tuple[int, bytes] | None:
        offsets = self.tracked[tp]
        if not offsets:
            return None
        mark = self.watermark(tp)
        tracked = set(offsets)
        window = bytes(
            self.settled[tp].get(o, Mark.PENDING) if o in tracked else Mark.GAP
            for o in range(mark, offsets[-1] + 1)
        )
        return mark, window

    @invariant()
    def offers_exactly_the_model_windows(self) -> None:
        expected = {}
        for tp in self.owned:
            window = self.window(tp)
            if window is not None and self.acked.get(tp) != window:
                expected[tp] = window
        offered = self.tracker.commit_candidates()
        assert {tp: (w.offset, w.marks) for tp, w in offered.items()} == expected

    @invariant()
    def never_offers_past_an_unsettled_record(self) -> None:
        for tp, window in self.tracker.commit_candidates().items():
            assert all(o in self.settled[tp] for o in self.tracked[tp] if o < window.offset)

    @invariant()
    def pending_counts_match(self) -> None:
        for tp in self.owned:
            unsettled = [o for o in self.tracked[tp] if o not in self.settled[tp]]
            assert self.tracker.pending_count(tp) == len(unsettled)


TrackerModel.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_tracker_matches_the_model_under_any_interleaving = TrackerModel.TestCase


def test_an_intent_marks_what_it_carries_before_its_job_exists_and_until_it_ends() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP, committed=100)
    generation = tracker.track(TP, 100)
    for offset in (101, 102, 103):
        tracker.track(TP, offset)
    tracker.settle(TP, 101, Mark.COALESCED)
    a = tracker.intend([record(100, generation), record(102, generation)], at=1_000.5)
    stale = record(103, generation - 1)  # an earlier assignment's copy: not ours to mark
    b = tracker.intend([record(103, generation), stale], at=1_001.0)
    window = tracker.commit_candidates()[TP]
    assert window.offset == 100
    slot_a, slot_b = window.marks[0] - Mark.JOB, window.marks[3] - Mark.JOB
    assert window.marks == bytes(
        [Mark.JOB + slot_a, Mark.COALESCED, Mark.JOB + slot_a, Mark.JOB + slot_b]
    )
    # Before their POSTs answer: intents, dated, no job ids.
    assert (window.jobs, window.intents) == ({}, {slot_a: 1_000.5, slot_b: 1_001.0})
    assert not a.written
    tracker.committed({TP: window})
    assert a.written
    assert b.written
    tracker.carried(a, "job-a")
    tracker.carried(b, "job-b")
    window = tracker.commit_candidates()[TP]  # the same marks, now naming the jobs
    assert (window.jobs, window.intents) == ({slot_a: "job-a", slot_b: "job-b"}, {})
    # job-a ends: 100 succeeded, 102 was not settled by it and is pending again.
    tracker.settle(TP, 100, Mark.SUCCEEDED)
    tracker.ended(a, [record(100, generation), record(102, generation)])
    window = tracker.commit_candidates()[TP]
    assert window.offset == 102
    assert window.marks == bytes([Mark.PENDING, Mark.JOB + slot_b])
    assert window.jobs == {slot_b: "job-b"}


def test_an_intent_dated_again_is_written_only_by_a_commit_of_the_new_date() -> None:
    """A retried POST dates its intent anew: a commit built before that, acknowledged after,
    does not say the new date, so it must not let the retry go out."""
    tracker = OffsetTracker()
    tracker.assign(TP, committed=0)
    generation = tracker.track(TP, 0)
    intent = tracker.intend([record(0, generation)], at=10.0)
    old = tracker.commit_candidates()[TP]
    tracker.redate(intent, 20.0)
    tracker.committed({TP: old})
    assert not intent.written
    new = tracker.commit_candidates()[TP]
    assert new.intents == {new.marks[0] - Mark.JOB: 20.0}
    tracker.committed({TP: new})
    assert intent.written


def test_an_intent_on_a_partition_that_goes_can_no_longer_be_written() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP, committed=0)
    tracker.assign(OTHER, committed=0)
    records = [record(0, tracker.track(TP, 0)), record(0, tracker.track(OTHER, 0), OTHER)]
    intent = tracker.intend(records, at=1.0)
    assert not tracker.unwritable(intent)
    tracker.close([OTHER])
    assert tracker.unwritable(intent)


def test_the_changes_a_record_absorbed_ride_in_its_job_and_settle_with_it() -> None:
    """A crash while the merged change is in flight must re-read what it absorbed: the
    ledger shows the absorbed offsets as carried by its job, never as settled before it."""
    tracker = OffsetTracker()
    tracker.assign(TP, committed=0)
    generation = tracker.track(TP, 0)  # another customer's change, still pending
    for offset in (1, 2, 3):
        tracker.track(TP, offset)
    merged = record(3, generation)
    merged.superseded = array("q", [1, 0, 2, 0])
    intent = tracker.intend([merged], at=1.0)
    tracker.carried(intent, "job-a")
    window = tracker.commit_candidates()[TP]
    slot = window.marks[1] - Mark.JOB
    assert window.marks == bytes([Mark.PENDING, *[Mark.JOB + slot] * 3])
    tracker.ended(intent, [merged])  # the job did not settle it: all three are pending again
    assert tracker.commit_candidates()[TP].marks == bytes([Mark.PENDING] * 4)
    # Delivered: Settlement settles it and what it absorbed (test_settlement.py).
    tracker.settle(TP, 3, Mark.SUCCEEDED, generation=generation)
    tracker.settle(TP, [1, 2], Mark.COALESCED, generation=generation)
    window = tracker.commit_candidates()[TP]
    assert window.marks == bytes([Mark.PENDING, Mark.COALESCED, Mark.COALESCED, Mark.SUCCEEDED])


def test_a_partition_taken_over_commits_nothing_until_released() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP, committed=50, holding=True)
    tracker.track(TP, 50)
    tracker.settle(TP, 50, Mark.SUCCEEDED)
    assert tracker.commit_candidates() == {}  # the previous owner's ledger stays in place
    tracker.release(TP)
    assert marks(tracker) == {TP: 51}


def test_a_closing_partition_settles_what_ends_but_takes_no_new_work() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP)
    generation = tracker.track(TP, 0)
    tracker.track(TP, 1)
    tracker.close([TP])
    assert tracker.track(TP, 2) == 0, "a slice fetched before the revocation is not ingested"
    assert not tracker.takes(TP, generation), "nothing of it may be given back to the buffer"
    tracker.settle(TP, 0, Mark.SUCCEEDED)  # a job that was running ends: that still counts
    assert marks(tracker) == {TP: 1}
    tracker.assign(TP)  # assigned again later: a fresh start, open
    assert tracker.takes(TP, tracker.track(TP, 5))


def test_a_batch_is_deliverable_only_while_every_partition_and_generation_is_current() -> None:
    tracker = OffsetTracker()
    one, two = ("t", 1), ("t", 2)
    tracker.assign(TP)
    tracker.assign(one)
    tracker.assign(two)

    def record(tp: PartitionKey, offset: int) -> PendingRecord:
        generation = tracker.track(tp, offset)
        return PendingRecord(
            tp[0], tp[1], offset, 0, None, b"{}", f"c{offset}", b"{}", 0, 0, 0.0, generation
        )

    batch = [record(tp, offset) for offset in range(100) for tp in (TP, one)]
    assert tracker.takes_all(batch)
    tracker.close([two])  # a partition the batch does not carry
    assert tracker.takes_all(batch)
    tracker.close([one])
    assert not tracker.takes_all(batch)
    tracker.assign(one)  # back again, a new generation: the batch's records are stale
    assert not tracker.takes_all(batch)
    assert tracker.takes_all([r for r in batch if r.partition == 0])


def test_a_fetch_from_before_a_reassignment_tracks_nothing_of_the_new_one() -> None:
    # The next fetch is asked for while one is still being ingested: the partition
    # can be revoked and assigned back in between. The new assignment re-reads from
    # its committed offset; the earlier fetch's records must not be tracked first,
    # or its offsets would count as gaps below them and be committed unread.
    tracker = OffsetTracker()
    tracker.assign(TP, committed=100)
    fetched = tracker.newest_generation
    assert tracker.track(TP, 100, fetched)
    tracker.revoke(TP)
    tracker.assign(TP, committed=100)
    assert tracker.track(TP, 105, fetched) == 0
    again = tracker.newest_generation
    assert [tracker.track(TP, offset, again) for offset in (100, 101)] == [again, again]
    assert marks(tracker) == {TP: 100}


def test_an_instance_recognises_the_intents_it_wrote_in_a_ledger_of_its_own() -> None:
    tracker = OffsetTracker()
    tracker.assign(TP, committed=0)
    generation = tracker.track(TP, 0)
    for offset in (1, 2, 3):
        tracker.track(TP, offset)
    answered = tracker.intend([record(0, generation)], at=1.001)
    answered.posted = True
    tracker.carried(answered, "job-a")
    unanswered = tracker.intend([record(1, generation)], at=1.002)
    unanswered.posted = True
    tracker.intend([record(2, generation)], at=1.003)  # its POST never went out
    window = tracker.commit_candidates()[TP]
    assert (window.jobs, window.intents) == ({0: "job-a"}, {1: 1.002, 2: 1.003})
    # The last commit the broker took, before job-a's id came: three intents.
    ledger = Ledger(len(window.marks), {}, window.marks, {0: 1.001, 1: 1.002, 2: 1.003})

    known = tracker.recognise(TP, ledger)

    # Its job's id it heard: a job to resolve; a POST never sent carried nothing; an
    # unanswered one is as unknown to it as to anyone.
    assert (known.jobs, known.intents) == ({0: "job-a"}, {1: 1.002})
    assert tracker.recognise(OTHER, ledger) == ledger  # another partition's slots: not these
    assert OffsetTracker().recognise(TP, ledger) == ledger  # another instance knows nothing
