"""A record's bytes read again from its source offset: for a dead letter whose value was left in
Kafka while a backlog was compacted (``compaction.py``).

A compacted change keeps its encoded API item, not the source value (a Debezium envelope is
one to five kilobytes; the item a few hundred bytes). The dead-letter topic promises the
original bytes, so the rare change the API rejects is read again: a consumer of its own
(``assign``, never ``subscribe``: it joins no group and commits nothing; librdkafka still
wants a ``group.id``, the service's with ``.reread``), created at the first
read and kept, positioned at the offset, one record fetched.
"""

from __future__ import annotations

import threading
import time

import structlog
from confluent_kafka import Consumer, KafkaError, TopicPartition

from service.delivery.consumer import raise_if_fatal

log = structlog.get_logger(__name__)

READ_TIMEOUT = 30.0
"""Seconds one read may take before it gives up (the broker unreachable, say): the dead letter
then goes without its value, with its coordinates, rather than holding the partition."""
_GROUP_ONLY = ("group.id", "group.protocol", "group.instance.id", "partition.assignment.strategy")


class SourceReader:
    """Reads single records back by offset; blocking, so call it from a thread."""

    def __init__(self, config: dict[str, str | int | bool]) -> None:
        self._config = {k: v for k, v in config.items() if k not in _GROUP_ONLY}
        # librdkafka wants a group id; with assign() and no commit none is joined or written.
        self._config.update(
            {
                "group.id": f"{config.get('group.id', 'customer-sync')}.reread",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()  # one read at a time: the consumer is positioned per read

    def read(
        self, topic: str, partition: int, offset: int, timeout: float = READ_TIMEOUT
    ) -> tuple[bytes | None, bytes | None] | None:
        """``(key, value)`` of the record at ``offset``, or ``None`` if it is gone (retention,
        compaction) or could not be read within ``timeout``."""
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._config)
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, offset)])
            try:
                deadline = time.monotonic() + timeout
                while (left := deadline - time.monotonic()) > 0:
                    message = consumer.poll(min(1.0, left))
                    if message is None:
                        continue
                    error = message.error()
                    if error is not None:
                        raise_if_fatal(error)
                        if error.code() == KafkaError._PARTITION_EOF:
                            return None  # nothing at or past the offset: it is gone
                        log.warning("reread_error", error=error.str(), topic=topic)
                        continue
                    found = message.offset()
                    if found == offset:
                        return message.key(), message.value()
                    return None  # the log moved past it (compacted or deleted)
                return None
            finally:
                consumer.unassign()

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
