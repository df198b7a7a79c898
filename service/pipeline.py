"""The pipeline: Kafka → decode → batch → submit → track → settle → commit.

One asyncio loop owns all pipeline state (buffer, offsets, jobs); nothing
else mutates it, so there are no locks around it. The only other thread is
the Kafka thread, which blocks in ``consume``/``close`` and on which
librdkafka runs the rebalance callbacks: those callbacks hand the work to the
loop with ``run_coroutine_threadsafe`` and wait for it, which keeps the
consumer inside the rebalance (still owning the partitions) until the loop
has committed what is settled.

Tasks on the loop:

* **fetch** — consumes up to ``CONSUME_MAX`` records, tracks, decodes and
  buffers them; pauses all partitions when the buffer reaches
  ``MAX_BUFFERED_RECORDS`` (membership is kept: ``consume`` keeps being
  called) and resumes below half of it;
* **dispatch** — takes batches when one is due and a job slot is free;
* **one task per batch** — :meth:`JobTracker.deliver`, then settle;
* **commit** — commits every partition's watermark each ``COMMIT_INTERVAL`` and
  whenever the pipeline drains, on the Kafka thread (the revoke callback
  commits the partitions it gives up, inside the callback);
* **housekeeping** — serves dead-letter acknowledgements, liveness, lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import structlog
from prometheus_client import Counter

from service.api import GameballClient, RetryPolicy
from service.batching import Batch, Batcher, FlushReason
from service.config import Settings
from service.deadletter import DeadLetter, DeadLetterWriter
from service.decoding import Customer, Decoder, Reject, Skip
from service.errors import KafkaError
from service.health import Health
from service.jobs import JobTracker, PollSchedule, Verdicts
from service.kafka import Message, SourceConsumer
from service.mapping import load_field_mapping
from service.metrics import Metrics
from service.offsets import OffsetTracker, TopicPartition
from service.records import PendingRecord
from service.waiting import wait_event

log = structlog.get_logger(__name__)

CONSUME_MAX = 2000
CONSUME_TIMEOUT = 0.1
INGEST_SLICE = 250
"""Records ingested between two yields to the loop (~2-3 ms of CPU).

