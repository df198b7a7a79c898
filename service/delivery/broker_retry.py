"""A one-off broker call, asked again while the answer is transient, then one clear sentence.

The service's long-lived clients ride out a broker that starts, elects a leader or moves a
group's coordinator: librdkafka retries produce, fetch and commits by itself, and the service
asks ``committed`` again (``consumer.committed_offsets``). A tool's or a test's single call gets
the broker's answer raw instead: ``get_watermark_offsets`` right after a topic was created
fails with NOT_LEADER_FOR_PARTITION while the new leader loads the partition (Apache Kafka
publishes the leader in its metadata before its replica manager serves it; a busy machine
widens that window to seconds), and the first ``committed`` on a fresh broker fails with
NOT_COORDINATOR while ``__consumer_offsets`` is created. :func:`with_broker_retry` asks again
until a deadline and then raises :class:`~service.errors.KafkaError` with one sentence.

What is transient: whatever librdkafka marks ``retriable()``, and the answers of a cluster
in motion (:data:`TRANSIENT`). What is not, and fails at once: everything else, above all an
unknown topic or partition (a typo in a setting must not cost a minute of retries; whoever
just created a topic waits for it where it creates it) and anything fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from service.errors import KafkaError

T = TypeVar("T")

TRANSIENT = frozenset(
    {
        # the group's coordinator is being created, loaded or moved
        RdKafkaError.NOT_COORDINATOR,
        RdKafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        RdKafkaError.COORDINATOR_NOT_AVAILABLE,
        RdKafkaError._WAIT_COORD,
        # a partition's leader is being elected, or has moved (NOT_LEADER_OR_FOLLOWER is 6 too)
        RdKafkaError.LEADER_NOT_AVAILABLE,
        RdKafkaError.NOT_LEADER_FOR_PARTITION,
        RdKafkaError.REPLICA_NOT_AVAILABLE,
        RdKafkaError.FENCED_LEADER_EPOCH,
        RdKafkaError.UNKNOWN_LEADER_EPOCH,
        RdKafkaError.OFFSET_NOT_AVAILABLE,
        RdKafkaError.NOT_CONTROLLER,
        # the broker is slow or out of reach for a moment
        RdKafkaError.REQUEST_TIMED_OUT,
        RdKafkaError._TIMED_OUT,
        RdKafkaError._TRANSPORT,
        RdKafkaError._ALL_BROKERS_DOWN,
        RdKafkaError.NETWORK_EXCEPTION,
        RdKafkaError.BROKER_NOT_AVAILABLE,
    }
)
NEVER_TRANSIENT = frozenset(
    {
        RdKafkaError.UNKNOWN_TOPIC_OR_PART,
        RdKafkaError._UNKNOWN_TOPIC,
        RdKafkaError._UNKNOWN_PARTITION,
    }
)
"""Unknown topics fail at once, whatever librdkafka's ``retriable()`` says of them."""

NO_ANSWER = frozenset(
    {RdKafkaError._TRANSPORT, RdKafkaError._ALL_BROKERS_DOWN, RdKafkaError._TIMED_OUT}
)
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 0.5


class BrokerCallFailed(KafkaError):
    """A broker call that failed: at once (``transient`` false) or at its deadline.

    ``name`` and ``reason`` are librdkafka's (``NOT_LEADER_FOR_PARTITION``, "Broker: Not
    leader for partition"), for a tool that words the sentence its own way.
    """

    def __init__(self, message: str, *, name: str, reason: str, transient: bool) -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason
        self.transient = transient


def is_transient(error: object) -> bool:
    """Whether asking again later can get another answer (``error``: librdkafka's KafkaError)."""
    if not isinstance(error, RdKafkaError):
        return False
    if error.fatal() or error.code() in NEVER_TRANSIENT:
        return False
    return error.retriable() or error.code() in TRANSIENT


def ask_again_if_transient(error: RdKafkaError | None) -> None:
    """Raise a topic's or partition's metadata error when it is transient, so that
    :func:`with_broker_retry` asks again (a new topic says LEADER_NOT_AVAILABLE for a while)."""
    if error is not None and is_transient(error):
        raise KafkaException(error)


def with_broker_retry(call: Callable[[float], T], *, what: str, timeout: float) -> T:
    """``call(seconds_left)``, asked again while it raises a transient ``KafkaException``.

    Each attempt is given the time left, so the whole never takes much more than ``timeout``;
    the pause between attempts grows from 50 ms to 0.5 s. Raises :class:`BrokerCallFailed`,
    one sentence starting with ``what`` (say "reading the end of orders[2]"), at once for an
    answer that is not transient, and once ``timeout`` is spent for one that is. Other
    exceptions pass through.
    """
    deadline = time.monotonic() + timeout
    pause = RETRY_FIRST_SECONDS
    while True:
        try:
            return call(max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            name, reason = _describe(error)
            if not is_transient(error):
                raise BrokerCallFailed(
                    f"{what} failed: {reason} ({name})", name=name, reason=reason, transient=False
                ) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                code = error.code() if isinstance(error, RdKafkaError) else None
                problem = (
                    f"no answer from the brokers within {timeout:g} s ({reason})"
                    if code in NO_ANSWER
                    else f"the brokers still answered {name} ({reason}) after {timeout:g} s"
                )
                raise BrokerCallFailed(
                    f"{what} failed: {problem}", name=name, reason=reason, transient=True
                ) from exc
        time.sleep(min(pause, left))
        pause = min(pause * 2, RETRY_MAX_SECONDS)


def watermarks(consumer: Consumer, partition: TopicPartition, timeout: float) -> tuple[int, int]:
    """A partition's low and high watermarks, asked of its leader (not the client's cache)."""

    def ask(left: float) -> tuple[int, int]:
        low, high = consumer.get_watermark_offsets(partition, timeout=left, cached=False)
        return int(low), int(high)

    where = f"{partition.topic}[{partition.partition}]"
    return with_broker_retry(ask, what=f"reading the end of {where}", timeout=timeout)


def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout: float
) -> list[TopicPartition]:
    """The committed offsets of ``consumer``'s group (it need not join it)."""

    def ask(left: float) -> list[TopicPartition]:
        found: list[TopicPartition] = consumer.committed(partitions, timeout=left)
        return found

    return with_broker_retry(ask, what="reading the committed offsets", timeout=timeout)


def _describe(error: object) -> tuple[str, str]:
    if isinstance(error, RdKafkaError):
        return error.name(), error.str()
    return type(error).__name__, str(error)
