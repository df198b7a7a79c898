"""Capture real Debezium change events into tests/fixtures/debezium/.

    .venv/bin/python -m tests.cdc.capture --bootstrap 127.0.0.1:9092   # a running Kafka 4.x
    .venv/bin/python -m tests.cdc.capture --kafka-lib DIR              # start one from jars in DIR

What it does, in order:

1. Uses Kafka Connect and the Debezium PostgreSQL plugin that ``make cdc-jars`` put in .cache/
   (tests/cdc/pom.xml; other versions on request are fetched with Maven here).
2. Starts a private PostgreSQL 15 cluster (tests/cdc/postgres.py), creates the tables of
   tests/cdc/scenario.py and their seed rows.
3. Starts one Kafka Connect standalone worker with one Debezium connector per set-up
   (scenario.SETUPS: each its own slot, publication, topic prefix and converter settings), so
   every set-up sees the very same database changes.
4. Waits for every set-up's snapshot, then runs the cases one transaction at a time, noting each
   transaction's id; a record is attributed to its case by ``source.txId`` (a tombstone to the
   delete before it on its partition; snapshot records by ``op: r``).
5. Writes one JSON document per set-up and case: the records exactly as they are on the topic
   (key and value as UTF-8 strings, headers), the SQL, the columns' PostgreSQL types, and the
   API customers the rows should become (from the ``api_*`` views).

Only the standard library, confluent-kafka (already a dependency of the service) and the
machine's java, mvn and PostgreSQL 15 are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from service.delivery.broker_retry import watermarks
from tests.cdc.connect import runtime as connect_runtime
from tests.cdc.postgres import PostgresCluster, free_port
from tests.cdc.scenario import (
    CASES,
    SCHEMA_SQL,
    SEED_SQL,
    SETUPS,
    TABLE_INCLUDE,
    TABLES,
    Setup,
)

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "tests" / "cdc" / "pom.xml"
CACHE = ROOT / ".cache"
FIXTURES = ROOT / "tests" / "fixtures" / "debezium"
DBNAME = "shop"
TOPIC_PREFIX = "dbz"
# A short-lived worker: the serial collector and C1 only start faster and peak lower
# (measured: ~530 MB RSS against 640-770 MB with the default G1 at the same -Xmx).
CONNECT_JVM_OPTS = "-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


# ---- Maven ---------------------------------------------------------------------------------
def pom_properties() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(POM).getroot()  # noqa: S314 - our own pom
    props = root.find("m:properties", ns)
    assert props is not None
    return {child.tag.split("}")[1]: (child.text or "") for child in props}


def fetch_connect(overrides: dict[str, str]) -> tuple[Path, Path, dict[str, str]]:
    """Connect's classpath folder and the plugin.path folder, fetched once.

    The pom's versions are what ``make cdc-jars`` fetches for the end-to-end tier; other
    versions (``--connect-version``, ``--debezium-version``) are fetched here.
    """
    props = {**pom_properties(), **overrides}
    if not overrides:
        libs, plugins = connect_runtime()
        return libs, plugins, props
    lib = CACHE / "cdc" / f"connect-{props['kafka.connect.version']}"
    plugins = CACHE / "cdc" / f"plugins-{props['debezium.version']}"
    stamp = CACHE / "cdc" / f"fetched-{props['kafka.connect.version']}-{props['debezium.version']}"
    if not stamp.exists():  # a failed fetch can leave one folder complete and the other empty
        log("fetching Kafka Connect and Debezium with Maven ...")
        started = time.monotonic()
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={CACHE / 'm2'}",
             *(f"-D{k}={v}" for k, v in overrides.items()), "generate-resources"],
            check=True, timeout=900,
        )  # fmt: skip
        log(f"fetched in {time.monotonic() - started:.1f} s")
        stamp.touch()
    return lib, plugins, props


# ---- processes -----------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for {timeout:.0f} s: killing it")
            self.popen.kill()
            self.popen.wait(10)

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def peak_rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0


def log4j2_config(path: Path, logfile: Path, extra: str = "") -> None:
    path.write_text(
        "status = warn\n"
        "appender.file.type = File\n"
        "appender.file.name = F\n"
        f"appender.file.fileName = {logfile}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.f.ref = F\n" + extra
    )


def start_scratch_broker(lib: Path, workdir: Path) -> tuple[str, Proc]:
    """A single-node KRaft broker from the jars in ``lib`` (kafka_2.13 and its dependencies).
    Stand-in until the project's broker harness lands."""
    port, cport = free_port(), free_port()
    data = workdir / "kafka-data"
    props = workdir / "server.properties"
    props.write_text(
        "\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "controller.listener.names=CONTROLLER", "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={data}", "num.partitions=1",
            "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1", "group.initial.rebalance.delay.ms=0",
        ]) + "\n"
    )  # fmt: skip
    log4j2_config(workdir / "kafka-log4j2.properties", workdir / "kafka.log")
    cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    cp = f"{lib}/*"
    subprocess.run(
        ["java", "-cp", cp, f"-Dlog4j2.configurationFile={workdir / 'kafka-log4j2.properties'}",
         "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    popen = subprocess.Popen(
        ["java", "-Xms256m", "-Xmx512m", f"-Dkafka.logs.dir={workdir}",
         f"-Dlog4j2.configurationFile={workdir / 'kafka-log4j2.properties'}",
         "-cp", cp, "kafka.Kafka", str(props)],
        stdout=subprocess.DEVNULL, stderr=(workdir / "kafka.stderr").open("wb"),
    )  # fmt: skip
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        if popen.poll() is not None:
            raise RuntimeError(f"the broker exited: {(workdir / 'kafka.stderr').read_text()}")
        time.sleep(0.2)
    return bootstrap, Proc("kafka", popen)


def connector_config(setup: Setup, pg: PostgresCluster) -> dict[str, str]:
    slot = re.sub(r"[^a-z0-9_]", "_", setup.name)
    config = {
        "name": setup.name,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg.port),
        "database.user": "postgres",
        "database.password": "unused",  # trust authentication
        "database.dbname": DBNAME,
        "topic.prefix": f"{TOPIC_PREFIX}-{setup.name}",
        "plugin.name": "pgoutput",
        "slot.name": f"slot_{slot}",
        "slot.drop.on.stop": "true",
        "publication.name": f"pub_{slot}",
        "publication.autocreate.mode": "filtered",
        "table.include.list": TABLE_INCLUDE,
        "snapshot.mode": "initial",
        **setup.connector,
    }
    schemas = "true" if setup.schemas else "false"
    for side in ("key", "value"):
        config[f"{side}.converter"] = "org.apache.kafka.connect.json.JsonConverter"
        config[f"{side}.converter.schemas.enable"] = schemas
        for key, value in setup.converter.items():
            config[f"{side}.converter.{key}"] = value
    return config


