"""Compaction: a backlog read ahead while the API's budget is the bound, one change a customer.

The buffer already coalesces the changes of a customer it holds at once (``batching.py``), but
it holds ``MAX_BUFFERED_RECORDS``: a backlog of 1,000,000 changes of 200,000 customers costs
close to 1,000,000 records of API budget, where 200,000 would do. Kafka's own log compaction
does this eventually, and only on compacted topics; this does it on the way to the API.

**When.** The instance is *quota-bound* when the records waiting for it (not yet read, plus
buffered) are more than its share of the API's budget can send in :data:`HORIZON` seconds,
at :data:`REQUESTS_PER_JOB` requests a job of ``BATCH_MAX_RECORDS``. It stops being so below
half of that. The figure is the budget's (``GAMEBALL_RATE_LIMIT_*``, this instance's share),
not a measurement of waits: in the first seconds of a backlog the jobs in flight, not the
budget, bound the submissions, and waiting for the budget to show strain would spend its
first half-minute on changes the backlog still supersedes.

**What changes while quota-bound.**

* The buffer's bound is memory, not records: ``COMPACTION_MAX_BYTES`` of buffered changes
  (:func:`~service.delivery.batching.footprint`, about 1 kB a customer with Debezium's
  sample rows), so the consumer reads as far ahead as that holds and each customer keeps
  only its latest change, the earlier ones riding along to settle as ``coalesced``.
* A buffered change keeps its encoded API item, not its source bytes: the value is left in
  Kafka, and read again from its offset only if it has to be dead-lettered (``deadletter.py``).
* **The fill.** From the moment it becomes quota-bound, dispatch holds new jobs while the
  consumer is still reading the backlog, so the budget is not spent on changes that are
  about to be superseded. The fill ends at the first of: a lag reading (taken at every fetch
  while filling) that finds less than a fetch's worth unread, the memory bound (the consumer
  pauses), or :data:`FILL_MAX_SECONDS`. Then the buffer drains at the budget's pace in the
  usual order (each customer at the place of its oldest pending change), the consumer
  reading on as memory frees. The budget is idle during the fill, which at tens of thousands
  of records a second is short beside the catch-up it saves (``make bench``, quota backlog
  regime).

When not quota-bound nothing differs from a service without compaction. ``COMPACTION_MAX_BYTES=0``
turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from service.metrics import Metrics

log = structlog.get_logger(__name__)

HORIZON = 30.0
"""Seconds of this instance's budget a backlog must exceed to be compacted: Gameball's quota
window (360 requests per 30 s). A backlog the budget clears within one window gains little."""
REQUESTS_PER_JOB = 2.0
"""What a job costs the budget: its submission and, mostly, one status read (``make bench``:
2.00-2.04 requests a job under the documented quota)."""
FETCH_BYTES = 2000 * 2048
"""A fetch's worth of room (:meth:`Compaction.room`)."""
CAUGHT_UP = 100
"""Records left unread below which the fill has read what there was: about what a live
stream of 1,000 records a second adds between two fetches; a faster stream keeps the fill on
to :data:`FILL_MAX_SECONDS`. A change among them may reach the API a second time. Not an
empty fetch: one comes back empty whenever a rebalance is under way, mid-backlog."""
FILL_MAX_SECONDS = 30.0
"""The longest dispatch holds for the fill, and so the most budget it can cost: the budget
paces, it does not bank (``budget.py``), so every second of the hold is a second of budget
unspent. A backlog that takes longer than this to read drains while it is read, as the jobs
of customers whose oldest change is oldest."""


class Compaction:
    """Whether the instance is quota-bound, and so reads ahead and holds dispatch for the fill."""

    def __init__(
        self,
        max_bytes: int,
        records_per_job: int,
        budget_rate: Callable[[], float],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self._records_per_job = records_per_job
        self._budget_rate = budget_rate
        self._metrics = metrics
        self._clock = clock
        self.active = False
        self._fill_until: float | None = None  # while filling: when the fill ends at the latest

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def filling(self) -> bool:
        """Dispatch holds: the backlog is being read ahead (see the module docstring)."""
        if self._fill_until is None:
            return False
        if self._clock() >= self._fill_until:
            self._end_fill("max_seconds")
            return False
        return True

    def fill_left(self) -> float | None:
        """Seconds until the fill ends at the latest; ``None`` when not filling."""
        if self._fill_until is None:
            return None
        return max(0.0, self._fill_until - self._clock())

    def threshold(self) -> float:
        """Records waiting above which the instance is quota-bound."""
        return self._budget_rate() / REQUESTS_PER_JOB * self._records_per_job * HORIZON

    def weigh(self, records: int) -> None:
        """Before a fetch is ingested, at a lag reading: the records waiting for this instance
        (not yet consumed, the fetch, and those buffered). Above :meth:`threshold`, compaction
        starts, and the fetch's changes are the first compacted."""
        if not self.enabled or self.active:
            return
        threshold = self.threshold()
        if records > threshold:
            self.active = True
            self._fill_until = self._clock() + FILL_MAX_SECONDS
            self._metrics.compaction_active.set(1)
            log.info(
                "compaction_started",
                records_waiting=records,
                threshold=round(threshold),
                max_bytes=self.max_bytes,
            )

    def ingested(self, records: int, unread: int | None) -> None:
        """After that fetch is ingested (so no change of it can be overtaken by a batch): the
        fill ends once ``unread``, the records not yet consumed, is below :data:`CAUGHT_UP`
        (``None``: not known for every partition, as just after an assignment: nothing is
        decided); after the fill, compaction stops once the records waiting fall below half
        the threshold."""
        if not self.active or unread is None:
            return
        if self.filling:  # it stops after its fill, never before: that would end the hold early
            if unread < CAUGHT_UP:
                self._end_fill("caught_up")
            return
        threshold = self.threshold()
        if records < threshold / 2:
            self.active = False
            self._fill_until = None
            self._metrics.compaction_active.set(0)
            log.info("compaction_stopped", records_waiting=records, threshold=round(threshold))

    def assigned(self) -> None:
        """Partitions arrived while compacting: a new fill, however the last one ended.

        Their takeovers re-read windows the previous owner left (a compacted window is wide,
        and its ledger has dropped the marks), and a window wider than a takeover's room is
        released into the buffer in parts. Submitted as they come, a part could carry a
        customer's older change while the newer one, which the previous owner may have
        applied already, is still unread: the fill holds dispatch until the windows are read.
        """
        if self.active and self._fill_until is None:
            self._fill_until = self._clock() + FILL_MAX_SECONDS
            log.info("compaction_fill_started", reason="partitions_assigned")

    def room(self, memory: int) -> bool:
        """Whether a fetch may be asked for ahead: ``CONSUME_MAX`` (2,000) changes at twice a
        sample change's footprint still fit below ``COMPACTION_MAX_BYTES``."""
        return memory + FETCH_BYTES < self.max_bytes

    def full(self, memory: int) -> bool:
        """The buffer holds as much as compaction may; ends the fill."""
        if memory < self.max_bytes:
            return False
        if self._fill_until is not None:
            self._end_fill("memory")
        return True

    def interrupt(self) -> None:
        """Shutdown flushes the buffer: no more holding."""
        if self._fill_until is not None:
            self._end_fill("flush")

    def _end_fill(self, reason: str) -> None:
        self._fill_until = None
        log.info("compaction_fill_ended", reason=reason)
