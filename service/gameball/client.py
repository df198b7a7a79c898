"""The Gameball Batch Customer API client: a thin typed adapter at the edge.

Every call retries by itself what is worth retrying, for as long as it takes,
so callers only ever see an answer or a verdict about the data:

* every request, retries included, first waits for the API key's request
  budget (:mod:`service.gameball.budget`), when the client has one;
* transient failures (no answer, timeouts, 408, 5xx and unexpected
  statuses) back off exponentially with full jitter, or wait exactly what
  ``Retry-After`` asks;
* a 429 is reported to the budget, which slows every request down (it is the
  key that is throttled, not the request), and the request queues there
  again at once: no timer of its own (without a budget, it backs off like
  any transient failure);
* 401/403 mark the service not ready and retry slowly: bad credentials are an
  operator's problem, never the data's, so they never become a dead letter;
* 400/413/422 on a submission raise :class:`BatchRejected` (the caller bisects);
  404 on a job raises :class:`JobNotFound` (the caller resubmits).

Secrets travel only in the ``APIKey``/``SecretKey`` headers of the pooled
client; no log line or exception built here contains them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
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
    ApiError,
    BatchRejected,
    CredentialsRejected,
    JobNotFound,
    SubmissionWithdrawn,
    TagsRejected,
    TransientApiError,
)
from service.gameball.budget import RequestBudget
from service.gameball.models import JobCreated, JobStatus
from service.health import Health
from service.metrics import Metrics

log = structlog.get_logger(__name__)

SUBMIT_PATH = "/api/v4.0/integrations/batch/customers"
JOB_PATH = "/api/v4.0/integrations/batch/{job_id}"
TAGS_PATH = "/api/v4.0/integrations/customers/{customer_id}/tags"
CREDENTIALS_RECHECK = 15.0
"""Seconds between two checks of accepted credentials (rejected ones: every 2 s)."""
_REJECTED = frozenset({400, 413, 422})
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _error_text(response: httpx.Response) -> str:
    """The API's own words: a JSON ``message``/``error`` when there is one, else the body."""
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "errors", "detail", "title"):
            if body.get(key):
                text = body[key]
                return (text if isinstance(text, str) else orjson.dumps(text).decode())[
                    :_ERROR_TEXT_LIMIT
                ]
    text = response.text.strip() or f"HTTP {response.status_code}"
    return text[:_ERROR_TEXT_LIMIT]


