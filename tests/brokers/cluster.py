"""Several KRaft nodes as one quorum, for failover: kill a partition's leader or a coordinator."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Self

from confluent_kafka import KafkaException

from tests.brokers.admin import admin_client, create_topics, group_coordinator
from tests.brokers.apache import KafkaNode, Voter
from tests.brokers.runtime import free_ports, kafka_uuid

if TYPE_CHECKING:  # confluent_kafka.admin re-exports them without naming them in __all__
    from confluent_kafka.admin._metadata import ClusterMetadata, PartitionMetadata

# --- a cluster --------------------------------------------------------------------------------


class KafkaCluster:
    """``size`` KRaft nodes (each broker and controller) forming one quorum on loopback ports.

    Node ids are 1..size. ``bootstrap`` names every node; the helpers find a partition's leader
    and a group's coordinator so that a test can kill exactly that node.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        heap_mb: int = 256,
        overrides: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        ports = free_ports(2 * size)
        cluster_id = kafka_uuid()
        voters = [Voter(i + 1, ports[2 * i + 1], kafka_uuid()) for i in range(size)]
        self.nodes = [
            KafkaNode(
                node_id=voter.node_id,
                port=ports[2 * i],
                controller_port=voter.port,
                heap_mb=heap_mb,
                overrides=overrides,
                cluster_id=cluster_id,
                voters=voters,
                jvm_options=jvm_options,
            )
            for i, voter in enumerate(voters)
        ]
        self.cluster_id = cluster_id
        self.bootstrap = ",".join(node.bootstrap for node in self.nodes)
        self.ready_after: float | None = None  # seconds from launching to all nodes answering

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} in this cluster (ids 1..{len(self.nodes)})")

    @property
    def live_bootstrap(self) -> str:
        """The bootstrap of the nodes whose process runs (clients then skip the dead ones)."""
        return ",".join(node.bootstrap for node in self.nodes if node.running)

    def start(self, timeout: float = 120.0) -> Self:
        """Format every node (in parallel), launch them all, wait until each sees all brokers."""
        began = time.monotonic()
        try:
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                list(pool.map(lambda node: node.prepare(), self.nodes))
            for node in self.nodes:
                node.launch()
            deadline = began + timeout
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()), brokers=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        self.ready_after = time.monotonic() - began
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node at once, SIGKILL what is left after ``timeout``, remove the dirs."""
        for node in self.nodes:
            node.send_signal(signal.SIGTERM)  # all at once: one by one, the last lose the quorum
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.stop(max(0.1, deadline - time.monotonic()))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its directory stays for ``restart_node``)."""
        self.node(node_id).kill()

    def stop_node(self, node_id: int, timeout: float = 20.0) -> None:
        """Shut one node down cleanly (SIGTERM); its directory stays for ``restart_node``."""
        self.node(node_id).terminate(timeout)

    def restart_node(self, node_id: int, timeout: float = 60.0) -> KafkaNode:
        """Start a stopped or killed node again (or restart a running one) on its directory."""
        return self.node(node_id).restart(timeout)

    def create_topics(
        self,
        names: Mapping[str, int],
        timeout: float = 30.0,
        *,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """Create topics, replicated on min(3, size) nodes unless ``replication_factor`` says."""
        create_topics(
            self.live_bootstrap,
            names,
            timeout,
            replication_factor=replication_factor or min(3, len(self.nodes)),
            config=config,
            served_by=[node.bootstrap for node in self.nodes if node.running],
        )

    def metadata(self, topic: str | None = None, timeout: float = 10.0) -> ClusterMetadata:
        """Cluster metadata as a live node sees it (may lag the controller briefly)."""
        return admin_client(self.live_bootstrap).list_topics(topic, timeout=timeout)

    def partition(self, topic: str, partition: int = 0, timeout: float = 10.0) -> PartitionMetadata:
        """Leader, replicas and in-sync replicas of one partition, as a live node sees it.

        Asked again within ``timeout`` while that node does not know the topic yet.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.1, deadline - time.monotonic())
            found = self.metadata(topic, remaining).topics.get(topic)
            if found is not None and found.error is None and partition in found.partitions:
                return found.partitions[partition]
            if time.monotonic() > deadline:
                raise KeyError(f"{topic}[{partition}]: {found.error if found else 'unknown'}")
            time.sleep(0.1)

    def leader(self, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
        """The node id leading the partition now (-1 while it has none)."""
        return int(self.partition(topic, partition, timeout).leader)

    def wait_for_leader(
        self,
        topic: str,
        partition: int = 0,
        *,
        excluding: Iterable[int] = (),
        timeout: float = 60.0,
    ) -> int:
        """Wait until the partition has a leader not in ``excluding`` (e.g. the killed one)."""
        excluded = set(excluding)
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                leader = self.leader(topic, partition, timeout=2.0)
            except (KafkaException, KeyError) as exc:
                last = exc
            else:
                if leader >= 0 and leader not in excluded:
                    return leader
                last = f"leader {leader}"
            time.sleep(0.1)
        raise TimeoutError(
            f"{topic}[{partition}] has no leader outside {sorted(excluded)} after {timeout}s "
            f"(last: {last})"
        )

    def coordinator(self, group: str, timeout: float = 30.0) -> int:
        """The node id coordinating a consumer group: see ``group_coordinator``."""
        return group_coordinator(self.live_bootstrap, group, timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
