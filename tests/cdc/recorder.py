"""Keep the bytes of every batch the API simulator accepts.

The simulator parses request bodies with orjson, which reads numbers as floats, so its
``latest`` cannot show that ``12345678901234567890.123456789`` arrived with all its digits.
This ASGI wrapper keeps each accepted ``POST .../batch/<operation>`` body as it came off the
wire, by operation.
"""

from __future__ import annotations

import threading
from typing import Any

Scope = dict[str, Any]


class BodyRecorder:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # RunningSimulator reads ``app.state.simulator``
        self._bodies: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def bodies(self, operation: str = "customers") -> list[bytes]:
        """The accepted requests' bodies of ``operation`` (``orders``, ...), in order."""
        with self._lock:
            return list(self._bodies.get(operation, ()))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        status: list[int] = []

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, recording_receive, recording_send)
        _, batch, operation = scope["path"].rpartition("/batch/")
        if batch and status and status[0] < 300:
            with self._lock:
                self._bodies.setdefault(operation, []).append(b"".join(chunks))
