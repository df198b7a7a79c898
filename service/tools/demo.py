"""``customer-sync demo``: the real pipeline against an embedded broker and the simulator.

Everything is the production code path except the two ends: Tansu (an
embedded Kafka-protocol broker, memory only) and the API simulator with a
small per-record failure rate, so the dead-letter path shows. Events are
produced on a thread while the pipeline runs (all at once by default, or as a
trickle with ``--rate``), so the live view moves like a real deployment's.

The view reads the pipeline's own Prometheus registry, the same numbers
``/metrics`` serves, except lag: the demo knows exactly how many records the
broker acknowledged, so it shows produced - consumed rather than a number
computed from high watermarks (which Tansu under-reports).

It ends when every produced record has ended in an outcome, and proves it:
consumed = succeeded + dead-lettered + skipped + coalesced (exit 1 if not).
Ctrl-C stops producing and drains the pipeline gracefully (SIGTERM too), and
still prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer
from rich.console import Console
from rich.live import Live

from service.config import Settings, load_settings
from service.delivery.pipeline import Pipeline
from service.errors import CustomerSyncError
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import Metrics
from service.tools.demo_view import Numbers, live_view, summary_table
from service.tools.dlq import Reader
from service.tools.embedded_broker import EmbeddedBroker, free_port
from service.tools.replay import describe_record
from service.tools.samples import BAD_EVENTS, generate
from service.waiting import wait_event

SOURCE = "customer-changes"
DLQ = "customer-changes.dlq"
PARTITIONS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="CDC events to produce (20000)")
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
    """Produces the sample events on a thread; counts what the broker acknowledged."""

    bootstrap: str
    events: int
    customers: int
    rate: float
    acknowledged: int = 0
    failed: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

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
        # Each kind of malformed event once, spread over the run, whatever its size.
        kinds = list(BAD_EVENTS.values()) if self.events > len(BAD_EVENTS) else []
        malformed = {(k * self.events) // (len(kinds) + 1): v for k, (v, _) in enumerate(kinds, 1)}
        try:
            for i, event in enumerate(
                generate(self.events, self.customers, tombstone_fraction=0.005)
            ):
                if self.stop.is_set():
                    break
                key, value = event.key, event.value
                if i in malformed:
                    key, value = f"malformed-{i}".encode(), malformed[i]
                if self.rate > 0:
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        producer.poll(ahead)
                while True:
                    try:
                        producer.produce(SOURCE, key=key, value=value, on_delivery=self._delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                sent += 1
                producer.poll(0)
            producer.flush(30)
        finally:
            self.done.set()

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acknowledged += 1
        else:
            self.failed += 1


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
        broker.create_topics({SOURCE: PARTITIONS, DLQ: 1})
        sim_config = SimulatorConfig(
            record_failure_rate=args.failure_rate, job_duration_seconds=args.job_duration, seed=7
        )
        with RunningSimulator(sim_config) as simulator:
            settings = _settings(broker.bootstrap, simulator.base_url, sim_config)
            console.print(
                f"[bold]customer-sync demo[/]: broker {broker.bootstrap} (embedded Tansu), "
                f"API simulator {simulator.base_url} ({args.failure_rate:.1%} of records fail), "
                f"{args.events:,} CDC events for {args.customers:,} customers → {SOURCE}"
            )
            return asyncio.run(_run(settings, args, console))
    finally:
        broker.stop()


def _settings(bootstrap: str, base_url: str, sim: SimulatorConfig) -> Settings:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SOURCE_TOPICS": SOURCE,
            "KAFKA_DLQ_TOPIC": DLQ,
            "KAFKA_GROUP_ID": "customer-sync-demo",
            "KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000",
            "GAMEBALL_BASE_URL": base_url,
            "GAMEBALL_API_KEY": sim.api_key,
            "GAMEBALL_SECRET_KEY": sim.secret_key,
            "HTTP_PORT": str(free_port()),
            "BATCH_MAX_WAIT_SECONDS": "0.5",
            "SHUTDOWN_TIMEOUT_SECONDS": "10",
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


async def _run(settings: Settings, args: argparse.Namespace, console: Console) -> int:
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
    with Live(
        live_view(numbers, feed.acknowledged, not feed.done.is_set(), metrics_url, started),
        console=console,
        refresh_per_second=4,
    ) as live:
        while not stop.is_set() and not run.done():
            live.update(
                live_view(numbers, feed.acknowledged, not feed.done.is_set(), metrics_url, started)
            )
            settled = sum(numbers.outcomes().values())
            if finished_at is None and feed.done.is_set() and settled >= feed.acknowledged:
                finished_at = time.monotonic()
                if not args.keep_running:
                    break
                live.console.print(
                    summary_table(numbers, feed.acknowledged, finished_at - started)[0]
                )
                _print_lines(live.console, _next_steps(settings, metrics_url, keep_running=True))
            await wait_event(stop, 0.25)
        feed.stop.set()
        stop.set()
        failure: BaseException | None = None
        try:
            await run
        except Exception as exc:  # noqa: BLE001 - reported in one sentence below
            failure = exc
        live.update(
            live_view(numbers, feed.acknowledged, not feed.done.is_set(), metrics_url, started)
        )
    server.should_exit = True
    await http
    producer.join(10)
    if failure is not None:
        raise CustomerSyncError(f"the pipeline stopped: {failure}")
    seconds = (finished_at or time.monotonic()) - started
    table, balanced = summary_table(numbers, feed.acknowledged, seconds)
    console.print()
    console.print(table)
    consumed = numbers.consumed()
    console.print(
        f"consumed {consumed:,.0f} = "
        + " + ".join(f"{v:,.0f} {k}" for k, v in numbers.outcomes().items())
        + ("  ✓ reconciles" if balanced else "  ✗ does not reconcile")
    )
    await asyncio.get_running_loop().run_in_executor(None, _show_dead_letters, settings, console)
    if not args.keep_running:
        _print_lines(console, _next_steps(settings, metrics_url, keep_running=False))
    if interrupted:
        console.print("interrupted: stopped producing, drained the pipeline and committed.")
        return 130
    return 0 if balanced else 1


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
        f"  metrics:  curl -s {metrics_url} | grep customer_sync_records_total",
        "  in another terminal:",
        f"    export KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} "
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
