"""The simulator's HTTP surface: the batch endpoints (customers, and every other operation
of :mod:`service.gameball.operations`), in both job dialects, the customer's tags and
read-back, and the ``/_sim`` controls.

Job status and stop are served in the dialect(s) ``job_api`` names (``batch``:
``GET``/``DELETE /batch/{jobId}``; ``batches``: ``GET /batches/{id}/status``,
``POST /batches/{id}/stop``). A dialect not served answers like an absent route
does: a bare ``404 Not Found``, before any credentials are looked at.

Plain Starlette endpoints (no middleware: ``BaseHTTPMiddleware`` costs more
than a whole batch validation), every body serialised with orjson.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.gameball.customer import batch_request, unknown_fields
from service.gameball.operations import Operation
from service.gameball.simulator.config import SimulatorConfig
from service.gameball.simulator.documents import BATCHES_STATES, STOPPED_MESSAGE
from service.gameball.simulator.gate import passes
from service.gameball.simulator.requests import REQUESTS, items
from service.gameball.simulator.state import SimulatorState

MAX_REPORTED_ERRORS = 10
"""Validation errors spelled out in a 400's ``message`` (up to 100 more go to ``errors``)."""
SERVER_ERRORS = (500, 502, 503)
API_PREFIXES = ("/api/v4.0", "/api/v4", "/api/v4.1")
ENVELOPE_CODES = {400: 3000, 401: 1001, 403: 1002, 500: 5000, 503: 5003}
"""The error envelope's ``code`` per status (Gameball's "Status and Error Codes"); others: none."""

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


def _message(
    status: int, text: str, config: SimulatorConfig | None = None, *, coded: bool = True
) -> Response:
    """``{"message"}``, or Gameball's envelope when ``config.error_envelope`` is on."""
    if config is None or not config.error_envelope or status < 400:
        return json_response({"message": text}, status)
    code = ENVELOPE_CODES.get(status) if coded else None
    return json_response(envelope(status, text, code), status)


def envelope(status: int, text: str, code: int | None) -> dict[str, Any]:
    try:
        kind = HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        kind = "Error"
    return {"code": code, "type": kind, "message": text, "requestId": uuid.uuid4().hex}


def _absent() -> Response:
    """What a server answers for a route it does not have: no JSON, no credentials asked."""
    return Response("Not Found", 404, media_type="text/plain")


