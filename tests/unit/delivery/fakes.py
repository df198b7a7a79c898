"""Fakes behind the pipeline's edges (``service/delivery/edges.py``), for unit tests.

:class:`FakeConsumer` behaves as librdkafka does where the pipeline can tell:
rebalance callbacks and commit results are delivered inside ``consume``, on
the Kafka thread; positions start at the group's committed offset; paused
partitions return nothing; ``close`` revokes what is assigned. :class:`FakeApi`
runs each job to completion at once. :class:`FakeProducer` acknowledges a dead
letter when it is polled, unless told to hold.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from service.config import load_settings
from service.delivery.bounded import Until
from service.delivery.edges import (
    BrokerStateCallback,
    CommitCallback,
    OnDelivery,
    RebalanceCallback,
)
from service.delivery.offsets import PartitionKey
from service.delivery.pipeline import Pipeline
from service.errors import SubmissionWithdrawn
from service.gameball.client import Spent
from service.gameball.models import JobStatus
from service.metrics import Metrics

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
    "GAMEBALL_BASE_URL": "http://127.0.0.1:1",
    "KAFKA_SOURCE_TOPICS": "t",
    "BATCH_MAX_WAIT_SECONDS": "0.05",
}


@dataclass(frozen=True)
class FakeMessage:
    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp: int = 1_700_000_000_000

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def change(customer: str, version: int = 0) -> bytes:
    """A customer change the default decoder accepts."""
    return orjson.dumps({"customerId": customer, "custom": {"v": version}})


class FakeConsumer:
    """The source topics and the group's committed offsets, in memory."""

    def __init__(self, partitions: Mapping[str, int]) -> None:
        self._counts = dict(partitions)
        self.logs: dict[PartitionKey, list[FakeMessage]] = {
            (topic, p): [] for topic, count in partitions.items() for p in range(count)
        }
        self.group: dict[PartitionKey, tuple[int, str]] = {}
        """The committed ``(offset, metadata)`` per partition, as the coordinator holds it."""
        self.commits: list[dict[PartitionKey, tuple[int, str]]] = []
        self.paused: set[PartitionKey] = set()
        self.partition_counts: dict[str, int] = {}
        self.closed = False
        self.consumes = 0
        """``consume`` calls so far: a test can wait for the fetch loop to have turned."""
        self.assign_on_start = True
        self.counts_known = True
        """Whether the brokers answer partition-count lookups."""
        self.counts_asked = 0
        self.counts_asked_in_callback = 0
        self.async_commits_fail = False
        """Asynchronous commits come back failed (the coordinator moved, say)."""
        self._in_callback = False
        self.withheld: set[PartitionKey] = set()
        """Partitions whose records fetches do not return yet (a slow broker), though their
        high watermark counts them."""
        self.fetch_max = 2000
        """Records one ``consume`` returns at most (librdkafka's fetch sizes)."""
        self.partition_fetch_max = 2000
        """Records of one partition one ``consume`` returns at most: below ``fetch_max``, a
        fetch spans the partitions, as librdkafka's ``max.partition.fetch.bytes`` makes it."""
        self._assigned: list[PartitionKey] = []
        self.read_backs: list[tuple[PartitionKey, int]] = []
        self._position: dict[PartitionKey, int] = {}
        self._events: deque[tuple[str, list[PartitionKey]]] = deque()
        self._results: deque[list[tuple[PartitionKey, str | None]]] = deque()
        self._arrived = threading.Event()
        self._lock = threading.Lock()
        self._on: dict[str, Any] = {}

    # ---------------------------------------------------------- the test's side

    def append(self, tp: PartitionKey, value: bytes | None, key: bytes | None = None) -> int:
        """Produce a record; returns its offset."""
        with self._lock:
            log = self.logs[tp]
            offset = len(log)
            log.append(FakeMessage(tp[0], tp[1], offset, key, value))
        self._arrived.set()
        return offset

    def append_marker(self, tp: PartitionKey) -> None:
        """A transaction marker: an offset no fetch returns, though it counts in the watermark."""
        with self._lock:
            self.logs[tp].append(FakeMessage(tp[0], tp[1], len(self.logs[tp]), None, None, -1))
        self._arrived.set()

    def rebalance(self, kind: str, partitions: Iterable[PartitionKey]) -> None:
        """``assign``, ``revoke`` or ``lose`` partitions at the next ``consume``."""
        self._events.append((kind, sorted(partitions)))
        self._arrived.set()

    def read_back(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None]:
        """A record's key and value by its offset (the dead-letter writer's ``reread``)."""
        message = self.logs[(topic, partition)][offset]
        self.read_backs.append(((topic, partition), offset))
        return message.key(), message.value()

    def committed_offsets(self) -> dict[PartitionKey, int]:
        return {tp: offset for tp, (offset, _) in self.group.items()}

    @property
    def results_waiting(self) -> int:
        """Commit results the next ``consume`` will serve."""
        return len(self._results)

    # ---------------------------------------------------------- the Consumer

    def start(
        self,
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
        on_committed: CommitCallback,
        on_broker_state: BrokerStateCallback,
    ) -> None:
        self._on = {
            "assign": on_assign,
            "revoke": on_revoke,
            "lose": on_lost,
            "committed": on_committed,
            "broker": on_broker_state,
        }
        if self.assign_on_start:
            self.rebalance("assign", self.logs)

    def consume(self, max_messages: int, timeout: float) -> Sequence[FakeMessage]:
        self.consumes += 1
        while self._events:
            kind, partitions = self._events.popleft()
            self._in_callback = True
            try:
                if kind == "assign":
                    for tp in partitions:
                        self._position[tp] = self.group.get(tp, (0, ""))[0]
                    self._on["assign"](partitions)
                    self._assigned.extend(partitions)
                else:
                    self._on["revoke" if kind == "revoke" else "lose"](partitions)
                    self._assigned = [tp for tp in self._assigned if tp not in partitions]
                    self.paused -= set(partitions)
            finally:
                self._in_callback = False
        while self._results:
            self._on["committed"](None, self._results.popleft())
        messages: list[FakeMessage] = []
        with self._lock:
            for tp in self._assigned:
                if tp in self.paused or tp in self.withheld:
                    continue
                position = self._position[tp]
                room = min(max_messages, self.fetch_max) - len(messages)
                room = min(room, self.partition_fetch_max)
                taken = self.logs[tp][position : position + max(0, room)]
                messages.extend(m for m in taken if m._timestamp >= 0)  # markers are not records
                self._position[tp] = position + len(taken)
        if not messages and not self._events and not self._results:
            self._arrived.wait(min(timeout, 0.02))
            self._arrived.clear()
        return messages

    def commit(self, offsets: dict[PartitionKey, tuple[int, str]]) -> None:
        self.group.update(offsets)
        self.commits.append(dict(offsets))

    def commit_async(self, offsets: dict[PartitionKey, tuple[int, str]]) -> None:
        if self.async_commits_fail:
            self._results.append([(tp, "NOT_COORDINATOR") for tp in offsets])
        else:
            self.commit(offsets)
            self._results.append([(tp, None) for tp in offsets])
        self._arrived.set()

    def committed(
        self, partitions: Sequence[PartitionKey], timeout: float
    ) -> dict[PartitionKey, tuple[int, str]]:
        return {tp: self.group[tp] for tp in partitions if tp in self.group}

    def assignment(self) -> list[PartitionKey]:
        return list(self._assigned)

    def pause(self, partitions: Sequence[PartitionKey]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Sequence[PartitionKey]) -> None:
        self.paused.difference_update(partitions)
        self._arrived.set()

    def high_watermark(self, tp: PartitionKey) -> int | None:
        return len(self.logs[tp]) if tp in self._assigned else None

    def end_offset(self, tp: PartitionKey, timeout: float) -> int | None:
        return len(self.logs[tp]) if tp in self.logs else None

    def position(self, tp: PartitionKey) -> int | None:
        return self._position.get(tp) if tp in self._assigned else None

    def refresh_partition_counts(self) -> bool:
        self.counts_asked += 1
        self.counts_asked_in_callback += self._in_callback
        if not self.counts_known:
            return False
        self.partition_counts = dict(self._counts)
        return True

    def close(self) -> None:
        if self._assigned:
            self._on["revoke"](list(self._assigned))
            self._assigned = []
        self.closed = True


