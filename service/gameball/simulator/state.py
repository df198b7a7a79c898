"""The simulated API's memory: configuration, jobs on a clock, the applied log, counters."""

from __future__ import annotations

import enum
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from service.gameball.models import JobState
from service.gameball.operations import Operation
from service.gameball.simulator.books import OperationBook, books
from service.gameball.simulator.config import SimulatorConfig, changed
from service.gameball.simulator.documents import batch_document, batches_document
from service.gameball.simulator.limits import KeyLimits
from service.gameball.simulator.profiles import Profiles, email_of

CREATED_MESSAGE = "Customer created successfully"
INVALID_EMAIL = "Invalid email address"
RECORD_FAILED = "Failed to create customer"
QUEUED_FRACTION = 0.1
"""Share of a job's duration spent ``queued`` before its first record is processed."""


class AppliedRecord(NamedTuple):
    """One customer the API stored, in the order it was stored (``seq`` from 0).

    ``at`` is the wall-clock time (``time.time()``) the clock says it finished,
    so a checker can line the log up with what happened to the clients.
    """

    customer_id: str
    customer: dict[str, Any]
    job_id: str
    seq: int
    at: float = 0.0


class RejectedRecord(NamedTuple):
    """One customer the API reported failed: a per-record failure or a failed job's record."""

    customer_id: str
    job_id: str
    error: str
    seq: int


class Fate(enum.Enum):
    COMPLETE = "complete"
    FAIL = "fail"
    STUCK = "stuck"
    STOPPED = "stopped"  # the API stops it by itself halfway (maintenance, a cancelled job)


