"""The Gameball API simulator over real HTTP: credentials, validation, job lifecycle, faults.

Every test talks to a real uvicorn on 127.0.0.1 (a free port) with httpx;
waiting is polling with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from service.errors import ConfigError
from service.gameball.models import MAX_BATCH_RECORDS, JobState, JobStatus, result_text
from service.gameball.simulator import (
    RunningSimulator,
    SimulatorConfig,
    SimulatorState,
)
from service.gameball.simulator import runner as simulator_server
from service.gameball.simulator.app import create_app
from service.gameball.simulator.cli import add_arguments, config_from_args
from tests.helpers import wait_for

KEYS = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}
CREATE = "/api/v4.0/integrations/batch/customers"
SEED_KEYS = {
    "operation",
    "errorCount",
    "totalCount",
    "finishedCount",
    "startedAt",
    "createdAt",
    "status",
    "response",
}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def customers(count: int, prefix: str = "c") -> list[dict[str, Any]]:
    """Nested customers, the simulator's default shape (tags in the item: TAGS_SYNC=item)."""
    return [
        {
            "customerId": f"{prefix}{i}",
            "email": f"{prefix}{i}@example.com",
            "tags": ["vip"],
            "customerAttributes": {"displayName": f"Customer {i}", "custom": {"version": i}},
        }
        for i in range(count)
    ]


class Api:
    """A thin client: the three endpoints and the controls."""

    def __init__(self, simulator: RunningSimulator) -> None:
        self.simulator = simulator
        self.http = httpx.Client(base_url=simulator.base_url, headers=KEYS, timeout=10)

    def submit(self, body: list[dict[str, Any]]) -> str:
        response = self.http.post(CREATE, json={"body": body})
        assert response.status_code == 200, response.text
        job_id = response.json()["jobId"]
        assert isinstance(job_id, str)
        return job_id

    def raw_status(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v4.0/integrations/batch/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert set(body) == SEED_KEYS
        return body

    def status(self, job_id: str) -> JobStatus:
        return JobStatus.model_validate(self.raw_status(job_id))

    def stop(self, job_id: str) -> httpx.Response:
        return self.http.delete(f"/api/v4.0/integrations/batch/{job_id}")

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/_sim/stats").json()
        return body

    def applied(self, since: int = 0) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.http.get(
            "/_sim/applied", params={"since": since}
        ).json()["applied"]
        return entries

    def configure(self, **changes: object) -> httpx.Response:
        return self.http.post("/_sim/config", json=changes)


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningSimulator]:
    """One server for the module (stopping uvicorn costs ~0.15 s); each test resets it."""
    with RunningSimulator(SimulatorConfig(seed=7)) as simulator:
        yield simulator


@pytest.fixture
def api(shared: RunningSimulator) -> Iterator[Api]:
    client = Api(shared)
    try:
        client.configure(**dataclasses.asdict(SimulatorConfig(seed=7))).raise_for_status()
        client.http.post("/_sim/reset").raise_for_status()
        yield client
    finally:
        client.http.close()


# --- credentials -------------------------------------------------------------------------


def test_credentials_401_403_and_success_with_headers_in_any_case(api: Api) -> None:
    body = {"body": customers(1)}
    missing = httpx.post(f"{api.simulator.base_url}{CREATE}", json=body)
    assert missing.status_code == 401
    assert missing.json()["message"]
    wrong_key = api.http.post(CREATE, json=body, headers={"APIKey": "nope"})
    assert wrong_key.status_code == 401
    odd = api.http.post(CREATE, json=body, headers={"APIKey": "cl\u00e9".encode("latin-1")})
    assert odd.status_code == 401
    wrong_secret = api.http.post(CREATE, json=body, headers={"SecretKey": "nope"})
    assert wrong_secret.status_code == 403
    assert "SecretKey" in wrong_secret.json()["message"]
    lower = httpx.post(
        f"{api.simulator.base_url}{CREATE}",
        json=body,
        headers={"apikey": "demo-api-key", "SECRETKEY": "demo-secret-key"},
    )
    assert lower.status_code == 200
    job_id = lower.json()["jobId"]
    assert httpx.get(f"{api.simulator.base_url}/api/v4.0/integrations/batch/{job_id}").is_error
    assert api.stats()["requests"]["create"] == {"401": 3, "403": 1, "200": 1}


def test_v4_prefix_is_accepted_and_job_ids_are_unique(api: Api) -> None:
    response = api.http.post("/api/v4/integrations/batch/customers", json={"body": customers(2)})
    assert response.status_code == 200
    first = response.json()["jobId"]
    assert api.http.get(f"/api/v4/integrations/batch/{first}").json()["status"] == "completed"
    assert len({first, *(api.submit(customers(1)) for _ in range(5))}) == 6


