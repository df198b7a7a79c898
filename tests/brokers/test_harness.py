"""The Apache Kafka harness itself: each test breaks when the harness does.

Needs the jars of ``make kafka-jars`` and Java 17+ (a fixture error says so otherwise).
Select with ``-m integration`` or by path: ``pytest tests/brokers``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from tests.brokers import runtime
from tests.brokers.admin import admin_client
from tests.brokers.apache import KafkaNode
from tests.brokers.cluster import KafkaCluster
from tests.brokers.runtime import KafkaUnavailable

pytestmark = pytest.mark.integration


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@contextmanager
def logs_on_failure(*nodes: KafkaNode) -> Iterator[None]:
    """Attach the brokers' log tails to a failing test's error (their directories go at exit)."""
    try:
        yield
    except BaseException as exc:
        for node in nodes:
            exc.add_note(f"Kafka node {node.node_id}:\n{node.log_tail(30)}")
        raise


def produce(
    bootstrap: str, topic: str, count: int, *, start: int = 0, idempotent: bool = False
) -> int:
    """Produce ``count`` keyed records (values ``start``..) with acks=all; count deliveries."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "acks": "all",
            "enable.idempotence": idempotent,
        }
    )
    delivered: list[int] = []
    errors: list[str] = []

    def report(err: KafkaError | None, msg: Message[bytes, bytes]) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(int(msg.value() or b"-1"))

    for i in range(start, start + count):
        producer.produce(topic, key=f"k{i % 7}".encode(), value=str(i).encode(), on_delivery=report)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} records still in flight after 60s"
    assert not errors, errors
    return len(delivered)


def consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[int]:
    """Poll until ``count`` records arrived (or fail after ``timeout``); return their values."""
    values: list[int] = []
    deadline = time.monotonic() + timeout
    while len(values) < count:
        assert time.monotonic() < deadline, f"got {len(values)} of {count} records in {timeout}s"
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        values.append(int(msg.value() or b"-1"))
    return values


RETRIABLE = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def committed_offsets(
    consumer: Consumer, partitions: list[TopicPartition], timeout: float = 30.0
) -> list[TopicPartition]:
    """``committed()``, retried as a client must while the group coordinator (re)loads.

    A restarted node answers metadata before it has loaded ``__consumer_offsets``: until then
    ``committed()`` fails at once with NOT_COORDINATOR (librdkafka does not retry it).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.committed(partitions, timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            if exc.args[0].code() not in RETRIABLE or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def wait_for_assignment(consumer: Consumer, partitions: int, timeout: float) -> float:
    """Poll until the consumer owns ``partitions`` partitions; return how long that took."""
    began = time.monotonic()
    while len(consumer.assignment()) < partitions:
        assert time.monotonic() - began < timeout, f"no assignment after {timeout}s"
        msg = consumer.poll(0.1)
        assert msg is None or msg.error() is None, msg.error() if msg else None
    return time.monotonic() - began


def listening_addresses(pid: int) -> set[str]:
    """The "ip:port" of every TCP socket the process listens on (from /proc, IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
                ip = ipaddress.ip_address(b"".join(words))
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                found.add(f"{ip}:{int(port, 16)}")
    return found


@pytest.fixture(scope="module")
def node() -> Iterator[KafkaNode]:
    with KafkaNode() as running:
        yield running


# --- the harness's own errors -------------------------------------------------------------------


def test_missing_jars_say_to_run_make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runtime, "REPO_ROOT", tmp_path)
    with pytest.raises(KafkaUnavailable, match=r"run `make kafka-jars`"):
        runtime.kafka_libs()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    runtime.java_binary.cache_clear()
    try:
        with pytest.raises(KafkaUnavailable, match=r"needs Java 17\+ but .* is Java 11"):
            runtime.java_binary()
    finally:
        runtime.java_binary.cache_clear()


# --- one node -----------------------------------------------------------------------------------


