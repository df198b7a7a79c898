"""The pipeline: Kafka → decode → batch → submit → track → settle → commit.

This module is the orchestration, read top to bottom in that order; each step
is a module of its own:

=============  ==================================================================
consume        ``consumer.py`` — the confluent-kafka adapter and its one thread
decode, route  ``ingest.py`` (``decoding.py``, ``mapping.py``) — track, decode, buffer
               ``compaction.py`` — a backlog read ahead while the API's budget binds
               ``breaker.py`` — too many dead letters: hold, pause, commit nothing
batch          ``batching.py`` — coalescing, flush rules, customers checked out
submit, track  ``jobs.py`` — one batch as a job, polled to a verdict per record
               ``tags.py`` — a delivered customer's tags, by a call of their own
settle         ``settlement.py``, ``deadletter.py`` — verdicts become settled offsets
commit         ``offsets.py``, ``ledger.py``, ``commits.py`` — watermarks and their ledgers
rebalance      ``rebalance.py``, ``takeover.py`` — partitions arriving, leaving, taken over
=============  ==================================================================

One asyncio loop owns all pipeline state (buffer, offsets, jobs); nothing
else mutates it, so there are no locks around it. The only other thread is
the Kafka thread, which blocks in ``consume``/``close`` and on which
librdkafka runs the rebalance callbacks (handed to the loop, see
``rebalance.py``).

Tasks on the loop:

* **fetch** — consumes up to ``CONSUME_MAX`` records (the next fetch already
  asked for) and ingests them in slices; pauses all partitions when the buffer
  reaches ``MAX_BUFFERED_RECORDS`` (membership is kept: ``consume`` keeps
  being called) and resumes below half of it;
* **dispatch** — takes batches when one is due and a job slot is free;
* **one task per batch** — :meth:`JobTracker.deliver`, the tags it delivered
  (:meth:`TagSender.deliver`), then settle;
* **commit** — :class:`~service.delivery.commits.Committer`;
* **housekeeping** — serves dead-letter acknowledgements, liveness, lag;
* **until** — only in a bounded run (``bounded.py``, :class:`Until`): ends the run once
  everything read is settled and committed.

The parts are built by ``assembly.py`` (:meth:`Pipeline.from_settings`) and
handed in; the pipeline only runs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import cast

import structlog

from service.config import Settings
from service.delivery.assembly import Parts, build
from service.delivery.batching import Batch
from service.delivery.bounded import BoundedRun, Reads, Until
from service.delivery.deadletter import Reread
from service.delivery.edges import Consumer, GameballApi, Message, ProducerFactory
from service.delivery.ingest import INGEST_SLICE
from service.delivery.jobs import STOP_JOBS_WAIT
from service.delivery.polling import PollSchedule
from service.delivery.verdicts import Rejection, Verdicts
from service.gameball.client import RetryPolicy
from service.gameball.operations import Delivery
from service.health import Health
from service.labels import DeadLetterReason, FlushReason
from service.metrics import Metrics
from service.waiting import wait_event

log = structlog.get_logger(__name__)

CONSUME_MAX = 2000
CONSUME_TIMEOUT = 0.02
"""How long ``consume`` blocks when nothing comes. Every other call on the Kafka thread waits
for it, a commit included, and a POST waits for its write-ahead's commit: at 0.1 s the
write-ahead's median wait was 60-90 ms, at 0.02 s 24-32 ms (``benchmarks/write_ahead.py``)."""
HOUSEKEEPING_INTERVAL = 0.02
TASKS_EXIT_WAIT = 2.0


