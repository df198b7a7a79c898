"""Taking a partition over: the previous owner's work is resolved before anything is redone.

When a partition is assigned, its committed offset may come with a ledger
(``ledger.py``): what the previous owner had settled above that offset, which
of its jobs were still running, and how far it had read. Whether it left
cleanly or was killed, a :class:`Takeover` then holds the partition until:

1. **its inherited jobs are resolved**: each is read; one still running is
   stopped (``DELETE``) and awaited to a terminal state, for at most
   ``RESOLVE_SECONDS``. A dead instance's job could otherwise go on applying
   a customer after this instance has submitted a newer change of it. What
   a resolved job reports successful is settled, not resubmitted: the ledger
   says which offsets it carried, and each carried at most one change per
   customer, so the customers it lists name exactly those records. What it
   rejected (a completed job's ``failed`` entries) is dead-lettered, as the
   previous owner would have; the rest is resubmitted;
2. **the window is re-read**, up to where the previous owner had read, and
   on up to the partition's end as of the assignment. A record the ledger
   shows settled is counted under its outcome and skipped, never decoded.
   Every other change is held, not buffered, until all of it is in, and then
   buffered in offset order: coalescing per customer, so each customer's
   first job carries its newest change in the log, never its history.

Meanwhile, until the previous owner's window is re-read and its jobs are
resolved, nothing of the partition is committed, so if this instance dies
too, the ledger it inherited is still there for the next one. From then on
this instance's own window says all the inherited one did (settled records
are settled here too, the resolved jobs can apply nothing more, and the
intents below are carried over), so commits resume while the rest, up to the
end as of the assignment, is read.

**An intent without a job id** (``ledger.py``) means its POST may or may not
have created a job, which nobody can ask about: the API has no list of jobs
and the id was never heard. Each POST attempt is written ahead anew, dated
when it goes out (``jobs.py``), so such a job was created by the end of that
request and is over ``JOB_TIMEOUT_SECONDS`` after that at the latest (a job
still running then is one the service stops as hung). Items without ids
(events, balance adjustments) such an intent carried are dead-lettered
``outcome_unknown``, never sent again; :meth:`Takeovers.outcome_unknown` decides what
becomes of the others: for customers (an upsert) they are held, with every
later change of the same customers, until that moment (:func:`unknown_until`),
then submitted, coalesced, so the newest version goes out after any the
unknown job could apply. The intent travels on in this
instance's own ledger with its original time, so a third owner holds them
just as long. A ledger degraded to its jobs (no marks) cannot say which
records an intent carried: every record of its window counts as carried.
Two bounds
keep a takeover from blocking a partition for good: a job that cannot be
resolved in ``RESOLVE_SECONDS`` counts as unresolved (its records are
resubmitted, and the job, told to stop, may still apply its own), and once
the takeovers under way hold half the buffer between them, they release what
they hold in parts, each coalesced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from service.delivery.buffers import Buffers
from service.delivery.edges import GameballApi
from service.delivery.jobs import count_already_applied
from service.delivery.ledger import Ledger
from service.delivery.offsets import Intent, Mark, OffsetTracker, PartitionKey
from service.delivery.records import PendingRecord
from service.delivery.settlement import Settlement
from service.delivery.tags import TagSender, needs_tags
from service.delivery.verdicts import Rejection, Verdicts, judge, judge_facts
from service.errors import ApiError, JobNotFound
from service.gameball.client import TIMEOUT_SECONDS
from service.gameball.models import JobStatus
from service.gameball.operations import Delivery
from service.labels import DeadLetterReason
from service.metrics import Metrics

log = structlog.get_logger(__name__)

RESOLVE_SECONDS = 60.0
"""How long a takeover waits for an inherited job to reach a terminal state."""
RESOLVE_POLL_SECONDS = 0.5


def unknown_until(
    intent_at: float, job_timeout: float, request_timeout: float = TIMEOUT_SECONDS
) -> float:
    """When a job an intent dated ``intent_at`` (wall clock) may have created is over.

    Each POST attempt goes out right after its intent, dated then, is acknowledged
    (``jobs.py``): the job was created by the end of that request (``request_timeout``,
    ``GAMEBALL_REQUEST_TIMEOUT_SECONDS``: the client gives up on an attempt then) and runs
    at most ``job_timeout`` (longer, it is one the service stops as hung).
    """
    return intent_at + request_timeout + job_timeout


@dataclass(slots=True)
class Takeover:
    """One partition being taken over: its inherited ledger, jobs, and held records."""

    tp: PartitionKey
    committed: int
    ledger: Ledger
    generation: int
    jobs: dict[str, JobStatus | None] = field(default_factory=dict)  # id -> final status
    unresolved: set[str] = field(default_factory=set)
    held: list[tuple[PendingRecord, int]] = field(default_factory=list)  # record, job slot or -1
    position: int = 0  # one past the last offset re-read
    started: float = field(default_factory=time.monotonic)
    assigned_end: int = 0  # the partition's end offset as of the assignment (0: unknown)
    committing: bool = False  # the inherited part is done: our own window is committed
    unknown: list[tuple[PendingRecord, int]] = field(default_factory=list)
    """Records of id-less intents already released (in parts) before the window was read."""

    @property
    def inherited_end(self) -> int:
        """One past the last offset the previous owner had read."""
        return self.committed + self.ledger.length

    @property
    def end(self) -> int:
        """How far the takeover reads before its first submission: the later of the
        previous owner's last read and the partition's end as of the assignment."""
        return max(self.inherited_end, self.assigned_end)

    def intent_of(self, record: PendingRecord, slot: int) -> float | None:
        """The date of the id-less intent that carried ``record`` (re-read with ``slot``), if any.

        A ledger without marks cannot say which records an intent carried: then every
        record of its window counts as carried by its latest intent.
        """
        intents = self.ledger.intents
        if not intents or record.offset >= self.inherited_end:
            return None
        if self.ledger.marks is None:
            return max(intents.values())
        return intents.get(slot)

    def inherited_done(self) -> bool:
        """Its jobs are resolved and its window re-read: what it inherited is ours to say."""
        return not self.unresolved and self.position >= self.inherited_end

    def mark(self, offset: int) -> int:
        """The ledger's mark for ``offset`` (PENDING beyond the window or when degraded)."""
        marks = self.ledger.marks
        index = offset - self.committed
        if marks is None or not 0 <= index < len(marks):
            return Mark.PENDING
        return marks[index]

    def ready(self) -> bool:
        return not self.unresolved and self.position >= self.end


