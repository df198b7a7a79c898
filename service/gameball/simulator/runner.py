"""Running the simulator: ``serve`` for the CLI, :class:`RunningSimulator` for tests and demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from service.errors import ConfigError
from service.gameball.simulator.app import create_app
from service.gameball.simulator.config import DOCUMENTED_LIMITS, SimulatorConfig
from service.gameball.simulator.state import SimulatorState

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 2.0
TICK_SECONDS = 0.005
FREEZE_TICKS = 10  # uvicorn ticks (0.1 s each) between two freezes (_FreezingServer)


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    """Quiet and lean: no access log, no lifespan, no websockets.

    ``http="auto"`` takes httptools when it is installed and h11 otherwise.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="auto",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=2,
    )


async def serve(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve until cancelled (or until SIGINT/SIGTERM when run on the main thread).

    Cancellation asks uvicorn to shut down gracefully and waits for it, so the
    port is free again when this returns.
    """
    server = uvicorn.Server(_uvicorn_config(create_app(config), host, port))
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise


class _QuickServer(uvicorn.Server):
    """uvicorn's server, stopping in milliseconds instead of ~0.15 s.

    Stock uvicorn notices ``should_exit`` on a 0.1 s tick and then sleeps
    another 0.1 s in ``shutdown``; tests start a simulator per test, so that
    adds up. Same steps, shorter waits: stop listening, ask every connection to
    close (idle ones close at once, busy ones after their response), wait for
    them up to a grace period, cancel what is left. uvicorn is pinned to 0.54.
    """

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            await asyncio.sleep(TICK_SECONDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_SECONDS
        state = self.server_state
        # uvicorn keeps them in plain sets: nothing to await on but time.
        while (state.connections or state.tasks) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(TICK_SECONDS)
        for task in state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()


class _FreezingServer(uvicorn.Server):
    """uvicorn's server, freezing what survived once a second (``simulate`` only).

    Its memory only grows (the applied log), and full collections walked it all: 40 % of
    its CPU over 320 concurrent 1,000-record jobs (22.2 ms a job; 14.9 frozen, measured).
    Reference counting still frees frozen objects; only a later cycle is not reclaimed.
    """

    async def on_tick(self, counter: int) -> bool:
        if counter % FREEZE_TICKS == FREEZE_TICKS - 1:
            gc.collect()
            gc.freeze()
        return await super().on_tick(counter)


class RunningSimulator:
    """The simulator on a background thread, for tests and the demo.

    It shares the caller's interpreter (and GIL): the benchmark, which must not
    measure itself, runs ``customer-sync simulate`` in a process instead.

    The socket is bound here, before the thread starts, so ``port=0`` yields
    the real port at once and a taken port fails in ``__enter__``. The server
    runs its own event loop, so it works under any caller (sync or async).
    """

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self.state: SimulatorState = self.app.state.simulator
        self.base_url = ""
        self._server: _QuickServer | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> RunningSimulator:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.base_url = f"http://{host}:{self.port}"
        server = _QuickServer(_uvicorn_config(self.app, self.host, self.port))
        self._server = server
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"simulator:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"simulator did not start on {self.base_url}") from self._error
            time.sleep(0.002)
        return self

    def _run(self, server: _QuickServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread, not lost
            self._error = exc
        finally:
            sock.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``customer-sync simulate`` switches; defaults are :class:`SimulatorConfig`'s."""
    d = SimulatorConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    add("--port", type=int, default=8090, help="port to listen on (8090)")
    add("--api-key", default=d.api_key, help=f"the APIKey header to accept ({d.api_key})")
    add(
        "--secret-key",
        default=d.secret_key,
        help=f"the SecretKey header to accept ({d.secret_key})",
    )
    add(
        "--latency",
        type=float,
        default=d.latency_seconds,
        help="seconds added to every API request (0)",
    )
    add(
        "--job-duration",
        type=float,
        default=d.job_duration_seconds,
        help="seconds from job creation to its end; 0 = complete at the first look (0)",
    )
    add(
        "--record-failure-rate",
        type=float,
        default=d.record_failure_rate,
        help="share of records failing with 'Failed to create customer' (0)",
    )
    add(
        "--job-failure-rate",
        type=float,
        default=d.job_failure_rate,
        help="share of jobs ending 'failed' (0)",
    )
    add(
        "--stuck-job-rate",
        type=float,
        default=d.stuck_job_rate,
        help="share of jobs that stop progressing halfway and stay 'running' until stopped (0)",
    )
    add(
        "--stopped-job-rate",
        type=float,
        default=d.stopped_job_rate,
        help="share of jobs the API stops by itself halfway, ending 'stopped' (0)",
    )
    add(
        "--rate-limit-rate",
        type=float,
        default=d.rate_limit_rate,
        help="share of requests answered 429 (0)",
    )
    add(
        "--retry-after",
        type=float,
        default=d.retry_after_seconds,
        help=f"the Retry-After of the --rate-limit-rate 429s, in seconds ({d.retry_after_seconds})",
    )
    add(
        "--server-error-rate",
        type=float,
        default=d.server_error_rate,
        help="share of requests answered 500/502/503; half the POSTs after creating the job (0)",
    )
    add(
        "--documented-limits",
        action="store_true",
        help="enforce Gameball's documented rate limits for the batch endpoints: "
        f"{DOCUMENTED_LIMITS['limit_per_second']} requests/s and "
        f"{DOCUMENTED_LIMITS['limit_per_window']} per "
        f"{DOCUMENTED_LIMITS['limit_window_seconds']:g} s per API key, in sliding windows",
    )
    add(
        "--limit-per-second",
        type=int,
        default=None,
        help="requests per second per API key, 429 beyond (0 = none; overrides the documented)",
    )
    add(
        "--limit-per-window",
        type=int,
        default=None,
        help="requests per --limit-window per API key, 429 beyond (0 = none; overrides the "
        "documented)",
    )
    add(
        "--limit-window",
        type=float,
        default=None,
        help=f"the quota window of --limit-per-window, in seconds ({d.limit_window_seconds:g})",
    )
    add(
        "--limit-without-retry-after",
        action="store_true",
        help="answer the limits' 429s without Retry-After, as Gameball documents none",
    )
    add("--seed", type=int, default=None, help="random seed for reproducible faults (none)")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Raises :class:`ConfigError` (reported cleanly by the CLI) for an out-of-range value."""
    values: dict[str, Any] = {
        "api_key": args.api_key,
        "secret_key": args.secret_key,
        "latency_seconds": args.latency,
        "job_duration_seconds": args.job_duration,
        "record_failure_rate": args.record_failure_rate,
        "job_failure_rate": args.job_failure_rate,
        "stuck_job_rate": args.stuck_job_rate,
        "stopped_job_rate": args.stopped_job_rate,
        "rate_limit_rate": args.rate_limit_rate,
        "retry_after_seconds": args.retry_after,
        "server_error_rate": args.server_error_rate,
        "limit_retry_after": not args.limit_without_retry_after,
        "seed": args.seed,
    }
    if args.documented_limits:
        values.update(DOCUMENTED_LIMITS)
    explicit = {
        "limit_per_second": args.limit_per_second,
        "limit_per_window": args.limit_per_window,
        "limit_window_seconds": args.limit_window,
    }
    values.update({name: value for name, value in explicit.items() if value is not None})
    try:
        return SimulatorConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"simulate: {exc}") from exc


SIMULATE_DESCRIPTION = """\
A local stand-in for the Gameball Batch Customer API: the same paths, the
APIKey/SecretKey headers, the 1,000-record limit and the queued -> running ->
completed/failed job lifecycle, plus switches to provoke every failure the
service must survive. Unauthenticated controls: GET /_sim/stats,
GET /_sim/applied?since=N, GET|POST /_sim/config, POST /_sim/reset. --documented-limits answers 429
past Gameball's documented rate limits, as the real API does.
"""

SIMULATE_EPILOG = """\
examples:
  customer-sync simulate                                  # a well-behaved API on :8090
  customer-sync simulate --job-duration 2 --record-failure-rate 0.05
  customer-sync simulate --rate-limit-rate 0.2 --server-error-rate 0.05 --seed 1
  customer-sync simulate --documented-limits --limit-without-retry-after --job-duration 2
"""


def banner(config: SimulatorConfig, base_url: str) -> str:
    """What a newcomer needs to point the service at the simulator, ready to paste."""
    faults = {
        "latency": f"{config.latency_seconds:g} s",
        "job duration": f"{config.job_duration_seconds:g} s",
        "record failures": f"{config.record_failure_rate:.1%}",
        "job failures": f"{config.job_failure_rate:.1%}",
        "stuck jobs": f"{config.stuck_job_rate:.1%}",
        "429s": f"{config.rate_limit_rate:.1%} (Retry-After {config.retry_after_seconds:g} s)",
        "5xx": f"{config.server_error_rate:.1%}",
    }
    return "\n".join(
        [
            f"Gameball API simulator listening on {base_url}",
            f"  credentials   APIKey: {config.api_key}   SecretKey: {config.secret_key}",
            "  faults        " + ", ".join(f"{k} {v}" for k, v in faults.items()),
            "  rate limits   " + _limits(config),
            "  use it        export GAMEBALL_BASE_URL=" + base_url,
            f"                export GAMEBALL_API_KEY={config.api_key} "
            f"GAMEBALL_SECRET_KEY={config.secret_key}",
            f"  controls      {base_url}/_sim/stats  (also /_sim/applied, /_sim/config, "
            "/_sim/reset)",
            "  Ctrl-C stops it.",
        ]
    )


def _limits(config: SimulatorConfig) -> str:
    if not config.limited:
        return "none (--documented-limits enforces Gameball's)"
    parts = []
    if config.limit_per_second:
        parts.append(f"{config.limit_per_second} requests/s")
    if config.limit_per_window:
        parts.append(f"{config.limit_per_window} per {config.limit_window_seconds:g} s")
    answer = "with Retry-After" if config.limit_retry_after else "without Retry-After"
    return " and ".join(parts) + f" per API key (sliding windows); 429 {answer}"


def main(args: argparse.Namespace) -> int:
    """``customer-sync simulate``: bind first (a taken port is one sentence), then serve."""
    config = config_from_args(args)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        # Listening before the banner makes it a readiness signal: a client that reads
        # "listening on" may connect at once (queued until uvicorn's loop accepts it), so
        # a supervisor such as the benchmark waits for that line, not for a poll to succeed.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"simulate: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port or --host"
        ) from None
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(banner(config, f"http://{host}:{sock.getsockname()[1]}"), flush=True)
    server = _FreezingServer(_uvicorn_config(create_app(config), args.host, args.port))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