def test_config_endpoint_switches_credentials_at_runtime(api: Api) -> None:
    response = api.configure(api_key="new-key", secret_key="new-secret")
    assert response.status_code == 200
    assert response.json()["config"]["api_key"] == "new-key"
    assert api.http.post(CREATE, json={"body": customers(1)}).status_code == 401
    fresh = {"APIKey": "new-key", "SecretKey": "new-secret"}
    assert api.http.post(CREATE, json={"body": customers(1)}, headers=fresh).status_code == 200
    assert api.configure(no_such_setting=1).status_code == 400
    assert api.configure(rate_limit_rate=2.0).status_code == 400
    assert api.configure(latency_seconds="slow").status_code == 400
    assert api.http.post("/_sim/config", content=b"[1]").status_code == 400


# --- validation ---------------------------------------------------------------------------


def test_the_1000_record_limit(api: Api) -> None:
    assert api.http.post(CREATE, json={"body": customers(MAX_BATCH_RECORDS)}).status_code == 200
    too_many = api.http.post(CREATE, json={"body": customers(MAX_BATCH_RECORDS + 1)})
    assert too_many.status_code == 400
    assert "1000" in too_many.json()["message"]
    assert api.stats()["jobs_created"] == 1


def test_400_names_the_offending_customer(api: Api) -> None:
    body = customers(5)
    body[3] = {"customerId": "abc", "customerAttributes": {"dateOfBirth": "03/14/1990"}}
    response = api.http.post(CREATE, json={"body": body})
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith(
        "body[3] (customerId=abc): customerAttributes.dateOfBirth: String should match pattern"
    )
    wrong_type = api.http.post(CREATE, json={"body": [{"customerId": 42}]})
    assert wrong_type.status_code == 400
    assert "body[0] (customerId=42): customerId" in wrong_type.json()["message"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"items": []}', b'{"body": []}', b'{"body": [1]}'],
    ids=["invalid-json", "not-an-object", "no-body", "empty", "not-a-customer"],
)
def test_malformed_requests_are_400_with_a_message(api: Api, content: bytes) -> None:
    response = api.http.post(CREATE, content=content)
    assert response.status_code == 400
    assert response.json()["message"]
    assert api.stats()["jobs_created"] == 0


# --- job lifecycle ------------------------------------------------------------------------


def test_instant_job_is_completed_on_first_look_in_the_seed_shape(api: Api) -> None:
    body = customers(3)
    job_id = api.submit(body)
    raw = api.raw_status(job_id)
    assert raw["operation"] == "Customer Creation Batch Job"
    assert raw["status"] == "completed"
    assert ISO_Z.match(raw["createdAt"])
    assert ISO_Z.match(raw["startedAt"])
    assert (raw["totalCount"], raw["finishedCount"], raw["errorCount"]) == (3, 3, 0)
    assert raw["response"] == {
        "successful": [
            {"customerId": c["customerId"], "message": "Customer created successfully"}
            for c in body
        ],
        "failed": [],
    }
    applied = api.applied()
    assert [(e["seq"], e["customerId"], e["jobId"]) for e in applied] == [
        (i, c["customerId"], job_id) for i, c in enumerate(body)
    ]
    assert [e["customer"] for e in applied] == body
    created = api.simulator.state.jobs[job_id].created_wall
    assert {e["submittedAt"] for e in applied} == {created}
    assert api.applied(since=2) == applied[2:]
    assert api.simulator.state.latest["c1"] == body[1]
    assert api.status(job_id) == api.status(job_id)  # terminal documents do not change


def test_job_goes_queued_running_completed_with_partial_results_in_body_order(
    api: Api,
) -> None:
    assert api.configure(job_duration_seconds=0.5).status_code == 200
    body = customers(40)
    job_id = api.submit(body)
    queued = api.raw_status(job_id)
    assert queued["status"] == "queued"
    assert queued["response"] is None
    assert queued["startedAt"] is None
    assert (queued["totalCount"], queued["finishedCount"], queued["errorCount"]) == (0, 0, 0)

    def partial() -> JobStatus | None:
        status = api.status(job_id)
        return status if status.status is JobState.RUNNING and status.finishedCount > 0 else None

    def completed() -> JobStatus | None:
        status = api.status(job_id)
        return status if status.status is JobState.COMPLETED else None

    running = wait_for(partial, 5, "a running job with progress", interval=0.005)
    assert running.startedAt is not None
    assert running.response is not None
    done = running.finishedCount
    assert 0 < done < len(body)
    assert running.totalCount == done
    ids = [c["customerId"] for c in body]
    assert [r["customerId"] for r in running.response.successful] == ids[:done]
    assert len(api.applied()) >= done

    final = wait_for(completed, 5, "the job completed", interval=0.005)
    assert final.finishedCount == final.totalCount == len(body)
    assert [e["customerId"] for e in api.applied()] == ids