class Takeovers:
    """The partitions being taken over, their job resolution, and their release."""

    def __init__(
        self,
        client: GameballApi,
        metrics: Metrics,
        offsets: OffsetTracker,
        batcher: Buffers,
        settlement: Settlement,
        on_release: Callable[[], object],
        tags: TagSender,
        room: int,
        job_timeout: float = 900.0,
        request_timeout: float = TIMEOUT_SECONDS,
        customer_wait: float = 600.0,
    ) -> None:
        """``room``: how many held records all takeovers together may keep (see :meth:`advance`).

        ``job_timeout``: ``JOB_TIMEOUT_SECONDS``, how long a job may run; ``request_timeout``:
        ``GAMEBALL_REQUEST_TIMEOUT_SECONDS``, how long a POST may take (:func:`unknown_until`).
        ``customer_wait``: ``CUSTOMER_WAIT_SECONDS``, as an inherited fact job is judged.
        """
        self._job_timeout = job_timeout
        self._request_timeout = request_timeout
        self._customer_wait = customer_wait
        # Customers held for a job nobody knows (outcome_unknown), and until when (wall clock);
        # customers whose inherited job's tags are being sent.
        self._holds: dict[str, float] = {}
        self._tagging: set[str] = set()
        self._client = client
        self._tags = tags
        self._metrics = metrics
        self._offsets = offsets
        self._batcher = batcher
        self._settlement = settlement
        self._on_release = on_release
        self._room = room
        self._active: dict[PartitionKey, Takeover] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False  # shutting down: no job is asked about any more
        # Intents carried over from a previous owner into our own ledger, and until when.
        self._carried: list[tuple[Intent, list[PendingRecord], float]] = []

    def __contains__(self, tp: object) -> bool:
        return tp in self._active

    def __bool__(self) -> bool:
        return bool(self._active)

    def __getitem__(self, tp: PartitionKey) -> Takeover:
        return self._active[tp]

    @property
    def held(self) -> int:
        """Changes held by every takeover: they count against the buffer."""
        return sum(len(t.held) for t in self._active.values())

    def begin(
        self, tp: PartitionKey, committed: int, ledger: Ledger, generation: int, end: int = 0
    ) -> None:
        """``end``: the partition's end offset as of the assignment (0: unknown)."""
        takeover = Takeover(tp, committed, ledger, generation, position=committed, assigned_end=end)
        takeover.unresolved = set(ledger.jobs.values())
        self._active[tp] = takeover
        if takeover.inherited_done():  # nothing inherited to wait for: commit as usual
            self._commit_own_window(takeover)
        log.info(
            "takeover_started",
            partition=f"{tp[0]}[{tp[1]}]",
            committed=committed,
            window=ledger.length,
            coalesced_up_to=takeover.end,
            jobs=len(ledger.jobs),
            intents_without_job=len(ledger.intents),
            ledger="full" if ledger.marks is not None else "jobs only",
        )
        if self._stopped:
            return  # assigned while leaving (close() serves one last rebalance): the next owner
        for job_id in takeover.unresolved:
            task = asyncio.create_task(self._resolve(takeover, job_id), name=f"resolve-{job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def drop(self, partitions: set[PartitionKey]) -> None:
        """The partitions left before their takeover finished: their next owner starts over."""
        for tp in partitions:
            self._active.pop(tp, None)

    def cancel(self) -> None:
        """Shutting down: stop resolving, and start no resolution for a partition assigned
        from now on (the API client is closed after the consumer, whose close() may still
        serve an assignment: a resolution started then failed on the closed client)."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()

    def advance_all(self) -> None:
        """After a slice of fetched records: advance every takeover to what was re-read."""
        for tp in list(self._active):
            position = self._offsets.position(tp)
            if position is not None:
                self.advance(tp, position)

    def advance(self, tp: PartitionKey, position: int, room: int | None = None) -> None:
        """Re-read up to ``position``; release the takeover once it is ready.

        ``room`` (the constructor's unless given): what every takeover together may hold.
        Past it, a takeover whose jobs are resolved releases what it holds (a part of its
        window, coalesced) instead of waiting for the rest. Held records count against the
        buffer, and the consumer resumes only once the load is down to half of it:
        takeovers holding more than that between them, each waiting for the rest of its
        own window, would keep the consumer paused for good (no room of its own is
        enough: three windows of 40 % each did it). For the same reason the last of a
        takeover's jobs to resolve advances it too: while paused nothing is fetched, and a
        window held whole would wait for a fetch that never comes.
        """
        room = self._room if room is None else room
        takeover = self._active.get(tp)
        if takeover is None:
            return
        takeover.position = max(takeover.position, position)
        if not takeover.committing and takeover.inherited_done():
            self._commit_own_window(takeover)
        if takeover.ready():
            self._flush(takeover, final=True)
        elif not takeover.unresolved and self.held >= room:
            log.warning(
                "takeover_window_released_in_parts",
                partition=f"{tp[0]}[{tp[1]}]",
                held=len(takeover.held),
                remaining=takeover.end - takeover.position,
            )
            self._flush(takeover, final=False)

    def caught_up(
        self, tp: PartitionKey, high_watermark: int, consumer_position: int | None = None
    ) -> None:
        """Nothing more to read (the window's last offsets were compacted away, or the end
        as of the assignment is past a transaction marker): the consumer has reached the
        high watermark, or the records re-read have."""
        takeover = self._active.get(tp)
        if takeover is None:
            return
        read = max(takeover.position, consumer_position or 0)
        if read >= high_watermark:
            self.advance(tp, max(takeover.end, takeover.position), room=0)

    def _flush(self, takeover: Takeover, *, final: bool) -> None:
        """Judge the held records of resolved jobs, and release every held record.

        Final: the takeover is over, and the partition is the pipeline's like any other.
        """
        if final:
            del self._active[takeover.tp]
        verdicts = Verdicts()
        slots = takeover.ledger.jobs
        by_job: dict[str, list[PendingRecord]] = {}
        unknown: dict[float, list[PendingRecord]] = {}  # by the time of their intent
        free: list[tuple[PendingRecord, int]] = []
        unsent: list[PendingRecord] = []  # items without ids a lost POST may have applied
        for record, slot in takeover.held:
            job_id = slots.get(slot) if slot >= 0 else None
            since = takeover.intent_of(record, slot) if job_id is None else None
            if since is not None:
                if not takeover.committing:  # carried over into our ledger once it is ours
                    takeover.unknown.append((record, slot))
                if record.operation.facts.delivery is Delivery.IDLESS:
                    unsent.append(record)
                    continue
                unknown.setdefault(since, []).append(record)
            if job_id is None:
                free.append((record, slot))
            else:
                by_job.setdefault(job_id, []).append(record)
        if not final and not takeover.committing and takeover.ledger.intents:
            # Part of a window not yet read: which customers its intents carried is not
            # known yet, so every customer released now waits as if it were one of them.
            latest = max(takeover.ledger.intents.values())
            unknown = {
                latest: [
                    record
                    for record, _ in takeover.held
                    if record.operation.facts.delivery is not Delivery.IDLESS
                ]
            }
        for since, records in unknown.items():
            self.outcome_unknown(records, since)
        verdicts.rejected += [
            Rejection(
                record,
                DeadLetterReason.OUTCOME_UNKNOWN,
                "the previous owner wrote this item ahead of a POST whose answer it never "
                "heard: a job may have applied it, and an item without an id is never sent twice",
                None,
            )
            for record in unsent
        ]
        for job_id, records in by_job.items():
            # Inherited: how the job ended says nothing about these records; nothing is counted.
            status = takeover.jobs.get(job_id)
            judged = judge(job_id, status, records, max_failed_jobs=None)
            operation = records[0].operation  # a partition is one route's: a job, one operation
            already = judge_facts(
                judged,
                job_id,
                status,
                operation,
                customer_wait=self._customer_wait,
                now=time.time(),
            )
            count_already_applied(self._metrics, operation, already)
            verdicts.merge(judged)
        takeover.held = free
        if final:
            log.info(
                "takeover_finished",
                partition=f"{takeover.tp[0]}[{takeover.tp[1]}]",
                seconds=round(time.monotonic() - takeover.started, 3),
                redone=len(free) + len(verdicts.resubmit),
                settled_by_inherited_jobs=len(verdicts.succeeded),
                rejected_by_inherited_jobs=len(verdicts.rejected),
            )
        tagging = [record for record in verdicts.succeeded if needs_tags(record)]
        if tagging:
            # The previous owner may have died between its job and the tags call: send it
            # before these settle, with their customers checked out meanwhile, so no newer
            # change (and no newer tag set) of theirs can overtake it.
            verdicts.succeeded = [r for r in verdicts.succeeded if not needs_tags(r)]
            self._tagging.update(record.customer_id for record in tagging)
            self._batcher.check_out(record.customer_id for record in tagging)
            task = asyncio.create_task(self._send_tags(tagging), name="takeover-tags")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._release(takeover, verdicts, final=final)
        takeover.held = []

    async def _send_tags(self, records: list[PendingRecord]) -> None:
        """The tags of records an inherited job delivered; then they settle."""
        verdicts = Verdicts(succeeded=records)
        try:
            await self._tags.deliver(verdicts)
        except Exception:  # a bug, not an API answer: redo the records, lose nothing
            log.exception("takeover_tags_crashed", records=len(records))
            verdicts = Verdicts(resubmit=records)
        self._settlement.apply(verdicts)
        customers = {record.customer_id for record in records}
        self._tagging -= customers
        self._batcher.release((c for c in customers if c not in self._holds), time.monotonic())
        self._on_release()

    # ------------------------------------------ intents without a job id

    def outcome_unknown(self, records: list[PendingRecord], since: float) -> None:
        """Records an intent without a job id carried: its POST may have created a job.

        Customers (an upsert), and keyed facts with them: held, with every later change
        of theirs, until such a job must be over (:func:`unknown_until`), then submitted,
        coalesced. Items without ids (events, balance adjustments) never come here:
        :meth:`_flush` dead-letters them ``outcome_unknown``, and their intent travels on
        in this instance's ledger until then, so a crash meanwhile decides the same.
        """
        until = unknown_until(since, self._job_timeout, self._request_timeout)
        wait = until - time.time()
        if wait <= 0 or not records:
            return
        customers = {r.customer_id for r in records if self._holds.get(r.customer_id, 0) < until}
        for customer in customers:
            self._holds[customer] = until
        self._batcher.check_out(customers)
        log.warning(
            "customers_held_for_unknown_job",
            customers=len(customers),
            records=len(records),
            seconds=round(wait, 1),
            reason="the previous owner wrote these records ahead of a POST whose answer it "
            "never heard: a job it may have created can apply them until then",
        )
        self._unhold_at(until, customers)

    def _unhold_at(self, until: float, customers: set[str]) -> None:
        task = asyncio.create_task(self._unhold(until, customers), name="unknown-job-hold")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unhold(self, until: float, customers: set[str]) -> None:
        """At ``until``: the intents carried over that far are over, their customers go."""
        await asyncio.sleep(max(0.0, until - time.time()))
        for intent, records, ends in self._carried:
            if ends <= until:
                self._offsets.ended(intent, records)  # pending again: submitted like any change
        self._carried = [entry for entry in self._carried if entry[2] > until]
        released = {c for c in customers if self._holds.get(c, until) <= until}
        for customer in released:
            self._holds.pop(customer, None)
        self._batcher.release((c for c in released if c not in self._tagging), time.monotonic())
        if released:
            log.info("customers_released_after_unknown_job", customers=len(released))
        self._on_release()

    def _commit_own_window(self, takeover: Takeover) -> None:
        """The inherited part is done: carry its intents into our ledger, and commit again.

        Their records, held here or released already, are marked as carried by an intent
        of the same time in this instance's window, so a crash of this instance leaves
        the next owner the same wait.
        """
        takeover.committing = True
        records: dict[float, list[PendingRecord]] = {}
        for record, slot in [*takeover.unknown, *takeover.held]:
            since = takeover.intent_of(record, slot)
            if since is not None and takeover.ledger.jobs.get(slot) is None:
                records.setdefault(since, []).append(record)
        takeover.unknown = []
        now = time.time()
        for since, carried in records.items():
            until = unknown_until(since, self._job_timeout, self._request_timeout)
            if until > now:
                intent = self._offsets.intend(carried, since)
                self._carried.append((intent, carried, until))
                self._unhold_at(until, set())
        self._offsets.release(takeover.tp)
        self._on_release()

    def _release(self, takeover: Takeover, verdicts: Verdicts, *, final: bool) -> None:
        """Held changes go to the buffer in offset order, coalescing per customer.

        The fresh ones first, then what the inherited jobs did not settle: a
        change a job carried is older than any change of the same customer
        held beside it, so given back after it, it is the one coalesced away.
        """
        now = time.monotonic()
        losers: list[PendingRecord] = []
        for record, _slot in takeover.held:
            superseded = self._batcher.add(record, now)
            if superseded is not None:
                losers.append(superseded)
        self._settlement.settle(losers, "coalesced")
        self._settlement.apply(verdicts)
        if final and not takeover.committing:
            self._commit_own_window(takeover)
        self._on_release()

    async def _resolve(self, takeover: Takeover, job_id: str) -> None:
        """Stop the job if it runs, and wait (bounded) for its terminal status."""
        deadline = time.monotonic() + RESOLVE_SECONDS
        status: JobStatus | None = None
        resolution = "unresolved"
        stopped = False
        try:
            async with asyncio.timeout(RESOLVE_SECONDS):
                while True:
                    status = await self._client.status(job_id, entries=True)
                    if status.status.terminal:
                        resolution = status.status.value
                        break
                    if not stopped:
                        await self._client.stop(job_id)
                        stopped = True
                        continue
                    await asyncio.sleep(min(RESOLVE_POLL_SECONDS, deadline - time.monotonic()))
        except JobNotFound:
            status, resolution = None, "not_found"
        except (TimeoutError, ApiError):
            status = None
            log.warning("inherited_job_unresolved", job_id=job_id, seconds=RESOLVE_SECONDS)
        self._metrics.jobs_inherited.labels(resolution=resolution).inc()
        takeover.jobs[job_id] = status
        takeover.unresolved.discard(job_id)
        log.info("inherited_job_resolved", job_id=job_id, resolution=resolution, stopped=stopped)
        if self._active.get(takeover.tp) is takeover:
            self.advance(takeover.tp, takeover.position)
