"""Job tracking: one batch from submission to a verdict for every record in it.

A batch is submitted as one job, the job is polled until it is terminal or
:attr:`JobTracker.job_timeout` passes (when: ``polling.py``), and every
record leaves with exactly one verdict (read from the job's end by
``verdicts.py``, which a takeover's inherited jobs share):

* ``succeeded`` — listed in ``response.successful`` of a terminal job;
* ``dead letter`` — listed in ``response.failed`` of a job that *completed*
  (``record_rejected``: the API looked at it and said no), or isolated by
  bisection after a 400/422 on the batch (``record_rejected``), or out of
  attempts (``job_failed`` / ``retries_exhausted``);
* ``resubmit`` — anything a job did not settle: the job ended ``failed`` or
  ``stopped``, timed out (it is stopped with ``DELETE`` first), vanished
  (404), or simply did not mention the record. These are job-level failures:
  they say nothing about the record itself, so they are retried up to
  ``max_submit_attempts`` jobs per record before the record is dead-lettered.

Why a ``failed`` job's ``failed`` entries are retried rather than dead-lettered
at once: a job that failed as a whole is evidence about the job, not about
each record; a record that fails in every one of ``max_submit_attempts`` jobs
goes to the dead-letter topic as ``job_failed`` with the API's last words.

Bisection: a 400/422 on submission means "something in this batch is
unacceptable" without saying what. Halving the batch until single records
are rejected isolates them in O(k·log n) requests for k bad records, and the
good ones go through in the halves that are accepted.

Abandoning a job: when this instance gives records up (their partitions are
revoked, or shutdown runs out of time), a job still running at the API would
go on applying them while the next owner re-reads and resubmits the same
customers, possibly with newer changes: the old job could then apply an older
version after a newer one. :meth:`JobTracker.stop_jobs` stops such jobs with
``DELETE`` first, so the only job that can still touch those customers is the
next owner's. What a stopped job finished stays applied; it is at most the
version the next owner resubmits.

Write-ahead: before every POST attempt of a batch, after the request
budget's wait, its intent is committed (``commits.py``,
:meth:`~service.delivery.commits.Committer.write_ahead`), dated as it is
written: so a crash between the job's creation and the commit naming it still
leaves a ledger that names its records, and says since when such a job can
exist (``takeover.py``). A retry (the answer to the last attempt was lost)
dates the intent again first: a job any earlier attempt created exists by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import structlog

from service.delivery.batching import request_body
from service.delivery.edges import GameballApi
from service.delivery.offsets import Intent, PartitionKey
from service.delivery.polling import JobDurations, JobPolls, PollSchedule
from service.delivery.records import PendingRecord
from service.delivery.verdicts import Rejection, Verdicts, judge, judge_facts
from service.errors import BatchRejected, JobNotFound, OutcomeUnknown, SubmissionWithdrawn
from service.gameball.client import Spent
from service.gameball.models import JobState, JobStatus
from service.gameball.operations import Operation
from service.labels import JOB_OPERATIONS, DeadLetterReason
from service.metrics import Metrics

log = structlog.get_logger(__name__)

STOP_JOBS_WAIT = 3.0
"""How long a revocation or a shutdown waits for the API to confirm the jobs it stops."""
DISOWNED_STOP_WAIT = 30.0
"""How long a job created after its partitions went is asked to stop before giving up."""


WriteAhead = Callable[[list[PendingRecord], Intent | None], Awaitable[Intent | None]]
CreatedHook = Callable[[Intent, str], None]
EndedHook = Callable[[Intent, list[PendingRecord]], None]


async def _no_write_ahead(_records: list[PendingRecord], _again: Intent | None) -> Intent:
    return Intent(time.time())


def _ignore_created(_intent: Intent, _job_id: str) -> None:
    return None


def _ignore_ended(_intent: Intent, _records: list[PendingRecord]) -> None:
    return None


def count_already_applied(metrics: Metrics, operation: Operation, count: int) -> None:
    """Keyed facts a job found applied already (:func:`judge_facts`): counted and said."""
    if count:
        metrics.records_already_applied.labels(operation=operation.value).inc(count)
        log.info(
            "records_already_applied",
            operation=operation.value,
            already_applied=count,
            meaning="the API had their ids: delivered before (a redelivery after a crash or a "
            "re-sent source row), counted as succeeded",
        )


class _Countdown:
    """Calls ``then`` at the ``count``-th call."""

    __slots__ = ("_left", "_then")

    def __init__(self, count: int, then: Callable[[], None]) -> None:
        self._left = count
        self._then = then

    def __call__(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._then()


class _SentAt:
    """When a status read last went out: after the budget's wait, not when it was asked for.

    What a read finds (running, this much done, ended) is true as of then. Dated from before
    the budget's wait, a job's progress looked faster than it ran and its predicted end came
    early (a read wasted finding it running), and a job seen running proved less than it did.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = time.monotonic()

    def __call__(self) -> None:
        self.at = time.monotonic()