A fetch of ``CONSUME_MAX`` records decoded in one go held the loop for
20-40 ms, and a job's HTTP exchange needs several loop turns (a 200 KB POST,
a 64 KB status document): under a backlog, the benchmark saw status and
submit requests take 150-220 ms for jobs the API finished at once. Slicing
brought them to 55-90 ms.
"""
COMMIT_INTERVAL = 1.0
COMMIT_WHEN_DRAINED = True
HOUSEKEEPING_INTERVAL = 0.02
LAG_INTERVAL = 5.0
CREDENTIALS_RECHECK = 15.0
REVOKE_WAIT = 10.0
STOP_JOBS_WAIT = 3.0
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
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        mapping = (
            load_field_mapping(settings.field_mapping_file) if settings.field_mapping_file else None
        )
        self._decoder = Decoder(mapping, delete_policy=settings.delete_policy)
        self._offsets = OffsetTracker()
        self._batcher = Batcher(
            settings.batch_max_records, settings.batch_max_bytes, settings.batch_max_wait_seconds
        )
        self._client = GameballClient(
            settings.gameball_base_url,
            settings.gameball_api_key,
            settings.gameball_secret_key,
            metrics=self.metrics,
            health=self.health,
            retry=retry,
            max_connections=max(8, settings.max_jobs_in_flight * 2),
        )
        self._tracker = JobTracker(
            self._client,
            self.metrics,
            max_jobs_in_flight=settings.max_jobs_in_flight,
            job_timeout=settings.job_timeout_seconds,
            max_submit_attempts=settings.max_submit_attempts,
            poll=poll,
        )
        self._consumer = SourceConsumer(
            settings.consumer_config(),
            settings.kafka_source_topics,
            on_assign=lambda tps: self._from_kafka_thread(self._assigned, tps),
            on_revoke=self._revoke_on_kafka_thread,
            on_lost=lambda tps: self._from_kafka_thread(self._lost, tps),
            on_broker_state=lambda ok: setattr(self.health, "broker_ok", ok),
        )
        self._dead_letters = DeadLetterWriter(
            settings.producer_config(),
            settings.kafka_dlq_topic,
            metrics=self.metrics,
            on_written=self._dead_lettered,
        )
        self._kafka_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assignment: set[TopicPartition] = set()
        self._jobs: dict[asyncio.Task[None], set[TopicPartition]] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # nothing buffered, no job running: commit now
        self._commit_lock = asyncio.Lock()
        self._flush_now: FlushReason | None = None
        self._fetching = True
        self._paused = False
        self._repause = False
        self._last_lag = 0.0
        self._error_logged: dict[str, float] = {}

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully (SPEC §2)."""
        self._loop = asyncio.get_running_loop()
        self._dead_letters.start()
        await self._loop.run_in_executor(self._kafka_thread, self._consumer.start)
        log.info(
            "pipeline_started",
            topics=list(self.settings.kafka_source_topics),
            group=self.settings.kafka_group_id,
        )
        fetch = asyncio.create_task(self._fetch(), name="fetch")
        workers = [
            asyncio.create_task(self._dispatch(), name="dispatch"),
            asyncio.create_task(self._commit_periodically(), name="commit"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._watch_credentials(), name="credentials"),
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
        await asyncio.get_running_loop().run_in_executor(self._kafka_thread, self._consumer.close)
        self._kafka_thread.shutdown(wait=True)
        await self._client.aclose()
        log.info(
            "shutdown_complete",
            seconds=round(time.monotonic() - started, 3),
            abandoned_jobs=abandoned,
            unsubmitted=len(self._batcher),
            dead_letters_unacknowledged=unacknowledged,
        )

    # ---------------------------------------------------------------- fetch

    async def _fetch(self) -> None:
        """Consume, ingest, and do every other consumer call on the Kafka thread.

        ``pause``, ``resume`` and the watermark lookups go through the Kafka
        thread too, between two ``consume`` calls: made from the loop while that
        thread sits in a rebalance callback (waiting for the loop), librdkafka
        blocks them, and the two threads would wait for each other forever.
        """
        loop = asyncio.get_running_loop()
        while self._fetching:
            messages = await loop.run_in_executor(
                self._kafka_thread, self._consumer.consume, CONSUME_MAX, CONSUME_TIMEOUT
            )
            self.health.last_poll = time.monotonic()
            for start in range(0, len(messages), INGEST_SLICE):
                self._ingest(messages[start : start + INGEST_SLICE])
                self._wake.set()
                await asyncio.sleep(0)  # let the jobs' HTTP exchanges in between slices
            change = self._backpressure_change()
            if change is not None:
                await loop.run_in_executor(self._kafka_thread, change)
            now = time.monotonic()
            if now - self._last_lag >= LAG_INTERVAL:
                self._last_lag = now
                owned = sorted(self._assignment)
                highs = await loop.run_in_executor(self._kafka_thread, self._high_watermarks, owned)
                self._update_lag(dict(zip(owned, highs, strict=True)))

    def _ingest(self, messages: Iterable[Message]) -> None:
        """Track, decode and route one fetched batch. The hot path: no logging, no label lookups."""
        now = time.monotonic()
        track = self._offsets.track
        decode = self._decoder.decode
        add = self._batcher.add
        consumed: Tally[str] = Tally()
        skipped: list[tuple[TopicPartition, int, int]] = []
        coalesced: list[PendingRecord] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._log_consumer_error(error)
                continue
            topic = message.topic() or ""
            partition = message.partition() or 0
            offset = message.offset() or 0
            tp = (topic, partition)
            generation = track(tp, offset)
            if not generation:
                continue
            consumed[topic] += 1
            value = message.value()
            result = decode(value)
            timestamp_ms = message.timestamp()[1]
            if type(result) is Customer:
                record = PendingRecord(
                    topic,
                    partition,
                    offset,
                    timestamp_ms,
                    message.key(),
                    value,
                    result.customer_id,
                    result.payload,
                    generation=generation,
                )
                superseded = add(record, now)
                if superseded is not None:
                    coalesced.append(superseded)
            elif type(result) is Skip:
                skipped.append((tp, offset, timestamp_ms))
            elif isinstance(result, Reject):
                self._dead_letters.send(
                    DeadLetter(
                        topic,
                        partition,
                        offset,
                        timestamp_ms,
                        message.key(),
                        value,
                        result.reason,
                        result.error,
                        generation=generation,
                    )
                )
        for topic, count in consumed.items():
            self.metrics.records_consumed.labels(topic=topic).inc(count)
        if skipped:
            wall = time.time()
            settle = self._offsets.settle
            for tp, offset, _ in skipped:
                settle(tp, offset)
            self.metrics.end_to_end_latency.observe_many([wall - t / 1000 for _, _, t in skipped])
            self.metrics.skipped.inc(len(skipped))
        if coalesced:
            self._settle(coalesced, self.metrics.coalesced)

    def _log_consumer_error(self, error: object) -> None:
        text = str(error)
        now = time.monotonic()
        if now - self._error_logged.get(text, -1e9) > 30.0:
            self._error_logged[text] = now
            log.error("consumer_error", error=text)

    def _high_watermarks(self, partitions: list[TopicPartition]) -> list[int | None]:
        return [self._consumer.high_watermark(tp) for tp in partitions]

    def _backpressure_change(self) -> Callable[[], None] | None:
        """Decide whether to pause or resume; return the consumer call to make, if any."""
        buffered = len(self._batcher)
        self.metrics.buffered_records.set(buffered)
        load = buffered + self._dead_letters.in_flight
        limit = self.settings.max_buffered_records
        owned = sorted(self._assignment)
        repause, self._repause = self._repause, False
        if not self._paused and load >= limit:
            self._paused = True
            self.metrics.consumer_paused.set(1)
            log.info("consumer_paused", buffered=buffered, jobs=len(self._jobs))
            return lambda: self._consumer.pause(owned)
        if self._paused and load <= limit // 2:
            self._paused = False
            self.metrics.consumer_paused.set(0)
            log.info("consumer_resumed", buffered=buffered)
            return lambda: self._consumer.resume(owned)
        if self._paused and repause:
            return lambda: self._consumer.pause(owned)
        return None

    # ------------------------------------------------------------- dispatch

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

    async def _run_batch(self, batch: Batch) -> None:
        records = batch.records
        try:
            verdicts = await self._tracker.deliver(records)
        except Exception:
            # A bug, not an API answer (those are handled inside). Keep the data:
            # resubmit everything, count no attempt against the records.
            log.exception("batch_crashed", records=len(records))
            verdicts = Verdicts(resubmit=list(records))
        try:
            self._apply(verdicts)
        finally:
            self._batcher.release((r.customer_id for r in records), time.monotonic())
            self._jobs.pop(cast("asyncio.Task[None]", asyncio.current_task()), None)
            self._note_if_drained()
            self._wake.set()

    # ---------------------------------------------------------- settlement

    def _apply(self, verdicts: Verdicts) -> None:
        """Turn a batch's verdicts into settlements, dead letters and resubmissions.

        Only records of the partition's current assignment act (see the
        generations in ``offsets.py``): a record whose partition was revoked,
        or revoked and assigned back, has a newer copy that is the one to
        deliver, dead-letter or settle. A record delivered by a job is counted
        as succeeded either way: it was.
        """
        current = self._offsets.generation
        self._settle(verdicts.succeeded, self.metrics.succeeded)
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
                    )
                )
        now = time.monotonic()
        losers = []
        for r in verdicts.resubmit:
            if current((r.topic, r.partition)) == r.generation:
                loser = self._batcher.give_back(r, now)
                if loser is not None:
                    losers.append(loser)
        self._settle(losers, self.metrics.coalesced)

    def _settle(self, records: list[PendingRecord], outcome: Counter) -> None:
        """Settle records (of their current generation only) and count them under ``outcome``."""
        if not records:
            return
        wall = time.time()
        current = self._offsets.generation
        settle = self._offsets.settle
        for r in records:
            tp = (r.topic, r.partition)
            if current(tp) == r.generation:
                settle(tp, r.offset)
        self.metrics.end_to_end_latency.observe_many(
            [wall - r.timestamp_ms / 1000 for r in records]
        )
        outcome.inc(len(records))

    def _dead_lettered(self, letter: DeadLetter) -> None:
        tp = (letter.topic, letter.partition)
        if self._offsets.generation(tp) == letter.generation:
            self._offsets.settle(tp, letter.offset)
        self.metrics.dead_lettered.inc()
        self.metrics.end_to_end_latency.observe(time.time() - letter.timestamp_ms / 1000)

    # --------------------------------------------------------------- commit

    async def _commit_periodically(self) -> None:
        """Commit every ``COMMIT_INTERVAL``, and at once when the pipeline has drained.

        Once nothing is buffered and no job runs, everything consumed is settled:
        committing then, rather than up to a second later, makes the lag of a
        caught-up consumer read zero when it is zero.
        """
        while True:
            await wait_event(self._drained, COMMIT_INTERVAL)
            self._drained.clear()
            await self._commit()

    def _commit_assigned(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """On the Kafka thread: commit the offsets of partitions still assigned; return them.

        A commit queued behind a ``consume`` that revoked partitions would
        otherwise write their older watermarks over what the revoke callback
        committed.
        """
        assigned = set(self._consumer.assignment())
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        self._consumer.commit(owned)
        return owned

    def _note_if_drained(self) -> None:
        if COMMIT_WHEN_DRAINED and not self._jobs and not self._batcher:
            self._drained.set()

    async def _commit(self) -> None:
        """Commit every watermark that moved, on the Kafka thread.

        Serialised by a lock so one commit never regresses another, and run on
        the Kafka thread, between two ``consume`` calls, like every other
        consumer call. A synchronous commit made from another thread cannot
        complete while that thread serves a rebalance callback, and the revoke
        callback commits too: the two waited for each other, and the instance
        froze holding its partitions (the short chaos run caught it once
        commits became frequent). On the Kafka thread, a commit simply waits
        for the current ``consume`` to return.
        """
        async with self._commit_lock:
            candidates = self._offsets.commit_candidates()
            if not candidates:
                return
            try:
                candidates = await asyncio.get_running_loop().run_in_executor(
                    self._kafka_thread, self._commit_assigned, candidates
                )
            except KafkaError as exc:
                log.warning("commit_failed", error=str(exc), partitions=len(candidates))
                return
            self._offsets.committed(candidates)
            log.debug("committed", offsets={f"{t}[{p}]": o for (t, p), o in candidates.items()})

    # ---------------------------------------------------------- rebalances

    def _from_kafka_thread(
        self,
        handler: Callable[[list[TopicPartition]], Coroutine[None, None, None]],
        partitions: list[TopicPartition],
    ) -> None:
        """Run a rebalance handler on the loop and block the Kafka thread until it is done."""
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(handler(partitions), self._loop)
        try:
            future.result()
        except Exception:
            log.exception("rebalance_handler_failed", handler=handler.__name__)

    async def _assigned(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._offsets.assign(tp)
        self._assignment.update(partitions)
        self._repause = self._paused
        self.health.in_group = True
        log.info("partitions_assigned", partitions=_names(partitions), owned=len(self._assignment))

    def _revoke_on_kafka_thread(self, partitions: list[TopicPartition]) -> None:
        """The revoke callback, on the Kafka thread: the loop prepares, this thread commits.

        The commit is made here, on the thread serving the callback. A
        synchronous commit made from any other thread does not complete while
        the callback runs, and the callback would wait for it forever: the
        chaos suite (issue 6) caught instances frozen that way, holding their
        partitions, never finishing a SIGTERM. Every other commit runs on this
        thread too (see ``_commit``), so none is in flight meanwhile.
        """
        loop = self._loop
        if loop is None:
            return
        try:
            prepared = asyncio.run_coroutine_threadsafe(self._revoking(partitions), loop)
            offsets, released, stopped = prepared.result()
            acknowledged: dict[TopicPartition, int] = {}
            if offsets:
                try:
                    self._consumer.commit(offsets)
                    acknowledged = offsets
                except KafkaError as exc:
                    log.warning("commit_failed", error=str(exc), partitions=len(offsets))
            finished = asyncio.run_coroutine_threadsafe(
                self._revoked(partitions, acknowledged), loop
            )
            finished.result()
            log.info(
                "partitions_revoked",
                partitions=_names(partitions),
                released=released,
                jobs_stopped=stopped,
                committed=len(acknowledged),
            )
        except Exception:
            log.exception("rebalance_handler_failed", handler="revoke")

    async def _revoking(
        self, partitions: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], int, int]:
        """Drop what was not submitted, wait briefly for jobs, stop the rest; return watermarks."""
        revoked = set(partitions)
        released = self._batcher.drop_partitions(revoked)
        waiting = [task for task, parts in self._jobs.items() if parts & revoked]
        if waiting and not self.health.stopping:
            await asyncio.wait(
                waiting, timeout=min(REVOKE_WAIT, self.settings.shutdown_timeout_seconds)
            )
        # A job still running would go on applying these customers while the next
        # owner resubmits them: stop it before the partitions change hands.
        stopped = await self._tracker.stop_jobs(revoked, timeout=STOP_JOBS_WAIT)
        offsets = self._offsets.commit_candidates(revoked)
        return offsets, len(released), stopped

    async def _revoked(
        self, partitions: list[TopicPartition], acknowledged: dict[TopicPartition, int]
    ) -> None:
        self._offsets.committed(acknowledged)
        self._forget(set(partitions))

    async def _lost(self, partitions: list[TopicPartition]) -> None:
        """Ownership is already gone: committing would fail, so only forget."""
        lost = set(partitions)
        self._batcher.drop_partitions(lost)
        self._forget(lost)
        log.warning("partitions_lost", partitions=_names(partitions))

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._offsets.revoke(tp)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(tp[0], str(tp[1]))
        self._assignment -= partitions

    # --------------------------------------------------------- housekeeping

    async def _housekeeping(self) -> None:
        while True:
            self._dead_letters.poll(0)
            now = time.monotonic()
            self.health.last_loop = now
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    def _update_lag(self, highs: dict[TopicPartition, int | None]) -> None:
        for tp, high in highs.items():
            if tp not in self._assignment:
                continue
            committed = self._offsets.committed_offset(tp)
            if high is None or committed is None:
                continue
            self.metrics.consumer_lag.labels(topic=tp[0], partition=str(tp[1])).set(
                max(0, high - committed)
            )

    async def _watch_credentials(self) -> None:
        """Readiness needs the API's word on the credentials, even with no traffic."""
        while True:
            if self.health.credentials_ok is not True:
                await self._client.verify_credentials()
            await asyncio.sleep(CREDENTIALS_RECHECK if self.health.credentials_ok else 2.0)


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in sorted(partitions)]