@dataclass(eq=False, slots=True)
class Job:
    """A submitted batch; ``done`` records (a prefix of the body) are processed.

    ``customers`` are its items, whatever its operation (each names its customer); ``book``
    is its operation's (:mod:`.books`), ``None`` for the customers operation.
    """

    id: str
    order: int
    customers: list[dict[str, Any]]
    errors: list[str | None]  # per record: None = will succeed (other operations: so far)
    created: float  # time.monotonic()
    created_wall: float  # time.time(), for createdAt/startedAt
    duration: float
    fate: Fate
    state: JobState = JobState.QUEUED
    started: bool = False
    done: int = 0
    successful: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    document: bytes | None = None  # cached once terminal
    batches_document: bytes | None = None  # the same, in the batches dialect
    stopped_at: float | None = None  # time.time() of the DELETE that stopped it
    book: OperationBook | None = None

    @property
    def queue_seconds(self) -> float:
        return self.duration * QUEUED_FRACTION

    def target(self, now: float) -> tuple[JobState, int]:
        """The state and number of processed records the clock says the job has at ``now``."""
        elapsed, total = now - self.created, len(self.customers)
        if self.fate is Fate.FAIL:
            return (JobState.FAILED, 0) if elapsed >= self.duration else (JobState.QUEUED, 0)
        if elapsed < self.queue_seconds:
            return JobState.QUEUED, 0
        if elapsed >= self.duration:
            done = total
        else:
            done = int(
                total * (elapsed - self.queue_seconds) / (self.duration - self.queue_seconds)
            )
        if self.fate is Fate.STUCK:
            return JobState.RUNNING, min(done, total // 2)
        if self.fate is Fate.STOPPED:
            if elapsed >= self.duration:
                return JobState.STOPPED, total // 2
            return JobState.RUNNING, min(done, total // 2)
        return (JobState.COMPLETED if done >= total else JobState.RUNNING), done

    def finish_time(self, index: int) -> float:
        queue = self.queue_seconds
        return (self.created + queue) + (self.duration - queue) * (index + 1) / len(self.customers)

    def finish_wall(self, index: int) -> float:
        return self.created_wall + (self.finish_time(index) - self.created)


class SimulatorState:
    """The in-memory API: jobs, the applied log and counters.

    Held by the app as ``app.state.simulator``. Mutations take a lock because
    :class:`RunningSimulator` users read it from another thread; call
    :meth:`settle` before reading ``applied``/``latest`` directly.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget jobs, the applied log and the counters; the config stays, the seed restarts."""
        with self._lock:
            self.rng = random.Random(self.config.seed)
            self.jobs: dict[str, Job] = {}
            self.active: list[Job] = []  # not yet terminal, in creation order
            self.applied: list[AppliedRecord] = []
            self.rejected: list[RejectedRecord] = []
            self.latest: dict[str, dict[str, Any]] = {}
            self.jobs_created = 0
            self.records_received = 0
            self.records_failed = 0
            self.requests: dict[str, Counter[str]] = {}
            self.requests_by_operation: dict[str, Counter[str]] = {}  # operation -> kind -> n
            self.limits = KeyLimits()
            self.rate_limited = 0
            self.profiles = Profiles()  # tags, read-backs, the lenient mode's drops
            self.books = books()  # every other operation's logs and counts

    def update_config(self, changes: dict[str, Any]) -> SimulatorConfig:
        """Apply ``changes`` (field -> value); ``ValueError`` names what is wrong.

        Jobs keep the duration and fate they were created with; faults,
        latency, limits and credentials apply from the next request on.
        """
        with self._lock:
            self.config = changed(self.config, changes)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
        return self.config

    def admit(self, api_key: str, now: float | None = None) -> float | None:
        """Within the key's limits (``None``, and counted), or seconds until it would be."""
        config = self.config
        with self._lock:
            wait = self.limits.admit(
                api_key,
                time.monotonic() if now is None else now,
                per_second=config.limit_per_second,
                per_window=config.limit_per_window,
                window_seconds=config.limit_window_seconds,
            )
            if wait is not None:
                self.rate_limited += 1
            return wait

    def count(self, kind: str, status: int, operation: Operation | None = None) -> None:
        """One request of ``kind`` answered ``status``; of ``operation``'s jobs when known."""
        self.requests.setdefault(kind, Counter())[str(status)] += 1
        if operation is not None:
            self.requests_by_operation.setdefault(operation.value, Counter())[kind] += 1

    def draw(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def create_job(
        self, customers: list[dict[str, Any]], operation: Operation = Operation.CUSTOMERS
    ) -> Job:
        """Register a validated batch of ``operation``'s items; every random outcome is drawn
        here, in body order."""
        config, draw = self.config, self.draw
        book = None if operation is Operation.CUSTOMERS else self.books[operation]
        with self._lock:
            errors: list[str | None] = []
            if book is None:
                for customer in customers:
                    email = email_of(customer)
                    if type(email) is str and "@" not in email:
                        errors.append(INVALID_EMAIL)
                    elif draw(config.record_failure_rate):
                        errors.append(RECORD_FAILED)
                    else:
                        errors.append(None)
            else:
                submitted = time.time()
                for item in customers:
                    error = book.screen(item, submitted)
                    if draw(config.record_failure_rate) and error is None:
                        error = book.words.failed
                    errors.append(error)
                book.received(len(customers))
            if draw(config.job_failure_rate):
                fate = Fate.FAIL
            elif draw(config.stuck_job_rate):
                fate = Fate.STUCK
            elif draw(config.stopped_job_rate):
                fate = Fate.STOPPED
            else:
                fate = Fate.COMPLETE
            self.jobs_created += 1
            self.records_received += len(customers)
            job = Job(
                id=f"job-{self.jobs_created:06d}-{uuid.uuid4().hex[:12]}",
                order=self.jobs_created,
                customers=customers,
                errors=errors,
                created=time.monotonic(),
                created_wall=time.time(),
                duration=config.job_duration_seconds,
                fate=fate,
                book=book,
            )
            self.jobs[job.id] = job
            self.active.append(job)
            return job

    def settle(self, now: float | None = None) -> None:
        """Bring every unfinished job to what the clock says, applying records in finish order."""
        with self._lock:
            if not self.active:
                return
            now = time.monotonic() if now is None else now
            moves = [(job, *job.target(now)) for job in self.active]
            moves = [m for m in moves if m[1] is not m[0].state or m[2] != m[0].done]
            if not moves:
                return
            progress = [(job, done) for job, _, done in moves if done > job.done]
            spans = sorted(progress, key=lambda p: (p[0].finish_time(p[0].done), p[0].order))
            overlap = any(
                a.finish_time(a_done - 1) > b.finish_time(b.done)
                for (a, a_done), (b, _) in itertools.pairwise(spans)
            )
            if not overlap:
                for job, done in spans:
                    self._log(job, job.done, done)
            else:
                self._log_interleaved(spans)
            for job, done in spans:
                self._report(job, job.done, done)
            finished = False
            for job, state, _ in moves:
                if state in (JobState.RUNNING, JobState.COMPLETED):
                    job.started = True
                if state is JobState.FAILED and job.book is not None:
                    job.failed = job.book.fail(job, echo_keys=self.config.echo_keys)
                elif state is JobState.FAILED:
                    job.failed = [
                        {"customerId": c["customerId"], "message": RECORD_FAILED}
                        for c in job.customers
                    ]
                    self.records_failed += len(job.customers)
                    rejected = self.rejected
                    for c in job.customers:
                        rejected.append(
                            RejectedRecord(c["customerId"], job.id, RECORD_FAILED, len(rejected))
                        )
                job.state = state
                finished = finished or state.terminal
            if finished:
                self.active = [job for job in self.active if not job.state.terminal]

    def _log(self, job: Job, start: int, stop: int) -> None:
        """Records ``start:stop`` of ``job`` finish: log them, in body order."""
        if job.book is not None:
            self._log_mixed([(job.finish_time(i), job.order, i, job) for i in range(start, stop)])
            return
        customers, errors, job_id = job.customers[start:stop], job.errors[start:stop], job.id
        if any(errors):
            self._log_each([(job.finish_time(i), job.order, i, job) for i in range(start, stop)])
            return
        applied = self.applied
        ids = [customer["customerId"] for customer in customers]
        seqs = range(len(applied), len(applied) + len(ids))
        ats = map(job.finish_wall, range(start, stop))
        applied.extend(map(AppliedRecord, ids, customers, itertools.repeat(job_id), seqs, ats))
        self.latest.update(zip(ids, customers, strict=True))

    def _log_interleaved(self, spans: list[tuple[Job, int]]) -> None:
        """Several jobs' records finish in the same stretch: log them in finish-time order.

        One sort over every record's finish time (ties: the older job first); timsort
        merges the jobs' already ordered runs in C, so a record costs a tuple, not a
        heap step and a call.
        """
        events: list[tuple[float, int, int, Job]] = []
        for job, done in spans:
            # Job.finish_time, inlined: the same arithmetic, so the same floats.
            first, order, count = job.created + job.queue_seconds, job.order, len(job.customers)
            span = job.duration - job.queue_seconds
            indexes = range(job.done, done)
            events += [(first + span * (i + 1) / count, order, i, job) for i in indexes]
        events.sort()
        if any(job.book is not None for job, _ in spans):
            self._log_mixed(events)
        else:
            self._log_each(events)

    def _log_mixed(self, events: list[tuple[float, int, int, Job]]) -> None:
        """Like :meth:`_log_each`, with records of other operations among them: each is
        decided in its turn, so an order finishing after its customer finds it known."""
        known = None if self.config.all_customers_known else self.latest
        for event in events:
            finish, _, index, job = event
            if job.book is None:
                self._log_each([event])
            else:
                job.book.process(job, index, job.created_wall + (finish - job.created), known)

    def _log_each(self, events: list[tuple[float, int, int, Job]]) -> None:
        """Log records one by one: ``(finish_time, job order, index, job)``, in that order."""
        applied, rejected, latest = self.applied, self.rejected, self.latest
        for finish, _, index, job in events:
            customer = job.customers[index]
            customer_id, error = customer["customerId"], job.errors[index]
            if error is None:
                at = job.created_wall + (finish - job.created)  # Job.finish_wall
                applied.append(AppliedRecord(customer_id, customer, job.id, len(applied), at))
                latest[customer_id] = customer
            else:
                rejected.append(RejectedRecord(customer_id, job.id, error, len(rejected)))

    def _report(self, job: Job, start: int, stop: int) -> None:
        """Records ``start:stop`` of ``job`` are done: add them to its status document."""
        if job.book is not None:
            successful, failed = job.book.results(job, start, stop, echo_keys=self.config.echo_keys)
            job.successful += successful
            job.failed += failed
            job.done = stop
            return
        customers, errors = job.customers[start:stop], job.errors[start:stop]
        if not any(errors):  # the common case, done in bulk
            job.successful += [
                {"customerId": customer["customerId"], "message": CREATED_MESSAGE}
                for customer in customers
            ]
        else:
            for customer, error in zip(customers, errors, strict=True):
                customer_id = customer["customerId"]
                if error is None:
                    job.successful.append({"customerId": customer_id, "message": CREATED_MESSAGE})
                else:
                    job.failed.append({"customerId": customer_id, "error": error})
                    self.records_failed += 1
        job.done = stop

    def stop(self, job: Job) -> None:
        """``DELETE``: a queued or running job stops; what it finished stays applied."""
        with self._lock:
            self.settle()
            if not job.state.terminal:
                job.state = JobState.STOPPED
                job.stopped_at = time.time()
                self.active.remove(job)

    def document(self, job: Job) -> bytes:
        """The seeds' status document for ``job`` as it stands (call :meth:`settle` first)."""
        if job.document is None:
            with self._lock:
                body = batch_document(job)
                if not job.state.terminal:
                    return body
                job.document = body
        return job.document

    def batches_document(self, job: Job) -> bytes:
        """The OpenAPI's status document (``GET /batches/{id}/status``) for ``job``."""
        if job.batches_document is None:
            with self._lock:
                body = batches_document(job)
                if not job.state.terminal:
                    return body
                job.batches_document = body
        return job.batches_document

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self.settle()
            return {
                "job_api": self.config.job_api,
                "jobs_created": self.jobs_created,
                "jobs_active": len(self.active),
                "jobs": dict(Counter(job.state.value for job in self.jobs.values())),
                "records_received": self.records_received,
                "records_applied": len(self.applied),
                "records_failed": self.records_failed,
                "rate_limited": self.rate_limited,
                "requests": {kind: dict(codes) for kind, codes in self.requests.items()},
                "requests_by_operation": {
                    op: dict(kinds) for op, kinds in self.requests_by_operation.items()
                },
                "customer_shape": self.config.customer_shape,
                "strict": self.config.strict,
                **self.profiles.stats(),
                "operations": {
                    operation.value: book.stats() for operation, book in self.books.items()
                },
            }

    def applied_since(self, since: int, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.settle()
            entries = self.applied[since : None if limit is None else since + limit]
            jobs = self.jobs
            return [
                {
                    "seq": e.seq,
                    "customerId": e.customer_id,
                    "customer": e.customer,
                    "jobId": e.job_id,
                    # When the job carrying the record was submitted (epoch seconds):
                    # the benchmark's produce-to-submit latency needs it.
                    "submittedAt": jobs[e.job_id].created_wall,
                    "at": e.at,
                }
                for e in entries
            ]

    def rejected_since(self, since: int, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self.settle()
            entries = self.rejected[since : None if limit is None else since + limit]
            return [
                {"seq": e.seq, "customerId": e.customer_id, "jobId": e.job_id, "error": e.error}
                for e in entries
            ]

    def items_applied_since(
        self, operation: Operation, since: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """``/_sim/applied?operation=...`` for an operation besides customers."""
        with self._lock:
            self.settle()
            return self.books[operation].applied_since(since, limit, self.jobs)

    def items_refused_since(
        self, operation: Operation, since: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """``/_sim/rejected?operation=...`` for an operation besides customers."""
        with self._lock:
            self.settle()
            return self.books[operation].refused_since(since, limit)