class Pipeline:
    """Runs the parts ``assembly.py`` built: the tasks listed in the module docstring."""

    def __init__(self, parts: Parts) -> None:
        self.settings = parts.settings
        self.topics = parts.topics
        self._routes = {route.name: route.operation.value for route in parts.routes}
        self.metrics = parts.metrics
        self.health = parts.health
        self._offsets = parts.offsets
        self._batcher = parts.batcher
        self._budget = parts.budget
        self._client = parts.client
        self._consumer = parts.consumer
        self._kafka_thread = parts.kafka_thread
        self._dead_letters = parts.dead_letters
        self._settlement = parts.settlement
        self._committer = parts.committer
        self._tracker = parts.tracker
        self._tags = parts.tags
        self._takeovers = parts.takeovers
        self._ingestor = parts.ingestor
        self._compaction = parts.compaction
        self._source_reader = parts.source_reader
        self._lag_read = False  # a lag reading came with the fetch being ingested:
        self._unread: int | None = None  # its records not yet consumed (None: not all known)
        self._breaker = parts.breaker
        self._backpressure = parts.backpressure
        self._lag = parts.lag
        self._jobs = parts.in_flight  # the batches being delivered, one task each
        self._rebalancer = parts.rebalancer
        self._wake = parts.progress.wake
        self._flush_now: FlushReason | None = None
        self._fetching = True
        self._reads = Reads()  # records consumed (a bounded run counts them)
        self._bounded = BoundedRun(parts, self._reads)
        self._records_left: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        health: Health | None = None,
        retry: RetryPolicy | None = None,
        poll: PollSchedule | None = None,
        client: GameballApi | None = None,
        consumer: Consumer | None = None,
        producer: ProducerFactory | None = None,
        reread: Reread | None = None,
    ) -> Pipeline:
        """A pipeline built by ``assembly.py``; the edges given replace the real ones."""
        return cls(
            build(
                settings,
                metrics=metrics,
                health=health,
                retry=retry,
                poll=poll,
                client=client,
                consumer=consumer,
                producer=producer,
                reread=reread,
            )
        )

    @property
    def records_read(self) -> int:
        """Records consumed since the run began."""
        return self._reads.records

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event | None = None, *, until: Until | None = None) -> None:
        """Run until ``stop`` is set (or ``until`` says), then shut down gracefully (SPEC §2)."""
        stop = stop or asyncio.Event()
        self._rebalancer.bind(asyncio.get_running_loop())
        self._dead_letters.start(self._settlement.dead_lettered)
        rebalancer = self._rebalancer
        await self._kafka_thread.call(
            self._consumer.start,
            on_assign=rebalancer.on_assign,
            on_revoke=rebalancer.on_revoke,
            on_lost=rebalancer.on_lost,
            on_committed=self._committer.acknowledged,
            on_broker_state=self._broker_state,
        )
        log.info(
            "pipeline_started",
            topics=list(self.topics),
            routes=self._routes,
            group=self.settings.kafka_group_id,
            until_idle=bool(until and until.idle),
            max_records=until.records if until else None,
        )
        self._records_left = until.records if until else None
        self._reads.last = time.monotonic()
        fetch = asyncio.create_task(self._fetch(), name="fetch")
        workers = [
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self._committer.run(), name="commit"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._client.watch_credentials(), name="credentials"),
        ]
        ending: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait(), name="stop")]
        if until is not None and (until.idle or until.records is not None):
            ending.append(asyncio.create_task(self._bounded.wait(until), name="until"))
        done, _ = await asyncio.wait(
            [*ending, fetch, *workers], return_when=asyncio.FIRST_COMPLETED
        )
        failure = next((t.exception() for t in done if t not in ending and t.exception()), None)
        if failure is None:  # the until task may have failed too (a Kafka call)
            failure = next((t.exception() for t in done if t in ending and t.exception()), None)
        if failure is not None:
            log.critical("pipeline_task_failed", error=repr(failure))
        for task in ending:
            task.cancel()
        await self._shutdown(fetch, workers)
        if failure is not None:
            raise failure

    def _broker_state(self, ok: bool) -> None:
        self.health.broker_ok = ok

    async def _shutdown(self, fetch: asyncio.Task[None], workers: list[asyncio.Task[None]]) -> None:
        """Stop fetching, drain the buffer, wait for jobs, flush dead letters, commit and leave.

        Everything fits in ``SHUTDOWN_TIMEOUT_SECONDS`` (keep Kubernetes'
        ``terminationGracePeriodSeconds`` above it). What is not settled by
        then is simply not committed: the next owner re-delivers it.
        """
        started = time.monotonic()
        deadline = started + self.settings.shutdown_timeout_seconds
        self.health.stopping = True
        self._fetching = False
        try:
            await fetch
        except Exception as exc:  # noqa: BLE001 - run() reports and raises it after the drain
            log.warning(
                "shutdown_fetch_failed",
                error=repr(exc),
                not_done="records it had fetched and not yet ingested are not delivered here: "
                "the next owner re-reads them",
            )
        log.info("shutdown_draining", buffered=len(self._batcher), jobs=len(self._jobs))
        self._flush_now = FlushReason.SHUTDOWN
        self._compaction.interrupt()
        self._wake.set()
        # Commit results come back in consume: the write-aheads of the batches flushed now
        # wait for them, and the fetch loop that called it is over.
        serving = asyncio.create_task(self._serve_while_draining(), name="serve")
        # Leave a little of the budget for the final commit and leaving the group.
        drain_until = deadline - min(5.0, self.settings.shutdown_timeout_seconds / 4)
        # Several tasks change these; a short poll is simpler than an event per source.
        while (self._batcher or self._jobs or self._dead_letters.in_flight) and (  # noqa: ASYNC110
            time.monotonic() < drain_until
        ):
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
        serving.cancel()
        abandoned = len(self._jobs)
        if abandoned:
            # Out of time: stop what is still running so it cannot apply these
            # customers after the next owner has resubmitted newer changes.
            await self._tracker.stop_jobs(
                None, timeout=max(0.5, min(STOP_JOBS_WAIT, deadline - time.monotonic() - 1.0))
            )
        self._takeovers.cancel()
        tasks = [*workers, *self._jobs.tasks()]
        for task in tasks:
            task.cancel()
        # Bounded: a task that survived its cancel must not keep close() from running.
        _, survivors = await asyncio.wait(tasks, timeout=TASKS_EXIT_WAIT)
        if survivors:
            log.error("tasks_ignored_cancel", tasks=sorted(t.get_name() for t in survivors))
        unacknowledged = self._dead_letters.close(max(0.0, min(2.0, deadline - time.monotonic())))
        # No commit of our own here: close() leaves the group through the revoke
        # callback, which commits every settled watermark inside the callback,
        # with librdkafka serving the rebalance.
        await self._kafka_thread.call(self._consumer.close)
        self._kafka_thread.shutdown()
        if self._source_reader is not None:
            await asyncio.to_thread(self._source_reader.close)
        await self._client.aclose()
        self._budget.close()
        log.info(
            "shutdown_complete",
            seconds=round(time.monotonic() - started, 3),
            abandoned_jobs=abandoned,
            unsubmitted=len(self._batcher),
            dead_letters_unacknowledged=unacknowledged,
            held_by_breaker=self._ingestor.held_records,
        )

    # ------------------------------------------------------- consume, decode

    async def _fetch(self) -> None:
        """Consume, ingest, and do every other consumer call on the Kafka thread.

        The next fetch is asked for before this one is ingested, unless the
        buffer could then pass its limit: librdkafka hands it over while the
        loop decodes. ``pause``, ``resume`` and the watermark lookups go through
        the Kafka thread too: made from the loop while that thread sits in a
        rebalance callback (waiting for the loop), librdkafka blocks them, and
        the two threads would wait for each other forever.
        """
        kafka = self._kafka_thread
        limit = self.settings.max_buffered_records - CONSUME_MAX
        ahead: asyncio.Future[tuple[Sequence[Message], int]] | None = None
        try:
            while self._fetching:
                resumed = self._ingestor.unhold()  # what the dead-letter breaker held, first
                wanted = self._wanted()
                if resumed is not None:
                    messages, fetched = resumed
                elif not wanted and ahead is None:  # a bounded run has read its records
                    await kafka.call(self._serve_only)
                    self.health.last_poll = time.monotonic()
                    continue
                else:
                    messages, fetched = await (ahead or kafka.call(self._consume, wanted))
                    self.health.last_poll = time.monotonic()
                    await self._read_lag(len(messages))
                    if messages:
                        self._reads.count(len(messages))
                    wanted = self._wanted()
                    room = self._room(len(messages), limit) and not self._backpressure.paused
                    ahead = (
                        asyncio.ensure_future(kafka.call(self._consume, wanted))
                        if room and wanted
                        else None
                    )
                await self._ingestor.fetch_schemas(messages)
                for start in range(0, len(messages), INGEST_SLICE):
                    self._ingestor.ingest(
                        messages[start : start + INGEST_SLICE], fetched, resumed=bool(resumed)
                    )
                    if self._takeovers:
                        self._takeovers.advance_all()
                    self._wake.set()
                    self._committer.soon()
                    await asyncio.sleep(0)  # let the jobs' HTTP exchanges in between slices
                if not wanted:
                    log.info("fetching_stopped", reason="max_records", records=self._reads.records)
                await self._after_fetch()
        finally:
            if ahead is not None:  # its records are not tracked: the next owner reads them
                ahead.cancel()

    def _room(self, fetched: int, limit: int) -> bool:
        """Whether the next fetch may be asked for before this one is ingested."""
        others = self._takeovers.held + self._dead_letters.in_flight
        if self._compaction.active:  # bounded by memory
            return others + fetched < limit and self._compaction.room(self._batcher.memory)
        return len(self._batcher) + others + fetched < limit

    async def _serve_while_draining(self) -> None:
        """Shutting down: go on calling ``consume``, taking nothing, until cancelled."""
        while True:
            await self._kafka_thread.call(self._serve_only)

    def _serve_only(self) -> None:
        """On the Kafka thread, once a bounded run has read its records: serve, take nothing.

        ``consume`` must go on being called: rebalance callbacks and commit
        results come in it, and a member that stops calling it leaves the group.
        The partitions are paused; a record that comes anyway (from a partition
        assigned since) is not tracked, so nothing at or past it is committed:
        the next run reads it.
        """
        self._consumer.pause(self._consumer.assignment())
        self._consumer.consume(1, CONSUME_TIMEOUT)

    def _wanted(self) -> int:
        """How many records the next fetch may return: a bounded run stops at its count."""
        if self._records_left is None:
            return CONSUME_MAX
        return max(0, min(CONSUME_MAX, self._records_left - self._reads.records))

    def _consume(self, wanted: int) -> tuple[Sequence[Message], int]:
        """On the Kafka thread: a fetch, and the newest generation once it returned.

        A partition assigned again while the fetch waits to be ingested is
        re-read by the new assignment: :meth:`OffsetTracker.track` drops these.
        """
        return self._consumer.consume(wanted, CONSUME_TIMEOUT), self._offsets.newest_generation

    async def _after_fetch(self) -> None:
        """Pause or resume: by records, or by memory while a backlog is compacted."""
        kafka = self._kafka_thread
        breaker_open = self._breaker.is_open()
        self.health.dead_letter_breaker_open = breaker_open
        self.metrics.dead_letter_breaker_open.set(breaker_open)
        waiting = self._ingestor.registry_waiting  # a record waits for the schema registry
        self.health.schema_registry_unavailable = waiting
        hold = breaker_open or waiting
        compaction = self._compaction
        self._lag.tell_takeovers()  # the fetch read with the last lag reading is ingested
        if self._lag_read:  # a lag reading came with this fetch, now ingested
            self._lag_read = False
            records = (self._unread or 0) + len(self._batcher) + self._takeovers.held
            compaction.ingested(records, self._unread)
        memory = self._batcher.memory
        self.metrics.buffered_bytes.set(memory)
        compaction.full(memory)  # ends the fill
        change = self._backpressure.decide(
            len(self._batcher) + self._takeovers.held,
            self._dead_letters.in_flight,
            sorted(self._rebalancer.assignment),
            hold=hold,
            compacting=(memory, self._takeovers.held) if compaction.active else None,
        )
        if change is not None:
            await kafka.call(change)
        if compaction.active:
            self._wake.set()  # the fill may have ended: dispatch looks again

    async def _read_lag(self, fetched: int) -> None:
        """Before a fetch of ``fetched`` records is ingested: the partition counts after an
        assignment (the budget's share), and every ``LAG_INTERVAL`` the lag, and so whether the
        instance is quota-bound: compaction decides before the fetch's records are batched.

        The consumer's position is past the fetch already: its records count as waiting."""
        rebalancer = self._rebalancer
        if rebalancer.recount:  # partitions arrived: how many are there in all?
            rebalancer.recount = False
            self._compaction.assigned()  # their windows are read before anything is sent
            if await self._kafka_thread.call(self._consumer.refresh_partition_counts):
                rebalancer.reshare()
                self._lag.soon()  # weigh the backlog against the new share at once
        # While compaction fills, at every fetch: it ends once the backlog is read.
        due = await self._lag.refresh(
            self._kafka_thread, rebalancer.assignment, now=self._compaction.filling
        )
        if not due:
            return
        if rebalancer.assignment and not rebalancer.partitions_total():
            rebalancer.recount = True  # the lookup failed: ask again at the next lag read
            return  # the share is not known: neither is the budget to weigh the backlog with
        lag = self._lag
        self._lag_read = True
        self._unread = lag.unread if lag.known else None
        self._compaction.weigh(lag.unread + fetched + len(self._batcher) + self._takeovers.held)

    # ---------------------------------------------------- batch, submit, track

    async def _dispatch(self) -> None:
        batcher = self._batcher
        limit = self.settings.max_jobs_in_flight
        while True:
            self._wake.clear()
            now = time.monotonic()
            # While compaction fills, the backlog is read ahead and nothing new is submitted.
            while len(self._jobs) < limit and not self._compaction.filling:
                reason = batcher.due(now)
                if reason is None and self._flush_now is not None and batcher.ready_count:
                    reason = self._flush_now
                if reason is None:
                    break
                self._start_batch(batcher.take(reason))
            deadline = batcher.next_deadline()
            timeout = None
            if self._compaction.filling:  # woken when it ends, or at its latest end
                timeout = self._compaction.fill_left()
            elif deadline is not None and len(self._jobs) < limit:
                timeout = max(0.0, deadline - time.monotonic())
            await wait_event(self._wake, timeout)

    def _start_batch(self, batch: Batch) -> None:
        self.metrics.flushed[batch.reason].inc()
        self.metrics.batch_records.observe(len(batch.records))
        task = asyncio.create_task(self._run_batch(batch))
        self._jobs.add(task, {(r.topic, r.partition) for r in batch.records})

    async def _run_batch(self, batch: Batch) -> None:
        """Deliver one batch, then settle: the step from a batch to settled offsets."""
        records = batch.records
        operation = batch.operation.value
        try:
            with structlog.contextvars.bound_contextvars(operation=operation):
                verdicts = await self._tracker.deliver(records, batch.operation)
                await self._tags.deliver(verdicts)
            counted = self.metrics.operation_records
            counted.labels(operation, "succeeded").inc(len(verdicts.succeeded))
            counted.labels(operation, "dead_lettered").inc(len(verdicts.rejected))
        except Exception:
            # A bug, not an API answer (those are handled inside). Keep the data:
            # resubmit everything, count no attempt against the records; but an item without
            # an id may have been sent already: it is never sent twice.
            log.exception("batch_crashed", records=len(records))
            verdicts = Verdicts(resubmit=list(records))
            if batch.operation.facts.delivery is Delivery.IDLESS:
                verdicts = Verdicts(
                    rejected=[
                        Rejection(r, DeadLetterReason.OUTCOME_UNKNOWN, "batch_crashed", None)
                        for r in records
                    ]
                )
        try:
            self._settlement.apply(verdicts)
        finally:
            self._batcher.release(
                (r.customer_id for r in records), time.monotonic(), batch.operation
            )
            self._jobs.discard(cast("asyncio.Task[None]", asyncio.current_task()))
            if not self._jobs and not self._batcher:
                self._committer.drained()
            else:
                self._committer.soon()
            self._wake.set()

    # --------------------------------------------------------- housekeeping

    async def _housekeeping(self) -> None:
        while True:
            self._dead_letters.poll(0)
            self.health.last_loop = time.monotonic()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