class GameballClient:
    """Async, pooled, with explicit timeouts; one instance per service."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        secret_key: SecretStr,
        *,
        metrics: Metrics,
        health: Health,
        retry: RetryPolicy | None = None,
        budget: RequestBudget | None = None,
        max_connections: int = 32,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._retry = retry or RetryPolicy()
        self._budget = budget
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "APIKey": api_key.get_secret_value(),
                "SecretKey": secret_key.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout_seconds, connect=10.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, body: bytes, *, spent: Spent | None = None, wanted: Callable[[], bool] | None = None
    ) -> str:
        """Create a batch job; return its id. ``spent`` counts the requests it took.

        ``wanted`` is asked just before every attempt is sent, after the budget's wait:
        when it says no, :class:`SubmissionWithdrawn` is raised and nothing more is sent.
        """
        response = await self._call("submit", "POST", SUBMIT_PATH, body, spent, wanted)
        try:
            return JobCreated.model_validate_json(response.content).job_id
        except ValidationError as exc:
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
        path = JOB_PATH.format(job_id=job_id)
        response = await self._call("status", "GET", path, None, spent, sending=sending)
        try:
            return JobStatus.read(response.content, entries=entries)
        except ValueError as exc:  # ValidationError and JSONDecodeError alike
            raise TransientApiError(
                f"job {job_id} status is not a status document",
                status=response.status_code,
                body=response.text[:_ERROR_TEXT_LIMIT],
            ) from exc

    async def set_tags(
        self, customer_id: str, tags: list[str], *, wanted: Callable[[], bool] | None = None
    ) -> None:
        """Set a customer's tags: one comma-separated string, the whole set.

        ``wanted`` is asked before every attempt, as for :meth:`submit`.
        """
        path = TAGS_PATH.format(customer_id=urllib.parse.quote(customer_id, safe=""))
        body = orjson.dumps({"tags": ", ".join(tags)})
        await self._call("tags", "POST", path, body, None, wanted)

    async def stop(self, job_id: str, *, spent: Spent | None = None) -> None:
        with contextlib.suppress(JobNotFound):  # already gone: stopping it is moot
            await self._call("stop", "DELETE", JOB_PATH.format(job_id=job_id), None, spent)

    async def watch_credentials(self) -> None:
        """Readiness needs the API's word on the credentials, even with no traffic."""
        while True:
            if self._health.credentials_ok is not True:
                await self.verify_credentials()
            await asyncio.sleep(CREDENTIALS_RECHECK if self._health.credentials_ok else 2.0)

    async def verify_credentials(self) -> bool:
        """One harmless request (the status of a job that does not exist).

        Any answer but 401/403 means the keys were accepted. Transient
        failures count as unknown: the previous verdict stands, and the return
        value is ``True`` only if that verdict was an acceptance.
        """
        try:
            response = await self._send(
                "status", "GET", JOB_PATH.format(job_id="credentials-check")
            )
        except TransientApiError:
            return self._health.credentials_ok is True
        ok = response.status_code not in (401, 403)
        self._health.credentials_ok = ok
        return ok

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
                    operation, method, path, content, spent, wanted, sending=sending
                )
                return self._classify(operation, response)
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
    ) -> httpx.Response:
        budget = self._budget
        sent_at = await budget.acquire(operation) if budget is not None else 0.0
        if wanted is not None and not wanted():
            raise SubmissionWithdrawn(f"{operation} withdrawn: its records are no longer ours")
        if spent is not None:
            spent[operation] += 1
        if sending is not None:
            sending()
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, content=content)
        except httpx.TransportError as exc:  # connect, read, write, pool timeouts; protocol errors
            self._metrics.api_requests.labels(operation=operation, code="error").inc()
            raise TransientApiError(f"{operation}: {type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.api_duration[operation].observe(time.perf_counter() - started)
        self._metrics.api_requests.labels(operation=operation, code=str(response.status_code)).inc()
        if response.status_code == _TOO_MANY_REQUESTS and budget is not None:
            budget.throttled(_retry_after(response), sent_at)
        return response

    def _classify(self, operation: str, response: httpx.Response) -> httpx.Response:
        code = response.status_code
        if 200 <= code < 300:
            self._health.credentials_ok = True
            return response
        text = _error_text(response)
        if code in (401, 403):
            self._health.credentials_ok = False
            raise CredentialsRejected(
                f"the Gameball API rejected the credentials (HTTP {code}): {text}",
                status=code,
                body=text,
            )
        if operation == "submit" and code in _REJECTED:
            raise BatchRejected(f"batch rejected (HTTP {code}): {text}", status=code, body=text)
        if operation == "tags" and (code in _REJECTED or code == 404):
            raise TagsRejected(f"tags rejected (HTTP {code}): {text}", status=code, body=text)
        if operation in ("status", "stop") and code == 404:
            raise JobNotFound(f"job not found (HTTP 404): {text}", status=code, body=text)
        raise TransientApiError(
            f"{operation} answered HTTP {code}: {text}",
            status=code,
            body=text,
            retry_after=_retry_after(response),
        )

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
        if isinstance(exc, CredentialsRejected):
            log.error(
                "credentials_rejected",
                status=exc.status,
                detail=exc.body,
                retry_in_seconds=round(wait, 2),
                hint="check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY; the data is kept",
            )
        elif isinstance(exc, ApiError):
            log.warning(
                "api_retry",
                error=str(exc),
                attempt=state.attempt_number,
                retry_in_seconds=round(wait, 2),
            )
