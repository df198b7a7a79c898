"""Offset bookkeeping: what is settled, what may be committed, and what the commit carries.

The order of at-least-once, said out loud:

1. every record is *tracked* the moment it is consumed, before anything else
   can happen to it;
2. it is *settled* when its fate is final: a job that reached a terminal
   state reported it successful, the broker acknowledged its dead-letter copy,
   or a policy skipped it (tombstone, delete, superseded by a later change);
3. a partition's *watermark* is the lowest offset still unsettled (or one past
   the last tracked offset when nothing is pending): every record below it is
   settled, so committing it can never skip an undelivered record;
4. the pipeline commits watermarks at a steady cadence, soon after work
   settles, and on revocation and shutdown (``commits.py``).

A crash anywhere loses only unsettled work, which the next owner re-reads
from the committed watermark: re-delivery, never loss.

What a commit carries: the watermark is one number, and one slow job holds
it back for every record after it. So each partition also keeps a *mark* per
offset from the watermark up: pending, settled with its outcome, a gap (an
offset never consumed: compaction, transaction markers), or carried by an
in-flight job (one of the partition's job slots). :meth:`OffsetTracker.window`
hands that window and the slots' job ids to ``ledger.py``, which packs them
into the offset commit's metadata, so the next owner can skip what was
settled and resolve the jobs still running (``takeover.py``).

Write-ahead: a batch's records are marked as carried by a slot *before* its
POST goes out (:meth:`OffsetTracker.intend`), with no job id yet: an
:class:`Intent`. The committer sends that window and the POST waits for the
broker's acknowledgement (``commits.py``), so a crash at any instant leaves a
ledger that names every record a job may carry. The id fills the slot when
the POST answers (:meth:`OffsetTracker.carried`).

Generations: every assignment of a partition gets a new generation number,
and :meth:`OffsetTracker.track` hands it to the record. A partition lost or
revoked and then assigned back to this same instance is re-read from its
committed offset while jobs of the earlier assignment may still be running:
for a while two live copies of one offset exist. Only the copy of the current
generation may settle it; settling by the other would move the watermark past
a record nothing has delivered yet.

Cost: a mark is one byte of a ``bytearray``; tracking appends a byte,
settling writes one, and the watermark advances with a compiled regular
expression over the settled marks, in C.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from service.delivery.ledger import Ledger
from service.delivery.records import PendingRecord, superseded_offsets

# (topic, partition number): how the service keys its state per partition. Not
# confluent_kafka.TopicPartition, which carries an offset and metadata; consumer.py converts.
PartitionKey = tuple[str, int]


class Mark:
    """What one offset above the watermark is: one byte of a partition's window."""

    PENDING = 0  # consumed, not settled, in no job (buffered, being judged, or awaiting a DLQ ack)
    SUCCEEDED = 1
    DEAD_LETTERED = 2
    SKIPPED = 3
    COALESCED = 4
    GAP = 5  # never consumed: no record at this offset
    JOB = 6  # JOB + slot: carried by an in-flight job
    SLOTS = 256 - JOB


OUTCOME_MARKS: Mapping[str, int] = MappingProxyType(
    {
        "succeeded": Mark.SUCCEEDED,
        "dead_lettered": Mark.DEAD_LETTERED,
        "skipped": Mark.SKIPPED,
        "coalesced": Mark.COALESCED,
    }
)
"""The ``records_total`` outcome each settled mark stands for, and back (``MARK_OUTCOMES``)."""
MARK_OUTCOMES: Mapping[int, str] = MappingProxyType({m: o for o, m in OUTCOME_MARKS.items()})


_SETTLED_RUN = re.compile(rb"[\x01-\x05]*")
_TRIM_AT = 1 << 14  # settled marks kept before the window is cut back to the watermark
_KEPT_INTENTS = 4096  # the intents remembered for a partition assigned back (recognise)

_generations = itertools.count(1)
_ANY_FETCH = 1 << 62  # a fetch of unknown generation (tests): every assignment's


@dataclass(slots=True)
class _PartitionOffsets:
    generation: int = field(default_factory=lambda: next(_generations))
    base: int | None = None  # the offset of marks[0]
    marks: bytearray = field(default_factory=bytearray)
    done: int = 0  # marks[:done] are all settled: base + done is the watermark
    committed: int | None = None  # the last watermark the broker acknowledged
    committed_window: Window | None = None  # the window that commit carried
    slots: dict[Intent, int] = field(default_factory=dict)  # the intents carrying records here
    holding: bool = False  # inherited work unresolved: commit nothing (see takeover.py)

    def watermark(self) -> int | None:
        if self.base is None:
            return None
        marks = self.marks
        end = _SETTLED_RUN.match(marks, self.done)
        self.done = end.end() if end is not None else self.done
        if self.done >= _TRIM_AT:
            del marks[: self.done]
            self.base += self.done
            self.done = 0
        return self.base + self.done

    def replace(self, offsets: list[int], old: int, new: int) -> None:
        """Mark ``new`` the offsets above the watermark that are marked ``old``."""
        marks, base, done = self.marks, self.base or 0, self.done
        end = len(marks)
        for offset in offsets:
            index = offset - base
            if done <= index < end and marks[index] == old:
                marks[index] = new