class JobTracker:
    """Runs batches as jobs with at most ``max_jobs_in_flight`` jobs open at once."""

    def __init__(
        self,
        client: GameballApi,
        metrics: Metrics,
        *,
        max_jobs_in_flight: int,
        job_timeout: float,
        max_submit_attempts: int,
        poll: PollSchedule | None = None,
        write_ahead: WriteAhead | None = None,
        on_created: CreatedHook | None = None,
        on_ended: EndedHook | None = None,
        owns: Callable[[list[PendingRecord]], bool] | None = None,
        customer_wait: float = 600.0,
    ) -> None:
        """``customer_wait``: ``CUSTOMER_WAIT_SECONDS`` (a fact whose customer is not found)."""
        self._client = client
        self._customer_wait = customer_wait
        # Whether every record's partition is still this instance's to deliver (see deliver).
        self._owns = owns or (lambda _records: True)
        # The ledger hears of a batch before its POST (write_ahead, awaited), when its job
        # exists, and when it is over or never went out (see offsets.py).
        self._write_ahead = write_ahead or _no_write_ahead
        self._on_created = on_created or _ignore_created
        self._on_ended = on_ended or _ignore_ended
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_jobs_in_flight)
        self.job_timeout = job_timeout
        self._max_attempts = max_submit_attempts
        self._poll = poll or PollSchedule()
        self._durations = JobDurations(self._poll)
        # Jobs submitted and not yet terminal, with the partitions their records come from
        # and the requests they cost so far.
        self._open: dict[str, frozenset[PartitionKey]] = {}
        self._spent: dict[str, Spent] = {}
        # Jobs this instance stopped because it gave their partitions up: their
        # records are resubmitted without losing an attempt (see stop_jobs).
        self._abandoned: set[str] = set()

    def open_jobs(self, partitions: set[PartitionKey] | None = None) -> list[str]:
        """Ids of jobs still running, all or only those carrying records of ``partitions``."""
        return [
            job_id
            for job_id, touched in self._open.items()
            if partitions is None or not touched.isdisjoint(partitions)
        ]

    async def stop_jobs(
        self,
        partitions: set[PartitionKey] | None,
        timeout: float,  # noqa: ASYNC109 - best effort: a late stop is logged, never raised
    ) -> int:
        """Stop (``DELETE``) the open jobs touching ``partitions``, waiting at most ``timeout``.

        Their trackers see ``stopped`` at the next poll and judge the records as
        usual. Best effort: a job the API cannot be told about in time is
        logged, and its records are re-read by their next owner all the same.
        Returns how many jobs were asked to stop.
        """
        job_ids = self.open_jobs(partitions)
        if not job_ids:
            return 0
        self._abandoned.update(job_ids)
        stops = [
            asyncio.ensure_future(self._client.stop(job_id, spent=self._spent.get(job_id)))
            for job_id in job_ids
        ]
        _, pending = await asyncio.wait(stops, timeout=timeout)
        for task in pending:
            task.cancel()
        unconfirmed = [
            job_id
            for job_id, task in zip(job_ids, stops, strict=True)
            if task in pending or task.exception() is not None
        ]
        log.warning(
            "jobs_stopped",
            jobs=len(job_ids),
            not_confirmed=len(unconfirmed),
            # What could not be done: these may still be running at the API.
            left_unstopped=unconfirmed,
        )
        return len(job_ids)

    async def deliver(
        self, records: list[PendingRecord], operation: Operation = Operation.CUSTOMERS
    ) -> Verdicts:
        """Deliver a batch of ``operation``; bisect it when the API rejects it as a whole."""
        async with self._slots:
            if not self._owns(records):
                return Verdicts(resubmit=list(records))  # revoked while it waited for a slot
            for record in records:
                record.attempts += 1
            spent: Spent = Counter()
            intent: Intent | None = None

            async def write_ahead() -> None:
                """Before each attempt: the intent, dated now, acknowledged by the broker."""
                nonlocal intent
                intent = await self._write_ahead(records, intent)
                if intent is None:
                    raise SubmissionWithdrawn("its partitions went before its intent was written")
                intent.posted = True  # the attempt goes out now

            try:
                job_id = await self._client.submit(
                    request_body(records),
                    spent=spent,
                    wanted=lambda: self._owns(records),
                    prepare=write_ahead,
                    operation=operation,
                )
            except OutcomeUnknown as exc:  # events, balance adjustments: never sent twice
                return self._outcome_unknown(intent, records, exc)
            except BatchRejected as exc:
                self._end(intent, records)
                rejected = exc
            except SubmissionWithdrawn:
                # Revoked or lost while the submission waited or retried: sent now, it
                # could apply these customers after the next owner's newer changes.
                self._end(intent, records)
                for record in records:
                    record.attempts -= 1
                return Verdicts(resubmit=list(records))
            except Exception:
                self._end(intent, records)
                raise
            else:
                if intent is None:  # an API edge that never prepared: no ledger names it
                    intent = Intent(time.time())
                self._on_created(intent, job_id)
                if not self._owns(records):
                    verdicts = await self._disown(job_id, records, spent)
                    self._on_ended(intent, records)
                    return verdicts
                return await self._track(job_id, intent, records, spent, operation)
        # Outside the slot: the halves need slots of their own.
        if len(records) == 1:
            verdicts = Verdicts()
            verdicts.rejected.append(
                Rejection(records[0], DeadLetterReason.RECORD_REJECTED, rejected.body, None)
            )
            return verdicts
        middle = len(records) // 2
        log.info("batch_bisected", records=len(records), status=rejected.status)
        left, right = await asyncio.gather(
            self.deliver(records[:middle], operation), self.deliver(records[middle:], operation)
        )
        left.merge(right)
        return left

    def _outcome_unknown(
        self, intent: Intent | None, records: list[PendingRecord], exc: OutcomeUnknown
    ) -> Verdicts:
        """A POST of items without ids whose answer was lost: a job may apply them, so they
        are dead-lettered ``outcome_unknown``, never sent again. The intent stays in the
        ledger until the last dead letter is acknowledged: a crash before then leaves the next
        owner an intent without a job id, which dead-letters them again rather than send them.
        """
        log.error(
            "submission_outcome_unknown",
            records=len(records),
            error=str(exc),
            action="dead-lettered outcome_unknown for an operator to reconcile; never resent",
        )
        ended = _Countdown(len(records), lambda: self._end(intent, []))
        return Verdicts(
            rejected=[
                Rejection(record, DeadLetterReason.OUTCOME_UNKNOWN, str(exc), None, ended)
                for record in records
            ]
        )

    def _end(self, intent: Intent | None, records: list[PendingRecord]) -> None:
        """No job carries these records (its POST failed or never went): free the intent."""
        if intent is not None:
            self._on_ended(intent, records)

    async def _disown(self, job_id: str, records: list[PendingRecord], spent: Spent) -> Verdicts:
        """A job created after its records' partitions went: stop it at once.

        The submission was on its way (or retrying) when the partitions were
        revoked or lost, and the revocation's ledger could not name a job that
        did not exist yet. Left running, it would apply these customers beside
        the next owner's newer changes. What it managed to apply before the
        stop is at most the version the next owner redoes.
        """
        log.warning("job_disowned", job_id=job_id, records=len(records))
        stopped = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISOWNED_STOP_WAIT):
                await self._client.stop(job_id, spent=spent)
                stopped = True
        if not stopped:
            log.error("job_disowned_not_stopped", job_id=job_id, seconds=DISOWNED_STOP_WAIT)
        for record in records:
            record.attempts -= 1
        return Verdicts(resubmit=list(records))

    async def _track(
        self,
        job_id: str,
        intent: Intent,
        records: list[PendingRecord],
        spent: Spent,
        operation: Operation,
    ) -> Verdicts:
        metrics = self._metrics
        metrics.jobs_submitted.inc()
        metrics.operation_jobs.labels(operation.value).inc()
        metrics.jobs_in_flight.inc()
        started = time.monotonic()
        deadline = started + self.job_timeout
        polls = JobPolls(self._durations, len(records), started)
        delay = polls.first_delay()
        sent = _SentAt()
        bound = structlog.contextvars.bound_contextvars(job_id=job_id, records=len(records))
        cancelled = False
        self._open[job_id] = frozenset((r.topic, r.partition) for r in records)
        self._spent[job_id] = spent
        try:
            with bound:
                status: JobStatus | None = None
                try:
                    while True:
                        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                        status = await self._client.status(job_id, spent=spent, sending=sent)
                        asked, now = sent.at, time.monotonic()
                        if status.status.terminal:
                            label = status.status.value
                            # Only a job that ran its course says how long jobs take.
                            ran = (
                                status.status is JobState.COMPLETED
                                and job_id not in self._abandoned
                            )
                            polls.ended(asked, learn=ran)
                            break
                        if now >= deadline:
                            status = await self._stop(job_id, spent)
                            label = "timed_out"
                            break
                        delay = polls.running(asked, now, status)
                except JobNotFound:
                    log.warning("job_vanished")
                    status, label = None, "failed"
                duration = time.monotonic() - started
                metrics.finished[label].inc()
                metrics.job_duration.observe(duration)
                for request in JOB_OPERATIONS:
                    metrics.requests_per_job[request].observe(spent[request])
                verdicts = self._judge(job_id, records, status, timed_out=label == "timed_out")
                already = judge_facts(
                    verdicts,
                    job_id,
                    status,
                    operation,
                    customer_wait=self._customer_wait,
                    now=time.time(),
                )
                count_already_applied(metrics, operation, already)
                log.info(
                    "job_finished",
                    status=label,
                    duration_seconds=round(duration, 3),
                    succeeded=len(verdicts.succeeded),
                    rejected=len(verdicts.rejected),
                    resubmit=len(verdicts.resubmit),
                    requests=sum(spent.values()),
                )
                return verdicts
        except asyncio.CancelledError:
            # Abandoned (shutdown out of time): the job exists at the API and may
            # still apply what it carries. The ledger keeps naming it, so the
            # next owner resolves it before redoing any of its records.
            cancelled = True
            raise
        finally:
            del self._open[job_id]
            del self._spent[job_id]
            self._abandoned.discard(job_id)
            metrics.jobs_in_flight.dec()
            if not cancelled:
                self._on_ended(intent, records)

    async def _stop(self, job_id: str, spent: Spent) -> JobStatus | None:
        """Stop a job that outlived its timeout and read what it finished before stopping."""
        log.warning("job_timed_out", timeout_seconds=self.job_timeout)
        await self._client.stop(job_id, spent=spent)
        try:
            # It may not have stopped yet: what it reports as done is still settled.
            return await self._client.status(job_id, entries=True, spent=spent)
        except JobNotFound:
            return None

    def _judge(
        self,
        job_id: str,
        records: list[PendingRecord],
        status: JobStatus | None,
        *,
        timed_out: bool,
    ) -> Verdicts:
        # A job this instance stopped on purpose (stop_jobs) says nothing about its records.
        counted = None if job_id in self._abandoned else self._max_attempts
        return judge(job_id, status, records, max_failed_jobs=counted, timed_out=timed_out)
