"""Both job dialects, the API version and the error envelope, as the client meets them.

Dialects and versions run against the simulator over real HTTP; the error codes,
which the simulator does not produce, against ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from service.delivery.jobs import JobTracker
from service.delivery.polling import PollSchedule
from service.delivery.records import PendingRecord
from service.errors import BatchRejected, JobNotFound
from service.gameball.client import GameballClient, RetryPolicy
from service.gameball.dialects import Endpoint
from service.gameball.models import JobState
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.health import Health
from service.metrics import Metrics
from tests.helpers import eventually

FAST = RetryPolicy(
    base_seconds=0.01, max_seconds=0.05, auth_min_seconds=0.02, auth_max_seconds=0.05
)
BODY = b'{"body":[{"customerId":"a","email":"a@example.com"},{"customerId":"b"}]}'


def client(
    base_url: str,
    *,
    job_api: str = "auto",
    version: str = "v4.0",
    metrics: Metrics | None = None,
    health: Health | None = None,
    secret: str = "demo-secret-key",
    transport: httpx.AsyncBaseTransport | None = None,
) -> GameballClient:
    return GameballClient(
        Endpoint(base_url, job_api, version),
        SecretStr("demo-api-key"),
        SecretStr(secret),
        metrics=metrics or Metrics(),
        health=health or Health(),
        retry=FAST,
        transport=transport,
    )


def info(metrics: Metrics, job_api: str, version: str = "v4.0") -> float | None:
    labels = {"job_api": job_api, "api_version": version}
    return metrics.registry.get_sample_value("customer_sync_api_info", labels)


def absent_reads(simulator: RunningSimulator) -> int:
    return sum(simulator.state.requests.get("absent", {}).values())


@pytest.mark.parametrize("served", ["batch", "batches"])
async def test_auto_finds_the_dialect_the_api_serves_and_shows_it(served: str) -> None:
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_api=served)) as simulator:
        api = client(simulator.base_url, metrics=metrics)
        try:
            assert api.job_api is None
            assert info(metrics, "undecided") == 1
            with capture_logs() as logs:
                job_id = await api.submit(BODY)
                status = await api.status(job_id)
                await api.status(job_id)
                await api.stop(job_id)
            assert status.status is JobState.COMPLETED
            assert status.response is not None
            assert {str(e["customerId"]) for e in status.response.successful} == {"a", "b"}
            assert api.job_api == served
            assert info(metrics, served) == 1
            assert info(metrics, "undecided") is None
            chosen = [e for e in logs if e["event"] == "job_api_chosen"]
            assert [e["job_api"] for e in chosen] == [served]  # once
            # One probe of the absent route at most, and never again once chosen.
            assert absent_reads(simulator) == (1 if served == "batches" else 0)
        finally:
            await api.aclose()


@pytest.mark.parametrize("served", ["batch", "batches"])
async def test_a_configured_dialect_is_spoken_from_the_first_read(served: str) -> None:
    metrics = Metrics()
    with RunningSimulator(SimulatorConfig(job_api=served)) as simulator:
        api = client(simulator.base_url, job_api=served, metrics=metrics)
        try:
            assert info(metrics, served) == 1
            job_id = await api.submit(BODY)
            assert (await api.status(job_id)).status is JobState.COMPLETED
            await api.stop(job_id)
            assert absent_reads(simulator) == 0
        finally:
            await api.aclose()


async def test_concurrent_first_reads_find_the_dialect_once() -> None:
    with RunningSimulator(SimulatorConfig(job_api="batches")) as simulator:
        api = client(simulator.base_url)
        try:
            jobs = [await api.submit(BODY) for _ in range(8)]
            statuses = await asyncio.gather(*(api.status(job) for job in jobs))
            assert all(s.status is JobState.COMPLETED for s in statuses)
            assert absent_reads(simulator) == 1
            assert api.job_api == "batches"
        finally:
            await api.aclose()


async def test_a_job_unknown_to_every_dialect_is_not_found_and_decides_nothing() -> None:
    with RunningSimulator(SimulatorConfig(job_api="batches")) as simulator:
        api = client(simulator.base_url)
        try:
            with pytest.raises(JobNotFound):
                await api.status("no-such-job")
            assert api.job_api is None
            job_id = await api.submit(BODY)
            assert (await api.status(job_id)).status is JobState.COMPLETED
            assert api.job_api == "batches"
        finally:
            await api.aclose()


async def test_a_stopped_job_in_the_batches_dialect_reads_stopped() -> None:
    config = SimulatorConfig(job_api="batches", job_duration_seconds=30)
    with RunningSimulator(config) as simulator:
        api = client(simulator.base_url, job_api="batches")
        try:
            job_id = await api.submit(BODY)
            assert (await api.status(job_id)).status is JobState.QUEUED  # "pending"
            await api.stop(job_id)
            assert (await api.status(job_id)).status is JobState.STOPPED
        finally:
            await api.aclose()


async def test_v41_paths_and_a_minimum_version_refusal_that_says_what_to_set() -> None:
    with RunningSimulator(SimulatorConfig(min_api_version="v4.1")) as simulator:
        newer = client(simulator.base_url, version="v4.1")
        health = Health()
        older = client(simulator.base_url, health=health)
        try:
            job_id = await newer.submit(BODY)
            assert (await newer.status(job_id)).status is JobState.COMPLETED
            with capture_logs() as logs:
                await older.verify_credentials()
                submit = asyncio.ensure_future(older.submit(BODY))
                await eventually(lambda: len(logs) >= 3)
            assert health.credentials_ok is False  # not ready; nothing dead-lettered
            assert not submit.done()
            submit.cancel()
            hints = {e.get("hint") for e in logs if e["event"] == "api_refuses_configuration"}
            assert hints
            assert all("GAMEBALL_API_VERSION=v4.1" in str(h) for h in hints)
        finally:
            await newer.aclose()
            await older.aclose()


async def test_the_envelope_code_and_request_id_are_logged_never_the_secret() -> None:
    config = SimulatorConfig(error_envelope=True, secret_key="right")
    with RunningSimulator(config) as simulator:
        health = Health()
        api = client(simulator.base_url, health=health, secret="s3cr3t-wrong")
        try:
            with capture_logs() as logs:
                submit = asyncio.ensure_future(api.submit(BODY))
                await eventually(lambda: len(logs) >= 2)
                simulator.state.update_config({"secret_key": "s3cr3t-wrong"})
                await asyncio.wait_for(submit, 10)
            refused = [e for e in logs if e["event"] == "api_refuses_configuration"]
            assert refused
            assert refused[0]["code"] == 1002
            assert refused[0]["request_id"]
            assert "s3cr3t-wrong" not in repr(logs)
            assert health.credentials_ok is True
        finally:
            await api.aclose()


Handler = Callable[[httpx.Request], httpx.Response]


def answers(*responses: tuple[int, dict[str, object]]) -> tuple[Handler, list[httpx.Request]]:
    """A transport answering ``responses`` in turn, then the last one for ever."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = responses[min(len(seen), len(responses)) - 1]
        return httpx.Response(status, content=orjson.dumps(body))

    return handle, seen