def test_a_bad_email_fails_its_record_only(api: Api) -> None:
    body = customers(3)
    body[1]["email"] = "not-an-address"
    job_id = api.submit(body)
    status = api.status(job_id)
    assert status.status is JobState.COMPLETED
    assert (status.totalCount, status.finishedCount, status.errorCount) == (3, 2, 1)
    assert status.response is not None
    assert [(r["customerId"], r.get("error")) for r in status.response.failed] == [
        ("c1", "Invalid email address")
    ]
    assert [e["customerId"] for e in api.applied()] == ["c0", "c2"]
    assert api.stats()["records_failed"] == 1


def test_random_record_failures(api: Api) -> None:
    api.configure(record_failure_rate=1.0)
    status = api.status(api.submit(customers(4)))
    assert status.status is JobState.COMPLETED
    assert status.response is not None
    assert {result_text(r) for r in status.response.failed} == {"Failed to create customer"}
    assert status.errorCount == 4
    assert api.applied() == []


def test_a_failed_job_reports_every_record_and_applies_none(api: Api) -> None:
    api.configure(job_failure_rate=1.0)
    body = customers(2)
    raw = api.raw_status(api.submit(body))
    assert raw["status"] == "failed"
    assert raw["startedAt"] is None
    assert (raw["totalCount"], raw["finishedCount"], raw["errorCount"]) == (2, 0, 2)
    assert raw["response"] == {
        "successful": [],
        "failed": [
            {"customerId": c["customerId"], "message": "Failed to create customer"} for c in body
        ],
    }
    assert api.applied() == []
    assert api.stats()["jobs"] == {"failed": 1}


def test_a_stuck_job_runs_until_stopped_and_keeps_what_it_finished(api: Api) -> None:
    api.configure(stuck_job_rate=1.0)
    body = customers(10)
    job_id = api.submit(body)
    for _ in range(3):
        status = api.status(job_id)
        assert status.status is JobState.RUNNING
        assert status.finishedCount == 5
    stopped = api.stop(job_id)
    assert stopped.status_code == 200
    assert stopped.json() == {"message": "Job stopped successfully"}
    status = api.status(job_id)
    assert status.status is JobState.STOPPED
    assert status.response is not None
    assert [r["customerId"] for r in status.response.successful] == [f"c{i}" for i in range(5)]
    assert [e["customerId"] for e in api.applied()] == [f"c{i}" for i in range(5)]
    again = api.stop(job_id)  # idempotent
    assert again.status_code == 200
    assert api.status(job_id) == status
    assert api.stats()["requests"]["stop"] == {"200": 2}


def test_a_job_the_api_stops_by_itself_keeps_its_first_half(api: Api) -> None:
    api.configure(stopped_job_rate=1.0, job_duration_seconds=0.1)
    job_id = api.submit(customers(10))
    status = wait_for(
        lambda: (s := api.status(job_id)).status.terminal and s,
        5,
        "a terminal status",
        interval=0.005,
    )
    assert status.status is JobState.STOPPED
    assert status.response is not None
    assert [r["customerId"] for r in status.response.successful] == [f"c{i}" for i in range(5)]
    assert status.response.failed == []
    assert [e["customerId"] for e in api.applied()] == [f"c{i}" for i in range(5)]
    assert api.stats()["jobs"] == {"stopped": 1}


def test_applied_and_rejected_logs_say_when_and_why(api: Api) -> None:
    body = customers(3)
    body[1]["email"] = "no-at-sign"
    before = time.time()
    job_id = api.submit(body)
    api.status(job_id)
    applied = api.applied()
    assert [e["customerId"] for e in applied] == ["c0", "c2"]
    assert all(before - 1 <= e["at"] <= time.time() + 1 for e in applied)
    rejected = api.http.get("/_sim/rejected").json()
    assert rejected == {
        "rejected": [
            {"seq": 0, "customerId": "c1", "jobId": job_id, "error": "Invalid email address"}
        ],
        "next": 1,
    }
    api.configure(job_failure_rate=1.0)
    failed = api.submit(customers(2, "f"))
    api.status(failed)
    entries = api.http.get("/_sim/rejected", params={"since": 1}).json()["rejected"]
    assert [(e["customerId"], e["jobId"]) for e in entries] == [("f0", failed), ("f1", failed)]