def start_connect(
    lib: Path, plugins: Path, workdir: Path, bootstrap: str, configs: list[dict[str, str]]
) -> tuple[Proc, int]:
    rest_port = free_port()
    worker = workdir / "worker.properties"
    worker.write_text(
        "\n".join([
            f"bootstrap.servers={bootstrap}",
            "key.converter=org.apache.kafka.connect.json.JsonConverter",
            "value.converter=org.apache.kafka.connect.json.JsonConverter",
            f"offset.storage.file.filename={workdir / 'connect.offsets'}",
            "offset.flush.interval.ms=1000",
            f"plugin.path={plugins}",
            f"listeners=http://127.0.0.1:{rest_port}",
            "rest.advertised.host.name=127.0.0.1",
        ]) + "\n"
    )  # fmt: skip
    files = []
    for config in configs:
        path = workdir / f"connector-{config['name']}.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        files.append(str(path))
    log4j2_config(workdir / "connect-log4j2.properties", workdir / "connect.log")
    popen = subprocess.Popen(
        ["java", *os.environ.get("CDC_CONNECT_JVM_OPTS", CONNECT_JVM_OPTS).split(),
         f"-Dlog4j2.configurationFile={workdir / 'connect-log4j2.properties'}",
         "-cp", f"{lib}/*", "org.apache.kafka.connect.cli.ConnectStandalone",
         str(worker), *files],
        stdout=subprocess.DEVNULL, stderr=(workdir / "connect.stderr").open("wb"),
    )  # fmt: skip
    return Proc("connect", popen), rest_port


