"""``customer-sync dlq inspect`` and ``dlq replay``: read the dead-letter topic, send records home.

Dead letters keep the original key and value bytes and carry their context in
``dlq.*`` headers (SPEC §5), so a replay is a plain re-produce of those bytes
to ``dlq.source.topic`` once whatever rejected them is fixed.

Decisions worth knowing:

* **Time filters** (``--since``/``--until``) apply to the dead-letter record's
  own Kafka timestamp, i.e. *when it was dead-lettered*: the question an
  operator asks after an incident ("replay what failed between 09:00 and
  09:40"). The source record's time is shown by ``inspect``.
* **Replay goes to the original partition** (``dlq.source.partition``) when the
  source topic still has it, with the original key: the upstream producer's
  partitioner (Java's murmur2 for Debezium) is not librdkafka's default, so
  letting our producer pick would move a customer to another partition and
  lose its ordering relative to its later changes.
* **Its own consumer group** records how far a replay got: ``<KAFKA_GROUP_ID>.dlq-replay``,
  suffixed with a digest of the filters when there are any, so "replay the
  rejected records" run twice replays them once, and a filtered replay does
  not hide the records it skipped from a later, different one. Offsets are
  committed only after the producer acknowledged every record read so far
  (idempotent producer, ``acks=all``): a crash replays again, never loses.
* **Where reading stops** is the end of the topic as it was when the command
  started, decided per partition. The high watermark taken at the start is
  the bound on real Kafka, but Tansu (the embedded broker) under-reports it
  as "first offset of the last producer batch + 1", and the service's
  dead-letter producer lingers 20 ms, so batches often hold several records.
  So a partition is finished when it reached the start-time watermark *and*
  either (a) a record dead-lettered after the command started shows up (it is
  not processed: the next run takes it), or (b) the fetch has been idle for
  ``IDLE_SECONDS``. On real Kafka (a) keeps a busy topic from making the
  command run forever; on Tansu (b) picks up the rest of the last batch. A
  dead-letter record whose producer's clock ran ahead is merely left for the
  next run, never lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from service.config import Settings
from service.delivery.broker_retry import (
    BrokerCallFailed,
    ask_again_if_transient,
    committed_offsets,
    watermarks,
    with_broker_retry,
)
from service.errors import KafkaError
from service.labels import DeadLetterReason
from service.tools.check import admin_config

IDLE_SECONDS = 1.0
STALL_SECONDS = 15.0
METADATA_TIMEOUT_SECONDS = 10.0
COMMIT_EVERY = 5000
"""Replayed records between two recorded positions (each after a producer flush)."""


# ------------------------------------------------------------------ records and filters


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "unknown")

    @property
    def source_topic(self) -> str | None:
        return self.headers.get("dlq.source.topic") or None

    @property
    def source_partition(self) -> int | None:
        value = self.headers.get("dlq.source.partition", "")
        return int(value) if value.isdigit() else None


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-11-23T09:00``, ``...Z``, ``+02:00``; naive means UTC) or epoch ms."""
    stripped = text.strip()
    if stripped.isdigit():
        return int(stripped)
    try:
        moment = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time (2026-11-23T09:00:00Z) nor epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def reason_arg(text: str) -> str:
    known = {r.value for r in DeadLetterReason}
    if text not in known:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(sorted(known))}")
    return text


