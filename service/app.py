"""``customer-sync run``: the service process — settings, logging, HTTP, pipeline, signals."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import threading
import time

import structlog

from service import __version__
from service.config import Settings
from service.delivery.bounded import Until
from service.delivery.pipeline import Pipeline
from service.health import Health
from service.http import build_server
from service.logs import configure_logging
from service.metrics import Metrics

log = structlog.get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0
"""Past ``SHUTDOWN_TIMEOUT_SECONDS`` plus this, a shutdown that has not finished exits hard."""


class ShutdownWatchdog:
    """Ends the process if a shutdown outlives its budget.

    A member stuck inside librdkafka (a commit waiting on a rebalance, say)
    keeps heartbeating and so keeps its partitions: nobody consumes them until
    it is killed. Exiting lets the group move them on; everything not
    committed is re-delivered (at least once), so nothing is lost. Kubernetes'
    SIGKILL would come later (``terminationGracePeriodSeconds``) and say less.
    It runs on its own thread because the event loop may be the thing stuck.
    """

    def __init__(
        self,
        health: Health,
        budget_seconds: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._health = health
        self._budget = budget_seconds
        self._loop = loop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        began: float | None = None
        while not self._done.wait(0.5):
            if began is None:
                began = time.monotonic() if self._health.stopping else None
            elif time.monotonic() - began > self._budget:
                log.critical(
                    "shutdown_overran",
                    budget_seconds=self._budget,
                    waiting_on=self._waiting_on(),
                    hint="exiting so the group can move the partitions on; "
                    "uncommitted records are re-delivered",
                )
                # Where every thread is (librdkafka's own are native and not shown):
                # what a bug report about a stuck shutdown needs.
                faulthandler.dump_traceback(all_threads=True)
                os._exit(1)

    def _waiting_on(self) -> list[str]:
        """Each unfinished asyncio task and the line it is suspended at.

        Read from this thread while the loop may be running: good enough for a
        last word before exiting, and guarded so it can never stop the exit.
        """
        if self._loop is None:
            return []
        try:
            return sorted(
                f"{task.get_name()}: {_await_chain(task.get_coro())}"
                for task in list(asyncio.all_tasks(self._loop))
            )
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            return [f"unavailable: {exc!r}"]


def _await_chain(coroutine: object) -> str:
    """``pipeline.py:180 _shutdown > tasks.py:765 gather``: where a suspended task waits."""
    steps = []
    while coroutine is not None:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            name = frame.f_code.co_filename.rsplit("/", 1)[-1]
            steps.append(f"{name}:{frame.f_lineno} {frame.f_code.co_name}")
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    return " > ".join(steps) or "finished"


async def serve(settings: Settings, until: Until | None = None) -> None:
    """Run the pipeline and its HTTP endpoints until SIGTERM/SIGINT, then drain (SPEC §2).

    ``until``: a bounded run (``--until-idle``, ``--max-records``) also ends by itself
    once what it read is settled and committed, through the same shutdown.
    """
    metrics = Metrics()
    health = Health()
    pipeline = Pipeline.from_settings(settings, metrics=metrics, health=health)
    server = build_server(metrics, health, settings.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    http = asyncio.create_task(server.serve(), name="http")
    log.info(
        "service_starting",
        version=__version__,
        topics=list(pipeline.topics),
        group=settings.kafka_group_id,
        dlq_topic=settings.kafka_dlq_topic,
        api=settings.gameball_base_url,
        job_api=settings.gameball_job_api,
        api_version=settings.gameball_api_version,
        http_port=settings.http_port,
    )
    watchdog = ShutdownWatchdog(
        health, settings.shutdown_timeout_seconds + SHUTDOWN_GRACE_SECONDS, loop
    )
    watchdog.start()
    try:
        await pipeline.run(stop, until=until)
    finally:
        watchdog.finished()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await http


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("second_signal_ignored", signal=sig.name, hint="still draining; SIGKILL forces")
        return
    log.info("shutdown_requested", signal=sig.name)
    stop.set()


def run(settings: Settings, until: Until | None = None) -> None:
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serve(settings, until))