def connector_states(rest_port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{rest_port}/connectors?expand=status"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    states = {}
    for name, info in body.items():
        status = info["status"]
        tasks = status.get("tasks") or []
        state = status["connector"]["state"]
        if tasks and tasks[0]["state"] != "RUNNING":
            state = f"task {tasks[0]['state']}: {tasks[0].get('trace', '')[:2000]}"
        states[name] = state
    return states


# ---- consuming -----------------------------------------------------------------------------
@dataclass
class Captured:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    received: float


class Collector(threading.Thread):
    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.records: list[Captured] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": f"capture-{os.getpid()}-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })  # fmt: skip
        # Manual assignment of every partition of every dbz-* topic, from offset 0: no group
        # rebalance to wait for (a regex subscription did not pick up topics created later).
        self.assigned: set[tuple[str, int]] = set()
        self.watermarks = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
        self.next_lookup = 0.0

    def _assign_new_topics(self) -> None:
        if time.monotonic() < self.next_lookup:
            return
        self.next_lookup = time.monotonic() + 0.5
        metadata = self.consumer.list_topics(timeout=5)
        new = [
            TopicPartition(name, p, 0)
            for name, topic in metadata.topics.items()
            if name.startswith(f"{TOPIC_PREFIX}-") and not topic.error
            for p in topic.partitions
            if (name, p) not in self.assigned
        ]
        if new:
            self.consumer.incremental_assign(new)
            with self.lock:
                self.assigned.update((tp.topic, tp.partition) for tp in new)

    def run(self) -> None:
        while not self.stopping.is_set():
            self._assign_new_topics()
            message = self.consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                continue  # a topic being created, and the like
            raw_headers = message.headers() or []
            headers = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
            record = Captured(
                str(message.topic()), int(message.partition() or 0), int(message.offset() or 0),
                message.timestamp()[1], message.key(), message.value(),
                [(str(k), v if isinstance(v, bytes | None) else v.encode()) for k, v in headers],
                time.monotonic(),
            )  # fmt: skip
            with self.lock:
                self.records.append(record)

    def snapshot(self) -> list[Captured]:
        with self.lock:
            return list(self.records)

    def caught_up(self) -> bool:
        """Every dbz-* partition read up to its high watermark (real Kafka: exact). Asked of
        a second consumer: calls into the polling one from another thread were seen to hang."""
        with self.lock:
            seen: dict[tuple[str, int], int] = {}
            for r in self.records:
                seen[(r.topic, r.partition)] = max(seen.get((r.topic, r.partition), -1), r.offset)
            assigned = set(self.assigned)
        if not assigned:
            return False
        for topic, partition in assigned:
            # The topics are Connect's and new: their leaders may not serve them yet.
            _, high = watermarks(self.watermarks, TopicPartition(topic, partition), 20)
            if seen.get((topic, partition), -1) < high - 1:
                return False
        return True

    def close(self) -> None:
        self.stopping.set()
        self.join(10)
        self.consumer.close()
        self.watermarks.close()


def drop_old_topics(bootstrap: str) -> None:
    """A previous capture's topics would hand us its records: delete them first."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{TOPIC_PREFIX}-")]
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(60)
    wait_for(
        "the old topics to go",
        lambda: (
            not any(t.startswith(f"{TOPIC_PREFIX}-") for t in admin.list_topics(timeout=10).topics)
        ),
        60,
    )
    log(f"deleted {len(names)} topics of an earlier capture")


def setup_of(topic: str) -> str:
    return topic[len(TOPIC_PREFIX) + 1 :].split(".", 1)[0]


def envelope(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    event = json.loads(value)
    if isinstance(event, dict) and "payload" in event and "schema" in event:
        event = event["payload"]
    return event if isinstance(event, dict) else None


def wait_for(what: str, condition: Any, timeout: float, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- the capture ---------------------------------------------------------------------------
COLUMNS_SQL = """
    SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           pg_get_expr(d.adbin, d.adrelid), c.relreplident
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = 'public.{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum"""
API_ROWS_SQL = (
    'SELECT json_strip_nulls(row_to_json(v))::text FROM api_{table} v {where} ORDER BY "customerId"'
)