def test_node_serves_metadata_on_loopback_and_round_trips(node: KafkaNode) -> None:
    with logs_on_failure(node):
        assert os.path.exists(f"/proc/{node.pid}")
        assert "Kafka Server started" in node.log_path.read_text()
        assert listening_addresses(node.pid) == {
            node.bootstrap,
            f"127.0.0.1:{node.controller_port}",
        }
        metadata = admin_client(node.bootstrap).list_topics(timeout=10)
        brokers = {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()}
        assert brokers == {1: node.bootstrap}  # advertised, and bound, on loopback only

        topic = unique("round-trip")
        node.create_topics({topic: 3})
        assert produce(node.bootstrap, topic, 60) == 60

        consumer = Consumer(
            {
                "bootstrap.servers": node.bootstrap,
                "group.id": unique("classic"),
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        try:
            consumer.subscribe([topic])
            assert sorted(consume(consumer, 60)) == list(range(60))
        finally:
            consumer.close()


def test_a_missing_topic_is_an_error_not_created(node: KafkaNode) -> None:
    topic = unique("never-created")
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": node.bootstrap, "message.timeout.ms": 2000})
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(10) == 0
    assert len(errors) == 1
    assert errors[0] is not None
    assert topic not in admin_client(node.bootstrap).list_topics(timeout=10).topics


def test_kip848_consumers_join_and_share_partitions_quickly(node: KafkaNode) -> None:
    topic, group = unique("kip848"), unique("kip848")
    node.create_topics({topic: 4})

    def member() -> Consumer:
        # session.timeout.ms and heartbeat.interval.ms are the broker's now: the client may
        # not set them (the node lowers group.consumer.* for fast tests).
        consumer = Consumer(
            {"bootstrap.servers": node.bootstrap, "group.id": group, "group.protocol": "consumer"}
        )
        consumer.subscribe([topic])
        return consumer

    with logs_on_failure(node):
        first = member()
        second: Consumer | None = None
        try:
            assert wait_for_assignment(first, 4, timeout=10) < 10
            admin = admin_client(node.bootstrap)  # referenced until its future is done
            description = admin.describe_consumer_groups([group])[group].result(timeout=10)
            assert description.type == ConsumerGroupType.CONSUMER

            second = member()
            deadline = time.monotonic() + 20
            while not (len(first.assignment()) == 2 and len(second.assignment()) == 2):
                assert time.monotonic() < deadline, (first.assignment(), second.assignment())
                first.poll(0.05)
                second.poll(0.05)
            owned = {(tp.topic, tp.partition) for tp in first.assignment() + second.assignment()}
            assert owned == {(topic, p) for p in range(4)}
        finally:
            first.close()
            if second is not None:
                second.close()


@pytest.mark.slow  # a broker outage: make test-slow
def test_records_and_commits_survive_sigkill_and_restart() -> None:
    with KafkaNode() as crashing, logs_on_failure(crashing):
        topic, group = unique("durable"), unique("durable")
        crashing.create_topics({topic: 2})
        produce(crashing.bootstrap, topic, 50)
        config = {
            "bootstrap.servers": crashing.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
        consumer = Consumer(config)
        try:
            consumer.subscribe([topic])
            assert sorted(consume(consumer, 50)) == list(range(50))
            consumer.commit(asynchronous=False)
        finally:
            consumer.close()

        bootstrap, directory, old_pid = crashing.bootstrap, crashing.directory, crashing.pid
        crashing.kill()
        assert not crashing.running
        assert not os.path.exists(f"/proc/{old_pid}/cmdline")

        crashing.restart()
        assert (crashing.bootstrap, crashing.directory) == (bootstrap, directory)
        assert crashing.pid != old_pid
        assert crashing.log_path.read_text().count("Kafka Server started") == 2

        reader = Consumer(config)
        try:
            committed = committed_offsets(reader, [TopicPartition(topic, p) for p in range(2)])
            assert sum(tp.offset for tp in committed) == 50
            # The records are all still there, and the group resumes after its commits.
            everything = Consumer({**config, "group.id": unique("replay")})
            try:
                everything.subscribe([topic])
                assert sorted(consume(everything, 50)) == list(range(50))
            finally:
                everything.close()
            produce(crashing.bootstrap, topic, 5, start=50)
            reader.subscribe([topic])
            assert sorted(consume(reader, 5)) == list(range(50, 55))
        finally:
            reader.close()


# --- a cluster ----------------------------------------------------------------------------------


@pytest.mark.slow  # a broker outage: make test-slow
def test_cluster_elects_a_new_leader_and_acks_all_goes_on() -> None:
    with KafkaCluster(3) as cluster, logs_on_failure(*cluster.nodes):
        topic = unique("replicated")
        cluster.create_topics({topic: 3}, config={"min.insync.replicas": "2"})
        assert sorted(cluster.partition(topic, 0).replicas) == [1, 2, 3]

        producer_bootstrap = cluster.bootstrap
        assert produce(producer_bootstrap, topic, 30, idempotent=True) == 30

        leader = cluster.leader(topic, 0)
        cluster.kill(leader)
        # Produced while the partition has no live leader: held, retried, then delivered.
        assert produce(producer_bootstrap, topic, 30, start=30, idempotent=True) == 30
        new_leader = cluster.wait_for_leader(topic, 0, excluding={leader}, timeout=30)
        assert new_leader != leader
        assert leader not in cluster.partition(topic, 0).isrs

        group = unique("reader")
        reader = Consumer(
            {
                "bootstrap.servers": cluster.live_bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
            }
        )
        try:
            reader.assign([TopicPartition(topic, p, 0) for p in range(3)])
            assert sorted(consume(reader, 60)) == list(range(60))  # idempotent: no duplicates
            reader.commit(asynchronous=False)
        finally:
            reader.close()
        assert cluster.coordinator(group) in {n.node_id for n in cluster.nodes if n.running}

        cluster.restart_node(leader)
        deadline = time.monotonic() + 30
        while sorted(cluster.partition(topic, 0).isrs) != [1, 2, 3]:
            assert time.monotonic() < deadline, "the restarted node did not rejoin the ISR"
            time.sleep(0.2)
