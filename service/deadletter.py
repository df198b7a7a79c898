"""The dead-letter topic: original bytes, context in headers, settled on acknowledgement.

A record counts as dead-lettered only when the broker acknowledged its copy
(idempotent producer, ``acks=all``): that acknowledgement is what lets the
source offset move past it. A delivery that fails after librdkafka's own
retries is produced again rather than given up: dropping it would lose the
record, and duplicates in the dead-letter topic are the lesser harm.

Delivery callbacks run inside :meth:`DeadLetterWriter.poll`, which the
pipeline calls from its event loop, so they touch pipeline state on one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Message as RdMessage
from confluent_kafka import Producer

from service.metrics import Metrics
from service.records import DeadLetterReason

log = structlog.get_logger(__name__)

_ERROR_TEXT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record on its way to the dead-letter topic, with everything its headers say."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    reason: DeadLetterReason
    error: str
    attempts: int = 0
    job_id: str | None = None
    generation: int = 0  # the partition assignment the record was consumed under

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.reason", self.reason.value.encode()),
            ("dlq.error", self.error[:_ERROR_TEXT_LIMIT].encode("utf-8", "replace")),
            ("dlq.source.topic", self.topic.encode()),
            ("dlq.source.partition", str(self.partition).encode()),
            ("dlq.source.offset", str(self.offset).encode()),
            ("dlq.source.timestamp", str(self.timestamp_ms).encode()),
            ("dlq.attempts", str(self.attempts).encode()),
        ]
        if self.job_id is not None:
            headers.append(("dlq.job.id", self.job_id.encode()))
        return headers


OnWritten = Callable[[DeadLetter], None]


class DeadLetterWriter:
    def __init__(
        self,
        config: dict[str, str | int | bool],
        topic: str,
        *,
        metrics: Metrics,
        on_written: OnWritten,
    ) -> None:
        self._config = config
        self._topic = topic
        self._metrics = metrics
        self._on_written = on_written
        self._producer: Producer | None = None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Dead letters produced and not yet acknowledged."""
        return self._in_flight

    def start(self) -> None:
        self._producer = Producer({**self._config, "error_cb": self._on_error})

    def send(self, letter: DeadLetter) -> None:
        producer = self._require()
        while True:
            try:
                producer.produce(
                    self._topic,
                    key=letter.key,
                    value=letter.value,
                    headers=letter.headers(),
                    on_delivery=lambda err, msg: self._delivered(letter, err, msg),
                )
                break
            except BufferError:
                # The local queue is full: serve callbacks to make room. Bounded
                # by the broker's pace; the consumer is paused meanwhile by the
                # pipeline's own backpressure.
                producer.poll(0.1)
        self._in_flight += 1

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many ran."""
        if self._producer is None:
            return 0
        served: int = self._producer.poll(timeout)
        return served

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries (callbacks run here); returns how many remain."""
        if self._producer is None:
            return 0
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            self._producer.flush(max(0.0, min(1.0, deadline - time.monotonic())))
        return self._in_flight

    def close(self, timeout: float) -> int:
        """Flush, then destroy the producer now rather than whenever the GC gets to it.

        Returns how many dead letters were still unacknowledged: their source
        records stay unsettled, so the next owner re-reads and re-routes them.
        """
        remaining = self.flush(timeout)
        self._producer = None  # the last reference: librdkafka closes its connections here
        return remaining

    def _delivered(self, letter: DeadLetter, err: RdKafkaError | None, _msg: RdMessage) -> None:
        self._in_flight -= 1
        if err is not None:
            log.error(
                "dead_letter_delivery_failed",
                error=err.str(),
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                retrying=True,
            )
            self.send(letter)
            return
        self._metrics.dead_letter_by_reason[letter.reason].inc()
        self._on_written(letter)

    def _require(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("DeadLetterWriter.start() was not called")
        return self._producer

    @staticmethod
    def _on_error(error: RdKafkaError) -> None:
        log.warning("dead_letter_producer_error", error=error.str(), code=error.name())
