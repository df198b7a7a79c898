"""The dead-letter topic: original bytes, context in headers, settled on acknowledgement.

A record counts as dead-lettered only when the broker acknowledged its copy
(idempotent producer, ``acks=all``): that acknowledgement is what lets the
source offset move past it. A delivery that fails after librdkafka's own
retries is produced again rather than given up: dropping it would lose the
record, and duplicates in the dead-letter topic are the lesser harm.

A record too large for the dead-letter topic (librdkafka's
``message.max.bytes`` on the client, the topic's ``max.message.bytes`` on the
broker) cannot be copied as is, and retrying would never succeed: it is
dead-lettered *without its value*, with ``dlq.value.omitted`` giving the
original size, so the partition moves on and the record can still be found
at its source coordinates. Raise ``KAFKA_CLIENT_MESSAGE_MAX_BYTES`` (and the
topic's limit) to keep such values.

A record whose value was left in Kafka while a backlog was compacted (``value_in_source``)
is read again from its offset first (``reread.py``, in a thread); should that fail (the
record is gone, or the broker does not answer in time) it is dead-lettered without its value,
like a value too large.

Delivery callbacks run inside :meth:`DeadLetterWriter.poll`, which the
pipeline calls from its event loop, so they touch pipeline state on one thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer
from confluent_kafka import Message as RdMessage

from service.delivery.edges import DeadLetterProducer, ProducerFactory
from service.labels import DeadLetterReason
from service.logs import FoldedLog, LibrdkafkaLog
from service.metrics import Metrics

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
    omitted_bytes: int | None = None  # the value was too large for the dead-letter topic
    value_in_source: bool = False  # left in Kafka (compaction.py): read it again to send it
    on_settled: Callable[[], None] | None = None  # once acknowledged (jobs.py, outcome_unknown)

    def without_value(self) -> DeadLetter:
        size = len(self.value or b"")
        return dataclasses.replace(
            self,
            value=None,
            omitted_bytes=size,
            error=f"{self.error} [value of {size} bytes omitted: larger than the "
            "dead-letter topic accepts; read it at its source offset]",
        )

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
        if self.omitted_bytes is not None:
            headers.append(("dlq.value.omitted", str(self.omitted_bytes).encode()))
        return headers


OnWritten = Callable[[DeadLetter], None]
Reread = Callable[[str, int, int], "tuple[bytes | None, bytes | None] | None"]
"""``(topic, partition, offset)`` → the record's ``(key, value)``, or ``None`` if it cannot be
read (``reread.SourceReader.read``): blocking, called in a thread."""


def _written_nowhere(_letter: DeadLetter) -> None:
    raise RuntimeError("DeadLetterWriter.start() was not called")


class DeadLetterWriter:
    def __init__(
        self,
        config: dict[str, str | int | bool],
        topic: str,
        *,
        metrics: Metrics,
        producer: ProducerFactory | None = None,
        reread: Reread | None = None,
        topics: dict[str, str] | None = None,
    ) -> None:
        self._config = config
        self._topics = topics or {}  # source topic -> its route's dead-letter topic
        self._reread = reread
        self._rereads: set[asyncio.Task[None]] = set()
        self._rereading = 0  # letters whose value is being read again, not yet produced
        self._topic = topic
        self._metrics = metrics
        self._new_producer: ProducerFactory = producer or Producer
        self._on_written: OnWritten = _written_nowhere
        self._producer: DeadLetterProducer | None = None
        self._in_flight = 0
        self._folded = FoldedLog(log)

    @property
    def in_flight(self) -> int:
        """Dead letters produced, or being read again to be, and not yet acknowledged."""
        return self._in_flight + self._rereading

    def start(self, on_written: OnWritten) -> None:
        """Create the producer; ``on_written`` hears of each acknowledged dead letter."""
        self._on_written = on_written
        self._producer = self._new_producer(
            {**self._config, "error_cb": self._on_error, "logger": LibrdkafkaLog(self._folded)}
        )

    def send(self, letter: DeadLetter) -> None:
        if letter.value_in_source:
            self._rereading += 1
            task = asyncio.get_running_loop().create_task(self._send_reread(letter))
            self._rereads.add(task)
            task.add_done_callback(self._rereads.discard)
            return
        producer = self._require()
        while True:
            try:
                producer.produce(
                    self._topics.get(letter.topic, self._topic),
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
            except KafkaException as exc:
                if not _too_large(exc.args[0], letter):
                    raise
                self._omit_value(letter)
                return
        self._in_flight += 1

    async def _send_reread(self, letter: DeadLetter) -> None:
        read = None
        if self._reread is not None:
            try:
                read = await asyncio.to_thread(
                    self._reread, letter.topic, letter.partition, letter.offset
                )
            except Exception:
                log.exception("dead_letter_reread_failed", offset=letter.offset)
        self._rereading -= 1
        if read is None:
            log.error(
                "dead_letter_value_unreadable",
                topic=letter.topic,
                partition=letter.partition,
                offset=letter.offset,
                hint="the record could not be read again from its source offset (gone, or "
                "the broker did not answer): dead-lettered without its value",
            )
            self.send(
                dataclasses.replace(
                    letter,
                    value_in_source=False,
                    error=f"{letter.error} [value not read again from the source topic]",
                )
            )
            return
        key, value = read
        self.send(dataclasses.replace(letter, key=key, value=value, value_in_source=False))

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
        return self.in_flight

    def close(self, timeout: float) -> int:
        """Flush, then destroy the producer now rather than whenever the GC gets to it.

        Returns how many dead letters were still unacknowledged: their source
        records stay unsettled, so the next owner re-reads and re-routes them.
        """
        remaining = self.flush(timeout)
        for task in self._rereads:
            task.cancel()
        self._producer = None  # the last reference: librdkafka closes its connections here
        return remaining

    def _delivered(self, letter: DeadLetter, err: RdKafkaError | None, _msg: RdMessage) -> None:
        self._in_flight -= 1
        if err is not None and _too_large(err, letter):
            self._omit_value(letter)
            return
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

    def _omit_value(self, letter: DeadLetter) -> None:
        log.error(
            "dead_letter_value_too_large",
            bytes=len(letter.value or b""),
            topic=letter.topic,
            partition=letter.partition,
            offset=letter.offset,
            hint="raise KAFKA_CLIENT_MESSAGE_MAX_BYTES and the topic's max.message.bytes",
        )
        self.send(letter.without_value())

    def _require(self) -> DeadLetterProducer:
        if self._producer is None:
            raise RuntimeError("DeadLetterWriter.start() was not called")
        return self._producer

    def _on_error(self, error: RdKafkaError) -> None:
        self._folded("warning", "dead_letter_producer_error", error.str(), code=error.name())


def _too_large(error: RdKafkaError, letter: DeadLetter) -> bool:
    """Too large for the dead-letter topic, and there is still a value to leave out."""
    return letter.value is not None and error.code() in (
        RdKafkaError.MSG_SIZE_TOO_LARGE,
        RdKafkaError.INVALID_RECORD,
    )
