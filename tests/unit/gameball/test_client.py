"""The API client against the simulator over real HTTP: verdicts, retries, credentials."""

from __future__ import annotations

import asyncio
import importlib.machinery
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from service.errors import BatchRejected, JobNotFound, SubmissionWithdrawn
from service.gameball.budget import RequestBudget, Window
from service.gameball.client import GameballClient, RetryPolicy
from service.gameball.dialects import Endpoint
from service.gameball.models import JobState
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.health import Health
from service.metrics import Metrics
from service.tools.embedded_broker import free_port
from tests.helpers import eventually

FAST = RetryPolicy(base_seconds=0.01, max_seconds=0.05, auth_min_seconds=0.05, auth_max_seconds=0.1)
BODY = b'{"body":[{"customerId":"a","email":"a@example.com"},{"customerId":"b"}]}'


def client_for(
    simulator: RunningSimulator,
    health: Health | None = None,
    metrics: Metrics | None = None,
    key: str = "demo-api-key",
    secret: str = "demo-secret-key",
) -> GameballClient:
    return GameballClient(
        Endpoint(simulator.base_url),
        SecretStr(key),
        SecretStr(secret),
        metrics=metrics or Metrics(),
        health=health or Health(),
        retry=FAST,
    )


def set_config(simulator: RunningSimulator, **changes: object) -> None:
    httpx.post(f"{simulator.base_url}/_sim/config", json=changes, timeout=5).raise_for_status()


async def test_submit_poll_and_stop(simulator: RunningSimulator) -> None:
    client = client_for(simulator)
    try:
        job_id = await client.submit(BODY)
        status = await client.status(job_id)
        assert status.status is JobState.COMPLETED
        assert status.response is not None
        assert {r["customerId"] for r in status.response.successful} == {"a", "b"}
        await client.stop(job_id)  # idempotent on a finished job
        with pytest.raises(JobNotFound):
            await client.status("no-such-job")
    finally:
        await client.aclose()


