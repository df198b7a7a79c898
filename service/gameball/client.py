"""The Gameball Batch Customer API client: a thin typed adapter at the edge.

Every call retries by itself what is worth retrying, for as long as it takes,
so callers only ever see an answer or a verdict about the data:

* every request, retries included, first waits for the API key's request
  budget (:mod:`service.gameball.budget`), when the client has one;
* transient failures (no answer, timeouts, 408, 5xx and unexpected
  statuses) back off exponentially with full jitter, or wait exactly what
  ``Retry-After`` asks;
* a 429 is reported to the budget, which pauses every request (it is the
  key that is throttled, not the request), and the request queues there
  again at once: no timer of its own (without a budget, it backs off like
  any transient failure);
* 401/403 mark the service not ready and retry slowly: bad credentials are an
  operator's problem, never the data's, so they never become a dead letter;
  so do Gameball's configuration codes (1000-1002, 6000, 8000) and a merchant's
  minimum-version refusal (:class:`AccountRefused`, with a hint);
* 400/413/422 (or code 3011) on a submission raise :class:`BatchRejected` (the
  caller bisects); code 2001 ("another request for the same customer") is
  transient; 404 on a job raises :class:`JobNotFound` (the caller resubmits).
Every non-2xx answer is read for Gameball's envelope (:mod:`.answers`); its
``code`` and ``requestId`` go into the exception and the log line.

Job status and stop speak the dialect :mod:`service.gameball.jobroutes` finds.

Secrets travel only in the ``APIKey``/``SecretKey`` headers of the pooled
client; no log line or exception built here contains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import structlog
from pydantic import SecretStr, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
    wait_random_exponential,
)

from service.errors import (
    AccountRefused,
    ApiError,
    CredentialsRejected,
    JobNotFound,
    OutcomeUnknown,
    SubmissionWithdrawn,
    TransientApiError,
)
from service.gameball.answers import (
    ABSENT,
    absent_dialect_hint,
    log_fields,
    read_error,
    refusal,
    retry_after,
    verdict,
)
from service.gameball.budget import RequestBudget
from service.gameball.dialects import Endpoint, customer_path, integrations, submit_path
from service.gameball.jobroutes import JobRoutes
from service.gameball.models import JobCreated, JobStatus
from service.gameball.operations import Delivery, Operation
from service.health import Health
from service.metrics import Metrics

log = structlog.get_logger(__name__)

CREDENTIALS_RECHECK = 15.0
"""Seconds between two checks of accepted credentials (rejected ones: every 2 s)."""
TIMEOUT_SECONDS = 30.0
"""How long one request may take, all of it, by default (``GAMEBALL_REQUEST_TIMEOUT_SECONDS``).

