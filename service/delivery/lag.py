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
        position: Callable[[PartitionKey], int | None],
        offsets: OffsetTracker,
        takeovers: Takeovers,
        metrics: Metrics,
    ) -> None:
        self._high_watermark = high_watermark
        self._position = position
        self._offsets = offsets
        self._takeovers = takeovers
        self._metrics = metrics
        self._last = 0.0
        self.unread = 0
        self._caught_up: list[tuple[PartitionKey, int, int | None]] = []
        self.known = False
        """Whether the last reading knew every owned partition's high watermark (librdkafka
        learns it from the partition's first fetch response) and position: then ``unread``
        counts them all."""
        """Records of the owned partitions not yet consumed, as of the last reading (compaction
        weighs them against the budget): each one's high watermark minus the consumer's
        position (before the first fetch, the committed offset; unknown: not counted)."""

    def tell_takeovers(self) -> None:
        """After the fetch read with the last reading is ingested: the takeovers' partitions'
        high watermark and position. Not before: a takeover told the consumer's position (past
        that fetch) while its records are still to be ingested would finish without them."""
        readings, self._caught_up = self._caught_up, []
        for tp, high, position in readings:
            if tp in self._takeovers:
                self._takeovers.caught_up(tp, high, position)

    def soon(self) -> None:
        """Read at the next :meth:`refresh`, whatever the interval."""
        self._last = 0.0

    async def refresh(
        self, kafka: KafkaThread, owned: set[PartitionKey], *, now: bool = False
    ) -> bool:
        """Every ``LAG_INTERVAL``, at every call until every owned partition's high watermark
        is known, and whenever ``now``: read them on the Kafka thread, then update.

        Returns whether it was due (the fetch loop paces its other periodic checks by it).
        """
        if not now and time.monotonic() - self._last < LAG_INTERVAL and self.known:
            return False
        self._last = time.monotonic()
        partitions = sorted(owned)
        read = await kafka.call(self.read, partitions)
        highs = {tp: high for tp, (high, _) in zip(partitions, read, strict=True)}
        positions = {tp: position for tp, (_, position) in zip(partitions, read, strict=True)}
        self.update(highs, owned, positions)
        return True

    def read(self, partitions: list[PartitionKey]) -> list[tuple[int | None, int | None]]:
        """On the Kafka thread: the cached high watermark and the position of each partition."""
        return [(self._high_watermark(tp), self._position(tp)) for tp in partitions]

    def update(
        self,
        highs: dict[PartitionKey, int | None],
        owned: set[PartitionKey],
        positions: dict[PartitionKey, int | None] | None = None,
    ) -> None:
        unread = 0
        known = all(highs.get(tp) is not None for tp in owned)
        self._caught_up = []
        for tp, high in highs.items():
            if tp not in owned or high is None:
                continue
            position = (positions or {}).get(tp)
            if position is None:
                position = self._offsets.committed_offset(tp)
            if position is None and high == 0:  # an empty partition: nothing to read there
                position = 0
            if position is None:
                known = False
            else:
                unread += max(0, high - position)
            if tp in self._takeovers:  # told once the fetch read with this is ingested
                self._caught_up.append((tp, high, (positions or {}).get(tp)))
            committed = self._offsets.committed_offset(tp)
            if committed is not None:
                self._metrics.consumer_lag.labels(topic=tp[0], partition=str(tp[1])).set(
                    max(0, high - committed)
                )
        self.unread = unread
        self.known = known
