"""Which dialect job status and stop are spoken in: set by ``GAMEBALL_JOB_API``, or found.

Under ``auto`` the first status read (or stop) of a job finds it: a 404 or 405
means the route is absent, so the other dialect is asked; the first to answer
2xx is kept for good, logged once (``job_api_chosen``) and shown in
``customer_sync_api_info``. Until then a job is :class:`JobNotFound` only when
every dialect answered 404 or 405: a job the API has just created that neither
route knows is lost, not evidence for a dialect. The ``batch`` dialect is asked
first (the tutorial's, what the service spoke before). Concurrent first reads
(several jobs in flight) queue behind one lock: one finds, the others follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import structlog

from service.errors import JobNotFound
from service.gameball.answers import RouteAbsent
from service.gameball.dialects import DIALECTS, Endpoint, JobDialect
from service.metrics import Metrics

log = structlog.get_logger(__name__)

UNDECIDED = "undecided"
"""``api_info``'s ``job_api`` under ``auto`` until a job route has answered."""

Send = Callable[[str, str, bool], Awaitable[httpx.Response]]
"""Sends ``(method, path, probing)`` and returns a 2xx answer or raises its verdict."""


class JobRoutes:
    def __init__(self, endpoint: Endpoint, metrics: Metrics) -> None:
        self.version = endpoint.version
        self.dialect: JobDialect | None = None
        if endpoint.job_api != "auto":
            self.dialect = next(d for d in DIALECTS.values() if d.name == endpoint.job_api)
        self._metrics = metrics
        self._finding = asyncio.Lock()
        self._publish()

    @property
    def name(self) -> str | None:
        """The dialect in use; ``None`` under ``auto`` until a job route answered."""
        return self.dialect.name if self.dialect is not None else None

    def candidates(self) -> list[JobDialect]:
        """The dialect in use, or every dialect in the order ``auto`` asks them."""
        return [self.dialect] if self.dialect is not None else list(DIALECTS.values())

    def route(self, dialect: JobDialect, operation: str, job_id: str) -> tuple[str, str]:
        """The method and path of ``operation`` (``status`` or ``stop``) on ``job_id``."""
        if operation == "stop":
            return dialect.stop_method, dialect.stop_path(self.version, job_id)
        return "GET", dialect.status_path(self.version, job_id)

    async def request(self, operation: str, job_id: str, send: Send) -> httpx.Response:
        if self.dialect is None:
            async with self._finding:
                if self.dialect is None:
                    return await self._find(operation, job_id, send)
        method, path = self.route(self.dialect, operation, job_id)
        return await send(method, path, False)

    async def _find(self, operation: str, job_id: str, send: Send) -> httpx.Response:
        absent: dict[str, int | None] = {}
        for dialect in DIALECTS.values():
            method, path = self.route(dialect, operation, job_id)
            try:
                response = await send(method, path, True)
            except RouteAbsent as exc:
                absent[dialect.name] = exc.status
                continue
            self.dialect = dialect
            self._publish()
            log.info(
                "job_api_chosen", job_api=dialect.name, api_version=self.version, absent=absent
            )
            return response
        raise JobNotFound(
            f"job {job_id} not found in any job dialect ("
            + ", ".join(f"{name}: HTTP {status}" for name, status in absent.items())
            + ")",
            status=404,
        )

    def _publish(self) -> None:
        info = self._metrics.api_info
        info.clear()
        info.labels(job_api=self.name or UNDECIDED, api_version=self.version).set(1)
