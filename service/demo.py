"""``customer-sync demo``: the real pipeline against an embedded broker and the simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time

from confluent_kafka import Producer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from service.broker import EmbeddedBroker, free_port
from service.config import load_settings
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import OUTCOMES, Metrics
from service.pipeline import Pipeline
from service.samples import generate
from service.simulator import RunningSimulator, SimulatorConfig

SOURCE = "customer-changes"
DLQ = "customer-changes.dlq"


def _value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value("customer_sync_" + name, labels or {}) or 0.0


def _total(metrics: Metrics, name: str) -> float:
    return sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "customer_sync_" + name
    )


def _view(metrics: Metrics, produced: int, started: float) -> Table:
    consumed = _total(metrics, "records_consumed_total")
    outcomes = {o: _value(metrics, "records_total", {"outcome": o}) for o in OUTCOMES}
    elapsed = max(0.001, time.monotonic() - started)
    table = Table(title="customer-sync demo", show_header=False, min_width=50)
    table.add_row("produced", f"{produced:,}")
    table.add_row("consumed", f"{consumed:,.0f}")
    table.add_row("buffered", f"{_value(metrics, 'buffered_records'):,.0f}")
    table.add_row("jobs in flight", f"{_value(metrics, 'jobs_in_flight'):,.0f}")
    for outcome, value in outcomes.items():
        table.add_row(outcome.replace("_", " "), f"{value:,.0f}")
    for family in metrics.registry.collect():
        if family.name == "customer_sync_dead_letter_records":
            for s in family.samples:
                if s.name.endswith("_total") and s.value:
                    table.add_row(f"  dead letter: {s.labels['reason']}", f"{s.value:,.0f}")
    table.add_row("throughput", f"{sum(outcomes.values()) / elapsed:,.0f} records/s")
    return table


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    configure_logging("WARNING", "console")
    with EmbeddedBroker() as broker:
        broker.create_topics({SOURCE: 6, DLQ: 1})
        sim_config = SimulatorConfig(
            record_failure_rate=args.failure_rate, job_duration_seconds=args.job_duration
        )
        with RunningSimulator(sim_config) as simulator:
            console.print(f"broker {broker.bootstrap}, simulator {simulator.base_url}")
            produced = _produce(broker.bootstrap, args.events, args.customers)
            console.print(f"produced {produced:,} CDC events for {args.customers:,} customers")
            port = free_port()
            settings = load_settings(
                {
                    "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                    "KAFKA_CLIENT_SESSION_TIMEOUT_MS": "6000",
                    "GAMEBALL_BASE_URL": simulator.base_url,
                    "GAMEBALL_API_KEY": sim_config.api_key,
                    "GAMEBALL_SECRET_KEY": sim_config.secret_key,
                    "HTTP_PORT": str(port),
                    "BATCH_MAX_WAIT_SECONDS": "0.5",
                }
            )
            console.print(f"metrics at http://127.0.0.1:{port}/metrics")
            return asyncio.run(_run(settings, produced, args.keep_running, console))


def _produce(bootstrap: str, events: int, customers: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    count = 0
    for event in generate(events, customers, bad_fraction=0.002, tombstone_fraction=0.005):
        producer.produce(SOURCE, key=event.key, value=event.value)
        producer.poll(0)
        count += 1
    producer.flush(30)
    return count


async def _run(settings: object, produced: int, keep_running: bool, console: Console) -> int:
    from service.config import Settings

    assert isinstance(settings, Settings)
    metrics, health = Metrics(), Health()
    pipeline = Pipeline(settings, metrics=metrics, health=health)
    server = build_server(metrics, health, settings.http_port, host="127.0.0.1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http = asyncio.create_task(server.serve())
    run = asyncio.create_task(pipeline.run(stop))
    started = time.monotonic()
    with Live(_view(metrics, produced, started), console=console, refresh_per_second=4) as live:
        while not stop.is_set():
            live.update(_view(metrics, produced, started))
            settled = sum(_value(metrics, "records_total", {"outcome": o}) for o in OUTCOMES)
            if settled >= produced and not keep_running:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        stop.set()
        await run
        live.update(_view(metrics, produced, started))
    server.should_exit = True
    await http
    consumed = _total(metrics, "records_consumed_total")
    outcomes = {o: _value(metrics, "records_total", {"outcome": o}) for o in OUTCOMES}
    balanced = consumed == sum(outcomes.values())
    console.print(
        f"consumed {consumed:,.0f} = "
        + " + ".join(f"{v:,.0f} {k}" for k, v in outcomes.items())
        + ("  ✓ reconciles" if balanced else "  ✗ does not reconcile")
    )
    console.print(f"dead letters are in the topic '{DLQ}' (original bytes, reasons in headers)")
    return 0 if balanced else 1
