"""Committing settled watermarks, with their ledgers: the last step of a record's path.

What may be committed is decided by :class:`~service.delivery.offsets.OffsetTracker`
(every record below a watermark is settled) and what rides along by
``ledger.py`` (what is settled above it, and which jobs are in flight); this
module decides *when* and *on which thread*:

* soon after work settles or a job is created (:meth:`Committer.soon`), at
  most every ``COMMIT_MIN_GAP`` seconds: the ledger is worth most when it is
  fresh, since a crash costs whatever happened since the last commit. Traffic
  stays sane: one request per gap at most, and none when nothing changed;
* every ``COMMIT_INTERVAL`` whatever happens, and at once when the pipeline
  drains, so the lag of a caught-up consumer reads zero when it is zero;
* inside the revoke callback, for the partitions given up (see
  ``rebalance.py``), with librdkafka serving the rebalance;
* always on the Kafka thread, between two ``consume`` calls. A synchronous
  commit made from another thread cannot complete while that thread serves
  a rebalance callback, and the revoke callback commits too: the two waited
  for each other, and the instance froze holding its partitions (the chaos
  suite caught it once commits became frequent). On the Kafka thread a
  commit simply waits for the current ``consume`` to return.
* asynchronously, but for the revoke callback's: a synchronous commit waits
  for the group coordinator, and a broker outage took it away while one was
  on its way; the Kafka thread, stuck in it, served no ``consume`` until the
  broker came back, so nothing noticed the outage (readiness stayed true)
  and a SIGTERM meanwhile ended in the shutdown watchdog. Results come back
  in ``consume``, in the order the commits were sent, and are matched to
  what was sent in that order.

Nothing is committed while the dead-letter breaker is open (``breaker.py``), on any
path: what it let through before it opened is all a restart or a new owner skips.

Commits are serialised by a lock so one never regresses another, and a
window already on its way is not sent again until its result is known.

**Write-ahead** (:meth:`Committer.write_ahead`): before a batch's POST, its
records are marked as carried by an intent (``offsets.py``) and the POST
waits until a commit naming that intent is acknowledged by the broker, so no
job can exist that the committed ledger does not account for. The commit is
sent at once, without waiting for ``COMMIT_MIN_GAP``, and is shared by every
write-ahead due at that moment (group commit: the batches a dispatch starts
together mark their records before the commit task runs, and one commit
carries them all). A commit that fails (a classic group rebalancing answers
every commit ``REBALANCE_IN_PROGRESS`` or ``ILLEGAL_GENERATION`` until it is
over) is sent again, every ``COMMIT_MIN_GAP``, until one is acknowledged; a
write-ahead whose partition closes or goes meanwhile gives up, and its batch
is not submitted (its records are the next owner's, like anything not yet
submitted at a revocation).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

from service.delivery.consumer import KafkaThread
from service.delivery.edges import CommitResult, Consumer
from service.delivery.ledger import encode
from service.delivery.offsets import Intent, OffsetTracker, PartitionKey, Window
from service.delivery.records import PendingRecord
from service.errors import KafkaError
from service.logs import FoldedLog
from service.metrics import Metrics
from service.waiting import wait_event

log = structlog.get_logger(__name__)

COMMIT_INTERVAL = 1.0
COMMIT_MIN_GAP = 0.2
COMMIT_WHEN_DRAINED = True
GROUP_COMMIT = True
"""Write-aheads due together share one commit; ``False`` (measurements only): one at a time."""


class Committer:
    """Commits every window that changed: soon after changes, on a cadence, when drained."""

    def __init__(
        self,
        offsets: OffsetTracker,
        consumer: Consumer,
        kafka_thread: KafkaThread,
        metrics: Metrics,
        *,
        metadata_limit: int,
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        """``hold``: while it says so, commit nothing (the dead-letter breaker is open)."""
        self._hold = hold
        self._offsets = offsets
        self._consumer = consumer
        self._kafka_thread = kafka_thread
        self._metrics = metrics
        self._limit = metadata_limit
        self._lock = asyncio.Lock()
        # Commits sent and awaiting their results, oldest first. Appended and popped on the
        # Kafka thread only, where sends and results are ordered: on the loop a result can
        # arrive before the coroutine that sent the commit resumes.
        self._sent: deque[dict[PartitionKey, Window]] = deque()
        self._on_the_way: dict[PartitionKey, Window] = {}  # the latest sent, per partition
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = asyncio.Event()
        self._now = False  # commit without waiting for COMMIT_MIN_GAP
        self._urgent = asyncio.Event()  # ... even if the gap's wait has begun
        self._last = 0.0
        self._degraded = FoldedLog(log, every=60.0)
        # Write-aheads waiting for a commit that names their intent, acknowledged.
        self._writing: dict[Intent, asyncio.Future[bool]] = {}
        self._alone = asyncio.Lock()  # GROUP_COMMIT off: one write-ahead at a time

    def drained(self) -> None:
        """Nothing is buffered and no job runs: everything consumed is settled, commit now."""
        if COMMIT_WHEN_DRAINED:
            self._now = True
            self._urgent.set()
            self._due.set()

    def soon(self) -> None:
        """Something settled, or a job was created: commit within ``COMMIT_MIN_GAP``."""
        self._due.set()

    async def write_ahead(
        self, records: list[PendingRecord], again: Intent | None = None
    ) -> Intent | None:
        """Mark the records as carried by an intent dated now; return it once a commit naming
        it is acknowledged by the broker.

        ``again``: the intent of the previous attempt of the same POST, dated anew. ``None``:
        a partition of theirs closed or went first, and the POST must not go out (its marks
        are pending again).
        """
        if GROUP_COMMIT:
            return await self._write_ahead(records, again)
        async with self._alone:
            return await self._write_ahead(records, again)

    async def _write_ahead(
        self, records: list[PendingRecord], again: Intent | None
    ) -> Intent | None:
        now = time.time()
        if again is None:
            intent = self._offsets.intend(records, now)
        else:
            intent = again
            self._offsets.redate(intent, now)
        if intent.written:  # nothing to wait for: its partitions commit nothing yet (takeover)
            return intent
        waiter = asyncio.get_running_loop().create_future()
        self._writing[intent] = waiter
        self._now = True
        self._urgent.set()
        self._due.set()
        written = False
        try:
            written = await waiter
        finally:
            self._writing.pop(intent, None)
            if not written:  # given up or cancelled before the POST: nothing carries them
                self._offsets.ended(intent, records)
        return intent if written else None

    def job_created(self, intent: Intent, job_id: str) -> None:
        """The intent's POST created a job: its id rides in the next commit's ledger, soon."""
        self._offsets.carried(intent, job_id)
        self.soon()

    def abandon_unwritable(self) -> None:
        """Partitions closed or went: the write-aheads that can no longer be written give up."""
        for intent, waiter in self._writing.items():
            if not waiter.done() and self._offsets.unwritable(intent):
                waiter.set_result(False)

    def _settle_writers(self) -> None:
        for intent, waiter in self._writing.items():
            if waiter.done():
                continue
            if intent.written:
                waiter.set_result(True)
            elif self._offsets.unwritable(intent):
                waiter.set_result(False)
        if any(not waiter.done() for waiter in self._writing.values()):
            self.soon()  # a commit failed for some: send again, after the gap

    @property
    def in_flight(self) -> int:
        """Commits sent whose result has not come back yet."""
        return len(self._sent)

    async def run(self) -> None:
        while True:
            await wait_event(self._due, COMMIT_INTERVAL)
            self._due.clear()
            if not self._now:
                gap = self._last + COMMIT_MIN_GAP - time.monotonic()
                if gap > 0:  # a write-ahead (or the drain) cuts the gap short
                    await wait_event(self._urgent, gap)
            self._now = False
            self._urgent.clear()
            await self.commit()

    async def commit(self) -> None:
        """Send every window that changed since the last acknowledged or sent one."""
        async with self._lock:
            self._loop = asyncio.get_running_loop()
            self._last = time.monotonic()
            if self._hold():
                return
            windows = {
                tp: window
                for tp, window in self._offsets.commit_candidates().items()
                if self._on_the_way.get(tp) != window
            }
            if not windows:
                return
            payload = {tp: self._payload(tp, window) for tp, window in windows.items()}
            # On the way before it is sent: its result may reach the loop before this resumes.
            self._on_the_way.update(windows)
            sent: list[PartitionKey] = []
            try:
                sent = await self._kafka_thread.call(self._send_assigned, payload, windows)
            except KafkaError as exc:
                log.warning("commit_failed", error=str(exc), partitions=len(payload))
            for tp in windows.keys() - set(sent):  # not sent: no result will come
                if self._on_the_way.get(tp) is windows[tp]:
                    del self._on_the_way[tp]
            if len(sent) < len(windows):
                self._settle_writers()

    def acknowledged(self, error: str | None, results: CommitResult) -> None:
        """An asynchronous commit's result, on the Kafka thread (``consume``): to the loop."""
        if not self._sent:
            return  # sent by another path (none today: the revoke callback commits synchronously)
        sent = self._sent.popleft()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._acknowledged, sent, error, results)

    def _acknowledged(
        self, sent: dict[PartitionKey, Window], error: str | None, results: CommitResult
    ) -> None:
        done = {tp: sent[tp] for tp, failed in results if failed is None and tp in sent}
        self._offsets.committed(done)
        self._settle_writers()
        for tp, window in sent.items():
            if self._on_the_way.get(tp) is window:
                del self._on_the_way[tp]
        if error is not None or len(done) < len(sent):
            failed = {tp: why for tp, why in results if why is not None and tp in sent}
            log.warning(
                "commit_failed",
                error=error,
                partitions=len(sent) - len(done),
                not_committed={
                    f"{t}[{p}]@{sent[t, p].offset}": failed.get((t, p), error)
                    for t, p in sorted(set(sent) - set(done))
                },
            )
        else:
            log.debug("committed", offsets={f"{t}[{p}]": w.offset for (t, p), w in done.items()})

    def commit_revoked(self, windows: dict[PartitionKey, Window]) -> dict[PartitionKey, Window]:
        """On the Kafka thread, inside the revoke callback: commit; return what was acknowledged.

        Failure is logged, not raised: the partitions go anyway, and the next
        owner re-reads from the last window that did make it.
        """
        if not windows:
            return {}
        if self._hold():
            log.warning(
                "revoke_commit_withheld",
                partitions=[f"{t}[{p}]" for t, p in sorted(windows)],
                offsets=[w.offset for _, w in sorted(windows.items())],
                reason="the dead-letter breaker is open: nothing more is committed; the next "
                "owner re-reads these partitions from their last commit",
            )
            return {}
        try:
            self._consumer.commit({tp: self._payload(tp, w) for tp, w in windows.items()})
        except KafkaError as exc:
            log.warning(
                "commit_failed",
                error=str(exc),
                partitions=len(windows),
                not_committed=[f"{t}[{p}]@{w.offset}" for (t, p), w in sorted(windows.items())],
            )
            return {}
        return windows

    def _payload(self, tp: PartitionKey, window: Window) -> tuple[int, str]:
        """The offset and the metadata (the ledger, degraded if it must be) to commit."""
        text, level = encode(
            len(window.marks), window.jobs, window.marks, self._limit, window.intents
        )
        self._metrics.commit_metadata_bytes.observe(len(text))
        if level != "full" and self._limit > 0:
            self._metrics.commit_metadata_degraded.labels(level=level).inc()
            self._degraded(
                "warning",
                "commit_metadata_degraded",
                f"{tp[0]}[{tp[1]}]: the ledger of {len(window.marks)} offsets and "
                f"{len(window.jobs) + len(window.intents)} jobs does not fit "
                f"{self._limit} bytes; committed with "
                f"{'its jobs only' if level == 'jobs' else 'no ledger'} (raise the broker's "
                "offset.metadata.max.bytes and COMMIT_METADATA_MAX_BYTES)",
                level=level,
            )
        return window.offset, text

    def _send_assigned(
        self, payload: dict[PartitionKey, tuple[int, str]], windows: dict[PartitionKey, Window]
    ) -> list[PartitionKey]:
        """On the Kafka thread: send the commit of the partitions still assigned; return them.

        A commit queued behind a ``consume`` that revoked partitions would
        otherwise write their older watermarks over what the revoke callback
        committed. What is sent is recorded here, before the send, so its result (served
        by a later ``consume`` on this thread) always finds it.
        """
        assigned = set(self._consumer.assignment())
        owned = {tp: entry for tp, entry in payload.items() if tp in assigned}
        if owned:
            self._sent.append({tp: windows[tp] for tp in owned})
            try:
                self._consumer.commit_async(owned)
            except BaseException:
                self._sent.pop()
                raise
        return list(owned)
