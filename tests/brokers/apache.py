"""Real Apache Kafka (KRaft) for tests: one node, or a cluster of several, on loopback ports.

The broker runs from the jars ``make kafka-jars`` copies out of Maven Central into ``.cache/``
(``tests/brokers/pom.xml`` names the version): no tarball and no Docker, only Java 17+.
Each node is broker and controller in one process, formatted with ``kafka.tools.StorageTool``
in a fresh temporary directory that also holds its configuration and its log (``log_path``),
and started with a small heap. Readiness means "answers a metadata request", never a log line.

``KafkaNode`` is a drop-in for the demo's ``EmbeddedBroker`` in fixtures (``start``, ``stop``,
``bootstrap``, ``pid``, ``create_topics``, context manager) and adds what the memory broker
cannot do: ``kill`` (SIGKILL) and ``restart`` on the same log directory and ports.
``KafkaCluster`` runs N such nodes as one quorum, with helpers to find a partition's leader and
a group's coordinator so that tests can kill exactly those.

The settings favour fast tests over production defaults: see ``TEST_SETTINGS``.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from confluent_kafka import KafkaException

from tests.brokers.admin import admin_client, create_topics, group_coordinator
from tests.brokers.runtime import die_with_this_process, free_ports, kafka_runtime, kafka_uuid, tail

# Broker settings for fast, strict tests; every node gets them (``overrides`` win).
TEST_SETTINGS: dict[str, str] = {
    # The service never creates topics: tests create them explicitly, so a missing one is an error.
    "auto.create.topics.enable": "false",
    # The first classic group join waits this long for more members (default 3 s).
    "group.initial.rebalance.delay.ms": "0",
    # Classic protocol: allow session.timeout.ms down to 1 s (the default floor is 6 s).
    "group.min.session.timeout.ms": "1000",
    # KIP-848 (group.protocol=consumer): the session and heartbeat are the broker's settings and
    # the client may not set them. Lowered together with their floors (defaults 45 s / 5 s).
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.session.timeout.ms": "1000",
    "group.consumer.heartbeat.interval.ms": "1000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    # A killed node is fenced, and its partitions get new leaders, after this (default 9 s).
    # It also bounds restart after SIGKILL: the controller refuses the new process's
    # registration (DuplicateBrokerRegistrationException) until the old session has expired,
    # so kill + restart takes ~2 s of start-up plus this; a clean restart does not wait.
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "1000",
    # 50 partitions by default: creating them is most of the first group join on a cold node.
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.num.partitions": "10",
}

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


# --- one node ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voter:
    """One controller of a quorum: its node id, controller port and metadata directory id."""

    node_id: int
    port: int
    directory_id: str


_LIVE: set[KafkaNode] = set()  # nodes whose directory exists: atexit kills and removes them


@atexit.register
def _discard_leftovers() -> None:
    for node in list(_LIVE):
        node.kill()
        node.stop()


class KafkaNode:
    """One KRaft node (broker and controller in one JVM) on free 127.0.0.1 ports.

    ``start`` formats a fresh temporary directory the first time; ``kill``/``terminate`` keep
    it so that ``restart`` (or ``start``) comes back on the same log directory and ports;
    ``stop`` ends the process and removes the directory. ``voters`` and ``cluster_id`` are how
    ``KafkaCluster`` makes several nodes one quorum; alone, a node formats with ``--standalone``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        node_id: int = 1,
        controller_port: int | None = None,
        heap_mb: int = 512,
        overrides: Mapping[str, str] | None = None,
        cluster_id: str | None = None,
        voters: Sequence[Voter] | None = None,
        jvm_options: Sequence[str] = (),
    ) -> None:
        if port is None or controller_port is None:
            chosen = free_ports(2)
            port = port or chosen[0]
            controller_port = controller_port or chosen[1]
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.bootstrap = f"127.0.0.1:{port}"
        self.heap_mb = heap_mb
        self.overrides = dict(overrides or {})
        self.cluster_id = cluster_id or kafka_uuid()
        self.voters = list(voters or [])
        if self.voters and node_id not in {v.node_id for v in self.voters}:
            raise ValueError(f"node {node_id} is not among the voters {self.voters}")
        self.jvm_options = list(jvm_options)
        self.directory: Path | None = None
        self.started_at: float | None = None  # monotonic time of the last launch
        self.ready_after: float | None = None  # seconds from that launch to answering metadata
        self._process: subprocess.Popen[bytes] | None = None

    # -- where things are

    @property
    def data_dir(self) -> Path:
        return self._dir() / "data"

    @property
    def log_path(self) -> Path:
        """The broker's log4j log (kept across restarts, removed by ``stop``)."""
        return self._dir() / "server.log"

    @property
    def pid(self) -> int:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"Kafka node {self.node_id} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def logtail(self, lines: int = 40) -> str:
        """The end of the broker's log and of the JVM's own output, for failure messages."""
        if self.directory is None:
            return "(the node has no directory: never started, or stopped)"
        return (
            f"--- {self.log_path} ---\n{tail(self.log_path, lines)}\n"
            f"--- {self.directory / 'stdout.log'} ---\n{tail(self.directory / 'stdout.log', 10)}"
        )

    def _dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError(f"Kafka node {self.node_id} has no directory (not started)")
        return self.directory

    # -- lifecycle

    def start(self, timeout: float = 60.0) -> Self:
        """Format (first time only), launch, and wait until the node answers metadata."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def prepare(self) -> None:
        """Write the configuration and format a fresh directory, unless already done."""
        if self.directory is not None:
            return
        runtime = kafka_runtime()
        self.directory = Path(tempfile.mkdtemp(prefix=f"kafka-node{self.node_id}-"))
        _LIVE.add(self)
        (self.directory / "log4j2.properties").write_text(_LOG4J2)
        properties = self.directory / "server.properties"
        properties.write_text("".join(f"{k}={v}\n" for k, v in self._settings().items()))
        if self.voters:
            quorum = ",".join(
                f"{v.node_id}@127.0.0.1:{v.port}:{v.directory_id}" for v in self.voters
            )
            how = ["--initial-controllers", quorum]
        else:
            how = ["--standalone"]
        formatted = subprocess.run(
            [
                runtime.java,
                *self._java_properties(),
                "-cp",
                runtime.classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(properties),
                *how,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if formatted.returncode != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            _LIVE.discard(self)
            raise RuntimeError(
                f"formatting Kafka node {self.node_id} failed ({formatted.returncode}):\n"
                f"{formatted.stdout}{formatted.stderr}"
            )

    def launch(self) -> None:
        """Start the JVM without waiting (``wait_ready`` waits); formats first if needed."""
        if self.running:
            raise RuntimeError(f"Kafka node {self.node_id} is already running")
        self.prepare()
        runtime = kafka_runtime()
        directory = self._dir()
        command = [
            *die_with_this_process(),
            runtime.java,
            f"-Xms{min(256, self.heap_mb)}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._java_properties(),
            *self.jvm_options,
            "-cp",
            runtime.classpath,
            "kafka.Kafka",
            str(directory / "server.properties"),
        ]
        with (directory / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the tests, which then stop the node
            )
        self.started_at = time.monotonic()
        self.ready_after = None

    def wait_ready(self, timeout: float = 60.0, *, brokers: int = 1) -> None:
        """Wait until this node answers metadata listing itself and ``brokers`` brokers in all.

        Fails with the log's tail when the process exits or ``timeout`` passes (the process is
        then killed; ``stop`` still has to remove the directory).
        """
        process = self._process
        if process is None:
            raise RuntimeError(f"Kafka node {self.node_id} was not launched")
        admin = admin_client(self.bootstrap)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"Kafka node {self.node_id} exited with {process.returncode} while "
                    f"starting:\n{self.logtail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(
                    f"Kafka node {self.node_id} did not answer metadata on {self.bootstrap} "
                    f"within {timeout}s:\n{self.logtail()}"
                )
            try:
                metadata = admin.list_topics(timeout=min(1.0, remaining))
            except KafkaException:
                time.sleep(0.05)
                continue
            if self.node_id in metadata.brokers and len(metadata.brokers) >= brokers:
                if self.started_at is not None:
                    self.ready_after = time.monotonic() - self.started_at
                return
            time.sleep(0.05)

    def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout``; the directory stays."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._process = None

    def send_signal(self, signum: int) -> None:
        """Signal the JVM if it runs (SIGSTOP/SIGCONT pause a node) without waiting."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the directory stays for ``restart``."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self._process = None

    def restart(self, timeout: float = 60.0) -> Self:
        """Stop the node if it runs (cleanly), then start it on the same directory and ports."""
        self.terminate()
        return self.start(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """End the process (SIGTERM, then SIGKILL) and remove the node's directory."""
        try:
            self.terminate(timeout)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
                self.directory = None
            _LIVE.discard(self)

    def create_topics(
        self,
        names: Mapping[str, int],
        timeout: float = 30.0,
        *,
        replication_factor: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """Create topics with the given partition counts (existing ones are left alone)."""
        create_topics(
            self.bootstrap,
            names,
            timeout,
            replication_factor=replication_factor,
            config=config,
        )

    def coordinator(self, group: str, timeout: float = 30.0) -> int:
        """This node's id once it coordinates ``group`` (see ``group_coordinator``)."""
        return group_coordinator(self.bootstrap, group, timeout)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"KafkaNode(node_id={self.node_id}, bootstrap={self.bootstrap!r}, {state})"

    # -- configuration

    def _java_properties(self) -> list[str]:
        directory = self._dir()
        return [
            f"-Dkafka.logs.dir={directory}",
            f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
        ]

    def _settings(self) -> dict[str, str]:
        listeners = (
            f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        )
        controllers = self.voters or [Voter(self.node_id, self.controller_port, "")]
        replicas = len(controllers)
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": ",".join(
                f"127.0.0.1:{v.port}" for v in controllers
            ),
            "listeners": listeners,
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # Internal topics as replicated as the cluster allows (one node: 1, else 3 and 2).
            "offsets.topic.replication.factor": str(min(3, replicas)),
            "transaction.state.log.replication.factor": str(min(3, replicas)),
            "transaction.state.log.min.isr": str(min(2, replicas)),
            "share.coordinator.state.topic.replication.factor": str(min(3, replicas)),
            "share.coordinator.state.topic.min.isr": str(min(2, replicas)),
            "default.replication.factor": str(min(3, replicas)),
            **TEST_SETTINGS,
            **self.overrides,
        }