def _by_assignment(
    records: Iterable[PendingRecord], *, superseded: bool = True
) -> dict[tuple[PartitionKey, int], list[int]]:
    """A batch's offsets by partition and generation (a batch spans a few of each).

    A record stands for the earlier changes it absorbed (``PendingRecord.superseded``):
    their offsets come along unless ``superseded`` is false.
    """
    grouped: dict[tuple[PartitionKey, int], list[int]] = {}
    for record in records:
        key = ((record.topic, record.partition), record.generation)
        offsets = grouped.get(key)
        if offsets is None:
            offsets = grouped[key] = [record.offset]
        else:
            offsets.append(record.offset)
        if superseded and record.superseded:
            offsets.extend(superseded_offsets(record))
    return grouped


@dataclass(eq=False, slots=True)
class Intent:
    """A batch written ahead of its POST: its records are marked with one slot per partition.

    ``job_id`` is ``None`` until the POST answered with one: until then a crash
    leaves a ledger saying "these records may be carried by a job nobody knows",
    dated ``at`` (``time.time()`` when the intent was written). ``unwritten``:
    the partitions whose acknowledged commit does not carry the intent yet.
    """

    at: float
    job_id: str | None = None
    unwritten: set[PartitionKey] = field(default_factory=set)
    posted: bool = False  # a POST attempt may have gone out (its write-ahead returned)

    @property
    def written(self) -> bool:
        """Every partition it marks has a commit the broker acknowledged that names it."""
        return not self.unwritten


@dataclass(frozen=True, slots=True)
class Window:
    """A partition's state above its watermark, as a commit carries it."""

    offset: int  # the watermark: what the commit commits
    marks: bytes  # one Mark per offset from ``offset`` up to one past the last tracked
    jobs: dict[int, str]  # slot -> job id of the in-flight jobs the marks refer to
    intents: dict[int, float] = field(default_factory=dict)  # slot -> ``at`` of id-less intents
    # The slots' intents, each with the date it had in this window.
    carriers: tuple[tuple[Intent, float], ...] = field(default=(), compare=False)


