"""Settlement: how a record's fate becomes an offset that may be committed.

A record is settled when its fate is final (SPEC §2): a terminal job reported
it successful, the broker acknowledged its dead-letter copy, or a policy
skipped it (tombstone, delete, superseded by a later change of the same
customer). This module turns a batch's verdicts into exactly those
settlements, sends the rejected records to the dead-letter topic (they settle
on its acknowledgement), and gives the records a job left unsettled back to
the buffer.

Only records of the partition's current assignment act (see the generations
in ``offsets.py``): a record whose partition was revoked, or revoked and
assigned back, has a newer copy that is the one to deliver, dead-letter or
settle. A record delivered by a job is counted as succeeded either way: it
was.

Every settlement goes through :meth:`OffsetTracker.settle`, the one write of a
settled mark, from one of this class's doors: a batch's verdicts
(:meth:`Settlement.apply`, also for what an inherited job decided), records a
policy skipped or a change superseded, a dead letter's acknowledgement, and
what a previous owner's ledger says it had settled. Each door says which
outcome it counts; the generation check is the tracker's.
"""

from __future__ import annotations

import time

from service.delivery.buffers import Buffers
from service.delivery.deadletter import DeadLetter, DeadLetterWriter
from service.delivery.offsets import (
    MARK_OUTCOMES,
    OUTCOME_MARKS,
    Mark,
    OffsetTracker,
    PartitionKey,
)
from service.delivery.records import PendingRecord, superseded_offsets, superseded_stamps
from service.delivery.verdicts import Verdicts
from service.metrics import Metrics

Assignment = tuple[PartitionKey, int]
"""A partition and the generation of its assignment: the unit a settlement is checked against."""


class Settlement:
    """Settles records against the offset tracker and counts each under its outcome."""

    def __init__(
        self,
        offsets: OffsetTracker,
        batcher: Buffers,
        dead_letters: DeadLetterWriter,
        metrics: Metrics,
    ) -> None:
        self._offsets = offsets
        self._batcher = batcher
        self._dead_letters = dead_letters
        self._metrics = metrics

    def apply(self, verdicts: Verdicts) -> None:
        """A batch's verdicts: settle the delivered, dead-letter the rejected, requeue the rest."""
        current = self._offsets.generation
        self.settle(verdicts.succeeded, "succeeded")
        for rejection in verdicts.rejected:
            r = rejection.record
            if current((r.topic, r.partition)) == r.generation:
                self._dead_letters.send(
                    DeadLetter(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp_ms,
                        r.key,
                        r.value,
                        rejection.reason,
                        rejection.error,
                        attempts=r.attempts,
                        job_id=rejection.job_id,
                        generation=r.generation,
                        value_in_source=r.value is None,
                        on_settled=rejection.on_settled,
                    )
                )
        # The dead letter carries the merged change's own bytes; what it absorbed is settled.
        self.absorbed([rejection.record for rejection in verdicts.rejected])
        now = time.monotonic()
        losers = []
        takes = self._offsets.takes
        for r in verdicts.resubmit:
            if takes((r.topic, r.partition), r.generation):
                loser = self._batcher.give_back(r, now)
                if loser is not None:
                    losers.append(loser)
        self.settle(losers, "coalesced")

    def settle(self, records: list[PendingRecord], outcome: str) -> None:
        """Settle records (of their current generation only) and count them under ``outcome``.

        The earlier changes each record absorbed settle with it, as ``coalesced``.
        """
        if not records:
            return
        wall = time.time()
        self._mark(records, OUTCOME_MARKS[outcome], absorbed_only=False)
        self._metrics.end_to_end_latency.observe_many(
            [wall - r.timestamp_ms / 1000 for r in records]
        )
        self._metrics.outcome[outcome].inc(len(records))
        self._count_absorbed(records, wall)

    def absorbed(self, records: list[PendingRecord]) -> None:
        """Settle the earlier changes these records absorbed (``coalesced``), not the records."""
        records = [r for r in records if r.superseded]
        if records:
            self._mark(records, Mark.COALESCED, absorbed_only=True)
            current = self._offsets.generation
            self._count_absorbed(
                [r for r in records if current((r.topic, r.partition)) == r.generation],
                time.time(),
            )

    def _mark(self, records: list[PendingRecord], mark: int, *, absorbed_only: bool) -> None:
        """Settle records as ``mark`` and what they absorbed as COALESCED, per assignment."""
        own: dict[Assignment, list[int]] = {}
        absorbed: dict[Assignment, list[int]] = {}
        for r in records:
            key = ((r.topic, r.partition), r.generation)
            if not absorbed_only:
                own.setdefault(key, []).append(r.offset)
            if r.superseded:
                absorbed.setdefault(key, []).extend(superseded_offsets(r))
        settle = self._offsets.settle
        for (tp, generation), offsets in own.items():
            settle(tp, offsets, mark, generation=generation)
        for (tp, generation), offsets in absorbed.items():
            settle(tp, offsets, Mark.COALESCED, generation=generation)

    def _count_absorbed(self, records: list[PendingRecord], wall: float) -> None:
        stamps = [stamp for r in records if r.superseded for stamp in superseded_stamps(r)]
        if stamps:
            self._metrics.outcome["coalesced"].inc(len(stamps))
            self._metrics.end_to_end_latency.observe_many([wall - t / 1000 for t in stamps])

    def skipped(self, records: list[tuple[PartitionKey, int, int]]) -> None:
        """Settle records a policy skipped: ``(partition, offset, timestamp_ms)`` each.

        They are settled at once, in the fetch that consumed them, so their
        generation is the current one by construction.
        """
        if not records:
            return
        wall = time.time()
        settle = self._offsets.settle
        for tp, offset, _ in records:
            settle(tp, offset, Mark.SKIPPED)
        self._metrics.end_to_end_latency.observe_many([wall - t / 1000 for _, _, t in records])
        self._metrics.skipped.inc(len(records))

    def dead_lettered(self, letter: DeadLetter) -> None:
        """The broker acknowledged a dead letter: its source record is settled."""
        tp = (letter.topic, letter.partition)
        self._offsets.settle(tp, letter.offset, Mark.DEAD_LETTERED, generation=letter.generation)
        if letter.on_settled is not None:
            letter.on_settled()
        self._metrics.dead_lettered.inc()
        self._metrics.end_to_end_latency.observe(time.time() - letter.timestamp_ms / 1000)

    def inherited(self, records: list[tuple[PartitionKey, int, int]]) -> None:
        """Records the previous owner had settled: ``(partition, offset, mark)`` each.

        Counted under their outcome, so every consumed record still ends in
        one, and in ``records_inherited_total``; their end-to-end latency was
        observed when they were first settled.
        """
        settle = self._offsets.settle
        for tp, offset, mark in records:
            settle(tp, offset, mark)
            outcome = MARK_OUTCOMES[mark]
            self._metrics.outcome[outcome].inc()
            self._metrics.inherited[outcome].inc()