A bound on the whole attempt, not only on each read or write: a takeover counts on an
unanswered POST being over this long after it went out (``delivery/takeover.py``).
"""
CONNECT_SECONDS = 10.0
"""The longest a request may spend connecting (when its whole timeout is longer)."""
_TOO_MANY_REQUESTS = 429
_ERROR_TEXT_LIMIT = 1000

Spent = Counter[str]
"""Requests sent on behalf of one job, by operation (``submit``, ``status``, ``stop``)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for transient errors and for rejected credentials."""

    base_seconds: float = 0.2
    max_seconds: float = 30.0
    auth_min_seconds: float = 2.0
    auth_max_seconds: float = 30.0


def answer_unknown(status: int) -> bool:
    """Whether an answer leaves a submission's fate unknown: a server error (5xx) may come
    after the job was created (a gateway's timeout, a crash after the insert; the chaos
    runs' simulator answers 500 and 503 so), and a 408 after the body was read. A 429, and
    every other 4xx, says the request was not taken."""
    return status >= 500 or status == 408


def answer_lost(exc: httpx.TransportError) -> bool:
    """Whether a request that failed so may have reached the API: anything but a connection
    that was never made (the request was not written)."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class GameballClient:
    """Async, pooled, with explicit timeouts; one instance per service."""

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: SecretStr,
        secret_key: SecretStr,
        *,
        metrics: Metrics,
        health: Health,
        retry: RetryPolicy | None = None,
        budget: RequestBudget | None = None,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        request_timeout: float = TIMEOUT_SECONDS,
        submit_budgets: Mapping[Operation, RequestBudget] | None = None,
    ) -> None:
        """``transport`` replaces the network (``httpx.MockTransport`` in unit tests).

        ``request_timeout``: how long one request may take, all of it (see ``TIMEOUT_SECONDS``).
        ``submit_budgets``: the operations whose route names its own limits, and the budget
        their submissions draw on instead of ``budget`` (job reads and stops stay on it: the
        job endpoints are the batch API's, whatever the operation)."""
        self._request_timeout = request_timeout
        self._submit_budgets = dict(submit_budgets or {})
        self._metrics = metrics
        self._health = health
        self._retry = retry or RetryPolicy()
        self._budget = budget
        self._version = endpoint.version
        self._routes = JobRoutes(endpoint, metrics)
        self._unknown_states: set[str] = set()
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url,
            headers={
                "APIKey": api_key.get_secret_value(),
                "SecretKey": secret_key.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(request_timeout, connect=min(CONNECT_SECONDS, request_timeout)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        for budget in self._submit_budgets.values():
            budget.close()

    @property
    def job_api(self) -> str | None:
        """The job dialect in use; ``None`` under ``auto`` until a job route answered."""
        return self._routes.name

    async def submit(
        self,
        body: bytes,
        *,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        operation: Operation = Operation.CUSTOMERS,
    ) -> str:
        """Create a batch job of ``operation``; return its id. ``spent`` counts the requests.

        ``wanted`` is asked just before every attempt is sent, after the budget's wait:
        when it says no, :class:`SubmissionWithdrawn` is raised and nothing more is sent.
        ``prepare`` is awaited right after it, before the attempt goes out (the write-ahead
        of ``delivery/jobs.py``); it may raise :class:`SubmissionWithdrawn` too.

        An operation whose items carry no id (events, balance adjustments) is submitted at
        most once: an attempt whose answer was lost after it may have reached the API raises
        :class:`OutcomeUnknown` instead of being retried (:func:`answer_lost`).
        """
        if operation is Operation.CUSTOMERS:
            path = submit_path(self._version)
        else:
            path = f"{integrations(self._version)}/batch/{operation.value}"
        once = operation.facts.delivery is Delivery.IDLESS
        response = await self._call(
            "submit",
            "POST",
            path,
            body,
            spent,
            wanted,
            prepare=prepare,
            at_most_once=once,
            budget=self._submit_budgets.get(operation),
        )
        try:
            return JobCreated.model_validate_json(response.content).job_id
        except ValidationError as exc:
            if once:
                raise OutcomeUnknown(
                    f"submission answered {response.status_code} without a job id: a job may exist",
                    status=response.status_code,
                    body=response.text[:_ERROR_TEXT_LIMIT],
                ) from exc
            # A 2xx without a job id: the job may or may not exist. Treat it as
            # a transient failure; the records are resubmitted (at-least-once).
            raise TransientApiError(
                f"submission answered {response.status_code} without a job id",
                status=response.status_code,
                body=response.text[:_ERROR_TEXT_LIMIT],
            ) from exc

    async def status(
        self,
        job_id: str,
        *,
        entries: bool = False,
        spent: Spent | None = None,
        sending: Callable[[], None] | None = None,
    ) -> JobStatus:
        """The job's status; a running job's entries are only counted unless ``entries``.

        ``sending`` is called as every attempt goes out, after the budget's wait: what the
        answer says of the job, it says as of then (see ``delivery/polling.py``).
        """
        response = await self._on_job("status", job_id, spent, sending)
        try:
            status = JobStatus.read(response.content, entries=entries)
        except ValueError as exc:  # ValidationError and JSONDecodeError alike
            raise TransientApiError(
                f"job {job_id} status is not a status document",
                status=response.status_code,
                body=response.text[:_ERROR_TEXT_LIMIT],
            ) from exc
        unknown = status.unknown_state
        if unknown is not None and unknown not in self._unknown_states:
            self._unknown_states.add(unknown)
            log.warning(
                "job_state_unknown",
                state=unknown[:100],
                hint="read as running: the job is polled until JOB_TIMEOUT_SECONDS, "
                "then stopped and its records resubmitted",
            )
        return status

    async def set_tags(
        self,
        customer_id: str,
        attach: Sequence[str],
        remove: Sequence[str] = (),
        *,
        wanted: Callable[[], bool] | None = None,
    ) -> None:
        """Attach ``attach`` to a customer and remove ``remove`` from it.

        ``POST .../customers/{id}/tags`` attaches (it adds to what the customer has, per the
        OpenAPI) and ``DELETE`` on the same path removes, each with one comma-separated
        string. ``wanted`` is asked before every attempt, as for :meth:`submit`.
        """
        path = customer_path(self._version, customer_id, "/tags")
        if attach:
            body = orjson.dumps({"tags": ", ".join(attach)})
            await self._call("tags", "POST", path, body, None, wanted)
        if remove:
            body = orjson.dumps({"tags": ", ".join(remove)})
            await self._call("tags", "DELETE", path, body, None, wanted)

    async def read_customer(self, customer_id: str) -> tuple[dict[str, Any], bool]:
        """The customer as the API holds it, and whether that is the complete view.

        ``GET .../customers/{id}/details`` carries every attribute (the OpenAPI); where that
        route is absent, ``GET .../customers/{id}``, which leaves personal data out. One
        attempt each: this is the canary's question, not the delivery path's.
        """
        for tail, complete in (("/details", True), ("", False)):
            path = customer_path(self._version, customer_id, tail)
            response = await self._send("read", "GET", path)
            if response.status_code in (404, 405) and complete:
                continue  # no such route here (or no such customer: the plain read says which)
            self._classify("read", response)
            document = orjson.loads(response.content)
            if not isinstance(document, dict):
                raise TransientApiError("the customer read back is not a JSON object")
            return document, complete
        raise AssertionError("unreachable: the plain read classifies its answer")

    async def stop(self, job_id: str, *, spent: Spent | None = None) -> None:
        with contextlib.suppress(JobNotFound):  # already gone: stopping it is moot
            await self._on_job("stop", job_id, spent)

    async def _on_job(
        self,
        operation: str,
        job_id: str,
        spent: Spent | None,
        sending: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """A status read or a stop, in the dialect in use (found first under ``auto``)."""

        async def send(method: str, path: str, probing: bool) -> httpx.Response:
            return await self._call(
                operation, method, path, None, spent, sending=sending, probing=probing
            )

        return await self._routes.request(operation, job_id, send)

    async def watch_credentials(self) -> None:
        """Readiness needs the API's word on the credentials, even with no traffic."""
        while True:
            if self._health.credentials_ok is not True:
                await self.verify_credentials()
            await asyncio.sleep(CREDENTIALS_RECHECK if self._health.credentials_ok else 2.0)

    async def verify_credentials(self) -> None:
        """One harmless request (the status of a job that does not exist), for readiness.

        Any answer but a refusal (401/403, a configuration code, a minimum-version
        refusal, or a 405 from the configured dialect's route) means the keys were
        accepted. Under ``auto`` an absent route (404/405) makes it ask the other
        dialect. The verdict goes to ``health.credentials_ok``; a transient failure is
        none, and the previous verdict stands.
        """
        dialects = self._routes.candidates()
        for index, dialect in enumerate(dialects):
            path = dialect.status_path(self._version, "credentials-check")
            try:
                response = await self._send("status", "GET", path)
            except TransientApiError:
                return
            if response.status_code not in ABSENT or index == len(dialects) - 1:
                break
        code = response.status_code
        hint = None
        if not 200 <= code < 300:
            error = read_error(response.content, code)
            hint = refusal(code, error, self._version)
            if hint is None and code == 405 and self.job_api is not None:
                hint = absent_dialect_hint(self.job_api)
            if hint is not None and self._health.credentials_ok is not False:
                log.error(
                    "api_refuses_configuration",
                    status=code,
                    detail=error.text,
                    hint=hint,
                    **log_fields(error),
                )
        self._health.credentials_ok = hint is None

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        content: bytes | None = None,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        *,
        sending: Callable[[], None] | None = None,
        probing: bool = False,
        prepare: Callable[[], Awaitable[None]] | None = None,
        at_most_once: bool = False,
        budget: RequestBudget | None = None,
    ) -> httpx.Response:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((TransientApiError, CredentialsRejected)),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send(
                    operation,
                    method,
                    path,
                    content,
                    spent,
                    wanted,
                    sending=sending,
                    prepare=prepare,
                    at_most_once=at_most_once,
                    budget=budget,
                )
                if at_most_once and answer_unknown(response.status_code):
                    raise OutcomeUnknown(
                        f"{operation} answered {response.status_code}: the API may have "
                        "created the job before it failed",
                        status=response.status_code,
                        body=response.text[:_ERROR_TEXT_LIMIT],
                    )
                return self._classify(operation, response, probing=probing)
        raise AssertionError("unreachable: tenacity never stops")  # pragma: no cover

    async def _send(
        self,
        operation: str,
        method: str,
        path: str,
        content: bytes | None = None,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        *,
        sending: Callable[[], None] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        at_most_once: bool = False,
        budget: RequestBudget | None = None,
    ) -> httpx.Response:
        budget = budget or self._budget
        if budget is not None:
            await budget.acquire(operation)
        if wanted is not None and not wanted():
            raise SubmissionWithdrawn(f"{operation} withdrawn: its records are no longer ours")
        if prepare is not None:
            await prepare()
        if spent is not None:
            spent[operation] += 1
        if sending is not None:
            sending()
        started = time.perf_counter()
        try:
            # httpx bounds each read and write; this bounds the whole attempt.
            async with asyncio.timeout(self._request_timeout):
                response = await self._http.request(method, path, content=content)
        except httpx.TransportError as exc:  # connect, read, write, pool timeouts; protocol errors
            self._metrics.api_requests.labels(operation=operation, code="error").inc()
            if at_most_once and answer_lost(exc):
                raise OutcomeUnknown(
                    f"{operation}: {type(exc).__name__} after the request may have reached the "
                    f"API: {exc}"
                ) from exc
            raise TransientApiError(f"{operation}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            self._metrics.api_requests.labels(operation=operation, code="error").inc()
            if at_most_once:  # sent, and its answer not heard in time: a job may exist
                raise OutcomeUnknown(
                    f"{operation}: no answer within {self._request_timeout:g} s; the request "
                    "may have reached the API"
                ) from exc
            raise TransientApiError(
                f"{operation}: no answer within {self._request_timeout:g} s"
            ) from exc
        finally:
            self._metrics.api_duration[operation].observe(time.perf_counter() - started)
        self._metrics.api_requests.labels(operation=operation, code=str(response.status_code)).inc()
        if response.status_code == _TOO_MANY_REQUESTS and budget is not None:
            budget.throttled(retry_after(response))
        return response

    def _classify(
        self, operation: str, response: httpx.Response, *, probing: bool = False
    ) -> httpx.Response:
        if 200 <= response.status_code < 300:
            self._health.credentials_ok = True
            return response
        exc = verdict(
            operation, response, version=self._version, job_api=self.job_api, probing=probing
        )
        if isinstance(exc, CredentialsRejected):  # AccountRefused too: not ready, data kept
            self._health.credentials_ok = False
        raise exc

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        policy = self._retry
        if isinstance(exc, CredentialsRejected):
            return float(
                wait_exponential(min=policy.auth_min_seconds, max=policy.auth_max_seconds)(state)
            )
        if (
            isinstance(exc, TransientApiError)
            and exc.status == _TOO_MANY_REQUESTS
            and self._budget is not None
        ):
            return 0.0  # the budget, told of the 429, decides when anything goes next
        jitter = float(
            wait_random_exponential(multiplier=policy.base_seconds, max=policy.max_seconds)(state)
        )
        if isinstance(exc, TransientApiError) and exc.retry_after is not None:
            return max(exc.retry_after, min(jitter, exc.retry_after + policy.base_seconds))
        return jitter

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        if isinstance(exc, AccountRefused):
            log.error(
                "api_refuses_configuration",
                status=exc.status,
                detail=exc.body,
                retry_in_seconds=round(wait, 2),
                hint=exc.hint,
                **log_fields(exc),
            )
        elif isinstance(exc, CredentialsRejected):
            log.error(
                "credentials_rejected",
                status=exc.status,
                detail=exc.body,
                retry_in_seconds=round(wait, 2),
                hint="check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY; the data is kept",
                **log_fields(exc),
            )
        elif isinstance(exc, ApiError):
            log.warning(
                "api_retry",
                error=str(exc),
                attempt=state.attempt_number,
                retry_in_seconds=round(wait, 2),
                **log_fields(exc),
            )
