"""The pipeline's three edges, as the small Protocols it talks through.

Everything between them is pure logic on one event loop; these are where it
meets the outside world:

* :class:`Consumer` — the source topics (``consumer.py``'s :class:`SourceConsumer`
  on confluent-kafka). Its callbacks are given at :meth:`Consumer.start`, once
  every part that serves them exists: that is what lets the pipeline be built
  in one pass, without forward references;
* :class:`GameballApi` — the Batch API (``gameball/client.py``'s ``GameballClient``);
* :class:`DeadLetterProducer` — the dead-letter topic's producer (confluent-kafka's
  ``Producer``; ``deadletter.py`` creates it with :data:`ProducerFactory`).

Unit tests stand a fake behind each (``tests/unit/delivery/fakes.py``) and
drive the real pipeline through them, the way librdkafka and the API would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from service.delivery.offsets import PartitionKey
from service.gameball.client import Spent
from service.gameball.models import JobStatus
from service.gameball.operations import Operation

RebalanceCallback = Callable[[list[PartitionKey]], None]
CommitResult = list[tuple[PartitionKey, str | None]]
"""Each partition of an asynchronous commit, with its error (``None``: acknowledged)."""
CommitCallback = Callable[[str | None, CommitResult], None]
BrokerStateCallback = Callable[[bool], None]


class Message(Protocol):
    """The part of ``confluent_kafka.Message`` the pipeline uses (stubbable in unit tests)."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


class Consumer(Protocol):
    """The source topics' consumer. Every call but :meth:`start` runs on the Kafka thread.

    The rebalance callbacks run inside :meth:`consume` on that thread, as
    librdkafka runs them; commit results also arrive inside :meth:`consume`.
    """

    @property
    def partition_counts(self) -> Mapping[str, int]:
        """Partitions of each source topic, as of the last :meth:`refresh_partition_counts`."""
        ...

    def start(
        self,
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_committed: CommitCallback,
        on_broker_state: BrokerStateCallback,
    ) -> None: ...
    def consume(self, max_messages: int, timeout: float) -> Sequence[Message]: ...
    def commit(self, offsets: dict[PartitionKey, tuple[int, str]]) -> None: ...
    def commit_async(self, offsets: dict[PartitionKey, tuple[int, str]]) -> None: ...
    def committed(
        self, partitions: Sequence[PartitionKey], timeout: float
    ) -> dict[PartitionKey, tuple[int, str]]: ...
    def assignment(self) -> list[PartitionKey]: ...
    def pause(self, partitions: Sequence[PartitionKey]) -> None: ...
    def resume(self, partitions: Sequence[PartitionKey]) -> None: ...
    def high_watermark(self, tp: PartitionKey) -> int | None: ...
    def end_offset(self, tp: PartitionKey, timeout: float) -> int | None: ...
    def position(self, tp: PartitionKey) -> int | None: ...
    def refresh_partition_counts(self) -> bool: ...
    def close(self) -> None: ...


class GameballApi(Protocol):
    """The Batch API as jobs, tags, takeovers and the pipeline call it (``GameballClient``)."""

    async def submit(
        self,
        body: bytes,
        *,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        operation: Operation = Operation.CUSTOMERS,
    ) -> str: ...
    async def status(
        self,
        job_id: str,
        *,
        entries: bool = False,
        spent: Spent | None = None,
        sending: Callable[[], None] | None = None,
    ) -> JobStatus: ...
    async def stop(self, job_id: str, *, spent: Spent | None = None) -> None: ...
    async def set_tags(
        self,
        customer_id: str,
        attach: Sequence[str],
        remove: Sequence[str] = (),
        *,
        wanted: Callable[[], bool] | None = None,
    ) -> None: ...
    async def watch_credentials(self) -> None: ...
    async def aclose(self) -> None: ...


OnDelivery = Callable[[Any, Any], None]


class DeadLetterProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` the dead-letter writer uses."""

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: OnDelivery,
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


ProducerFactory = Callable[[dict[str, Any]], DeadLetterProducer]
"""Builds the producer from its librdkafka configuration (when the writer starts)."""
