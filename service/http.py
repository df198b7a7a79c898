"""``/metrics``, ``/healthz`` and ``/readyz`` on ``HTTP_PORT``, served on the pipeline's loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.health import Health
from service.metrics import Metrics


def create_app(metrics: Metrics, health: Health) -> Starlette:
    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        ok, detail = health.alive()
        return JSONResponse({"ok": ok, **detail}, status_code=200 if ok else 503)

    async def readyz(_: Request) -> Response:
        ok, detail = health.ready()
        return JSONResponse({"ok": ok, **detail}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the pipeline owns SIGTERM and drains first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_server(
    metrics: Metrics,
    health: Health,
    port: int,
    host: str = "0.0.0.0",  # pods listen on all
) -> EmbeddedServer:
    config = uvicorn.Config(
        create_app(metrics, health),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    return EmbeddedServer(config)