def _matches(given: str | None, expected: str) -> bool:
    """Constant-time, on bytes: ``compare_digest`` refuses non-ASCII text."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"


def describe_validation(exc: ValidationError, raw: Any, shape: str = "") -> list[str]:
    """One line per error, naming the customer by index and ``customerId`` when known.

    A field the strict model forbids says which shape does not define it.
    """
    items = raw.get("body") if isinstance(raw, dict) else None
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = error["loc"]
        if error["type"] == "extra_forbidden" and shape:
            error["msg"] = f"not a field of the {shape} customer"
        if len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], int):
            index = loc[1]
            where = f"body[{index}]"
            if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
                customer_id = items[index].get("customerId")
                if customer_id is not None:
                    where += f" (customerId={customer_id})"
            rest = ".".join(str(part) for part in loc[2:])
            lines.append(f"{where}: {rest}: {error['msg']}" if rest else f"{where}: {error['msg']}")
        else:
            where = ".".join(str(part) for part in loc) or "request"
            lines.append(f"{where}: {error['msg']}")
    return lines


class _Api:
    """The endpoints, sharing one :class:`SimulatorState`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def _front(self, request: Request, kind: str) -> tuple[Response | None, int | None]:
        """Latency, then one fault draw, then credentials, then the key's rate limits.

        Returns a response to send instead of handling the request, or the
        5xx to send after handling it (POST only: the job gets created).
        """
        state, config = self.state, self.state.config
        if config.latency_seconds > 0:
            await asyncio.sleep(config.latency_seconds)
        faults = config.rate_limit_rate + config.server_error_rate
        if faults > 0:
            draw = state.rng.random()
            if draw < config.rate_limit_rate:
                headers = {"Retry-After": _seconds_header(config.retry_after_seconds)}
                return json_response({"message": "Too many requests"}, 429, headers), None
            if draw < faults:
                status = state.rng.choice(SERVER_ERRORS)
                if kind == "create" and state.rng.random() < 0.5:
                    return None, status
                return _server_error(status, config), None
        if not _matches(request.headers.get("apikey"), config.api_key):
            return _message(401, "Unauthorized: invalid or missing APIKey", config), None
        if not _matches(request.headers.get("secretkey"), config.secret_key):
            return _message(403, "Forbidden: invalid or missing SecretKey", config), None
        if config.min_api_version and _version(request.url.path) < config.min_api_version:
            text = (
                f"This account requires API version {config.min_api_version} or later "
                "(the minimum version set in the dashboard)"
            )
            return _message(403, text, config, coded=False), None  # no code is documented
        if config.limited:
            wait = state.admit(request.headers.get("apikey") or "", time.monotonic())
            if wait is not None:
                headers = {"Retry-After": _seconds_header(wait)} if config.limit_retry_after else {}
                return json_response({"message": "Too many requests"}, 429, headers), None
        return None, None

    def counted(
        self,
        kind: str,
        handler: Callable[[Request, int | None], Awaitable[Response]],
        dialect: str | None = None,
        operation: Operation | None = None,
    ) -> Endpoint:
        """``operation``: the submissions'; a request naming a job counts under the job's."""

        async def endpoint(request: Request) -> Response:
            if dialect is not None and not self.state.config.serves(dialect):
                self.state.count("absent", 404)
                return _absent()
            response, late_fault = await self._front(request, kind)
            if response is None:
                response = await handler(request, late_fault)
            self.state.count(kind, response.status_code, operation or self._job_operation(request))
            return response

        return endpoint

    def _job_operation(self, request: Request) -> Operation | None:
        job = self.state.jobs.get(request.path_params.get("job_id", ""))
        if job is None:
            return None
        return Operation.CUSTOMERS if job.book is None else job.book.operation

    async def create(self, request: Request, late_fault: int | None) -> Response:
        body = await request.body()
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _message(400, f"Invalid JSON: {exc}", self.state.config)
        config = self.state.config
        shape, strict = config.customer_shape, config.strict
        try:
            if not passes(body, shape, strict=strict):
                batch_request(shape, strict=strict).model_validate(raw)
        except ValidationError as exc:
            return self._invalid(describe_validation(exc, raw, shape if strict else ""))
        items = raw["body"]
        if not strict:
            items = [self._kept(item, shape) for item in items]
        job = self.state.create_job(items)
        if config.created_answer_delay_seconds > 0:
            await asyncio.sleep(config.created_answer_delay_seconds)
        if late_fault is not None:
            return _server_error(late_fault, self.state.config)
        return json_response({"jobId": job.id})

    def _invalid(self, lines: list[str]) -> Response:
        """400 naming what is wrong: the first errors in ``message``, up to 100 in ``errors``."""
        text = "; ".join(lines[:MAX_REPORTED_ERRORS])
        if len(lines) > MAX_REPORTED_ERRORS:
            text += f"; and {len(lines) - MAX_REPORTED_ERRORS} more"
        if self.state.config.error_envelope:
            return json_response({**envelope(400, text, 3000), "errors": lines[:100]}, 400)
        return json_response({"message": text, "errors": lines[:100]}, 400)

    def submit(self, operation: Operation) -> Callable[[Request, int | None], Awaitable[Response]]:
        """``POST .../batch/<operation>`` for an operation besides customers (:mod:`.books`)."""

        async def create(request: Request, late_fault: int | None) -> Response:
            try:
                raw = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                return _message(400, f"Invalid JSON: {exc}", self.state.config)
            try:
                body = items(operation, raw)
            except ValidationError as exc:
                return self._invalid(describe_validation(exc, raw))
            job = self.state.create_job(body, operation)
            delay = self.state.config.created_answer_delay_seconds
            if delay > 0:  # created, and answered late: a client that gives up never learns it
                await asyncio.sleep(delay)
            if late_fault is not None:
                return _server_error(late_fault, self.state.config)
            return json_response({"jobId": job.id})

        return create

    def _kept(self, item: dict[str, Any], shape: str) -> dict[str, Any]:
        """Lenient: what a server binding ``shape`` keeps of ``item``; the rest is counted."""
        unknown = unknown_fields(item, "flat" if shape == "flat" else "nested")
        if not unknown:
            return item
        self.state.profiles.ignored.update(unknown)
        kept = {key: value for key, value in item.items() if key not in unknown}
        attributes = item.get("customerAttributes")
        if shape == "nested" and isinstance(attributes, dict):
            prefix = "customerAttributes."
            kept["customerAttributes"] = {
                key: value for key, value in attributes.items() if prefix + key not in unknown
            }
        return kept

    async def tags(self, request: Request, late_fault: int | None) -> Response:
        """``POST .../customers/{customerId}/tags`` with ``{"tags": "a, b"}`` attaches them to
        what the customer has; ``DELETE`` with the same body removes them (the OpenAPI)."""
        config = self.state.config
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _message(400, f"Invalid JSON: {exc}", config)
        text = raw.get("tags") if isinstance(raw, dict) else None
        if not isinstance(text, str):
            message = 'tags: expected one comma-separated string ({"tags": "a, b"})'
            return _message(400, message, config)
        customer_id = request.path_params["customer_id"]
        if request.method == "DELETE":
            self.state.profiles.remove_tags(customer_id, text)
        else:
            self.state.profiles.attach_tags(customer_id, text)
        if late_fault is not None:
            return _server_error(late_fault, config)
        return _message(200, "Tags updated successfully")

    async def customer(self, request: Request, late_fault: int | None) -> Response:
        """``GET .../customers/{customerId}`` and ``.../details``: the stored customer, nested,
        with its tags (the simulator keeps no personal data apart: both show everything)."""
        state, customer_id = self.state, request.path_params["customer_id"]
        state.settle()
        found = state.profiles.read(
            customer_id, state.latest.get(customer_id), state.config.customer_shape
        )
        if found is None:
            return json_response({"code": 7000, "message": "Customer not found"}, 404)
        return json_response(found)

    async def tag_log(self, request: Request) -> Response:
        return json_response(self.state.profiles.log())

    async def status(self, request: Request, late_fault: int | None) -> Response:
        state = self.state
        state.settle()
        job = state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _message(404, "Job not found", state.config)
        return Response(state.document(job), media_type="application/json")

    async def batches_status(self, request: Request, late_fault: int | None) -> Response:
        state = self.state
        state.settle()
        job = state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _message(404, "Batch not found", state.config)
        return Response(state.batches_document(job), media_type="application/json")

    async def stop(self, request: Request, late_fault: int | None) -> Response:
        """Idempotent: stopping a terminal job answers 200 and changes nothing."""
        job = self.state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _message(404, "Job not found", self.state.config)
        self.state.stop(job)
        return _message(200, "Job stopped successfully")

    async def batches_stop(self, request: Request, late_fault: int | None) -> Response:
        """``POST /batches/{id}/stop``: ``{batchId, status, message}``; idempotent too."""
        job = self.state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _message(404, "Batch not found", self.state.config)
        self.state.stop(job)
        body = {"batchId": job.id, "status": BATCHES_STATES[job.state], "message": STOPPED_MESSAGE}
        return json_response(body)

    async def stats(self, request: Request) -> Response:
        return json_response(self.state.stats())

    async def applied(self, request: Request) -> Response:
        """``?operation=`` (customers by default) picks the operation's log."""
        return self._operation_log(
            request, "applied", self.state.applied_since, self.state.items_applied_since
        )

    async def rejected(self, request: Request) -> Response:
        return self._operation_log(
            request, "rejected", self.state.rejected_since, self.state.items_refused_since
        )

    def _operation_log(
        self,
        request: Request,
        name: str,
        customers: Callable[[int, int | None], list[dict[str, Any]]],
        items: Callable[[Operation, int, int | None], list[dict[str, Any]]],
    ) -> Response:
        operation = _operation(request)
        if operation is None:
            return _message(400, f"operation must be one of {', '.join(Operation)}")
        if operation is Operation.CUSTOMERS:
            return self._log(request, name, customers)
        return self._log(request, name, functools.partial(items, operation))

    @staticmethod
    def _log(
        request: Request, name: str, read: Callable[[int, int | None], list[dict[str, Any]]]
    ) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
            limit_text = request.query_params.get("limit")
            limit = None if limit_text is None else int(limit_text)
        except ValueError:
            return _message(400, "since and limit must be integers")
        entries = read(max(0, since), limit)
        return json_response({name: entries, "next": max(0, since) + len(entries)})

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                return _message(400, f"Invalid JSON: {exc}")
            if not isinstance(changes, dict):
                return _message(400, "expected a JSON object of settings")
            try:
                self.state.update_config(changes)
            except (TypeError, ValueError) as exc:
                return _message(400, str(exc))
        return json_response({"config": dataclasses.asdict(self.state.config)})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return _message(200, "reset")


