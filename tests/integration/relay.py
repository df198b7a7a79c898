"""A TCP relay that opens when the test says: a server that is already up, reachable from then.

Until :meth:`LateRelay.open` nothing listens on its port (a connection is refused, as by a
server that is down); from then on each connection is passed, byte for byte, to the server
behind it. A test can so prepare that server (register a schema, say) before the service
under test can reach it, instead of racing the service to it. The port is bound from the
start, so nothing else takes it meanwhile (a free port merely chosen early can be taken by
any outgoing connection's ephemeral port).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType


class LateRelay:
    """``127.0.0.1:port`` → ``127.0.0.1:upstream``, listening only once opened."""

    def __init__(self, upstream: int) -> None:
        self._server: socket.socket | None = socket.socket()
        self._server.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port: int = self._server.getsockname()[1]
        self._upstream = upstream
        self._threads: list[threading.Thread] = []

    def open(self) -> None:
        assert self._server is not None, "closed"
        self._server.listen()
        self._spawn(self._accept, self._server)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):  # wakes the accepting thread (close alone may not)
                server.shutdown(socket.SHUT_RDWR)
            server.close()  # connections under way end with their peers

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:  # the server behind is down: so is this connection
                client.close()
                continue
            self._spawn(_pump, client, upstream)
            self._spawn(_pump, upstream, client)

    def __enter__(self) -> LateRelay:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until its end; then tell the other side no more is coming."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # the other direction closed both
        pass
    finally:
        source.close()