class OffsetTracker:
    """Tracks consumed records per partition and derives the commit watermark and window."""

    def __init__(self) -> None:
        self._partitions: dict[PartitionKey, _PartitionOffsets] = {}
        self._closing: set[PartitionKey] = set()
        # The intents this instance wrote, by partition, slot and date (ms), the latest
        # _KEPT_INTENTS: a partition lost and assigned back finds its own (see recognise).
        self._written: OrderedDict[tuple[PartitionKey, int, int], Intent] = OrderedDict()
        self.newest_generation = 0
        """The generation of the latest assignment; a fetch carries it (:meth:`track`)."""

    def assign(
        self, tp: PartitionKey, committed: int | None = None, *, holding: bool = False
    ) -> None:
        """Start afresh for a partition this consumer now owns (from ``committed``, if known).

        ``holding``: the previous owner left work this instance has not resolved
        yet (its commit metadata): nothing is committed for the partition until
        :meth:`release`, so that metadata stays in place should this instance
        die first.
        """
        state = _PartitionOffsets(holding=holding)
        self.newest_generation = state.generation
        if committed is not None and committed >= 0:
            state.base = state.committed = committed
        self._partitions[tp] = state
        self._closing.discard(tp)

    def release(self, tp: PartitionKey) -> None:
        """The inherited work is resolved: the partition's commits may carry our window."""
        state = self._partitions.get(tp)
        if state is not None:
            state.holding = False

    def close(self, partitions: Iterable[PartitionKey]) -> None:
        """The partitions are being given up: take no new work for them from now on.

        Between the start of a revocation and the commit that ends it, jobs of
        these partitions still end. What they settle is settled (the commit
        then carries it), but nothing may be tracked, buffered or resubmitted
        any more (:meth:`takes`): the next owner is about to redo it, and two
        jobs carrying one customer at once apply its changes in any order.
        """
        self._closing.update(tp for tp in partitions if tp in self._partitions)

    def takes(self, tp: PartitionKey, generation: int) -> bool:
        """Whether a record of ``generation`` may still be buffered or resubmitted."""
        state = self._partitions.get(tp)
        return state is not None and state.generation == generation and tp not in self._closing

    def takes_all(self, records: Iterable[PendingRecord]) -> bool:
        """Whether every record may still be delivered by this instance (see :meth:`takes`)."""
        # A batch spans a few partitions and one generation each: check those, not each record.
        assignments = {(r.topic, r.partition, r.generation) for r in records}
        return all(self.takes((topic, p), generation) for topic, p, generation in assignments)

    def revoke(self, tp: PartitionKey) -> None:
        """Forget a partition: its unsettled records are the next owner's to re-read."""
        state = self._partitions.pop(tp, None)
        self._closing.discard(tp)
        for intent in state.slots if state is not None else ():
            intent.unwritten.discard(tp)  # nothing of it will be committed here any more

    def unwritable(self, intent: Intent) -> bool:
        """Some partition the intent marks is closing or gone: it can no longer be written."""
        return any(tp in self._closing or tp not in self._partitions for tp in intent.unwritten)

    def owns(self, tp: PartitionKey) -> bool:
        return tp in self._partitions

    def track(self, tp: PartitionKey, offset: int, fetched: int = _ANY_FETCH) -> int:
        """Start tracking a consumed record; return its generation, or 0 when it is not ours.

        Not ours: its partition was revoked after the fetch, or assigned again
        since (a generation newer than ``fetched``, the newest when the fetch
        returned: the record belongs to the earlier assignment, and the new one
        re-reads it from its committed offset), or it was re-fetched after a
        seek and is already tracked (and so already on its way).
        """
        state = self._partitions.get(tp)
        if state is None or state.generation > fetched or tp in self._closing:
            return 0
        if state.base is None:
            state.base = offset
        index = offset - state.base
        marks = state.marks
        length = len(marks)
        if index < length:
            return 0
        if index > length:
            marks.extend(b"\x05" * (index - length))  # Mark.GAP
        marks.append(Mark.PENDING)
        return state.generation

    def untrack(self, tp: PartitionKey, offset: int) -> None:
        """Forget the record just tracked, the newest of its partition: it will be read again.

        For a record whose decoding has to wait (its schema registry cannot be reached): the
        ingestor holds it, untracked, and tracks it anew when it retries.
        """
        state = self._partitions.get(tp)
        if state is None or state.base is None:
            return
        marks = state.marks
        if offset - state.base == len(marks) - 1 and marks[-1] == Mark.PENDING:
            marks.pop()

    def position(self, tp: PartitionKey) -> int | None:
        """One past the highest offset tracked (``None`` before the first, or when not owned)."""
        state = self._partitions.get(tp)
        if state is None or state.base is None:
            return None
        return state.base + len(state.marks)

    def generation(self, tp: PartitionKey) -> int:
        """The current assignment's generation of ``tp``; 0 when it is not owned."""
        state = self._partitions.get(tp)
        return 0 if state is None else state.generation

    def settle(
        self,
        tp: PartitionKey,
        offsets: int | Iterable[int],
        mark: int,
        *,
        generation: int | None = None,
    ) -> None:
        """Settle offsets as ``mark`` (a :class:`Mark` from SUCCEEDED to COALESCED).

        The one way an offset becomes settled (``settlement.py`` decides which
        and counts them). ``generation``: the assignment the records were
        consumed under; settled only if it is still the partition's current one
        (see the module docstring). ``None`` means the current one, for records
        settled in the very fetch that tracked them. An offset below the
        watermark or beyond the tracked ones is left as it is.
        """
        state = self._partitions.get(tp)
        if state is None or state.base is None:
            return  # settled after revocation: the new owner will redo it
        if generation is not None and state.generation != generation:
            return  # a copy of an earlier assignment: the current copy settles it
        marks, base, done = state.marks, state.base, state.done
        end = len(marks)
        for offset in (offsets,) if isinstance(offsets, int) else offsets:
            if done <= offset - base < end:
                marks[offset - base] = mark

    def intend(
        self, records: Iterable[PendingRecord], at: float, job_id: str | None = None
    ) -> Intent:
        """Mark these records (and what they absorbed) as carried by a new intent's slots.

        Only records of their partition's current generation, and only where they are
        pending. A partition with no slot left keeps them pending: the intent is not
        written there, and a crash costs what it cost before write-ahead. A partition
        being taken over (``holding``) commits nothing yet: it is marked, not waited for.
        """
        intent = Intent(at, job_id)
        for (tp, generation), offsets in _by_assignment(records).items():
            state = self._partitions.get(tp)
            if state is None or state.base is None or state.generation != generation:
                continue
            used = set(state.slots.values())
            slot = next((s for s in range(Mark.SLOTS) if s not in used), None)
            if slot is None:
                continue  # no slot left: the records simply stay pending
            state.slots[intent] = slot
            state.replace(offsets, Mark.PENDING, Mark.JOB + slot)
            if not state.holding:
                intent.unwritten.add(tp)
            self._remember(tp, slot, intent)
        return intent

    def _remember(self, tp: PartitionKey, slot: int, intent: Intent) -> None:
        self._written[tp, slot, round(intent.at * 1000)] = intent
        while len(self._written) > _KEPT_INTENTS:
            self._written.popitem(last=False)

    def recognise(self, tp: PartitionKey, ledger: Ledger) -> Ledger:
        """``ledger``, with the intents this instance wrote itself resolved as far as it knows.

        A partition lost (a broker outage outlasting the session, say) and assigned back
        finds its own last commit: an intent whose job this instance heard of is that job,
        to be resolved like any inherited one, and one whose POST never went out carried
        nothing. Only an intent whose POST went out unanswered stays an intent.
        """
        if not ledger.intents:
            return ledger
        jobs, intents = dict(ledger.jobs), dict(ledger.intents)
        for slot, at in ledger.intents.items():
            own = self._written.get((tp, slot, round(at * 1000)))
            if own is None:
                continue
            if own.job_id is not None:
                jobs[slot] = own.job_id
                del intents[slot]
            elif not own.posted:
                del intents[slot]
        return replace(ledger, jobs=jobs, intents=intents)

    def redate(self, intent: Intent, at: float) -> None:
        """The intent's POST is about to be tried again: date it ``at``, to be written anew."""
        intent.at = at
        intent.unwritten = set()
        for tp, state in self._partitions.items():
            slot = state.slots.get(intent)
            if slot is not None:
                self._remember(tp, slot, intent)
                if not state.holding:
                    intent.unwritten.add(tp)

    def carried(self, intent: Intent, job_id: str) -> None:
        """The intent's POST created a job: its id takes the intent's place in the ledger."""
        intent.job_id = job_id

    def ended(self, intent: Intent, records: Iterable[PendingRecord]) -> None:
        """A job ended, or its POST never went out: what it did not settle is pending again,
        and its slot is free."""
        for (tp, _), offsets in _by_assignment(records).items():
            state = self._partitions.get(tp)
            if state is None or state.base is None:
                continue
            slot = state.slots.get(intent)
            if slot is not None:
                state.replace(offsets, Mark.JOB + slot, Mark.PENDING)
        for state in self._partitions.values():
            state.slots.pop(intent, None)
        intent.unwritten.clear()

    def pending_count(self, tp: PartitionKey) -> int:
        state = self._partitions.get(tp)
        if state is None or state.watermark() is None:
            return 0
        marks, done = state.marks, state.done
        settled = sum(marks.count(mark, done) for mark in range(Mark.SUCCEEDED, Mark.JOB))
        return len(marks) - done - settled

    def window(self, tp: PartitionKey) -> Window | None:
        """The partition's watermark and everything a commit should say above it."""
        state = self._partitions.get(tp)
        if state is None:
            return None
        mark = state.watermark()
        if mark is None:
            return None
        marks = bytes(state.marks[state.done :])
        carriers = tuple((i, i.at) for i, slot in state.slots.items() if Mark.JOB + slot in marks)
        jobs: dict[int, str] = {}
        intents: dict[int, float] = {}
        for intent, _ in carriers:
            slot = state.slots[intent]
            if intent.job_id is None:
                intents[slot] = intent.at
            else:
                jobs[slot] = intent.job_id
        return Window(mark, marks, jobs, intents, carriers)

    def commit_candidates(
        self, only: set[PartitionKey] | None = None
    ) -> dict[PartitionKey, Window]:
        """Windows that changed since the last acknowledged commit (offset or marks)."""
        candidates: dict[PartitionKey, Window] = {}
        for tp, state in self._partitions.items():
            if (only is not None and tp not in only) or state.holding:
                continue
            window = self.window(tp)
            if window is None:
                continue
            if state.committed is not None and window.offset < state.committed:
                continue
            if window.offset == state.committed and window == state.committed_window:
                continue
            candidates[tp] = window
        return candidates

    def committed(self, windows: dict[PartitionKey, Window]) -> None:
        """Record what the broker acknowledged, so the same window is not sent twice."""
        for tp, window in windows.items():
            state = self._partitions.get(tp)
            if state is None:
                continue
            if state.committed is None or window.offset >= state.committed:
                state.committed = window.offset
                state.committed_window = window
            for intent, at in window.carriers:
                if at == intent.at:  # not dated again since this window was built
                    intent.unwritten.discard(tp)

    def committed_offset(self, tp: PartitionKey) -> int | None:
        state = self._partitions.get(tp)
        return None if state is None else state.committed
