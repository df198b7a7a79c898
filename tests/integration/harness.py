"""Test harness: produce, read back, inspect the group, and run the service as a real process.

The broker is Apache Kafka (``tests/brokers``): what a test needs to know about the log it
asks the broker (end offsets, committed offsets), never counts it on the side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from service.delivery.broker_retry import (
    ask_again_if_transient,
    committed_offsets,
    watermarks,
    with_broker_retry,
)
from service.tools.embedded_broker import free_port
from service.tools.samples import Event

GroupProtocol = Literal["classic", "consumer"]
GROUP_PROTOCOLS: tuple[GroupProtocol, ...] = ("classic", "consumer")


class Broker(Protocol):
    """What tests use of a broker: Apache Kafka (``KafkaNode``) or Tansu (``EmbeddedBroker``)."""

    @property
    def bootstrap(self) -> str: ...

    def create_topics(self, names: dict[str, int]) -> None: ...


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass
class Produced:
    """What the broker acknowledged: each event with the partition and offset it got."""

    per_partition: Counter[int] = field(default_factory=Counter)
    events: list[tuple[Event, int, int]] = field(default_factory=list)  # event, partition, offset

    @property
    def total(self) -> int:
        return sum(self.per_partition.values())


def produce(
    bootstrap: str, topic: str, events: Iterable[Event], *, partitions: int, timeout: float = 30
) -> Produced:
    """Produce and wait for every acknowledgement; fails in one sentence after ``timeout``.

    librdkafka itself retries what a new topic or a moving leader answers, for as long as
    ``message.timeout.ms``: that is the deadline here, and a record still unacknowledged after
    it fails the call instead of going missing from ``Produced``.
    """
    produced = Produced()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.timeout.ms": int(timeout * 1000),
        }
    )
    errors: list[str] = []

    for event in events:

        def delivered(err: Any, msg: Any, event: Event = event) -> None:
            if err is not None:
                errors.append(str(err))
                return
            produced.per_partition[msg.partition()] += 1
            produced.events.append((event, msg.partition(), msg.offset()))

        # Keyed like the upstream CDC producer; keyless bad events are spread explicitly.
        key = event.key
        part = None if key is not None else len(produced.events) % partitions
        if part is None:
            producer.produce(topic, key=key, value=event.value, on_delivery=delivered)
        else:
            producer.produce(
                topic, key=key, value=event.value, partition=part, on_delivery=delivered
            )
        producer.poll(0)
    left = producer.flush(timeout + 5)
    if errors or left:
        first = errors[0] if errors else "no answer"
        raise AssertionError(
            f"producing to {topic}: {len(errors) + left} record(s) not acknowledged within "
            f"{timeout:g} s (first: {first})"
        )
    return produced


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (asked again while its coordinator loads or moves)."""
    held = committed_metadata(bootstrap, group, topic, partitions)
    return {partition: offset for partition, (offset, _) in held.items()}


def committed_metadata(
    bootstrap: str, group: str, topic: str, partitions: int
) -> dict[int, tuple[int, str]]:
    """The group's committed offset and metadata (the service's ledger) per partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        offsets = committed_offsets(consumer, parts, timeout=20)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset, tp.metadata or "") for tp in offsets if tp.offset >= 0}


def end_offsets(bootstrap: str, topic: str, timeout: float = 20) -> dict[int, int]:
    """Each partition's high watermark, from the broker (one past its last record).

    Asked again while the broker answers what a topic created a moment ago gets (its leader
    not yet serving: NOT_LEADER_FOR_PARTITION), within ``timeout`` per question; a topic that
    does not exist fails at once.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("ends")})

    def partitions(left: float) -> list[int]:
        found = consumer.list_topics(topic, timeout=left).topics[topic]
        ask_again_if_transient(found.error)
        if found.error is not None:
            raise AssertionError(f"the topic {topic} cannot be read: {found.error.str()}")
        return sorted(found.partitions)

    try:
        found = with_broker_retry(partitions, what=f"looking up {topic}", timeout=timeout)
        return {p: watermarks(consumer, TopicPartition(topic, p), timeout)[1] for p in found}
    finally:
        consumer.close()


def fully_committed(bootstrap: str, group: str, topic: str) -> bool:
    """The group committed every partition of ``topic`` up to its end."""
    ends = end_offsets(bootstrap, topic)
    offsets = committed(bootstrap, group, topic, len(ends))
    return all(offsets.get(p, 0 if end == 0 else -1) >= end for p, end in ends.items())


