"""The client's submissions of the operations besides customers: each to its own path, within
its route's own limits where it names some, and an id-less operation's submission never
retried once its answer may have been lost (``httpx.MockTransport``: pure request logic)."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from pydantic import SecretStr

from service.errors import OutcomeUnknown
from service.gameball.client import GameballClient, RetryPolicy
from service.gameball.dialects import Endpoint
from service.gameball.operations import Operation
from service.health import Health
from service.metrics import Metrics

FAST = RetryPolicy(
    base_seconds=0.01, max_seconds=0.02, auth_min_seconds=0.02, auth_max_seconds=0.05
)
BODY = b'{"body":[{"customerId":"a","amount":5}]}'


class Budget:
    """Counts the requests it was asked to let through."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    async def acquire(self, operation: str) -> float:
        self.asked[operation] += 1
        return 0.0

    def throttled(self, retry_after: float | None) -> None:
        return None

    def close(self) -> None:
        return None


def client(
    handler: httpx.MockTransport,
    shared: Budget,
    routes: dict[Operation, Budget] | None = None,
    request_timeout: float = 30.0,
) -> GameballClient:
    return GameballClient(
        Endpoint("http://api.test", "batch", "v4.0"),
        SecretStr("k"),
        SecretStr("s"),
        metrics=Metrics(),
        health=Health(),
        retry=FAST,
        budget=shared,  # type: ignore[arg-type]
        transport=handler,
        submit_budgets=routes,  # type: ignore[arg-type]
        request_timeout=request_timeout,
    )


async def test_each_operation_is_submitted_to_its_path_within_its_routes_own_limits() -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"jobId": 1})

    shared, events = Budget(), Budget()
    api = client(httpx.MockTransport(answer), shared, {Operation.EVENTS: events})
    await api.submit(BODY, operation=Operation.EVENTS)
    await api.submit(BODY, operation=Operation.ORDERS)
    await api.submit(BODY)
    assert paths == [
        "/api/v4.0/integrations/batch/events",
        "/api/v4.0/integrations/batch/orders",
        "/api/v4.0/integrations/batch/customers",
    ]
    assert events.asked == {"submit": 1}, "the events route submits within its own limits"
    assert shared.asked == {"submit": 2}
    await api.aclose()


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        500,
        502,
        503,
        504,
        408,
        "no job id",
    ],
)
async def test_an_idless_submission_whose_answer_may_be_lost_is_not_retried(
    failure: Exception | int | str,
) -> None:
    sent = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if isinstance(failure, Exception):
            raise failure
        if failure == "no job id":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(int(failure))

    api = client(httpx.MockTransport(answer), Budget())
    with pytest.raises(OutcomeUnknown):
        await api.submit(BODY, operation=Operation.BALANCE_ADJUSTMENT)
    assert sent == 1, "a job may exist: sent again, it would apply twice"
    await api.aclose()


async def test_an_idless_submission_never_taken_is_retried() -> None:
    sent = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if sent == 1:
            raise httpx.ConnectError("connection refused")
        if sent == 2:
            return httpx.Response(429)  # the API says it did not take it
        return httpx.Response(200, json={"jobId": 7})

    api = client(httpx.MockTransport(answer), Budget())
    assert await api.submit(BODY, operation=Operation.EVENTS) == "7"
    assert sent == 3
    await api.aclose()


async def test_a_keyed_submission_whose_answer_was_lost_is_retried() -> None:
    sent = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if sent == 1:
            raise httpx.ReadTimeout("read timed out")
        return httpx.Response(200, json={"jobId": 8})

    api = client(httpx.MockTransport(answer), Budget())
    assert await api.submit(BODY, operation=Operation.ORDERS) == "8"
    assert sent == 2, "a duplicate order is refused by its id: sending again is safe"
    await api.aclose()


async def test_an_idless_submission_answered_after_the_request_timeout_is_not_retried() -> None:
    sent = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        await asyncio.sleep(1.0)  # created, answered too late
        return httpx.Response(200, json={"jobId": 9})

    api = client(httpx.MockTransport(answer), Budget(), request_timeout=0.1)
    with pytest.raises(OutcomeUnknown):
        await api.submit(BODY, operation=Operation.EVENTS)
    assert sent == 1
    await api.aclose()
