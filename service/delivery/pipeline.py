"""The pipeline: Kafka → decode → batch → submit → track → settle → commit.

This module is the orchestration, read top to bottom in that order; each step
is a module of its own:

=============  ==================================================================
consume        ``consumer.py`` — the confluent-kafka adapter and its one thread
decode, route  ``ingest.py`` (``decoding.py``, ``mapping.py``) — track, decode, buffer
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
* **housekeeping** — serves dead-letter acknowledgements, liveness, lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import cast

import structlog

from service.config import Settings
from service.delivery.backpressure import Backpressure
from service.delivery.batching import Batch, Batcher
from service.delivery.commits import Committer
from service.delivery.consumer import KafkaThread, Message, SourceConsumer
from service.delivery.deadletter import DeadLetterWriter
from service.delivery.decoding import Decoder
from service.delivery.ingest import INGEST_SLICE, Ingestor
from service.delivery.jobs import STOP_JOBS_WAIT, JobTracker
from service.delivery.lag import Lag
from service.delivery.offsets import OffsetTracker, PartitionKey
from service.delivery.polling import PollSchedule
from service.delivery.rebalance import REVOKE_WAIT, Rebalancer
from service.delivery.records import PendingRecord
from service.delivery.settlement import Settlement
from service.delivery.tags import TagSender
from service.delivery.takeover import Takeovers
from service.delivery.verdicts import Verdicts
from service.gameball.budget import RequestBudget
from service.gameball.client import GameballClient, RetryPolicy
from service.health import Health
from service.labels import FlushReason
from service.metrics import Metrics
from service.waiting import wait_event

log = structlog.get_logger(__name__)

CONSUME_MAX = 2000
CONSUME_TIMEOUT = 0.1
HOUSEKEEPING_INTERVAL = 0.02
TASKS_EXIT_WAIT = 2.0


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        health: Health | None = None,
        retry: RetryPolicy | None = None,
        poll: PollSchedule | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.health = health = health or Health()
        metrics.customer_info.labels(settings.gameball_customer_shape, settings.tags_sync).set(1)
        self._offsets = OffsetTracker()
        self._batcher = Batcher(
            settings.batch_max_records, settings.batch_max_bytes, settings.batch_max_wait_seconds
        )
        # The key's limits, split between the group's instances by the partitions they own.
        self._budget = RequestBudget(
            settings.api_windows(), key_share=settings.gameball_key_share, metrics=metrics
        )
        self._client = GameballClient(
            settings.gameball_endpoint,
            settings.gameball_api_key,
            settings.gameball_secret_key,
            metrics=metrics,
            health=health,
            retry=retry,
            budget=self._budget,
            max_connections=max(8, settings.max_jobs_in_flight * 2),
        )
        self._tags = TagSender(self._client, self._current)
        self._tracker = JobTracker(
            self._client,
            metrics,
            max_jobs_in_flight=settings.max_jobs_in_flight,
            job_timeout=settings.job_timeout_seconds,
            max_submit_attempts=settings.max_submit_attempts,
            poll=poll,
            on_created=self._job_created,
            on_ended=self._offsets.ended,
            owns=self._offsets.takes_all,
        )
        self._dead_letters = DeadLetterWriter(
            settings.producer_config(),
            settings.kafka_dlq_topic,
            metrics=metrics,
            on_written=lambda letter: self._settlement.dead_lettered(letter),
        )
        self._settlement = Settlement(self._offsets, self._batcher, self._dead_letters, metrics)
        self._takeovers = Takeovers(
            self._client,
            metrics,
            self._offsets,
            self._batcher,
            self._settlement,
            on_release=self._on_takeover_release,
            tags=self._tags,
        )
        self._ingestor = Ingestor(
            self._offsets,
            Decoder.from_settings(settings),
            self._batcher,
            self._dead_letters,
            self._settlement,
            metrics,
            self._takeovers,
        )
        self._kafka_thread = KafkaThread()
        self._consumer = SourceConsumer(
            settings.consumer_config(),
            settings.kafka_source_topics,
            on_assign=lambda tps: self._rebalancer.on_assign(tps),
            on_revoke=lambda tps: self._rebalancer.on_revoke(tps),
            on_lost=lambda tps: self._rebalancer.on_lost(tps),
            on_broker_state=lambda ok: setattr(health, "broker_ok", ok),
            on_committed=lambda error, results: self._committer.acknowledged(error, results),
        )
        self._lag = Lag(
            lambda tp: self._consumer.high_watermark(tp), self._offsets, self._takeovers, metrics
        )
        self._backpressure = Backpressure(self._consumer, metrics, settings.max_buffered_records)
        self._committer = Committer(
            self._offsets,
            self._consumer,
            self._kafka_thread,
            metrics,
            metadata_limit=settings.commit_metadata_max_bytes,
        )
        self._rebalancer = Rebalancer(
            offsets=self._offsets,
            batcher=self._batcher,
            tracker=self._tracker,
            committer=self._committer,
            takeovers=self._takeovers,
            read_committed=self._consumer.committed,
            health=health,
            metrics=metrics,
            batches_touching=self._batches_touching,
            on_assigned=lambda: self._backpressure.assigned(),
            budget=self._budget,
            partition_counts=lambda: self._consumer.partition_counts,
            topics=settings.kafka_source_topics,
            revoke_wait=min(REVOKE_WAIT, settings.shutdown_timeout_seconds),
        )
        # Batches in flight (one task each) and the partitions their records come from.
        self._jobs: dict[asyncio.Task[None], set[PartitionKey]] = {}
        self._wake = asyncio.Event()
        self._flush_now: FlushReason | None = None
        self._fetching = True

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully (SPEC §2)."""
        self._rebalancer.bind(asyncio.get_running_loop())
        self._dead_letters.start()
        await self._kafka_thread.call(self._consumer.start)
        log.info(
            "pipeline_started",
            topics=list(self.settings.kafka_source_topics),
            group=self.settings.kafka_group_id,
        )
        fetch = asyncio.create_task(self._fetch(), name="fetch")
        workers = [
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self._committer.run(), name="commit"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._client.watch_credentials(), name="credentials"),
        ]
        stopped = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait(
            [stopped, fetch, *workers], return_when=asyncio.FIRST_COMPLETED
        )
        failure = next((t.exception() for t in done if t is not stopped and t.exception()), None)
        if failure is not None:
            log.critical("pipeline_task_failed", error=repr(failure))
        stopped.cancel()
        await self._shutdown(fetch, workers)
        if failure is not None:
            raise failure

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
        with contextlib.suppress(Exception):
            await fetch
        log.info("shutdown_draining", buffered=len(self._batcher), jobs=len(self._jobs))
        self._flush_now = FlushReason.SHUTDOWN
        self._wake.set()
        # Leave a little of the budget for the final commit and leaving the group.
        drain_until = deadline - min(5.0, self.settings.shutdown_timeout_seconds / 4)
        # Several tasks change these; a short poll is simpler than an event per source.
        while (self._batcher or self._jobs or self._dead_letters.in_flight) and (  # noqa: ASYNC110
            time.monotonic() < drain_until
        ):
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
        abandoned = len(self._jobs)
        if abandoned:
            # Out of time: stop what is still running so it cannot apply these
            # customers after the next owner has resubmitted newer changes.
            await self._tracker.stop_jobs(
                None, timeout=max(0.5, min(STOP_JOBS_WAIT, deadline - time.monotonic() - 1.0))
            )
        self._takeovers.cancel()
        tasks = [*workers, *self._jobs]
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
        await self._client.aclose()
        self._budget.close()
        log.info(
            "shutdown_complete",
            seconds=round(time.monotonic() - started, 3),
            abandoned_jobs=abandoned,
            unsubmitted=len(self._batcher),
            dead_letters_unacknowledged=unacknowledged,
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
                messages, fetched = await (ahead or kafka.call(self._consume))
                self.health.last_poll = time.monotonic()
                held = len(self._batcher) + self._takeovers.held + self._dead_letters.in_flight
                room = held + len(messages) < limit and not self._backpressure.paused
                ahead = asyncio.ensure_future(kafka.call(self._consume)) if room else None
                for start in range(0, len(messages), INGEST_SLICE):
                    self._ingestor.ingest(messages[start : start + INGEST_SLICE], fetched)
                    if self._takeovers:
                        self._takeovers.advance_all(self.settings.max_buffered_records // 2)
                    self._wake.set()
                    self._committer.soon()
                    await asyncio.sleep(0)  # let the jobs' HTTP exchanges in between slices
                await self._after_fetch()
        finally:
            if ahead is not None:  # its records are not tracked: the next owner reads them
                ahead.cancel()

    def _consume(self) -> tuple[Sequence[Message], int]:
        """On the Kafka thread: a fetch, and the newest generation once it returned.

        A partition assigned again while the fetch waits to be ingested is
        re-read by the new assignment: :meth:`OffsetTracker.track` drops these.
        """
        return self._consumer.consume(CONSUME_MAX, CONSUME_TIMEOUT), self._offsets.newest_generation

    async def _after_fetch(self) -> None:
        """Pause or resume, count the partitions after an assignment, and read the lag."""
        kafka = self._kafka_thread
        change = self._backpressure.decide(
            len(self._batcher) + self._takeovers.held,
            self._dead_letters.in_flight,
            sorted(self._rebalancer.assignment),
        )
        if change is not None:
            await kafka.call(change)
        if self._rebalancer.recount:  # partitions arrived: how many are there in all?
            self._rebalancer.recount = False
            if await kafka.call(self._consumer.refresh_partition_counts):
                self._rebalancer.reshare()
        due = await self._lag.refresh(kafka, self._rebalancer.assignment)
        if due and self._rebalancer.assignment and not self._rebalancer.partitions_total():
            self._rebalancer.recount = True  # the lookup failed: ask again at the next lag read

    # ------------------------------------------------- job ledger, takeovers

    def _on_takeover_release(self) -> None:
        self._wake.set()
        self._committer.soon()

    def _current(self, record: PendingRecord) -> bool:
        """Whether ``record`` is of its partition's current assignment (it may still settle)."""
        return self._offsets.generation((record.topic, record.partition)) == record.generation

    def _job_created(self, job_id: str, records: list[PendingRecord]) -> None:
        self._offsets.carried(job_id, records)
        self._committer.soon()

    # ---------------------------------------------------- batch, submit, track

    async def _dispatch(self) -> None:
        batcher = self._batcher
        limit = self.settings.max_jobs_in_flight
        while True:
            self._wake.clear()
            now = time.monotonic()
            while len(self._jobs) < limit:
                reason = batcher.due(now)
                if reason is None and self._flush_now is not None and batcher.ready_count:
                    reason = self._flush_now
                if reason is None:
                    break
                self._start_batch(batcher.take(reason))
            deadline = batcher.next_deadline()
            timeout = None
            if deadline is not None and len(self._jobs) < limit:
                timeout = max(0.0, deadline - time.monotonic())
            await wait_event(self._wake, timeout)

    def _start_batch(self, batch: Batch) -> None:
        self.metrics.flushed[batch.reason].inc()
        self.metrics.batch_records.observe(len(batch.records))
        task = asyncio.create_task(self._run_batch(batch))
        self._jobs[task] = {(r.topic, r.partition) for r in batch.records}

    def _batches_touching(self, partitions: set[PartitionKey]) -> list[asyncio.Task[None]]:
        return [task for task, touched in self._jobs.items() if touched & partitions]

    async def _run_batch(self, batch: Batch) -> None:
        """Deliver one batch, then settle: the step from a batch to settled offsets."""
        records = batch.records
        try:
            verdicts = await self._tracker.deliver(records)
            await self._tags.deliver(verdicts)
        except Exception:
            # A bug, not an API answer (those are handled inside). Keep the data:
            # resubmit everything, count no attempt against the records.
            log.exception("batch_crashed", records=len(records))
            verdicts = Verdicts(resubmit=list(records))
        try:
            self._settlement.apply(verdicts)
        finally:
            self._batcher.release((r.customer_id for r in records), time.monotonic())
            self._jobs.pop(cast("asyncio.Task[None]", asyncio.current_task()), None)
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
