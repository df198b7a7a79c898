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
2. **the window is re-read**, up to where the previous owner had read. A
   record the ledger shows settled is counted under its outcome and skipped,
   never decoded. Every other change is held, not buffered, until the whole
   window is in, and then buffered in offset order: coalescing per customer,
   so each customer's latest change goes out once, never its history.

Meanwhile nothing of the partition is committed, so if this instance dies
too, the ledger it inherited is still there for the next one. Two bounds
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

from service.delivery.batching import Batcher
from service.delivery.edges import GameballApi
from service.delivery.ledger import Ledger
from service.delivery.offsets import Mark, OffsetTracker, PartitionKey
from service.delivery.records import PendingRecord
from service.delivery.settlement import Settlement
from service.delivery.tags import TagSender, needs_tags
from service.delivery.verdicts import Verdicts, judge
from service.errors import ApiError, JobNotFound
from service.gameball.models import JobStatus
from service.metrics import Metrics

log = structlog.get_logger(__name__)

RESOLVE_SECONDS = 60.0
"""How long a takeover waits for an inherited job to reach a terminal state."""
RESOLVE_POLL_SECONDS = 0.5


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

    @property
    def end(self) -> int:
        """One past the last offset the previous owner had read."""
        return self.committed + self.ledger.length

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
        batcher: Batcher,
        settlement: Settlement,
        on_release: Callable[[], object],
        tags: TagSender,
        room: int,
    ) -> None:
        """``room``: how many held records all takeovers together may keep (see :meth:`advance`)."""
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

    def begin(self, tp: PartitionKey, committed: int, ledger: Ledger, generation: int) -> None:
        takeover = Takeover(tp, committed, ledger, generation, position=committed)
        takeover.unresolved = set(ledger.jobs.values())
        self._active[tp] = takeover
        log.info(
            "takeover_started",
            partition=f"{tp[0]}[{tp[1]}]",
            committed=committed,
            window=ledger.length,
            jobs=len(ledger.jobs),
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

    def caught_up(self, tp: PartitionKey, high_watermark: int) -> None:
        """Nothing more to read (the window's last offsets were compacted away, say)."""
        takeover = self._active.get(tp)
        if takeover is not None and takeover.position >= high_watermark:
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
        free: list[tuple[PendingRecord, int]] = []
        for record, slot in takeover.held:
            job_id = slots.get(slot) if slot >= 0 else None
            if job_id is None:
                free.append((record, -1))
            else:
                by_job.setdefault(job_id, []).append(record)
        for job_id, records in by_job.items():
            # Inherited: how the job ended says nothing about these records; nothing is counted.
            status = takeover.jobs.get(job_id)
            verdicts.merge(judge(job_id, status, records, max_failed_jobs=None))
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
        self._batcher.release((record.customer_id for record in records), time.monotonic())
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
        if final:
            self._offsets.release(takeover.tp)
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
