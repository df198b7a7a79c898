"""``customer-sync demo``: the real pipeline against an embedded broker and the simulator.

Everything is the production code path except the two ends: Tansu (an
embedded Kafka-protocol broker, memory only) and the API simulator with a
small per-record failure rate, so the dead-letter path shows. Events are
produced on a thread while the pipeline runs (all at once by default, or as a
trickle with ``--rate``), so the live view moves like a real deployment's.

It runs a routes file (:data:`ROUTES`, written to a temporary directory and printed at
start): a shop's customers, orders and point adjustments, each table on its own topic, as the
customers, orders (keyed by ``orderId``) and balance-adjustment (no id, at most once)
operations. Some orders and adjustments are read before their customer exists, so the API
answers "customer not found" until the customers job has applied it (waited for at most
:data:`CUSTOMER_WAIT_SECONDS`, then dead-lettered); one order is written twice, and the API
refuses the second as a duplicate, which counts as delivered.

The view reads the pipeline's own Prometheus registry, the same numbers
``/metrics`` serves, except lag: the demo knows exactly how many records the
broker acknowledged, so it shows produced - consumed rather than a number
computed from high watermarks (which Tansu under-reports).

It ends when every produced record has ended in an outcome, and proves it:
consumed = succeeded + dead-lettered + skipped + coalesced, and per operation, what the jobs
delivered is what the API simulator applied, nothing applied twice (exit 1 if not).
Ctrl-C stops producing and drains the pipeline gracefully (SIGTERM too), and
still prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from service.config import Settings, load_settings
from service.delivery.pipeline import Pipeline
from service.errors import CustomerSyncError
from service.gameball.operations import Operation
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import Metrics
from service.tools.demo_view import Numbers, live_view, operations_table, summary_table
from service.tools.dlq import Reader
from service.tools.embedded_broker import EmbeddedBroker, free_port
from service.tools.replay import describe_record
from service.tools.samples import ADJUSTMENTS, CUSTOMERS, ORDERS, shop
from service.waiting import wait_event

TOPICS = {
    CUSTOMERS: "customer-changes",
    ORDERS: "order-changes",
    ADJUSTMENTS: "point-adjustment-changes",
}
"""Each table's topic."""
PARTITIONS = {CUSTOMERS: 6, ORDERS: 3, ADJUSTMENTS: 1}
OPERATIONS = {
    CUSTOMERS: Operation.CUSTOMERS,
    ORDERS: Operation.ORDERS,
    ADJUSTMENTS: Operation.BALANCE_ADJUSTMENT,
}
"""The operation each table's route delivers as (the routes below)."""
DLQ = "customer-changes.dlq"
CUSTOMER_WAIT_SECONDS = 3
"""An order read before its customer is retried until a customers job has applied the
customer: a few seconds, while the backlog of customers' changes is read. One whose customer
never reaches the API (the API rejected its change at random) is dead-lettered
``customer_not_found`` this much later, not after the service's 600 s, so that the run ends
(and the dead letter shows)."""