class FakeProducer:
    """The dead-letter topic: a letter is acknowledged when the writer polls, unless held."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes | None, dict[str, bytes]]] = []
        self.topics: list[str] = []  # the topic of each letter written, in order
        self.hold = False
        self._waiting: deque[tuple[OnDelivery, bytes | None, dict[str, bytes]]] = deque()

    def __call__(self, _config: dict[str, Any]) -> FakeProducer:
        return self  # the writer's factory

    def produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
        on_delivery: OnDelivery,
    ) -> None:
        as_bytes = {name: v if isinstance(v, bytes) else str(v).encode() for name, v in headers}
        self._waiting.append((on_delivery, value, as_bytes))
        self.topics.append(topic)

    def poll(self, _timeout: float) -> int:
        if self.hold:
            return 0
        served = 0
        while self._waiting:
            on_delivery, value, headers = self._waiting.popleft()
            self.written.append((value, headers))
            on_delivery(None, None)
            served += 1
        return served

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return len(self._waiting)

    @property
    def reasons(self) -> list[str]:
        return [headers["dlq.reason"].decode() for _, headers in self.written]


class FakeApi:
    """The Batch API: every job completes at once; ``reject`` customers fail in it."""

    def __init__(self, reject: Iterable[str] = ()) -> None:
        self.reject = set(reject)
        self.jobs: dict[str, list[str]] = {}
        self.delivered: list[str] = []
        """Customers the API applied, in order (a customer twice: delivered twice)."""
        self.stopped: list[str] = []
        self.submit_seconds = 0.0
        """How long the API takes to answer a submission."""
        self.gate: asyncio.Event | None = None
        """When set to an event, every submission waits for it."""
        self.status_gate: asyncio.Event | None = None
        """When set to an event, every status read waits for it (jobs run on meanwhile)."""
        self._ids = itertools.count(1)

    async def submit(
        self,
        body: bytes,
        *,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        operation: object = None,
    ) -> str:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.submit_seconds)
        if wanted is not None and not wanted():
            raise SubmissionWithdrawn("no longer ours")
        if prepare is not None:
            await prepare()
        job_id = f"job-{next(self._ids)}"
        customers = [str(c["customerId"]) for c in orjson.loads(body)["body"]]
        self.jobs[job_id] = customers
        self.delivered.extend(c for c in customers if c not in self.reject)
        return job_id

    async def status(
        self,
        job_id: str,
        *,
        entries: bool = False,
        spent: Spent | None = None,
        sending: Callable[[], None] | None = None,
    ) -> JobStatus:
        if self.status_gate is not None:
            await self.status_gate.wait()
        if sending is not None:
            sending()
        customers = self.jobs[job_id]
        ok = [{"customerId": c} for c in customers if c not in self.reject]
        failed = [
            {"customerId": c, "error": "Invalid email"} for c in customers if c in self.reject
        ]
        return JobStatus.model_validate(
            {
                "status": "completed",
                "totalCount": len(customers),
                "finishedCount": len(customers),
                "errorCount": len(failed),
                "response": {"successful": ok, "failed": failed},
            }
        )

    async def stop(self, job_id: str, *, spent: Spent | None = None) -> None:
        self.stopped.append(job_id)

    async def set_tags(
        self,
        customer_id: str,
        attach: Sequence[str],
        remove: Sequence[str] = (),
        *,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        return None

    async def watch_credentials(self) -> None:
        await asyncio.Event().wait()  # the credentials are fine, forever

    async def aclose(self) -> None:
        return None


@dataclass
class Rig:
    """A real pipeline between fakes: drive the fakes, run it, read what came out."""

    pipeline: Pipeline
    consumer: FakeConsumer
    api: FakeApi
    producer: FakeProducer
    metrics: Metrics

    async def run(self, until: Until | None = None, within: float = 10.0) -> None:
        """Run to idle (or ``until``): everything read settled and committed, then shut down."""
        async with asyncio.timeout(within):
            await self.pipeline.run(until=until or Until(idle=True, quiet=0.1))

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    @property
    def budget_rate(self) -> float:
        """The request rate this instance's share of the key allows (a published gauge)."""
        return self.count("customer_sync_api_budget_requests_per_second")


def rig(
    partitions: Mapping[str, int] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    api: FakeApi | None = None,
) -> Rig:
    partitions = partitions or {"t": 1}
    environ = {**ENV, "KAFKA_SOURCE_TOPICS": ",".join(partitions), **(env or {})}
    if "ROUTES_FILE" in environ:  # the routes file names the topics
        del environ["KAFKA_SOURCE_TOPICS"]
    settings = load_settings(environ)
    consumer, producer, metrics = FakeConsumer(partitions), FakeProducer(), Metrics()
    api = api or FakeApi()
    pipeline = Pipeline.from_settings(
        settings,
        metrics=metrics,
        client=api,
        consumer=consumer,
        producer=producer,
        reread=consumer.read_back,
    )
    return Rig(pipeline, consumer, api, producer, metrics)


@asynccontextmanager
async def running(r: Rig, within: float = 10.0) -> AsyncIterator[asyncio.Event]:
    """Run the pipeline in the background until the block ends (then stop it, as SIGTERM)."""
    stop = asyncio.Event()
    task = asyncio.create_task(r.pipeline.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        async with asyncio.timeout(within):
            await task
