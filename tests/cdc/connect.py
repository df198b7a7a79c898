"""Kafka Connect (standalone) with the Debezium PostgreSQL connector, for the tests and demos.

    worker = ConnectWorker(bootstrap, [connector_config("dbz", pg, ...)]).start()
    worker.states()          # {"dbz": "RUNNING"}
    worker.stop()

The worker runs from the jars ``make cdc-jars`` copies out of Maven Central into ``.cache/cdc/``
(``tests/cdc/pom.xml`` names Kafka Connect and Debezium): the Connect runtime's classpath, and
the Debezium plugin unpacked under the folder ``plugin.path`` names. Standalone mode keeps
source offsets in a file, so the worker needs nothing on the broker but the connectors' own
topics, which the tests create first (the test broker does not auto-create topics, and users'
brokers often do not either). Its REST listener is bound to 127.0.0.1 on a free port.

A short-lived worker with several connectors fits in ``-Xmx512m`` with the serial collector and
the C1 compiler only: it starts faster and peaks lower (~530 MB RSS measured, against 640-770
MB with the default G1). ``CDC_CONNECT_JVM_OPTS`` overrides.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

from tests.brokers.runtime import REPO_ROOT, die_with_this_process, free_port, java_binary, tail

POM = Path(__file__).with_name("pom.xml")
CACHE = REPO_ROOT / ".cache" / "cdc"
JVM_OPTIONS = "-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
APICURIO_AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


class ConnectUnavailable(RuntimeError):
    """Kafka Connect cannot run here: the jars or a Java 17+ runtime are missing."""


def pom_property(name: str) -> str:
    match = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", POM.read_text())
    if match is None:
        raise ConnectUnavailable(f"{POM} does not name <{name}>.")
    return match.group(1)


def versions() -> tuple[str, str]:
    """(Kafka Connect, Debezium) as ``tests/cdc/pom.xml`` pins them."""
    return pom_property("kafka.connect.version"), pom_property("debezium.version")


def stamp() -> Path:
    """The file ``make cdc-jars`` writes once both folders are complete."""
    connect, debezium = versions()
    return CACHE / f".installed-{connect}-{debezium}"


def runtime() -> tuple[Path, Path]:
    """Connect's classpath folder and the ``plugin.path`` folder, or a one-sentence error."""
    connect, debezium = versions()
    libs, plugins = CACHE / f"connect-{connect}", CACHE / f"plugins-{debezium}"
    if not stamp().is_file() or not (plugins / "debezium-connector-postgres").is_dir():
        raise ConnectUnavailable(
            f"Kafka Connect {connect} and Debezium {debezium} are not in {CACHE}: run "
            "`make cdc-jars` (it needs Java 17+ and Maven)."
        )
    return libs, plugins


def connector_config(
    name: str,
    *,
    port: int,
    dbname: str,
    tables: str,
    schemas: bool = True,
    connector: dict[str, str] | None = None,
    converter: dict[str, str] | None = None,
    avro_registry: str | None = None,
) -> dict[str, str]:
    """A Debezium PostgreSQL connector as the README recommends, with per-set-up overrides.

    ``pgoutput`` (Debian's PostgreSQL has no ``decoderbufs``), a slot and publication of its
    own (several connectors on one database), the slot dropped on stop (a throw-away
    cluster), topics ``<name>.<schema>.<table>``, and the JSON converter on key and value
    with ``replace.null.with.default=false`` so a NULL stays a NULL. ``avro_registry``: the
    registry's own API instead, written through Apicurio's ``AvroConverter`` in the
    Confluent wire format (the README's Avro configuration; its jars: ``make registry-jars``).
    """
    slot = re.sub(r"[^a-z0-9_]", "_", name.lower())
    config = {
        "name": name,
        "connector.class": POSTGRES_CONNECTOR,
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": str(port),
        "database.user": "postgres",
        "database.password": "unused",  # trust authentication on loopback
        "database.dbname": dbname,
        "topic.prefix": name,
        "plugin.name": "pgoutput",
        "slot.name": f"slot_{slot}",
        "slot.drop.on.stop": "true",
        "publication.name": f"pub_{slot}",
        "publication.autocreate.mode": "filtered",
        "table.include.list": tables,
        "snapshot.mode": "initial",
        **(connector or {}),
    }
    for side in ("key", "value"):
        if avro_registry is not None:
            config[f"{side}.converter"] = APICURIO_AVRO_CONVERTER
            for key, value in {
                "url": avro_registry,
                "auto-register": "true",
                "find-latest": "true",
                "as-confluent": "true",  # a zero byte and a 4-byte id, as Confluent's
                "use-id": "contentId",  # the id the Confluent-compatible API serves
                "headers.enabled": "false",  # the id in the value, not in a header
            }.items():
                config[f"{side}.converter.apicurio.registry.{key}"] = value
        else:
            config[f"{side}.converter"] = "org.apache.kafka.connect.json.JsonConverter"
            config[f"{side}.converter.schemas.enable"] = "true" if schemas else "false"
            config[f"{side}.converter.replace.null.with.default"] = "false"
        for key, value in (converter or {}).items():
            config[f"{side}.converter.{key}"] = value
    return config