def gameball_error(code: int, message: str) -> dict[str, object]:
    return {"code": code, "type": "Error", "message": message, "requestId": f"req-{code}"}


async def test_2001_is_retried_even_on_a_422() -> None:
    handle, seen = answers(
        (422, gameball_error(2001, "another request is being processed for the same customer")),
        (200, {"jobId": 5}),
    )
    api = client("http://api.test", transport=httpx.MockTransport(handle))
    try:
        with capture_logs() as logs:
            assert await api.submit(BODY) == "5"
        assert len(seen) == 2
        (retry,) = [e for e in logs if e["event"] == "api_retry"]
        assert retry["code"] == 2001
        assert retry["request_id"] == "req-2001"
    finally:
        await api.aclose()


async def test_3011_splits_the_batch() -> None:
    handle, _ = answers((500, gameball_error(3011, "operation exceeds allowed limits")))
    api = client("http://api.test", transport=httpx.MockTransport(handle))
    try:
        with pytest.raises(BatchRejected) as caught:
            await asyncio.wait_for(api.submit(BODY), 5)
        assert caught.value.code == 3011
    finally:
        await api.aclose()


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (422, 6000, "Gameball is disabled"),
        (403, 8000, "plan"),
        (401, 1000, "GAMEBALL_API_KEY"),
        (403, 1002, "GAMEBALL_SECRET_KEY"),
    ],
)
async def test_configuration_codes_keep_the_data_and_make_the_service_unready(
    status: int, code: int, hint: str
) -> None:
    handle, seen = answers((status, gameball_error(code, "refused")))
    health = Health()
    api = client("http://api.test", health=health, transport=httpx.MockTransport(handle))
    try:
        with capture_logs() as logs:
            submit = asyncio.ensure_future(api.submit(BODY))
            await eventually(lambda: len(seen) >= 3)  # retried, slowly, never rejected
        assert not submit.done()
        submit.cancel()
        assert health.credentials_ok is False
        refused = [e for e in logs if e["event"] == "api_refuses_configuration"]
        assert refused
        assert hint in refused[0]["hint"]
        assert refused[0]["code"] == code
    finally:
        await api.aclose()