@dataclass(frozen=True)
class DeadLetterRecord:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0
) -> list[DeadLetterRecord]:
    """Read ``expected`` records from the start of ``topic`` (fails if fewer arrive)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    # Assigned, not subscribed: no group to join (seconds of rebalance delay on each call).
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[DeadLetterRecord] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error():
                    continue
                headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
                records.append(DeadLetterRecord(msg.key(), msg.value(), headers))
    finally:
        consumer.close()
    assert len(records) >= expected, f"read {len(records)} of {expected} records from {topic}"
    return records


@dataclass(frozen=True)
class RunSummary:
    """What a bounded run reported as it ended: what it read and what became of each record."""

    consumed: int
    outcomes: dict[str, int]
    ready: bool
    """Whether the service was ready when it found itself done (before it began to stop)."""

    @property
    def settled(self) -> int:
        return sum(self.outcomes.values())


class ServiceProcess:
    """``customer-sync run`` as a real process, configured by environment variables."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "HTTP_PORT": str(self.port), "LOG_FORMAT": "json"}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> ServiceProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "run", *args],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self

    def run_until_idle(self, timeout: float = 120) -> RunSummary:
        """``customer-sync run --until-idle``: everything on the topic delivered, settled and
        committed, then a clean exit (0). Returns the run's closing summary."""
        self.start("--until-idle")
        try:
            code = self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"not idle within {timeout}s:\n{self.logs()[-3000:]}") from None
        assert code == 0, self.logs()[-3000:]
        return self.summary()

    def summary(self) -> RunSummary:
        """The ``run_finished`` line a bounded run ends with."""
        for line in reversed(self.logs().splitlines()):
            if '"run_finished"' in line:
                event = json.loads(line)
                return RunSummary(
                    consumed=event["consumed"],
                    outcomes=event["outcomes"],
                    ready=event["ready"],
                )
        raise AssertionError(f"no run_finished line:\n{self.logs()[-3000:]}")

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples matching ``labels`` (0 when absent)."""
        response = self.get("/metrics")
        if response is None:
            return 0.0
        total = 0.0
        for line in response.text.splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            sample, _, rest = head.partition("{")
            if sample != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total

    def ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def protocol_env(protocol: GroupProtocol) -> dict[str, str]:
    """The consumer settings of a rebalance protocol, timed for tests.

    Classic: a 6 s session (the broker's default floor) with 1 s heartbeats. KIP-848: the
    broker owns session and heartbeat (``tests/brokers`` sets them to 6 s and 1 s).
    """
    if protocol == "consumer":
        return {"KAFKA_CLIENT_GROUP_PROTOCOL": "consumer"}
    return {"KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000", "KAFKA_CLIENT_HEARTBEAT_INTERVAL_MS": "1000"}


WIDE_BUDGET = {"GAMEBALL_RATE_LIMIT_PER_SECOND": "1000", "GAMEBALL_QUOTA_REQUESTS": "30000"}


def service_env(
    broker: Broker,
    base_url: str,
    topic: str,
    group: str,
    *,
    protocol: GroupProtocol = "classic",
    **extra: str,
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SOURCE_TOPICS": topic,
        "KAFKA_GROUP_ID": group,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        **protocol_env(protocol),
        "GAMEBALL_BASE_URL": base_url,
        "GAMEBALL_API_KEY": "demo-api-key",
        "GAMEBALL_SECRET_KEY": "demo-secret-key",
        "BATCH_MAX_WAIT_SECONDS": "0.3",
        "SHUTDOWN_TIMEOUT_SECONDS": "15",
        "LOG_LEVEL": "INFO",
        # These simulators enforce no rate limit, and the default budget (Gameball's documented
        # 12 requests/s sustained) would pace every customer's tags call for minutes. The
        # budget's pacing is tested where the simulator enforces the limits (test_rate_limits,
        # the bench's quota regimes).
        **WIDE_BUDGET,
        # The sample rows carry tags and no ``before`` row: under TAGS_SYNC=changed every
        # change of a tagged customer costs one more request, so a fault injected per request
        # lands on the tags calls a hundred times as often as on jobs. Tests of the job path
        # keep tags in the item; the tags call is tested where it is the subject
        # (test_shapes.py, the takeover's unit test, and the chaos runs: TAGS_SYNC=changed).
        "TAGS_SYNC": "item",
        **extra,
    }