async def test_a_request_searches_no_module_path(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without sniffio, httpcore looks for it on sys.path several times per request (33 us
    each): a request, once the client is warm, must import nothing."""
    client = client_for(simulator)
    try:
        job_id = await client.submit(BODY)
        searched: list[str] = []
        find_spec = importlib.machinery.PathFinder.find_spec

        def spy(name: str, *args: Any, **kwargs: Any) -> Any:
            searched.append(name)
            return find_spec(name, *args, **kwargs)

        monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec", spy)
        await client.status(job_id)
        await client.submit(BODY)
        assert searched == []
    finally:
        await client.aclose()


async def test_a_malformed_batch_is_rejected_with_the_api_text(simulator: RunningSimulator) -> None:
    client = client_for(simulator)
    try:
        with pytest.raises(BatchRejected) as caught:
            await client.submit(b'{"body":[{"customerId":"x","tags":"not-a-list"}]}')
        assert caught.value.status == 400
        assert "tags" in caught.value.body
    finally:
        await client.aclose()


async def test_rate_limits_and_server_errors_are_retried_until_they_pass(
    simulator: RunningSimulator,
) -> None:
    set_config(simulator, rate_limit_rate=1.0, retry_after_seconds=0.01)
    metrics = Metrics()
    client = client_for(simulator, metrics=metrics)
    try:
        submit = asyncio.create_task(client.submit(BODY))
        await eventually(
            lambda: (
                (
                    metrics.registry.get_sample_value(
                        "customer_sync_api_requests_total", {"operation": "submit", "code": "429"}
                    )
                    or 0
                )
                >= 3
            )
        )
        assert not submit.done()
        set_config(simulator, rate_limit_rate=0.0, server_error_rate=0.0)
        job_id = await asyncio.wait_for(submit, 10)
        assert (await client.status(job_id)).status is JobState.COMPLETED
    finally:
        await client.aclose()


async def test_rejected_credentials_mark_unready_and_wait_for_a_fix(
    simulator: RunningSimulator,
) -> None:
    health = Health()
    client = client_for(simulator, health=health, secret="wrong-secret")
    try:
        await client.verify_credentials()
        assert health.credentials_ok is False
        submit = asyncio.create_task(client.submit(BODY))
        await asyncio.sleep(0.3)  # several slow retries happen meanwhile
        assert not submit.done()
        set_config(simulator, secret_key="wrong-secret")
        await asyncio.wait_for(submit, 10)
        assert health.credentials_ok is True
    finally:
        await client.aclose()


async def test_errors_never_carry_the_secret(simulator: RunningSimulator) -> None:
    client = client_for(simulator, secret="s3cr3t-value")
    try:
        set_config(simulator, secret_key="s3cr3t-value")
        with pytest.raises(JobNotFound) as caught:
            await client.status("missing")
        assert "s3cr3t-value" not in repr(caught.value)
        assert "s3cr3t-value" not in str(caught.value)
    finally:
        await client.aclose()


async def test_an_unreachable_api_is_no_verdict_on_the_credentials() -> None:
    health = Health()
    client = GameballClient(
        Endpoint(f"http://127.0.0.1:{free_port()}"),  # nothing listens there
        SecretStr("k"),
        SecretStr("s"),
        metrics=Metrics(),
        health=health,
        retry=FAST,
    )
    try:
        await client.verify_credentials()
        assert health.credentials_ok is None  # unknown, not rejected
    finally:
        await client.aclose()


async def test_an_attempt_answered_too_slowly_is_given_up_after_the_request_timeout() -> None:
    """The whole attempt is bounded, not each read: a server that trickles its answer a byte
    at a time (every read well within the timeout) still costs one request timeout, after
    which nothing of that attempt can come back (the takeover's hold counts on it)."""

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        try:
            while True:
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            writer.close()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = Metrics()
    client = GameballClient(
        Endpoint(f"http://127.0.0.1:{port}"),
        SecretStr("k"),
        SecretStr("s"),
        metrics=metrics,
        health=Health(),
        retry=FAST,
        request_timeout=0.5,
    )
    spent: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(5):
            with pytest.raises(SubmissionWithdrawn):  # asked before the second attempt
                await client.submit(BODY, spent=spent, wanted=lambda: not spent)
        assert 0.5 <= loop.time() - started < 2
        assert spent == Counter(submit=1)
        errors = metrics.registry.get_sample_value(
            "customer_sync_api_requests_total", {"operation": "submit", "code": "error"}
        )
        assert errors == 1
    finally:
        await client.aclose()
        server.close()


@pytest.mark.parametrize("retry_after", [False, True])
async def test_a_budget_that_overestimates_the_key_pauses_on_429s_instead_of_hammering(
    retry_after: bool,
) -> None:
    # The API allows 20 requests/s; the budget believes 60. A 429 holds every request, until
    # Retry-After passes or for a second without it: one budget for all requests, not each
    # request retrying on its own timer.
    config = SimulatorConfig(limit_per_second=20, limit_retry_after=retry_after)
    metrics = Metrics()
    budget = RequestBudget((Window(60, 1.0),), metrics=metrics)
    budget.set_share(1.0)
    with RunningSimulator(config) as simulator:
        client = GameballClient(
            Endpoint(simulator.base_url),
            SecretStr("demo-api-key"),
            SecretStr("demo-secret-key"),
            metrics=metrics,
            health=Health(),
            retry=FAST,
            budget=budget,
        )
        try:
            job_id = await client.submit(BODY)

            async def reader() -> None:
                for _ in range(10):
                    await client.status(job_id)

            await asyncio.wait_for(asyncio.gather(*(reader() for _ in range(8))), 30)
        finally:
            await client.aclose()
            budget.close()
        stats = simulator.state.stats()
    assert stats["requests"]["status"]["200"] == 80, "every request went through in the end"
    # A budget not told of its 429s meets dozens a second (~140 in this run); one that pauses
    # meets one per pause and its requests in flight (4 either way, measured).
    assert stats["rate_limited"] <= 30
