"""Bounded memory: pause the consumer when the buffer is full, resume at half (SPEC §2).

What counts is everything held in memory on its way out: records buffered
for a batch, records a takeover holds back, and dead letters not yet
acknowledged. Pausing keeps the group membership (``consume`` is still
called, and returns nothing for paused partitions), so a full buffer never
costs a rebalance. Resuming at half, not just below the limit, keeps the
consumer from flapping.

While a backlog is compacted (``compaction.py``) the buffer's bound is its memory instead
(``COMPACTION_MAX_BYTES``): the consumer pauses when the buffered changes hold that much,
and resumes at half, the same way. Records a takeover holds and dead letters awaiting their
acknowledgement still count against ``MAX_BUFFERED_RECORDS``.

The dead-letter breaker (``breaker.py``) holds the consumer paused the same way, whatever
the load, for as long as it is open.

Partitions assigned while paused arrive unpaused (librdkafka assigns them
after the callback returns): :meth:`Backpressure.assigned` makes the next
decision pause them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from service.delivery.edges import Consumer
from service.delivery.offsets import PartitionKey
from service.metrics import Metrics

log = structlog.get_logger(__name__)


class Backpressure:
    def __init__(
        self, consumer: Consumer, metrics: Metrics, limit: int, max_bytes: int = 0
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._limit = limit
        self._max_bytes = max_bytes
        self.paused = False
        self._repause = False

    def assigned(self) -> None:
        """New partitions arrive unpaused: pause them at the next decision if we are paused."""
        self._repause = self.paused

    def decide(
        self,
        buffered: int,
        unacknowledged: int,
        owned: Sequence[PartitionKey],
        *,
        hold: bool = False,
        compacting: tuple[int, int] | None = None,
    ) -> Callable[[], None] | None:
        """Whether to pause or resume: the consumer call to make (on the Kafka thread), if any.

        ``hold``: stay paused whatever the load (the dead-letter breaker is open).
        ``compacting``: a backlog is being compacted; ``(memory, others)``: the bytes the
        buffer holds, bounded by ``max_bytes`` in place of its records, and the records held
        elsewhere (a takeover's), still bounded by the limit with the dead letters.
        """
        self._metrics.buffered_records.set(buffered)
        parts = list(owned)
        repause, self._repause = self._repause, False
        if compacting is None:
            load = buffered + unacknowledged
            over, low = load >= self._limit, load <= self._limit // 2
        else:
            memory, others = compacting
            load = others + unacknowledged
            over = memory >= self._max_bytes or load >= self._limit
            low = memory <= self._max_bytes // 2 and load <= self._limit // 2
        if not self.paused and (over or hold):
            self.paused = True
            self._metrics.consumer_paused.set(1)
            log.info("consumer_paused", buffered=buffered, unacknowledged=unacknowledged, held=hold)
            return lambda: self._consumer.pause(parts)
        if self.paused and low and not hold:
            self.paused = False
            self._metrics.consumer_paused.set(0)
            log.info("consumer_resumed", buffered=buffered)
            return lambda: self._consumer.resume(parts)
        if self.paused and repause:
            return lambda: self._consumer.pause(parts)
        return None
