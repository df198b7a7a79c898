"""``make demo-cdc``: from a PostgreSQL table to the API, changes made while you watch.

Starts the whole chain on loopback: Apache Kafka (one KRaft node), a private PostgreSQL with
the shop database (``tests/cdc/shop.py``), Kafka Connect with the Debezium PostgreSQL
connector (schemas on, the README's recommended settings), the API simulator and customer-sync
itself, in this process so the live view reads its metrics. Once the snapshot of the existing
rows is on Kafka, it applies the scripted SQL changes one transaction at a time (inserts,
updates in one transaction and across, NULLs into columns with defaults, a TOASTed jsonb, a
delete, a TRUNCATE, a second source; orders and point adjustments) while the view runs, and
ends with tables that compare what PostgreSQL holds with what the API received
(``tests/cdc/demo_report.py``).

customer-sync reads three routes of a ``ROUTES_FILE``, written to a temporary folder and shown
at the start: the customer tables, ``orders`` as Gameball orders (keyed by the row's id), and
``point_adjustments`` as balance adjustments, the route that opts in to items without an id
(``unsafe_without_ids: true``): only their INSERTs are sent, once.

``make demo-cdc FORMAT=avro`` (``--format avro``) has Debezium write Avro instead, through
Apicurio Registry (started here too) and its converter in the Confluent wire format, and
customer-sync read it by its schemas: the same rows reach the API.

Needs Java 17+, Maven and PostgreSQL's server (``make demo-cdc`` fetches the jars once);
``make demo`` is the Python-only demo.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.syntax import Syntax

from service.config import Settings, load_settings
from service.delivery.pipeline import Pipeline
from service.errors import CustomerSyncError
from service.gameball.operations import Operation
from service.gameball.simulator import RunningSimulator, SimulatorConfig, SimulatorState
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import Metrics
from service.tools.demo_view import Numbers, live_view, summary_table
from service.waiting import wait_event
from tests.brokers.apache import KafkaNode
from tests.brokers.runtime import KafkaUnavailable, free_port
from tests.cdc import chain, shop
from tests.cdc.chain import SetUp
from tests.cdc.connect import ConnectUnavailable, ConnectWorker
from tests.cdc.demo_report import compare_adjustments, compare_customers, compare_orders
from tests.cdc.postgres import PostgresCluster, PostgresError
from tests.registry.apicurio import Apicurio, RegistryUnavailable, converter_plugins

SETUP = SetUp(
    "shop",
    "schemas on, decimal.handling.mode=precise, NULLs kept, TRUNCATEs emitted",
    mapping={
        "custom.tier": "loyalty_tier",
        "custom.balance": "balance",
        "custom.points": "lifetime_points",
        "custom.vip": "is_vip",
        "custom.loyaltyPoints": "loyalty_points",
    },
    facts=True,
)
SHOWN = ("1", "3", "102", "1003", "6f1c2a3e-1111-4a5b-9c3d-000000000001", "T-0004")
STEP_PAUSE = 0.8  # seconds between two transactions, to watch them arrive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cdc.demo", description=__doc__)
    parser.add_argument(
        "--format",
        choices=("json", "avro"),
        default="json",
        help="what Debezium writes: JSON with schemas, or Avro through a schema registry",
    )
    avro = parser.parse_args(argv).format == "avro"
    console = Console()
    configure_logging("ERROR", "console")
    try:
        with KafkaNode() as broker:
            pg = chain.start_database()
            try:
                if not avro:
                    return _with_database(console, broker, pg, None)
                converter_plugins()  # before the registry starts: one sentence if missing
                with Apicurio() as registry:
                    return _with_database(console, broker, pg, registry)
            finally:
                pg.stop()
    except (KafkaUnavailable, ConnectUnavailable, PostgresError, RegistryUnavailable) as exc:
        console.print(f"[bold red]demo-cdc cannot start:[/] {exc}")
        return 1
    except CustomerSyncError as exc:  # a broker call still failing at its deadline: one sentence
        console.print(f"[bold red]demo-cdc failed:[/] {exc}")
        return 1


def _with_database(
    console: Console, broker: KafkaNode, pg: PostgresCluster, registry: Apicurio | None
) -> int:
    """``registry``: Debezium writes Avro through it (else JSON with schemas)."""
    broker.create_topics(chain.all_topics([SETUP]))
    work = Path(tempfile.mkdtemp(prefix="demo-cdc-"))
    with RunningSimulator(SimulatorConfig(job_duration_seconds=0.2, seed=7)) as simulator:
        sources = SETUP.sources_env(work)
        settings = _settings(
            broker.bootstrap,
            simulator,
            sources,
            registry.url if registry is not None else None,
        )
        if registry is None:
            worker = ConnectWorker(broker.bootstrap, [SETUP.connector_config(pg)])
            written = "JSON with schemas"
        else:
            setup = dataclasses.replace(SETUP, avro=True)
            worker = ConnectWorker(
                broker.bootstrap,
                [setup.connector_config(pg, registry.native_url)],
                plugin_paths=(converter_plugins(),),
            )
            written = f"Avro, schemas in Apicurio Registry {registry.url}"
        console.print(
            f"[bold]customer-sync demo-cdc[/]: PostgreSQL :{pg.port} (database {chain.DBNAME}) "
            f"→ Debezium (Kafka Connect, REST :{worker.rest_port}; {written}) → Apache Kafka "
            f"{broker.bootstrap} → customer-sync → API simulator {simulator.base_url}"
        )
        routes = Path(sources["ROUTES_FILE"])
        console.print(f"[bold]ROUTES_FILE[/] {routes}:")
        console.print(Syntax(routes.read_text(), "yaml", background_color="default"))
        with worker:
            return asyncio.run(_run(console, settings, broker, pg, worker, simulator))


def _settings(
    bootstrap: str, simulator: RunningSimulator, sources: dict[str, str], registry: str | None
) -> Settings:
    """``sources``: the settings that name the topics and mappings (the ``ROUTES_FILE``)."""
    settings = load_settings(
        {
            **({"SCHEMA_REGISTRY_URL": registry} if registry is not None else {}),
            **sources,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_DLQ_TOPIC": SETUP.dlq,
            "KAFKA_GROUP_ID": "customer-sync-demo-cdc",
            "KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000",
            "GAMEBALL_BASE_URL": simulator.base_url,
            "GAMEBALL_API_KEY": simulator.config.api_key,
            "GAMEBALL_SECRET_KEY": simulator.config.secret_key,
            "HTTP_PORT": str(free_port()),
            "BATCH_MAX_WAIT_SECONDS": "0.5",
            "SHUTDOWN_TIMEOUT_SECONDS": "10",
            # Tags ride in the item, as in the end-to-end tier: the simulator's record of a
            # customer is the item, and the per-customer tags call would leave them out of it.
            "TAGS_SYNC": "item",
        }
    )
    return settings.model_copy(update={"kafka_client": {**settings.kafka_client, "log_level": "3"}})


class _Script(threading.Thread):
    """Waits for the snapshot, then applies the changes one transaction at a time."""

    def __init__(self, bootstrap: str, pg: PostgresCluster, worker: ConnectWorker) -> None:
        super().__init__(name="demo-cdc-sql", daemon=True)
        self.bootstrap, self.pg, self.worker = bootstrap, pg, worker
        self.lines: list[str] = []
        self.done = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            chain.wait_for_snapshots(self.bootstrap, [SETUP], self.worker.alive)
            self.lines.append(f"snapshot: the {shop.SEED_ROWS} existing rows are on Kafka (op r)")

            def step(s: shop.Step) -> None:
                self.lines.append(f"SQL: {s.about}")
                time.sleep(STEP_PAUSE)

            chain.apply(self.pg, step)
            chain.wait_for_marker(self.bootstrap, [SETUP], self.worker.alive)
            self.lines.append("every change is on Kafka")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.failure = exc
        finally:
            self.done.set()


async def _run(
    console: Console,
    settings: Settings,
    broker: KafkaNode,
    pg: PostgresCluster,
    worker: ConnectWorker,
    simulator: RunningSimulator,
) -> int:
    metrics, health = Metrics(), Health()
    pipeline = Pipeline.from_settings(settings, metrics=metrics, health=health)
    server = build_server(metrics, health, settings.http_port, host="127.0.0.1")
    metrics_url = f"http://127.0.0.1:{settings.http_port}/metrics"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    script = _Script(broker.bootstrap, pg, worker)
    http = asyncio.create_task(server.serve())
    run = asyncio.create_task(pipeline.run(stop))
    script.start()
    numbers, started, shown = Numbers(metrics), time.monotonic(), 0
    produced = 0
    with Live(console=console, refresh_per_second=4) as live:
        while not stop.is_set() and not run.done():
            produced = await loop.run_in_executor(
                None, chain.records_on, broker.bootstrap, SETUP.source_topics
            )
            while shown < len(script.lines):
                live.console.print(f"  {script.lines[shown]}")
                shown += 1
            live.update(
                live_view(numbers, produced, not script.done.is_set(), metrics_url, started)
            )
            if script.done.is_set() and sum(numbers.outcomes().values()) >= produced:
                break
            await wait_event(stop, 0.25)
        stop.set()
        await run
    server.should_exit = True
    await http
    if script.failure is not None:
        console.print(f"[bold red]the scripted changes failed:[/] {script.failure}")
        return 1
    table, balanced = summary_table(numbers, produced, time.monotonic() - started)
    console.print(table)
    expected = await loop.run_in_executor(None, chain.expected, pg)
    orders = await loop.run_in_executor(None, chain.expected_orders, pg)
    adjustments = await loop.run_in_executor(None, chain.adjustments, pg)
    state = simulator.state
    state.settle()
    avro = settings.schema_registry_url is not None
    counts = state.stats()["operations"]
    # A row whose last change carries Debezium's placeholder for a TOASTed value: the API
    # holds the upsert of every change (sent apart, the update leaves the value as it was).
    upserted = chain.upserted_items(e["customer"] for e in state.applied_since(0))
    holds = {**state.latest, **{c: upserted[c] for c in shop.PLACEHOLDER_ROWS if c in upserted}}
    same = [
        compare_customers(console, expected, holds, tables=SETUP.tables, shown=SHOWN, avro=avro),
        compare_orders(
            console, orders, _applied(state, Operation.ORDERS), counts[Operation.ORDERS]
        ),
        compare_adjustments(
            console,
            adjustments,
            _applied(state, Operation.BALANCE_ADJUSTMENT),
            counts[Operation.BALANCE_ADJUSTMENT],
        ),
    ]
    return 0 if balanced and all(same) else 1


def _applied(state: SimulatorState, operation: Operation) -> list[dict[str, Any]]:
    """The items of the simulator's applied log of ``operation``, in the order applied."""
    return [entry["item"] for entry in state.items_applied_since(operation, 0, None)]


if __name__ == "__main__":
    sys.exit(main())
