"""``customer-sync check``'s look at the data: the newest records, decoded as the service would.

A configuration can be right and still wrong for the data: a mapping that names no id column,
a connector that replaces NULLs by column defaults, a table whose large values go missing from
updates. The check reads the newest records of each source topic (a bounded sample, from the
end of each partition, never committing anything), decodes them with the service's decoder and
mapping, and says what it sees:

* how many would be delivered, skipped or dead-lettered, with the first reason; the check
  fails only when records arrive and *none* can become a customer (a wrong mapping), since
  a few bad records in a topic's history must not stop a rollout;
* whether NULLs survive the JSON converter. With schemas on, a column with a DEFAULT says so
  in the schema; a NULL seen in such a column proves ``replace.null.with.default=false``.
  Never seeing one proves nothing (a table may have no NULLs), so that is a warning,
  naming the columns and the setting;
* events without a schema (types are then guessed where the mapping states none), and
  unchanged TOASTed values (left out; ``REPLICA IDENTITY FULL`` carries them).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from service import errors
from service.delivery.broker_retry import watermarks
from service.delivery.debezium import UNAVAILABLE_VALUE
from service.delivery.decoding import Customer, Decoder, Reject, Skip

SAMPLE = 200
"""Records read per topic at most, spread over its partitions from their ends."""


@dataclass
class Sample:
    """What the newest records of one topic look like to the service."""

    records: int = 0
    customers: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    with_schema: int = 0
    defaulted: set[str] = field(default_factory=set)  # optional columns with a DEFAULT
    nulls_in_defaulted: set[str] = field(default_factory=set)
    unavailable: int = 0

    def add(self, value: bytes | None, decoder: Decoder) -> None:
        self.records += 1
        result = decoder.decode(value)
        if isinstance(result, Customer):
            self.customers += 1
        elif isinstance(result, Skip):
            self.skipped[result.reason] += 1
        elif isinstance(result, Reject):
            self.rejected[result.reason.value] += 1
            self.first_error = self.first_error or result.error
        if value is not None and value.startswith(b'{"schema":'):
            self._look_at(value)
        if value is not None and UNAVAILABLE_VALUE.encode() in value:
            self.unavailable += 1

    def _look_at(self, value: bytes) -> None:
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict) or not isinstance(event.get("schema"), dict):
            return
        self.with_schema += 1
        row_schema = _row_schema(event["schema"])
        payload = event.get("payload")
        row = payload.get("after") if isinstance(payload, dict) and "op" in payload else payload
        for column in row_schema:
            name = column.get("field")
            if column.get("optional") and "default" in column and isinstance(name, str):
                self.defaulted.add(name)
                if isinstance(row, dict) and name in row and row[name] is None:
                    self.nulls_in_defaulted.add(name)


def _row_schema(schema: dict[str, Any]) -> list[dict[str, Any]]:
    fields = schema.get("fields") or []
    for item in fields:
        if isinstance(item, dict) and item.get("field") == "after":
            fields = item.get("fields") or []
            break
    return [f for f in fields if isinstance(f, dict)]


def newest(config: dict[str, Any], topic: str, partitions: list[int], timeout: float) -> list[Any]:
    """Up to :data:`SAMPLE` of the newest values of ``topic``, read without a group's commit.

    Raises :class:`~service.errors.KafkaError` when the brokers cannot say where the
    partitions end within ``timeout`` (a transient answer is asked again until then).
    """
    consumer = Consumer({**config, "enable.auto.commit": False, "enable.partition.eof": True})
    values: list[Any] = []
    try:
        each = max(1, SAMPLE // max(1, len(partitions)))
        starts: list[TopicPartition] = []
        remaining: set[int] = set()
        for partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition), timeout)
            if high > low:
                starts.append(TopicPartition(topic, partition, max(low, high - each)))
                remaining.add(partition)
        if starts:
            consumer.assign(starts)
        read: Counter[int] = Counter()
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.1):
                error, partition = message.error(), message.partition() or 0
                if partition not in remaining:
                    continue
                if error is None:
                    values.append(message.value())
                    read[partition] += 1
                    if read[partition] >= each:  # a watermark can be off (Tansu's are)
                        remaining.discard(partition)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(partition)
    except KafkaException as exc:
        raise errors.KafkaError(f"reading the newest records of {topic} failed: {exc}") from exc
    finally:
        consumer.close()
    return values