@dataclass(frozen=True, slots=True)
class Filters:
    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    source_topics: frozenset[str] = frozenset()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filters:
        return cls(
            frozenset(args.reason or ()),
            args.since,
            args.until,
            frozenset(args.source_topic or ()),
        )

    def matches(self, record: DeadLetterRecord) -> bool:
        if self.reasons and record.reason not in self.reasons:
            return False
        if self.source_topics and record.source_topic not in self.source_topics:
            return False
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or record.timestamp_ms < self.until_ms

    def digest(self) -> str:
        """A stable name for this selection ('' when it selects everything)."""
        if self == Filters():
            return ""
        canonical = "|".join(
            [
                ",".join(sorted(self.reasons)),
                str(self.since_ms),
                str(self.until_ms),
                ",".join(sorted(self.source_topics)),
            ]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def replay_group(settings: Settings, filters: Filters) -> str:
    digest = filters.digest()
    return f"{settings.kafka_group_id}.dlq-replay" + (f".{digest}" if digest else "")


# ------------------------------------------------------------------ reading


def _headers(
    raw: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> dict[str, str]:
    """Header values as text; a duplicate key keeps its last value."""
    pairs = list(raw.items()) if isinstance(raw, dict) else raw or []
    decoded: dict[str, str] = {}
    for name, value in pairs:
        if isinstance(value, bytes):
            decoded[name] = value.decode("utf-8", "replace")
        else:
            decoded[name] = value or ""
    return decoded


@dataclass(slots=True)
class _Partition:
    start: int
    end_at_start: int
    position: int
    finished: bool = False


@dataclass(slots=True)
class Reader:
    """Reads every partition of the dead-letter topic from a start offset to its end-at-start.

    See the module docstring for how the end is detected.
    """

    settings: Settings
    group: str | None
    idle_seconds: float = IDLE_SECONDS
    stall_seconds: float = STALL_SECONDS
    timeout: float = METADATA_TIMEOUT_SECONDS
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    partitions: dict[int, _Partition] = field(default_factory=dict)
    _consumer: Consumer | None = None

    def open(self) -> None:
        config = {
            **admin_config(self.settings),
            "group.id": self.group or f"{self.settings.kafka_group_id}.dlq-inspect-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
        self._consumer = Consumer(config)
        self._assign(self._consumer)

    def _assign(self, consumer: Consumer) -> None:
        """Every partition from its start; raises :class:`KafkaError`, one sentence, when the
        brokers cannot answer within ``timeout`` (transient answers are asked again)."""
        topic = self.settings.kafka_dlq_topic

        def lookup(left: float) -> Any:
            found = consumer.list_topics(topic, timeout=left).topics.get(topic)
            if found is not None:
                ask_again_if_transient(found.error)
            return found

        try:
            found = with_broker_retry(lookup, what=f"looking up {topic}", timeout=self.timeout)
        except BrokerCallFailed as exc:
            raise KafkaError(
                f"no answer from {self.settings.kafka_bootstrap_servers} within "
                f"{self.timeout:g} s ({exc.reason}); "
                "run `customer-sync check` to see what is wrong"
            ) from None
        if found is None or found.error is not None or not found.partitions:
            raise KafkaError(
                f"the dead-letter topic {topic!r} does not exist (KAFKA_DLQ_TOPIC); "
                "check the setting, or `customer-sync check` for the command that creates it"
            )
        parts = [TopicPartition(topic, p) for p in sorted(found.partitions)]
        starts = {p.partition: OFFSET_BEGINNING for p in parts}
        if self.group is not None:
            for tp in committed_offsets(consumer, parts, self.timeout):
                if tp.offset >= 0:
                    starts[tp.partition] = tp.offset
        assign = []
        for tp in parts:
            low, high = watermarks(consumer, tp, self.timeout)
            start = starts[tp.partition]
            start = low if start == OFFSET_BEGINNING else max(start, low)
            self.partitions[tp.partition] = _Partition(start, high, start)
            assign.append(TopicPartition(topic, tp.partition, start))
        consumer.assign(assign)

    @property
    def expected(self) -> int:
        """Records between the start and the end-at-start (a lower bound on Tansu)."""
        return sum(max(0, p.end_at_start - p.start) for p in self.partitions.values())

    def records(self) -> Iterator[DeadLetterRecord]:
        consumer = self._require()
        last_message = time.monotonic()
        while not all(p.finished for p in self.partitions.values()):
            messages = consumer.consume(num_messages=500, timeout=0.2)
            if not messages:
                idle = time.monotonic() - last_message
                if idle >= self.idle_seconds:
                    self._finish_reached()
                    if idle >= self.stall_seconds:
                        self._stalled()
                continue
            last_message = time.monotonic()
            for msg in messages:
                partition, offset = msg.partition(), msg.offset()
                if msg.error() or partition is None or offset is None:
                    continue
                part = self.partitions[partition]
                if part.finished:
                    continue
                timestamp = msg.timestamp()[1]
                if offset >= part.end_at_start and timestamp > self.started_ms:
                    part.finished = True  # dead-lettered after we started: the next run's
                    consumer.pause([TopicPartition(self.settings.kafka_dlq_topic, partition)])
                    continue
                part.position = offset + 1
                yield DeadLetterRecord(
                    partition, offset, timestamp, msg.key(), msg.value(), _headers(msg.headers())
                )

    def _finish_reached(self) -> None:
        """Idle: every partition at (or past) its end-at-start is finished.

        The consumer's own position counts too: it steps over offsets that
        never reach the application (transaction markers, compacted gaps).
        """
        topic = self.settings.kafka_dlq_topic
        open_parts = [p for p, part in self.partitions.items() if not part.finished]
        try:
            positions = self._require().position([TopicPartition(topic, p) for p in open_parts])
        except KafkaException:
            positions = []
        for tp in positions:
            part = self.partitions[tp.partition]
            part.position = max(part.position, tp.offset)
        for part in self.partitions.values():
            part.finished = part.finished or part.position >= part.end_at_start

    def _stalled(self) -> None:
        behind = {
            p: (part.position, part.end_at_start)
            for p, part in self.partitions.items()
            if not part.finished
        }
        where = ", ".join(f"partition {p} at {pos} of {end}" for p, (pos, end) in behind.items())
        raise KafkaError(
            f"reading {self.settings.kafka_dlq_topic} stalled ({where}) for "
            f"{self.stall_seconds:g} s; what was read is kept, run the command again"
        )

    def commit(self) -> None:
        """Record the position of every partition in the reader's group (synchronous)."""
        topic = self.settings.kafka_dlq_topic
        offsets = [TopicPartition(topic, p, part.position) for p, part in self.partitions.items()]
        consumer = self._require()
        try:
            # The same offsets again after a transient answer (a loading coordinator): idempotent.
            results = with_broker_retry(
                lambda _left: consumer.commit(offsets=offsets, asynchronous=False) or [],
                what="recording the replay position",
                timeout=self.timeout,
            )
        except KafkaError as exc:
            raise KafkaError(
                f"{exc}; the records are replayed (acknowledged): a new run would replay them again"
            ) from None
        failed = [r for r in results if r.error]
        if failed:
            raise KafkaError(f"could not record the replay position: {failed[0].error}")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _require(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("Reader.open() was not called")
        return self._consumer