ROUTES = f"""\
# customer-sync demo's ROUTES_FILE (docs/routes.md): a route per table
routes:
  - name: customers               # coalesced: a customer's latest state wins;
    operation: customers          # columns named as API fields need no mapping
    topics: [{TOPICS[CUSTOMERS]}]
  - name: orders                  # keyed by orderId: a second delivery is
    operation: orders             # refused as a duplicate
    topics: [{TOPICS[ORDERS]}]
    mapping:
      customerId: customer_id
      orderId: order_id
      orderDate: {{column: created_at, type: timestamp-micros}}
      totalPaid: total
      totalDiscount: discount
  - name: adjustments             # no id: a second delivery awards the points
    operation: balance-adjustment # again, so an adjustment whose fate is
    unsafe_without_ids: true      # unknown is dead-lettered, never resent
    topics: [{TOPICS[ADJUSTMENTS]}]
    mapping: {{customerId: customer_id, amount: points, reason: note}}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        type=int,
        default=20_000,
        help="CDC events to produce (20000): an eighth orders, a fortieth point adjustments, "
        "the rest customers' changes",
    )
    parser.add_argument("--customers", type=int, default=3_000, help="distinct customers (3000)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="events per second, produced as a trickle while the pipeline runs (0 = all at once)",
    )
    parser.add_argument(
        "--failure-rate",
        type=float,
        default=0.01,
        help="share of records the API rejects, to show the dead-letter path (0.01)",
    )
    parser.add_argument(
        "--job-duration", type=float, default=0.3, help="seconds each API job takes (0.3)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the summary, keep broker, simulator and pipeline up to explore (Ctrl-C ends)",
    )


# ------------------------------------------------------------------ producing


@dataclass
class _Feed:
    """Produces the sample shop's changes on a thread, each table's to its topic; counts what
    the broker acknowledged, by table."""

    bootstrap: str
    events: int
    customers: int
    rate: float
    # Every table's key is there from the start: the producer's thread only increments, so the
    # event loop can sum while it counts.
    acknowledged: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(TOPICS, 0)))
    failed: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def total(self) -> int:
        return sum(self.acknowledged.values())

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": 5,
                "enable.idempotence": True,
                "log_level": 3,
            }
        )
        started = time.monotonic()
        sent = 0
        try:
            changes = shop(self.events, self.customers, tombstone_fraction=0.005, malformed=True)
            for change in changes:
                if self.stop.is_set():
                    break
                if self.rate > 0:
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        producer.poll(ahead)
                while True:
                    try:
                        producer.produce(
                            TOPICS[change.table],
                            key=change.event.key,
                            value=change.event.value,
                            on_delivery=self._delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                sent += 1
                producer.poll(0)
            producer.flush(30)
        finally:
            self.done.set()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acknowledged[_TABLES[msg.topic()]] += 1
        else:
            self.failed += 1


_TABLES = {topic: table for table, topic in TOPICS.items()}


# ------------------------------------------------------------------ running


def run_demo(args: argparse.Namespace) -> int:
    for name in ("events", "customers"):
        if getattr(args, name) < 1:
            raise CustomerSyncError(f"--{name} must be at least 1")
    if args.rate < 0 or not 0 <= args.failure_rate <= 1 or args.job_duration < 0:
        raise CustomerSyncError(
            "--rate and --job-duration must not be negative, --failure-rate is between 0 and 1"
        )
    console = Console()
    configure_logging("ERROR", "console")
    try:
        broker = EmbeddedBroker().start()
    except (RuntimeError, OSError) as exc:
        raise CustomerSyncError(f"the embedded broker did not start: {exc}") from None
    try:
        broker.create_topics({**{TOPICS[t]: n for t, n in PARTITIONS.items()}, DLQ: 1})
        sim_config = SimulatorConfig(
            record_failure_rate=args.failure_rate, job_duration_seconds=args.job_duration, seed=7
        )
        with (
            RunningSimulator(sim_config) as simulator,
            tempfile.TemporaryDirectory(prefix="customer-sync-demo-") as folder,
        ):
            routes = Path(folder) / "routes.yaml"
            routes.write_text(ROUTES, encoding="utf-8")
            settings = _settings(broker.bootstrap, simulator.base_url, sim_config, routes)
            console.print(
                f"[bold]customer-sync demo[/]: broker {broker.bootstrap} (embedded Tansu), "
                f"API simulator {simulator.base_url} ({args.failure_rate:.1%} of records fail), "
                f"{args.events:,} CDC events of a shop's {args.customers:,} customers, their "
                f"orders and point adjustments; an order waits {CUSTOMER_WAIT_SECONDS} s at most "
                "for its customer (CUSTOMER_WAIT_SECONDS)"
            )
            console.print(f"ROUTES_FILE={routes}:", soft_wrap=True, highlight=False)
            console.print(ROUTES, markup=False, highlight=False, end="")
            return asyncio.run(_run(settings, args, console, simulator))
    finally:
        broker.stop()


def _settings(bootstrap: str, base_url: str, sim: SimulatorConfig, routes: Path) -> Settings:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ROUTES_FILE": str(routes),
            "KAFKA_DLQ_TOPIC": DLQ,
            "KAFKA_GROUP_ID": "customer-sync-demo",
            "KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000",
            "GAMEBALL_BASE_URL": base_url,
            "GAMEBALL_API_KEY": sim.api_key,
            "GAMEBALL_SECRET_KEY": sim.secret_key,
            "HTTP_PORT": str(free_port()),
            "BATCH_MAX_WAIT_SECONDS": "0.5",
            "CUSTOMER_WAIT_SECONDS": str(CUSTOMER_WAIT_SECONDS),
            # Ctrl-C's drain outlasts that wait: an order read just before its customer's
            # change, which Ctrl-C leaves unread, ends (customer_not_found) and the summary
            # still reconciles.
            "SHUTDOWN_TIMEOUT_SECONDS": str(CUSTOMER_WAIT_SECONDS + 12),
            # Tags ride in the item: the demo's sample rows carry tags and no ``before`` row, so
            # under the default (TAGS_SYNC=changed) every change of a tagged customer would cost
            # a call of its own, several times the demo's job traffic (README: Tags). The shape
            # and the job dialect are the defaults.
            "TAGS_SYNC": "item",
        }
    )
    # librdkafka's 'log_level' has an underscore, which KAFKA_CLIENT_* cannot spell:
    # keep its connection chatter (level 6) out of the live view.
    return settings.model_copy(update={"kafka_client": {**settings.kafka_client, "log_level": "3"}})


_OPERATION_TOPICS = {OPERATIONS[table].value: (topic,) for table, topic in TOPICS.items()}


async def _run(
    settings: Settings, args: argparse.Namespace, console: Console, simulator: RunningSimulator
) -> int:
    metrics, health = Metrics(), Health()
    pipeline = Pipeline.from_settings(settings, metrics=metrics, health=health)
    server = build_server(metrics, health, settings.http_port, host="127.0.0.1")
    metrics_url = f"http://127.0.0.1:{settings.http_port}/metrics"
    stop = asyncio.Event()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    feed = _Feed(settings.kafka_bootstrap_servers, args.events, args.customers, args.rate)
    producer = threading.Thread(target=feed.run, name="demo-producer", daemon=True)
    http = asyncio.create_task(server.serve())
    run = asyncio.create_task(pipeline.run(stop))
    producer.start()
    numbers = Numbers(metrics)
    started = time.monotonic()
    finished_at: float | None = None

    def view() -> Group:
        producing = not feed.done.is_set()
        return live_view(numbers, feed.total, producing, metrics_url, started, _OPERATION_TOPICS)

    with Live(view(), console=console, refresh_per_second=4) as live:
        while not stop.is_set() and not run.done():
            live.update(view())
            settled = sum(numbers.outcomes().values())
            if finished_at is None and feed.done.is_set() and settled >= feed.total:
                finished_at = time.monotonic()
                if not args.keep_running:
                    break
                for table in _summary(numbers, feed, finished_at - started, simulator)[0]:
                    live.console.print(table)
                _print_lines(live.console, _next_steps(settings, metrics_url, keep_running=True))
            await wait_event(stop, 0.25)
        feed.stop.set()
        stop.set()
        failure: BaseException | None = None
        try:
            await run
        except Exception as exc:  # noqa: BLE001 - reported in one sentence below
            failure = exc
        live.update(view())
    server.should_exit = True
    await http
    producer.join(10)
    if failure is not None:
        raise CustomerSyncError(f"the pipeline stopped: {failure}")
    seconds = (finished_at or time.monotonic()) - started
    tables, (balanced, agrees) = _summary(numbers, feed, seconds, simulator)
    for table in tables:
        console.print()
        console.print(table)
    consumed = numbers.consumed()
    console.print(
        f"consumed {consumed:,.0f} = "
        + " + ".join(f"{v:,.0f} {k}" for k, v in numbers.outcomes().items())
        + ("  ✓ reconciles" if balanced else "  ✗ does not reconcile")
    )
    console.print(
        "per operation: the API applied each record its jobs delivered once, none twice"
        + ("  ✓ agrees" if agrees else "  ✗ does not agree")
    )
    await asyncio.get_running_loop().run_in_executor(None, _show_dead_letters, settings, console)
    if not args.keep_running:
        _print_lines(console, _next_steps(settings, metrics_url, keep_running=False))
    if interrupted:
        console.print("interrupted: stopped producing, drained the pipeline and committed.")
        return 130
    return 0 if balanced and agrees else 1


def _summary(
    numbers: Numbers, feed: _Feed, seconds: float, simulator: RunningSimulator
) -> tuple[list[Table], tuple[bool, bool]]:
    """The closing tables, whether the outcomes reconcile, and whether the API agrees."""
    table, balanced = summary_table(numbers, feed.total, seconds)
    stats = simulator.state.stats()
    api = {Operation.CUSTOMERS.value: {"applied": stats["records_applied"]}, **stats["operations"]}
    produced = {OPERATIONS[table].value: count for table, count in feed.acknowledged.items()}
    per_operation, agrees = operations_table(numbers, _OPERATION_TOPICS, produced, api)
    return [table, per_operation], (balanced, agrees)


def _show_dead_letters(settings: Settings, console: Console, count: int = 2) -> None:
    """A taste of the dead-letter topic, read back the way ``dlq inspect`` prints it."""
    reader = Reader(settings, group=None, idle_seconds=0.5)
    shown = 0
    try:
        reader.open()
        for record in reader.records():
            if shown == 0:
                console.print("a few dead letters, as `customer-sync dlq inspect` shows them:")
            console.print("\n".join(describe_record(settings, record)), markup=False)
            shown += 1
            if shown >= count:
                break
    except CustomerSyncError as exc:
        console.print(f"(could not read the dead-letter topic: {exc})")
    finally:
        reader.close()


def _next_steps(settings: Settings, metrics_url: str, *, keep_running: bool) -> list[str]:
    """Commands to paste; printed with soft wrapping so a narrow terminal does not break them."""
    if not keep_running:
        return [
            "[bold]where to look next[/]",
            "  customer-sync demo --keep-running   keeps broker, simulator and pipeline up "
            "after the summary and prints the commands to explore them: /metrics, "
            "`customer-sync dlq inspect`, `customer-sync dlq replay`, `customer-sync check`",
            "  README.md                           running against a real cluster",
        ]
    return [
        "[bold]where to look next[/] (the pipeline keeps running; Ctrl-C stops it gracefully)",
        f"  metrics:  curl -s {metrics_url} | grep -E 'customer_sync_(operation_)?records_total'",
        "  in another terminal:",
        f"    export KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} "
        f"ROUTES_FILE={settings.routes_file} "
        f"KAFKA_DLQ_TOPIC={settings.kafka_dlq_topic} KAFKA_GROUP_ID={settings.kafka_group_id} "
        f"GAMEBALL_BASE_URL={settings.gameball_base_url} "
        f"GAMEBALL_API_KEY={settings.gameball_api_key.get_secret_value()} "
        f"GAMEBALL_SECRET_KEY={settings.gameball_secret_key.get_secret_value()}",
        "    customer-sync check",
        "    customer-sync dlq inspect --limit 5",
        "    customer-sync dlq replay --reason record_rejected",
    ]


def _print_lines(console: Console, lines: list[str]) -> None:
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
