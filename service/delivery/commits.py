"""Committing settled watermarks: the last step of a record's path.

What may be committed is decided by :class:`~service.delivery.offsets.OffsetTracker`
(every record below a watermark is settled); this module decides *when* and
*on which thread*:

* every ``COMMIT_INTERVAL`` and at once when the pipeline drains (nothing
  buffered, no job running), so the lag of a caught-up consumer reads zero
  when it is zero, not up to a second later;
* inside the revoke callback, for the partitions given up (see
  ``rebalance.py``), with librdkafka serving the rebalance;
* always on the Kafka thread, between two ``consume`` calls. A synchronous
  commit made from another thread cannot complete while that thread serves
  a rebalance callback, and the revoke callback commits too: the two waited
  for each other, and the instance froze holding its partitions (the chaos
  suite caught it once commits became frequent). On the Kafka thread a
  commit simply waits for the current ``consume`` to return.

Commits are serialised by a lock so one never regresses another.
"""

from __future__ import annotations

import asyncio

import structlog

from service.delivery.consumer import KafkaThread, SourceConsumer
from service.delivery.offsets import OffsetTracker, TopicPartition
from service.errors import KafkaError
from service.waiting import wait_event

log = structlog.get_logger(__name__)

COMMIT_INTERVAL = 1.0
COMMIT_WHEN_DRAINED = True


class Committer:
    """Commits every watermark that moved, on a cadence and whenever the pipeline drains."""

    def __init__(
        self,
        offsets: OffsetTracker,
        consumer: SourceConsumer,
        kafka_thread: KafkaThread,
    ) -> None:
        self._offsets = offsets
        self._consumer = consumer
        self._kafka_thread = kafka_thread
        self._lock = asyncio.Lock()
        self._drained = asyncio.Event()

    def drained(self) -> None:
        """Nothing is buffered and no job runs: everything consumed is settled, commit now."""
        if COMMIT_WHEN_DRAINED:
            self._drained.set()

    async def run(self) -> None:
        while True:
            await wait_event(self._drained, COMMIT_INTERVAL)
            self._drained.clear()
            await self.commit()

    async def commit(self) -> None:
        """Commit every watermark that moved past the last acknowledged one."""
        async with self._lock:
            candidates = self._offsets.commit_candidates()
            if not candidates:
                return
            try:
                candidates = await self._kafka_thread.call(self._commit_assigned, candidates)
            except KafkaError as exc:
                log.warning("commit_failed", error=str(exc), partitions=len(candidates))
                return
            self._offsets.committed(candidates)
            log.debug("committed", offsets={f"{t}[{p}]": o for (t, p), o in candidates.items()})

    def commit_revoked(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """On the Kafka thread, inside the revoke callback: commit; return what was acknowledged.

        Failure is logged, not raised: the partitions go anyway, and the next
        owner re-reads from the last watermark that did make it.
        """
        if not offsets:
            return {}
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit_failed", error=str(exc), partitions=len(offsets))
            return {}
        return offsets

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
