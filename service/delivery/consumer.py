"""The Kafka edge: a thin typed adapter over confluent-kafka's consumer.

The client is created lazily in :meth:`SourceConsumer.start`, never in a
constructor. Every call that blocks on librdkafka (``consume``, ``close``)
runs on one dedicated thread so the event loop keeps polling jobs; librdkafka
invokes the rebalance callbacks on that thread, inside ``consume``, and the
rebalance handler hands them to the loop (see ``rebalance.py``). Every other
consumer call (``commit``, ``pause``, ``resume``, watermarks) runs on that
thread too, between two ``consume`` calls: made from another thread while a
rebalance callback is being served, librdkafka holds them, and the threads
deadlock. :class:`KafkaThread` is that thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from service.delivery.edges import (
    BrokerStateCallback,
    CommitCallback,
    Message,
    RebalanceCallback,
)
from service.delivery.offsets import PartitionKey as TP
from service.errors import KafkaError
from service.logs import FoldedLog, LibrdkafkaLog

log = structlog.get_logger(__name__)


P = ParamSpec("P")
T = TypeVar("T")


class KafkaThread:
    """The one thread every consumer call runs on, awaited from the event loop."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")

    async def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


_BROKER_DOWN = frozenset({RdKafkaError._TRANSPORT, RdKafkaError._ALL_BROKERS_DOWN})
_COORDINATOR_MOVING = frozenset(
    {
        RdKafkaError.NOT_COORDINATOR,
        RdKafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        RdKafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)
COORDINATOR_RETRY_SECONDS = 0.1
BROKER_PROBE_TIMEOUT = 0.5
PARTITION_COUNT_TIMEOUT = 2.0


class SourceConsumer:
    """The :class:`~service.delivery.edges.Consumer` on confluent-kafka."""

    def __init__(self, config: dict[str, str | int | bool], topics: Sequence[str]) -> None:
        self._config = config
        self._topics = list(topics)
        self._on_committed: CommitCallback | None = None
        self._on_broker_state: BrokerStateCallback | None = None
        self.broker_ok = True
        self.partition_counts: dict[str, int] = {}
        """Partitions of each source topic, as of the last assignment (the budget's denominator)."""
        self._consumer: Consumer | None = None
        self._folded = FoldedLog(log)
        self._fatal: RdKafkaError | None = None

    @property
    def _client(self) -> Consumer:
        if self._consumer is None:
            raise KafkaError("the consumer is not started")
        return self._consumer

    def start(
        self,
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_committed: CommitCallback,
        on_broker_state: BrokerStateCallback,
    ) -> None:
        """Create the client and subscribe, with the callbacks librdkafka runs in ``consume``."""
        self._on_committed = on_committed
        self._on_broker_state = on_broker_state
        config = {
            **self._config,
            "error_cb": self._on_error,
            "logger": LibrdkafkaLog(self._folded),
            "on_commit": self._committed,
        }
        self._consumer = Consumer(config)
        self._consumer.subscribe(
            self._topics,
            on_assign=lambda _c, parts: on_assign(_tps(parts)),
            on_revoke=lambda _c, parts: on_revoke(_tps(parts)),
            on_lost=lambda _c, parts: on_lost(_tps(parts)),
        )

    def refresh_partition_counts(self) -> bool:
        """Ask the brokers how many partitions each source topic has; keep the last answer if none.

        Runs on the Kafka thread between two ``consume`` calls, after each
        assignment (a topic that gained partitions causes one), never inside
        the assignment callback: confluent-kafka keeps one call state per
        thread, a metadata request nested in a callback clears the state of
        the ``consume`` it is nested in, and the next callback of that
        ``consume`` aborts the process (``CallState_get: Assertion `cs !=
        NULL' failed``; the chaos run met it). A topic that does not exist
        counts 0.
        """
        counts: dict[str, int] = {}
        try:
            for topic in self._topics:
                found = self._client.list_topics(topic, timeout=PARTITION_COUNT_TIMEOUT).topics
                metadata = found.get(topic)
                ok = metadata is not None and metadata.error is None
                counts[topic] = len(metadata.partitions) if ok and metadata is not None else 0
        except KafkaException as exc:
            log.warning("partition_counts_unknown", error=str(exc.args[0]))
            return False
        self.partition_counts = counts
        return True

    def consume(self, max_messages: int, timeout: float) -> Sequence[Message]:
        """Block up to ``timeout`` for up to ``max_messages`` (runs on the Kafka thread).

        While the brokers are unreachable (see :meth:`_on_error`) each call also
        asks for cluster metadata: with no traffic nothing else would tell us
        they are back, and readiness would stay false for good.

        Raises :class:`~service.errors.KafkaError` once librdkafka reports a fatal
        error (see :func:`raise_if_fatal`).
        """
        if self._fatal is not None:
            raise_if_fatal(self._fatal)
        messages = self._client.consume(num_messages=max_messages, timeout=timeout)
        if messages:
            self._set_broker_state(True)
        elif not self.broker_ok:
            try:
                self._client.list_topics(timeout=BROKER_PROBE_TIMEOUT)
            except KafkaException:
                pass
            else:
                self._set_broker_state(True)
        return messages

    def _set_broker_state(self, ok: bool) -> None:
        if ok != self.broker_ok:
            self.broker_ok = ok
            log.info("broker_reachable" if ok else "broker_unreachable")
            if self._on_broker_state is not None:
                self._on_broker_state(ok)

    def commit(self, offsets: dict[TP, tuple[int, str]]) -> None:
        """Synchronous commit of ``(offset, metadata)`` per partition; returns once acknowledged.

        Only inside the revoke callback, where the partitions must not change
        hands before their commit: it waits for the group coordinator for as
        long as it takes, and while it does, nothing else runs on this thread.
        """
        if not offsets:
            return
        try:
            results = self._client.commit(offsets=_parts(offsets), asynchronous=False)
        except KafkaException as exc:
            raise KafkaError(f"commit failed: {exc.args[0]}") from exc
        for result in results or []:
            if result.error:
                raise KafkaError(
                    f"commit of {result.topic}[{result.partition}] failed: {result.error}"
                )
        self._set_broker_state(True)

    def commit_async(self, offsets: dict[TP, tuple[int, str]]) -> None:
        """Send a commit and return at once; its result comes to ``on_committed``.

        The commits made while consuming are asynchronous: a synchronous one
        waits for the group coordinator, which a broker outage takes away for
        as long as it lasts, and the Kafka thread, stuck in it, would serve no
        ``consume`` (no error callbacks, no readiness) until the broker came
        back. Results arrive in ``consume``, in the order the commits were sent.
        """
        if not offsets:
            return
        try:
            self._client.commit(offsets=_parts(offsets), asynchronous=True)
        except KafkaException as exc:
            raise KafkaError(f"commit failed: {exc.args[0]}") from exc

    def _committed(self, error: RdKafkaError | None, parts: list[TopicPartition]) -> None:
        if self._on_committed is not None:
            self._on_committed(
                error.str() if error is not None else None,
                [((p.topic, p.partition), str(p.error) if p.error else None) for p in parts],
            )

    def committed(self, partitions: Sequence[TP], timeout: float) -> dict[TP, tuple[int, str]]:
        """The group's committed offset and metadata of each partition that has one.

        Called from the assign callback (on the Kafka thread), where a new owner
        learns what the previous one left (``takeover.py``). On failure, what
        is known is nothing: the partition starts plainly from its committed
        offset, as librdkafka would have anyway.
        """
        parts = [TopicPartition(topic, partition) for topic, partition in partitions]
        try:
            found = committed_offsets(self._client, parts, timeout)
        except KafkaException as exc:
            log.warning("committed_offsets_unavailable", error=str(exc.args[0]))
            return {}
        return {
            (tp.topic, tp.partition): (tp.offset, tp.metadata or "")
            for tp in found
            if tp.offset >= 0 and tp.error is None
        }

    def pause(self, partitions: Sequence[TP]) -> None:
        if partitions:
            self._client.pause([TopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: Sequence[TP]) -> None:
        if partitions:
            self._client.resume([TopicPartition(t, p) for t, p in partitions])

    def assignment(self) -> list[TP]:
        return _tps(self._client.assignment())

    def high_watermark(self, tp: TP) -> int | None:
        """The cached high watermark from the last fetch response; no network round trip."""
        try:
            _low, high = self._client.get_watermark_offsets(TopicPartition(*tp), cached=True)
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def end_offset(self, tp: TP, timeout: float) -> int | None:
        """The partition's high watermark as its leader says it now (one round trip).

        ``None`` when the broker does not answer in time or answers an error: the caller asks
        again later. The cached value (:meth:`high_watermark`) is what the last fetch
        response said, which before the first fetch with records can be 0 on a partition
        that holds some.
        """
        try:
            _low, high = self._client.get_watermark_offsets(
                TopicPartition(*tp), timeout=timeout, cached=False
            )
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def position(self, tp: TP) -> int | None:
        """One past the last record ``consume`` returned of ``tp`` (``None`` before the first).

        Past transaction markers too: it reaches the high watermark of a topic
        written transactionally, where the last offset is a marker, not a record.
        """
        try:
            (part,) = self._client.position([TopicPartition(*tp)])
        except KafkaException:
            return None
        return int(part.offset) if part.offset >= 0 else None

    def close(self) -> None:
        """Leave the group (runs the revoke callback first). Runs on the Kafka thread."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _on_error(self, error: RdKafkaError) -> None:
        if error.code() in _BROKER_DOWN:
            self._set_broker_state(False)
        if error.fatal() or error.code() == RdKafkaError._FATAL:
            log.critical("kafka_fatal_error", error=error.str(), code=error.name())
            self._fatal = error
        else:
            # librdkafka recovers from these by itself (broker down, retries): folded,
            # since a broker that is down is reported per connection attempt.
            self._folded("warning", "kafka_error", error.str(), code=error.name())


def raise_if_fatal(error: RdKafkaError) -> None:
    """A fatal librdkafka error ends the service: the consumer will never consume again.

    Carrying on would leave a process that is alive, holds nothing and consumes
    nothing. Exiting lets Kubernetes restart it, and a new consumer starts clean.
    The usual cause under KIP-848 is a static member restarted before the broker
    let its previous incarnation go (``UNRELEASED_INSTANCE_ID``).
    """
    # A message (or consume) error announcing it carries code _FATAL without being fatal()
    # itself; the error callback's error is fatal() with the broker's own code.
    if not error.fatal() and error.code() != RdKafkaError._FATAL:
        return
    hint = ""
    if "instance ID is still used" in error.str():
        hint = (
            " (KAFKA_CLIENT_GROUP_INSTANCE_ID: the broker keeps a crashed member's instance id"
            " until its session times out; a restart after that joins again)"
        )
    raise KafkaError(f"the Kafka consumer failed for good: {error.str()}{hint}")


def committed_offsets(
    consumer: Consumer,
    partitions: list[TopicPartition],
    timeout: float,
) -> list[TopicPartition]:
    """``Consumer.committed``, asked again while the group's coordinator moves or loads.

    librdkafka gives up at once when the coordinator answers NOT_COORDINATOR or
    COORDINATOR_LOAD_IN_PROGRESS, which a healthy Apache Kafka does for a while after
    it starts (``__consumer_offsets`` is created on the first lookup), after it
    restarts, and whenever the group's coordinator moves to another broker. Raises
    ``KafkaException`` for anything else, or when ``timeout`` is spent.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            found: list[TopicPartition] = consumer.committed(
                partitions, timeout=max(0.1, deadline - time.monotonic())
            )
        except KafkaException as exc:
            code = exc.args[0].code() if isinstance(exc.args[0], RdKafkaError) else None
            if code not in _COORDINATOR_MOVING or time.monotonic() >= deadline:
                raise
            time.sleep(COORDINATOR_RETRY_SECONDS)
        else:
            return found


def _parts(offsets: dict[TP, tuple[int, str]]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset, metadata=metadata)
        for (topic, partition), (offset, metadata) in offsets.items()
    ]


def _tps(parts: Sequence[TopicPartition]) -> list[TP]:
    return [(p.topic, p.partition) for p in parts]