async def test_a_minimum_version_message_reads_as_configuration_not_as_the_batch() -> None:
    handle, _ = answers((400, {"message": "Merchant minimum API version is v4.1"}))
    api = client("http://api.test", transport=httpx.MockTransport(handle))
    try:
        with capture_logs() as logs:
            submit = asyncio.ensure_future(api.submit(BODY))
            await eventually(lambda: any(e.get("hint") for e in logs))
        submit.cancel()
        assert "GAMEBALL_API_VERSION=v4.1" in next(e["hint"] for e in logs if e.get("hint"))
    finally:
        await api.aclose()


@pytest.mark.parametrize(
    ("job_api", "version", "status_path", "stop"),
    [
        ("batch", "v4.0", "/api/v4.0/integrations/batch/123456", "DELETE"),
        ("batches", "v4.1", "/api/v4.1/integrations/batches/123456/status", "POST"),
    ],
)
async def test_a_numeric_job_id_goes_into_paths_as_its_decimal_integer(
    job_api: str, version: str, status_path: str, stop: str
) -> None:
    handle, seen = answers(
        (200, {"jobId": 123456.0}),
        (200, {"status": "completed", "results": []}),
        (200, {"batchId": 123456, "status": "completed", "message": "stopped"}),
    )
    api = client(
        "http://api.test", job_api=job_api, version=version, transport=httpx.MockTransport(handle)
    )
    try:
        job_id = await api.submit(BODY)
        await api.status(job_id)
        await api.stop(job_id)
        assert seen[0].url.path == f"/api/{version}/integrations/batch/customers"
        assert seen[1].url.path == status_path
        assert seen[2].method == stop
        assert seen[2].url.path.endswith("123456" if job_api == "batch" else "123456/stop")
    finally:
        await api.aclose()


async def test_an_unknown_state_is_logged_once_and_polled_as_running() -> None:
    handle, _ = answers((200, {"status": "Reticulating"}))
    api = client("http://api.test", job_api="batch", transport=httpx.MockTransport(handle))
    try:
        with capture_logs() as logs:
            for _ in range(3):
                assert (await api.status("1")).status is JobState.RUNNING
        unknown = [e for e in logs if e["event"] == "job_state_unknown"]
        assert [e["state"] for e in unknown] == ["Reticulating"]
    finally:
        await api.aclose()


async def test_a_405_on_the_configured_dialect_is_a_configuration_error() -> None:
    handle, _ = answers((405, {"message": "Method Not Allowed"}))
    health = Health()
    api = client(
        "http://api.test", job_api="batches", health=health, transport=httpx.MockTransport(handle)
    )
    try:
        with capture_logs() as logs:
            read = asyncio.ensure_future(api.status("1"))
            await eventually(lambda: any(e.get("hint") for e in logs))
        read.cancel()
        assert health.credentials_ok is False
        assert "GAMEBALL_JOB_API=auto" in next(e["hint"] for e in logs if e.get("hint"))
    finally:
        await api.aclose()


async def test_a_job_in_an_unknown_state_times_out_is_stopped_and_resubmitted() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"jobId": 41})
        if request.method == "DELETE":
            return httpx.Response(200, json={"message": "stopped"})
        return httpx.Response(200, json={"status": "Reticulating", "response": None})

    metrics = Metrics()
    api = client(
        "http://api.test", job_api="batch", metrics=metrics, transport=httpx.MockTransport(handle)
    )
    tracker = JobTracker(
        api,
        metrics,
        max_jobs_in_flight=1,
        job_timeout=0.3,
        max_submit_attempts=5,
        poll=PollSchedule(initial_seconds=0.01, max_seconds=0.05),
    )
    payload = b'{"customerId":"a"}'
    records = [PendingRecord("t", 0, 0, 0, b"a", payload, "a", payload)]
    try:
        verdicts = await asyncio.wait_for(tracker.deliver(records), 10)
    finally:
        await api.aclose()
    assert verdicts.resubmit == records  # not dead-lettered: the job, not the record
    assert [r.method for r in seen].count("DELETE") == 1
    timed_out = {"status": "timed_out"}
    assert metrics.registry.get_sample_value("customer_sync_jobs_finished_total", timed_out) == 1
