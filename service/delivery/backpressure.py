"""Bounded memory: pause the consumer when the buffer is full, resume at half (SPEC §2).

What counts is everything held in memory on its way out: records buffered
for a batch, records a takeover holds back, and dead letters not yet
acknowledged. Pausing keeps the group membership (``consume`` is still
called, and returns nothing for paused partitions), so a full buffer never
costs a rebalance. Resuming at half, not just below the limit, keeps the
consumer from flapping.

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
    def __init__(self, consumer: Consumer, metrics: Metrics, limit: int) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._limit = limit
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
    ) -> Callable[[], None] | None:
        """Whether to pause or resume: the consumer call to make (on the Kafka thread), if any.

        ``hold``: stay paused whatever the load (the dead-letter breaker is open).
        """
        self._metrics.buffered_records.set(buffered)
        load = buffered + unacknowledged
        parts = list(owned)
        repause, self._repause = self._repause, False
        if not self.paused and (load >= self._limit or hold):
            self.paused = True
            self._metrics.consumer_paused.set(1)
            log.info("consumer_paused", buffered=buffered, unacknowledged=unacknowledged, held=hold)
            return lambda: self._consumer.pause(parts)
        if self.paused and load <= self._limit // 2 and not hold:
            self.paused = False
            self._metrics.consumer_paused.set(0)
            log.info("consumer_resumed", buffered=buffered)
            return lambda: self._consumer.resume(parts)
        if self.paused and repause:
            return lambda: self._consumer.pause(parts)
        return None
