"""Offset bookkeeping: which offset of each partition is safe to commit.

The order of at-least-once, said out loud:

1. every record is *tracked* the moment it is consumed, before anything else
   can happen to it;
2. it is *settled* when its fate is final: a job that reached a terminal
   state reported it successful, the broker acknowledged its dead-letter copy,
   or a policy skipped it (tombstone, delete, superseded by a later change);
3. a partition's *watermark* is the lowest offset still unsettled (or one past
   the last tracked offset when nothing is pending): every record below it is
   settled, so committing it can never skip an undelivered record;
4. the pipeline commits watermarks synchronously, at a steady cadence and on
   revocation and shutdown.

A crash anywhere loses only unsettled work, which the next owner re-reads
from the committed watermark: re-delivery, never loss.

Generations: every assignment of a partition gets a new generation number,
and :meth:`OffsetTracker.track` hands it to the record. A partition lost or
revoked and then assigned back to this same instance is re-read from its
committed offset while jobs of the earlier assignment may still be running:
for a while two live copies of one offset exist. Only the copy of the current
generation may settle it; settling by the other would move the watermark past
a record nothing has delivered yet.

Cost: one deque append per tracked record and amortised O(1) per settle,
because records arrive in offset order per partition and the watermark only
moves forward.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


_generations = itertools.count(1)


@dataclass(slots=True)
class _PartitionOffsets:
    generation: int = field(default_factory=lambda: next(_generations))
    pending: deque[int] = field(default_factory=deque)
    settled: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest tracked offset
    committed: int | None = None  # the last watermark the broker acknowledged

    def watermark(self) -> int | None:
        while self.pending and self.pending[0] in self.settled:
            self.settled.discard(self.pending.popleft())
        if self.pending:
            return self.pending[0]
        return self.next_offset


class OffsetTracker:
    """Tracks consumed records per partition and derives the commit watermark."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionOffsets] = {}

    def assign(self, tp: TopicPartition) -> None:
        """Start afresh for a partition this consumer now owns."""
        self._partitions[tp] = _PartitionOffsets()

    def revoke(self, tp: TopicPartition) -> None:
        """Forget a partition: its unsettled records are the next owner's to re-read."""
        self._partitions.pop(tp, None)

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._partitions

    def track(self, tp: TopicPartition, offset: int) -> int:
        """Start tracking a consumed record; return its generation, or 0 when it is not ours.

        Not ours: its partition was revoked after the fetch, or it was re-fetched
        after a seek and is already tracked (and so already on its way).
        """
        state = self._partitions.get(tp)
        if state is None:
            return 0
        if state.next_offset is not None and offset < state.next_offset:
            return 0
        state.pending.append(offset)
        state.next_offset = offset + 1
        return state.generation

    def generation(self, tp: TopicPartition) -> int:
        """The current assignment's generation of ``tp``; 0 when it is not owned."""
        state = self._partitions.get(tp)
        return 0 if state is None else state.generation

    def settle(self, tp: TopicPartition, offset: int) -> None:
        state = self._partitions.get(tp)
        if state is None:
            return  # settled after revocation: the new owner will redo it
        if state.pending and offset >= state.pending[0]:
            state.settled.add(offset)

    def pending_count(self, tp: TopicPartition) -> int:
        state = self._partitions.get(tp)
        if state is None:
            return 0
        state.watermark()
        return len(state.pending) - len(state.settled)

    def commit_candidates(
        self, only: set[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Watermarks that moved past the last acknowledged commit."""
        candidates: dict[TopicPartition, int] = {}
        for tp, state in self._partitions.items():
            if only is not None and tp not in only:
                continue
            mark = state.watermark()
            if mark is not None and (state.committed is None or mark > state.committed):
                candidates[tp] = mark
        return candidates

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Record what the broker acknowledged, so the same watermark is not sent twice."""
        for tp, offset in offsets.items():
            state = self._partitions.get(tp)
            if state is not None and (state.committed is None or offset > state.committed):
                state.committed = offset

    def committed_offset(self, tp: TopicPartition) -> int | None:
        state = self._partitions.get(tp)
        return None if state is None else state.committed
