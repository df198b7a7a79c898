"""``customer-sync run``: the service process — settings, logging, HTTP, pipeline, signals."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from service import __version__
from service.config import Settings
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import Metrics
from service.pipeline import Pipeline

log = structlog.get_logger(__name__)


async def serve(settings: Settings) -> None:
    """Run the pipeline and its HTTP endpoints until SIGTERM/SIGINT, then drain (SPEC §2)."""
    metrics = Metrics()
    health = Health()
    pipeline = Pipeline(settings, metrics=metrics, health=health)
    server = build_server(metrics, health, settings.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    http = asyncio.create_task(server.serve(), name="http")
    log.info(
        "service_starting",
        version=__version__,
        topics=list(settings.kafka_source_topics),
        group=settings.kafka_group_id,
        dlq_topic=settings.kafka_dlq_topic,
        api=settings.gameball_base_url,
        http_port=settings.http_port,
    )
    try:
        await pipeline.run(stop)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await http


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("second_signal_ignored", signal=sig.name, hint="still draining; SIGKILL forces")
        return
    log.info("shutdown_requested", signal=sig.name)
    stop.set()


def run(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
