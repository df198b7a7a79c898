"""Running the simulator's HTTP server: :class:`RunningSimulator` on a thread for tests and
the demo, :func:`serve_forever` for ``customer-sync simulate`` (whose command line is :mod:`.cli`).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from service.gameball.simulator.app import create_app
from service.gameball.simulator.config import SimulatorConfig
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


def bind(host: str, port: int, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: the kernel picks), listening if given a backlog.

    Binding before the server starts makes a taken port an ``OSError`` at once and ``port=0``
    known at once. IPPROTO_TCP is spelled out: asyncio only sets TCP_NODELAY on accepted
    sockets whose proto says TCP, and without it every response waits ~40 ms for a delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def base_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_forever(config: SimulatorConfig, sock: socket.socket) -> None:
    """Serve on a bound socket until SIGINT or SIGTERM, then close it."""
    host, port = sock.getsockname()[:2]
    server = _FreezingServer(_uvicorn_config(create_app(config), host, port))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


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
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self.base_url = base_url(self.host, self.port)
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
