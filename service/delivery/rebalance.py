"""Partitions arriving and leaving: the rebalance protocol, from librdkafka's thread to the loop.

librdkafka calls the rebalance callbacks on the Kafka thread, inside
``consume``. Each callback hands its work to the event loop (which owns all
pipeline state) with ``run_coroutine_threadsafe`` and *waits* for it: the
consumer stays inside the rebalance, still owning the partitions, until the
loop has done what must happen before they change hands.

* **assigned** — the committed offset and its ledger are read here, on the
  Kafka thread, inside the callback, and for a partition with a ledger, its
  end offset (the takeover coalesces everything up to it before its first
  submission); then a fresh generation per partition
  (``offsets.py``), so nothing of an earlier assignment of the same
  partition can settle the new copies of its records, and a takeover
  (``takeover.py``) for each partition whose previous owner left work
  unresolved.
* **revoked** — drop what was not submitted, give up the write-aheads still
  waiting for a commit (their batches are not submitted), wait briefly (``REVOKE_WAIT``)
  for the jobs carrying those partitions' records, stop (``DELETE``) the ones
  still running, then commit what is settled, here on the Kafka thread while
  the callback is served (a commit from any other thread would not complete
  until the callback returns, and the callback would wait for it forever).
* **lost** — ownership is already gone (session timeout, fenced): committing
  would fail, so only forget.

The revoke commit carries each partition's ledger like any other commit
(``commits.py``): the jobs it just stopped are in it, and the next owner
resolves them before it redoes anything.

After each, the API key's request budget is re-split (:meth:`Rebalancer.reshare`):
every instance spends the share of the key's limits that its partitions are
of all the source topics' partitions, so the group stays within the key
without talking to itself. The partition counts come from the consumer's
metadata, which the fetch loop reads on the Kafka thread right after an
assignment (:attr:`Rebalancer.recount`; never in the callback, see
``consumer.py``). A revocation's stops are sent before its partitions are
forgotten, so they are paid from the share those partitions had.

A job still running when its partitions go would go on applying those
customers while the next owner resubmits them, possibly with newer changes:
stopping it first means the only job that can still touch them is the next
owner's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass

import structlog

from service.delivery.buffers import Buffers
from service.delivery.commits import Committer
from service.delivery.edges import Consumer
from service.delivery.jobs import STOP_JOBS_WAIT, JobTracker
from service.delivery.ledger import decode
from service.delivery.offsets import OffsetTracker, PartitionKey, Window
from service.delivery.takeover import Takeovers
from service.gameball.budget import RequestBudget
from service.health import Health
from service.metrics import Metrics

log = structlog.get_logger(__name__)

REVOKE_WAIT = 10.0
COMMITTED_TIMEOUT = 10.0
END_OFFSET_TIMEOUT = 5.0

NOT_DONE = {
    "assigned": "the partitions were not set up: their records are read and ignored, and "
    "nothing is committed for them, until the next rebalance",
    "revoke": "no revoke commit for these partitions: the next owner re-reads them from their "
    "last commit; jobs carrying their records may be left running (see jobs_stopped)",
    "lost": "their buffered records may not be dropped nor their jobs stopped: a job of ours "
    "may still apply older changes beside the next owner's",
}
"""What a rebalance handler that failed could not do, as its log line says."""


class InFlight:
    """The batches being delivered (one task each) and the partitions their records come from."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], set[PartitionKey]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: asyncio.Task[None], partitions: set[PartitionKey]) -> None:
        self._tasks[task] = partitions

    def discard(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    def touching(self, partitions: set[PartitionKey]) -> list[asyncio.Task[None]]:
        return [task for task, touched in self._tasks.items() if touched & partitions]


@dataclass(frozen=True, slots=True)
class Holdings:
    """Everything this instance holds for its partitions: what a rebalance must settle or drop."""

    offsets: OffsetTracker
    batcher: Buffers
    takeovers: Takeovers
    tracker: JobTracker
    in_flight: InFlight


class KeyShare:
    """This instance's part of the key's budget: partitions owned / partitions there are.

    Partitions are weighed alike (a hot partition costs its owner more of its
    share). Until the brokers have said how many there are, the instance keeps
    the idle share: safe for the group; the fetch loop asks (again every
    ``LAG_INTERVAL`` while they do not answer).
    """

    def __init__(
        self,
        budget: RequestBudget,
        consumer: Consumer,
        topics: Sequence[str],
        others: Sequence[RequestBudget] = (),
    ) -> None:
        """``others``: the budgets of routes with limits of their own, shared alike."""
        self._budgets = (budget, *others)
        self._consumer = consumer
        self._topics = tuple(topics)

    def partitions_total(self) -> int:
        """Partitions of the source topics, as the brokers last said (0: not known yet)."""
        counts = self._consumer.partition_counts
        return sum(counts.get(topic, 0) for topic in self._topics)

    def update(self, owned: int) -> None:
        total = self.partitions_total()
        for budget in self._budgets:
            budget.set_share(owned / total if total else 0.0)


class Rebalancer:
    """The consumer's rebalance callbacks, and the assignment they maintain."""

    def __init__(
        self,
        holdings: Holdings,
        consumer: Consumer,
        committer: Committer,
        share: KeyShare,
        *,
        health: Health,
        metrics: Metrics,
        on_assigned: Callable[[], None],
        revoke_wait: float = REVOKE_WAIT,
    ) -> None:
        self._offsets = holdings.offsets
        self._batcher = holdings.batcher
        self._tracker = holdings.tracker
        self._takeovers = holdings.takeovers
        self._in_flight = holdings.in_flight
        self._consumer = consumer
        self._committer = committer
        self._share = share
        self._health = health
        self._metrics = metrics
        self._on_assigned = on_assigned
        self._revoke_wait = revoke_wait
        self._loop: asyncio.AbstractEventLoop | None = None
        self.assignment: set[PartitionKey] = set()
        self.recount = False
        """Partitions arrived: the fetch loop should ask how many the topics have, then reshare."""

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the handlers run on; callbacks before this (none are expected) are ignored."""
        self._loop = loop

    # ------------------------------------------------- on the Kafka thread

    def on_assign(self, partitions: list[PartitionKey]) -> None:
        """Read what the previous owners committed, then hand the partitions to the loop."""
        if self._loop is None or not partitions:
            self._on_loop(self.assigned, partitions)
            return
        committed = self._consumer.committed(partitions, COMMITTED_TIMEOUT)
        # Where a previous owner left a ledger, the end as of now: its takeover reads up to it.
        ends = {
            tp: self._consumer.end_offset(tp, END_OFFSET_TIMEOUT)
            for tp, (_, metadata) in committed.items()
            if metadata
        }
        future = asyncio.run_coroutine_threadsafe(
            self.assigned(partitions, committed, ends), self._loop
        )
        try:
            future.result()
        except Exception:
            log.exception(
                "rebalance_handler_failed",
                handler="assigned",
                partitions=names(partitions),
                not_done=NOT_DONE["assigned"],
            )

    def on_lost(self, partitions: list[PartitionKey]) -> None:
        self._on_loop(self.lost, partitions)

    def on_revoke(self, partitions: list[PartitionKey]) -> None:
        """The revoke callback: the loop prepares, this thread commits (see the module docstring).

        Every other commit runs on this thread too (``commits.py``), so none
        is in flight meanwhile.
        """
        loop = self._loop
        if loop is None:
            return
        try:
            prepared = asyncio.run_coroutine_threadsafe(self._revoking(partitions), loop)
            offsets, released, stopped = prepared.result()
        except Exception:
            log.exception(
                "rebalance_handler_failed",
                handler="revoke",
                partitions=names(partitions),
                not_done=NOT_DONE["revoke"],
            )
            return
        acknowledged = self._committer.commit_revoked(offsets)
        log.info(
            "partitions_revoked",
            partitions=names(partitions),
            released=released,
            jobs_stopped=stopped,
            committed=len(acknowledged),
            not_committed=names(set(offsets) - set(acknowledged)),
        )

    def _on_loop(
        self,
        handler: Callable[[list[PartitionKey]], Coroutine[None, None, None]],
        partitions: list[PartitionKey],
    ) -> None:
        """Run a handler on the loop and block the Kafka thread until it is done."""
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(handler(partitions), self._loop)
        try:
            future.result()
        except Exception:
            log.exception(
                "rebalance_handler_failed",
                handler=handler.__name__,
                partitions=names(partitions),
                not_done=NOT_DONE.get(handler.__name__, "unknown"),
            )

    # ------------------------------------------------------- on the loop

    async def assigned(
        self,
        partitions: list[PartitionKey],
        committed: dict[PartitionKey, tuple[int, str]] | None = None,
        ends: dict[PartitionKey, int | None] | None = None,
    ) -> None:
        """``ends``: the end offset, as of the assignment, of partitions with a ledger."""
        for tp in partitions:
            offset, metadata = (committed or {}).get(tp, (None, ""))
            ledger = decode(metadata)
            if ledger is not None:  # assigned back: what this instance wrote, it knows
                ledger = self._offsets.recognise(tp, ledger)
            end = (ends or {}).get(tp) or 0
            if offset is None or ledger is None:
                self._offsets.assign(tp, offset)
                continue
            # Work left by the previous owner, or records to coalesce before submitting any.
            inherited = bool(ledger.length or ledger.jobs or ledger.intents)
            taken_over = inherited or end > offset
            self._offsets.assign(tp, offset, holding=taken_over)
            if taken_over:
                self._takeovers.begin(tp, offset, ledger, self._offsets.generation(tp), end=end)
        self.assignment.update(partitions)
        self._on_assigned()
        self.reshare()  # with the counts known so far; the fetch loop refreshes them
        self.recount = True
        self._health.in_group = True
        log.info("partitions_assigned", partitions=names(partitions), owned=len(self.assignment))

    async def lost(self, partitions: list[PartitionKey]) -> None:
        """Ownership is already gone: committing would fail, so forget, and stop the jobs.

        Their partitions may already be someone else's, who redoes their
        records: a job of ours still running would apply older changes beside
        the new owner's newer ones.
        """
        lost = set(partitions)
        self._offsets.close(lost)
        self._committer.abandon_unwritable()
        self._batcher.drop_partitions(lost)
        self._takeovers.drop(lost)
        stopped = await self._tracker.stop_jobs(lost, timeout=STOP_JOBS_WAIT)
        self._forget(lost)
        log.warning("partitions_lost", partitions=names(partitions), jobs_stopped=stopped)

    async def _revoking(
        self, partitions: list[PartitionKey]
    ) -> tuple[dict[PartitionKey, Window], int, int]:
        """Take no new work, drop the buffer, wait for jobs, stop the rest; return the windows.

        The partitions are closed first (``OffsetTracker.close``): while this
        waits, a job that ends may settle their records but not give any back
        to the buffer, and a fetched slice still being ingested adds none. They
        are forgotten before the Kafka thread commits: the loop runs on while
        it does, and nothing may act for them meanwhile.
        """
        revoked = set(partitions)
        self._offsets.close(revoked)
        self._committer.abandon_unwritable()  # their batches waiting to be written ahead
        released = self._batcher.drop_partitions(revoked)
        self._takeovers.drop(revoked)
        waiting = self._in_flight.touching(revoked)
        if waiting and not self._health.stopping:
            await asyncio.wait(waiting, timeout=self._revoke_wait)
        stopped = await self._tracker.stop_jobs(revoked, timeout=STOP_JOBS_WAIT)
        released += self._batcher.drop_partitions(revoked)
        windows = self._offsets.commit_candidates(revoked)
        self._forget(revoked)
        return windows, len(released), stopped

    def _forget(self, partitions: set[PartitionKey]) -> None:
        for tp in partitions:
            self._offsets.revoke(tp)
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp[0], str(tp[1]))
        self.assignment -= partitions
        self.reshare()

    # ------------------------------------------------------- the budget

    def partitions_total(self) -> int:
        """Partitions of the source topics, as the brokers last said (0: not known yet)."""
        return self._share.partitions_total()

    def reshare(self) -> None:
        """Re-split the key's budget after the assignment (or the partition counts) changed."""
        self._share.update(len(self.assignment))


def names(partitions: Iterable[PartitionKey]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in sorted(partitions)]