def column_types(pg: PostgresCluster, tables: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in tables:  # table names are our own constants
        rows = pg.query(COLUMNS_SQL.format(table=table), dbname=DBNAME)
        identity = {"d": "DEFAULT", "f": "FULL", "n": "NOTHING", "i": "INDEX"}[rows[0][4] or "d"]
        columns = {}
        for name, pgtype, notnull, default, _ in rows:
            columns[name] = {"type": pgtype, "nullable": notnull != "t"}
            if default is not None:
                columns[name]["default"] = default
        out[table] = {"replica_identity": identity, "columns": columns}
    return out


def api_rows(pg: PostgresCluster, tables: tuple[str, ...], ids: tuple[str, ...]) -> list[Any]:
    rows: list[Any] = []
    for table in tables:
        literal = ",".join("'" + i.replace("'", "''") + "'" for i in ids) if ids else None
        where = f'WHERE "customerId" IN ({literal})' if literal else ""
        for (doc,) in pg.query(API_ROWS_SQL.format(table=table, where=where), dbname=DBNAME):
            rows.append({"table": table, "customer": json.loads(doc or "null")})
    return rows


def record_doc(r: Captured) -> dict[str, Any]:
    def text(raw: bytes | None) -> str | None:
        return None if raw is None else raw.decode("utf-8")

    headers = []
    for name, raw in r.headers:
        try:
            headers.append({"key": name, "value": text(raw)})
        except UnicodeDecodeError:
            headers.append({"key": name, "value_base64": base64.b64encode(raw or b"").decode()})
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp,
        "headers": headers,
        "key": text(r.key),
        "value": text(r.value),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    broker = parser.add_mutually_exclusive_group(required=True)
    broker.add_argument("--bootstrap", help="a running Kafka 4.x broker (host:port)")
    broker.add_argument("--kafka-lib", type=Path, help="start a scratch broker from these jars")
    parser.add_argument("--only", action="append", help="capture only this set-up (repeatable)")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--connect-version", help="override the pom's kafka.connect.version")
    parser.add_argument("--debezium-version", help="override the pom's debezium.version")
    args = parser.parse_args(argv)
    overrides = {
        key: value
        for key, value in (
            ("kafka.connect.version", args.connect_version),
            ("debezium.version", args.debezium_version),
        )
        if value
    }

    setups = [s for s in SETUPS if not args.only or s.name in args.only]
    lib, plugins, props = fetch_connect(overrides)
    workdir = Path(tempfile.mkdtemp(prefix="cdc-capture-"))
    procs: list[Proc] = []
    metrics: dict[str, Any] = {
        "kafka_connect": props["kafka.connect.version"],
        "debezium": props["debezium.version"],
    }
    try:
        with PostgresCluster() as pg:
            pg.execute(f"CREATE DATABASE {DBNAME}")
            pg.execute(SCHEMA_SQL + SEED_SQL, dbname=DBNAME)
            metrics["postgres"] = pg.query("SHOW server_version", dbname=DBNAME)[0][0]
            if args.kafka_lib:
                bootstrap, kafka = start_scratch_broker(args.kafka_lib, workdir)
                procs.append(kafka)
            else:
                bootstrap = args.bootstrap
            drop_old_topics(bootstrap)
            collector = Collector(bootstrap)
            collector.start()
            configs = [connector_config(s, pg) for s in setups]
            started = time.monotonic()
            connect, rest_port = start_connect(lib, plugins, workdir, bootstrap, configs)
            procs.append(connect)

            count = "SELECT count(*) FROM {}"
            seed_rows = sum(
                int(pg.query(count.format(t), dbname=DBNAME)[0][0] or 0) for t in TABLES
            )

            def snapshots_done() -> bool:
                if connect.popen.poll() is not None:
                    raise RuntimeError(
                        f"Connect exited: {(workdir / 'connect.stderr').read_text()}"
                    )
                counts: dict[str, int] = defaultdict(int)
                for r in collector.snapshot():
                    event = envelope(r.value)
                    if event and event.get("op") == "r":
                        counts[setup_of(r.topic)] += 1
                return all(counts[s.name] >= seed_rows for s in setups)

            def first_record() -> bool:
                if connect.popen.poll() is not None:
                    raise RuntimeError(
                        f"Connect exited: {(workdir / 'connect.stderr').read_text()}"
                    )
                return bool(collector.records)

            wait_for("the first record", first_record, 180)
            metrics["connect_start_to_first_record_s"] = round(
                collector.records[0].received - started, 2
            )
            wait_for("every set-up's snapshot", snapshots_done, 180)
            metrics["connect_start_to_all_snapshots_s"] = round(time.monotonic() - started, 2)
            states: dict[str, str] = {}

            def rest_answers() -> bool:
                nonlocal states
                try:
                    states = connector_states(rest_port)
                except OSError:
                    return False
                return len(states) == len(setups)

            wait_for("Connect's REST API", rest_answers, 60)
            log("connectors:", states)
            if any(state != "RUNNING" for state in states.values()):
                raise RuntimeError(f"a connector is not running: {states}")
            time.sleep(2)  # streaming starts right after the snapshot; let every task reach it

            txids: dict[int, str] = {}
            case_docs: dict[str, dict[str, Any]] = {
                "snapshot": {
                    "about": "rows that existed before the connector started (op r)",
                    "sql": [SEED_SQL.strip()],
                    "tables": TABLES,
                    "expected_api": api_rows(pg, TABLES, ()),
                }
            }
            for case in CASES:
                sql = []
                for statement in case.transactions:
                    txid = pg.transaction(statement, dbname=DBNAME)
                    txids[txid] = case.name
                    sql.append(" ".join(statement.split()))
                case_docs[case.name] = {
                    "about": case.about,
                    "sql": sql,
                    "tables": case.tables,
                    "expected_api": api_rows(pg, case.tables, case.ids),
                }
                log(f"ran {case.name}")
            pg.transaction("INSERT INTO cdc_marker (label) VALUES ('end')", dbname=DBNAME)

            def markers_seen() -> bool:
                seen = {setup_of(r.topic) for r in collector.snapshot() if "cdc_marker" in r.topic}
                return all(s.name in seen for s in setups)

            wait_for("the end marker of every set-up", markers_seen, 120)
            time.sleep(1.5)
            wait_for("the consumer to reach the end of every topic", collector.caught_up, 60)
            metrics["connect_rss_mb"] = round(connect.rss_mb(), 1)
            metrics["connect_peak_rss_mb"] = round(connect.peak_rss_mb(), 1)
            metrics["connectors"] = len(setups)
            column_info = column_types(pg, TABLES)
            collector.close()
            records = collector.snapshot()
            connect.stop()
            metrics["records"] = len(records)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    write_fixtures(args.out, setups, records, txids, case_docs, column_info)
    log("metrics:", json.dumps(metrics))
    (args.out / "capture-metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def write_fixtures(
    out: Path,
    setups: list[Setup],
    records: list[Captured],
    txids: dict[int, str],
    case_docs: dict[str, dict[str, Any]],
    column_info: dict[str, Any],
) -> None:
    by_case: dict[tuple[str, str], list[Captured]] = defaultdict(list)
    unattributed = []
    last_case: dict[tuple[str, int], str] = {}
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        setup_name = setup_of(r.topic)
        if "cdc_marker" in r.topic:
            continue
        event = envelope(r.value)
        case: str | None
        if r.value is None:
            case = last_case.get((r.topic, r.partition))  # the tombstone after a delete
        elif event and event.get("op") == "r":
            case = "snapshot"
        else:
            case = txids.get(int((event or {}).get("source", {}).get("txId") or -1))
        if case is None:
            unattributed.append(r)
            continue
        last_case[(r.topic, r.partition)] = case
        by_case[(setup_name, case)].append(r)
    if unattributed:
        log(f"WARNING: {len(unattributed)} records not attributed to a case")

    for setup in setups:
        folder = out / setup.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        wanted = setup.cases or tuple(case_docs)
        for case_name in wanted:
            doc = case_docs[case_name]
            found = sorted(
                by_case.get((setup.name, case_name), []), key=lambda r: (r.topic, r.offset)
            )
            fixture = {
                "setup": setup.name,
                "setup_about": setup.about,
                "case": case_name,
                "about": doc["about"],
                "sql": doc["sql"],
                "columns": {t: column_info[t] for t in doc["tables"]},
                "expected_api": doc["expected_api"],
                "records": [record_doc(r) for r in found],
            }
            (folder / f"{case_name}.json").write_text(
                json.dumps(fixture, indent=2, ensure_ascii=False) + "\n"
            )
        log(f"{setup.name}: {len(wanted)} fixture files")


if __name__ == "__main__":
    sys.exit(main())