def test_stopping_a_queued_job_matches_the_seed_and_applies_nothing(api: Api) -> None:
    api.configure(job_duration_seconds=30)
    job_id = api.submit(customers(3))
    assert api.stop(job_id).status_code == 200
    raw = api.raw_status(job_id)
    assert raw["status"] == "stopped"
    assert raw["response"] is None
    assert raw["startedAt"] is None
    assert (raw["totalCount"], raw["finishedCount"], raw["errorCount"]) == (0, 0, 0)
    assert api.stats()["jobs_active"] == 0
    assert api.applied() == []


def test_stopping_a_completed_job_changes_nothing(api: Api) -> None:
    job_id = api.submit(customers(2))
    before = api.raw_status(job_id)
    assert api.stop(job_id).status_code == 200
    assert api.raw_status(job_id) == before


def test_unknown_jobs_are_404(api: Api) -> None:
    assert api.http.get("/api/v4.0/integrations/batch/job-nope").status_code == 404
    response = api.stop("job-nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Job not found"


def test_a_job_nobody_polls_still_runs(api: Api) -> None:
    api.configure(job_duration_seconds=0.1)
    job_id = api.submit(customers(3))
    entries = wait_for(
        lambda: len(api.applied()) == 3 and api.applied(), 5, "three applied", interval=0.005
    )
    assert {e["jobId"] for e in entries} == {job_id}


def test_overlapping_jobs_are_applied_in_finish_time_order() -> None:
    state = SimulatorState(SimulatorConfig(job_duration_seconds=1.0))
    long = state.create_job(customers(10, "a"))
    short = state.create_job(customers(2, "b"))
    state.settle(max(long.created, short.created) + 1.0)
    finish = {
        **{c["customerId"]: long.finish_time(i) for i, c in enumerate(long.customers)},
        **{c["customerId"]: short.finish_time(i) for i, c in enumerate(short.customers)},
    }
    order = [record.customer_id for record in state.applied]
    assert order == sorted(finish, key=lambda customer_id: finish[customer_id])
    assert order.index("b0") < order.index("a9")
    assert [record.seq for record in state.applied] == list(range(12))


def test_overlapping_jobs_report_failures_in_body_order_and_log_them_by_finish_time() -> None:
    state = SimulatorState(SimulatorConfig(job_duration_seconds=1.0))
    long_body, short_body = customers(6, "a"), customers(3, "b")
    long_body[4]["email"] = short_body[1]["email"] = "not-an-address"
    short_body[0] = {**long_body[5], "customerAttributes": {"custom": {"version": "older"}}}
    long = state.create_job(long_body)
    short = state.create_job(short_body)
    state.settle(max(long.created, short.created) + 0.5)  # both halfway: one interleaved step
    state.settle(max(long.created, short.created) + 1.0)

    assert [e["customerId"] for e in long.successful] == ["a0", "a1", "a2", "a3", "a5"]
    assert long.failed == [{"customerId": "a4", "error": "Invalid email address"}]
    assert [e["customerId"] for e in short.successful] == ["a5", "b2"]
    assert [record.customer_id for record in state.rejected] == ["b1", "a4"]
    assert [record.seq for record in state.rejected] == [0, 1]
    order = [(record.job_id, record.customer_id) for record in state.applied]
    finish = {
        **{(long.id, c["customerId"]): long.finish_time(i) for i, c in enumerate(long_body)},
        **{(short.id, c["customerId"]): short.finish_time(i) for i, c in enumerate(short_body)},
    }
    assert order == sorted(order, key=finish.__getitem__)
    assert [record.seq for record in state.applied] == list(range(7))
    assert state.latest["a5"] == long_body[5]  # the long job's a5 finishes last
    assert [record.at for record in state.applied] == [
        (long if job_id == long.id else short).finish_wall(
            [c["customerId"] for c in (long_body if job_id == long.id else short_body)].index(c)
        )
        for job_id, c in order
    ]


# --- faults -------------------------------------------------------------------------------


def test_rate_limits_carry_retry_after_and_create_nothing(api: Api) -> None:
    api.configure(rate_limit_rate=1.0, retry_after_seconds=0.25)
    response = api.http.post(CREATE, json={"body": customers(1)})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.25"
    assert api.http.get("/api/v4.0/integrations/batch/anything").status_code == 429
    stats = api.stats()
    assert stats["jobs_created"] == 0
    assert stats["requests"] == {"create": {"429": 1}, "status": {"429": 1}}
    api.configure(retry_after_seconds=2)
    assert api.http.post(CREATE, json={"body": customers(1)}).headers["Retry-After"] == "2"


def test_server_errors_sometimes_come_after_the_job_was_created(api: Api) -> None:
    api.configure(server_error_rate=1.0, seed=3)
    codes = [api.http.post(CREATE, json={"body": customers(2)}).status_code for _ in range(30)]
    assert set(codes) <= {500, 502, 503}
    stats = api.stats()
    assert 0 < stats["jobs_created"] < 30  # about half, drawn from the seed
    # Nobody polled those jobs, yet they ran: the client only saw the error.
    assert stats["records_applied"] == 2 * stats["jobs_created"]
    assert sum(stats["requests"]["create"].values()) == 30


def test_latency_is_added_to_every_request(api: Api) -> None:
    api.configure(latency_seconds=0.1)
    started = time.monotonic()
    api.http.get("/api/v4.0/integrations/batch/nope")
    assert time.monotonic() - started >= 0.1


def test_reset_forgets_everything_but_the_config(api: Api) -> None:
    api.configure(job_duration_seconds=0.0, api_key="kept")
    response = api.http.post(
        CREATE,
        json={"body": customers(2)},
        headers={"APIKey": "kept", "SecretKey": "demo-secret-key"},
    )
    assert response.status_code == 200
    assert api.stats()["jobs_created"] == 1
    assert api.http.post("/_sim/reset").status_code == 200
    stats = api.stats()
    assert (stats["jobs_created"], stats["records_applied"], stats["requests"]) == (0, 0, {})
    assert api.http.get("/_sim/config").json()["config"]["api_key"] == "kept"


def test_full_batches_are_applied_whole(api: Api) -> None:
    """Ten full batches, every record applied. How fast is ``benchmarks/simulator.py``'s to
    say (``make bench``), not a timed test's: a loaded machine made this one flaky."""
    payload = orjson.dumps({"body": customers(MAX_BATCH_RECORDS)})
    for _ in range(10):
        job_id = api.http.post(CREATE, content=payload).json()["jobId"]
        assert api.http.get(f"/api/v4.0/integrations/batch/{job_id}").status_code == 200
    assert api.stats()["records_applied"] == 10 * MAX_BATCH_RECORDS


# --- running it ---------------------------------------------------------------------------


def test_the_simulate_server_freezes_what_survived_once_a_second() -> None:
    app = create_app(SimulatorConfig())
    server = simulator_server._FreezingServer(simulator_server._uvicorn_config(app, "127.0.0.1", 0))
    server.config.load()
    survivor = [{"customerId": "kept"}]
    try:
        for tick in range(simulator_server.FREEZE_TICKS - 1):
            assert not asyncio.run(server.on_tick(tick))
        assert gc.get_freeze_count() == 0
        assert not asyncio.run(server.on_tick(simulator_server.FREEZE_TICKS - 1))
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(survivor)
        assert not any(survivor is o for o in gc.get_objects())  # frozen: no longer walked
    finally:
        gc.unfreeze()


def test_cli_switches_map_onto_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 8090)
    assert config_from_args(defaults) == SimulatorConfig()
    args = parser.parse_args(
        [
            "--api-key=k",
            "--secret-key=s",
            "--latency=0.5",
            "--job-duration=2",
            "--record-failure-rate=0.1",
            "--job-failure-rate=0.2",
            "--stuck-job-rate=0.05",
            "--stopped-job-rate=0.06",
            "--rate-limit-rate=0.3",
            "--retry-after=1.5",
            "--server-error-rate=0.4",
            "--seed=9",
        ]
    )
    assert config_from_args(args) == SimulatorConfig(
        api_key="k",
        secret_key="s",
        latency_seconds=0.5,
        job_duration_seconds=2.0,
        record_failure_rate=0.1,
        job_failure_rate=0.2,
        stuck_job_rate=0.05,
        stopped_job_rate=0.06,
        rate_limit_rate=0.3,
        retry_after_seconds=1.5,
        server_error_rate=0.4,
        seed=9,
    )
    with pytest.raises(ConfigError, match="record_failure_rate"):
        config_from_args(parser.parse_args(["--record-failure-rate=1.5"]))


def test_running_simulator_reports_its_real_port_and_stops() -> None:
    with RunningSimulator() as simulator:
        assert simulator.port != 0
        assert simulator.base_url == f"http://127.0.0.1:{simulator.port}"
        assert httpx.get(f"{simulator.base_url}/_sim/stats").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{simulator.base_url}/_sim/stats")