class ConnectWorker:
    """One standalone Connect worker running ``connectors`` (their configs), on loopback."""

    def __init__(
        self,
        bootstrap: str,
        connectors: list[dict[str, str]],
        plugin_paths: tuple[Path, ...] = (),
    ) -> None:
        """``plugin_paths``: more ``plugin.path`` entries (Apicurio's converter, say)."""
        self.bootstrap = bootstrap
        self.connectors = connectors
        self.plugin_paths = plugin_paths
        self.rest_port = free_port()
        self.directory: Path | None = None
        self.started_at: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        assert self.directory is not None, "not started"
        return self.directory / "connect.log"

    def logtail(self, lines: int = 40) -> str:
        if self.directory is None:
            return "(not started)"
        return (
            f"--- {self.log_path} ---\n{tail(self.log_path, lines)}\n"
            f"--- stdout ---\n{tail(self.directory / 'stdout.log', 10)}"
        )

    def start(self) -> Self:
        """Launch the JVM; the connectors start (and snapshot) on their own."""
        libs, plugins = runtime()
        self.directory = Path(tempfile.mkdtemp(prefix="connect-"))
        worker = self.directory / "worker.properties"
        worker.write_text(
            "".join(
                f"{k}={v}\n"
                for k, v in {
                    "bootstrap.servers": self.bootstrap,
                    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                    "offset.storage.file.filename": self.directory / "offsets",
                    "offset.flush.interval.ms": "1000",
                    "plugin.path": ",".join(str(p) for p in (plugins, *self.plugin_paths)),
                    "listeners": f"http://127.0.0.1:{self.rest_port}",
                    "rest.advertised.host.name": "127.0.0.1",
                }.items()
            )
        )
        files = []
        for config in self.connectors:
            path = self.directory / f"{config['name']}.properties"
            path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
            files.append(str(path))
        log4j = self.directory / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.log_path))
        command = [
            *die_with_this_process(),
            java_binary(),
            *os.environ.get("CDC_CONNECT_JVM_OPTS", JVM_OPTIONS).split(),
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker),
            *files,
        ]
        with (self.directory / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        return self

    def alive(self) -> None:
        """Raise, with the log's tail, if the worker exited."""
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(
                f"Kafka Connect exited with {self._process.returncode}:\n{self.logtail()}"
            )

    def states(self) -> dict[str, str]:
        """Each connector's state, its task's when that is not RUNNING (with its trace)."""
        self.alive()
        url = f"http://127.0.0.1:{self.rest_port}/connectors?expand=status"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: dict[str, Any] = json.load(response)
        states = {}
        for name, info in body.items():
            status = info["status"]
            state = status["connector"]["state"]
            for task in status.get("tasks") or []:
                if task["state"] != "RUNNING":
                    state = f"task {task['state']}: {task.get('trace', '')[:1500]}"
            states[name] = state
        return states

    def running(self) -> bool:
        """Every connector and task RUNNING (False while the REST API is not up yet)."""
        try:
            states = self.states()
        except (urllib.error.URLError, OSError):
            return False
        failed = {n: s for n, s in states.items() if s not in ("RUNNING", "UNASSIGNED")}
        if failed:
            raise RuntimeError(f"a connector failed: {failed}\n{self.logtail()}")
        return len(states) == len(self.connectors) and all(s == "RUNNING" for s in states.values())

    def rss_mb(self) -> float:
        if self._process is None:
            return 0.0
        try:
            for line in Path(f"/proc/{self._process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (connectors stop, Debezium drops its slots), SIGKILL after ``timeout``."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