def _operation(request: Request) -> Operation | None:
    """The ``operation`` query parameter (``customers`` when absent); ``None``: no such one."""
    try:
        return Operation(request.query_params.get("operation", Operation.CUSTOMERS))
    except ValueError:
        return None


def _version(path: str) -> str:
    """``/api/v4.1/integrations/...`` → ``v4.1`` (``/api/v4/...`` is ``v4.0``)."""
    version = path.split("/")[2] if path.count("/") >= 2 else ""
    return "v4.0" if version == "v4" else version


def _server_error(status: int, config: SimulatorConfig | None = None) -> Response:
    """5xx as the wild has them: a gateway's 502 is HTML, the others JSON."""
    if status == 502:
        return Response(
            "<html><body><h1>502 Bad Gateway</h1></body></html>", 502, media_type="text/html"
        )
    if status == 503:
        return _message(503, "Service temporarily unavailable", config)
    return _message(status, "Internal server error", config)


def create_app(config: SimulatorConfig) -> Starlette:
    """The simulator as an ASGI app; its state is ``app.state.simulator``."""
    state = SimulatorState(config)
    api = _Api(state)
    routes = []
    create = api.counted("create", api.create, operation=Operation.CUSTOMERS)
    status = api.counted("status", api.status, "batch")
    stop = api.counted("stop", api.stop, "batch")
    batches_status = api.counted("status", api.batches_status, "batches")
    batches_stop = api.counted("stop", api.batches_stop, "batches")
    tags = api.counted("tags", api.tags)
    customer = api.counted("customer", api.customer)
    submissions = {op: api.counted("create", api.submit(op), operation=op) for op in REQUESTS}
    for prefix in API_PREFIXES:
        batch, batches = f"{prefix}/integrations/batch", f"{prefix}/integrations/batches"
        customers = f"{prefix}/integrations/customers/{{customer_id}}"
        routes += [
            Route(f"{batch}/customers", create, methods=["POST"]),
            *(
                Route(f"{batch}/{operation}", submit, methods=["POST"])
                for operation, submit in submissions.items()
            ),
            Route(f"{batch}/{{job_id}}", status, methods=["GET"]),
            Route(f"{batch}/{{job_id}}", stop, methods=["DELETE"]),
            Route(f"{batches}/{{job_id}}/status", batches_status, methods=["GET"]),
            Route(f"{batches}/{{job_id}}/stop", batches_stop, methods=["POST"]),
            Route(f"{customers}/tags", tags, methods=["POST", "DELETE"]),
            Route(customers, customer, methods=["GET"]),
            Route(f"{customers}/details", customer, methods=["GET"]),
        ]
    routes += [
        Route("/_sim/stats", api.stats, methods=["GET"]),
        Route("/_sim/applied", api.applied, methods=["GET"]),
        Route("/_sim/rejected", api.rejected, methods=["GET"]),
        Route("/_sim/tags", api.tag_log, methods=["GET"]),
        Route("/_sim/config", api.config, methods=["GET", "POST"]),
        Route("/_sim/reset", api.reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = state
    return app
