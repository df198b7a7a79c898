"""``consumer_lag_records``: each owned partition's high watermark minus its committed offset.

The high watermarks are the ones librdkafka caches from its fetch responses,
read on the Kafka thread every ``LAG_INTERVAL`` (no round trip to a broker).
The committed offset is the last one the group coordinator acknowledged to
this instance. The same reading tells a takeover whose window's last offsets
never come (compacted away, or a transaction marker at the partition's end)
that it has caught up with the log: the consumer's position, read with it,
has reached the high watermark.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.delivery.consumer import KafkaThread
from service.delivery.offsets import OffsetTracker, PartitionKey
from service.delivery.takeover import Takeovers
from service.metrics import Metrics

LAG_INTERVAL = 5.0


class Lag:
    def __init__(
        self,
        high_watermark: Callable[[PartitionKey], int | None],
        offsets: OffsetTracker,
        takeovers: Takeovers,
        metrics: Metrics,
        position: Callable[[PartitionKey], int | None] = lambda _tp: None,
    ) -> None:
        self._high_watermark = high_watermark
        self._position = position
        self._offsets = offsets
        self._takeovers = takeovers
        self._metrics = metrics
        self._last = 0.0

    async def refresh(self, kafka: KafkaThread, owned: set[PartitionKey]) -> bool:
        """Every ``LAG_INTERVAL``: read the high watermarks on the Kafka thread, then update.

        Returns whether it was due (the fetch loop paces its other periodic checks by it).
        """
        now = time.monotonic()
        if now - self._last < LAG_INTERVAL:
            return False
        self._last = now
        partitions = sorted(owned)
        highs = await kafka.call(self.read, partitions)
        taken_over = [tp for tp in partitions if tp in self._takeovers]
        positions = await kafka.call(self.positions, taken_over) if taken_over else {}
        self.update(dict(zip(partitions, highs, strict=True)), owned, positions)
        return True

    def read(self, partitions: list[PartitionKey]) -> list[int | None]:
        """On the Kafka thread: the cached high watermark of each partition."""
        return [self._high_watermark(tp) for tp in partitions]

    def positions(self, partitions: list[PartitionKey]) -> dict[PartitionKey, int | None]:
        """On the Kafka thread: the consumer's position in each partition being taken over."""
        return {tp: self._position(tp) for tp in partitions}

    def update(
        self,
        highs: dict[PartitionKey, int | None],
        owned: set[PartitionKey],
        positions: dict[PartitionKey, int | None] | None = None,
    ) -> None:
        for tp, high in highs.items():
            if tp not in owned or high is None:
                continue
            if tp in self._takeovers:
                self._takeovers.caught_up(tp, high, (positions or {}).get(tp))
            committed = self._offsets.committed_offset(tp)
            if committed is not None:
                self._metrics.consumer_lag.labels(topic=tp[0], partition=str(tp[1])).set(
                    max(0, high - committed)
                )
