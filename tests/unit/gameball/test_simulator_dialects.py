"""The simulator's job dialects, versions and error envelope, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig

KEYS = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}
BODY = {"body": [{"customerId": "a"}, {"customerId": "b", "email": "no-at-sign"}]}


def create(http: httpx.Client, version: str = "v4.0") -> str:
    answer = http.post(f"/api/{version}/integrations/batch/customers", json=BODY, headers=KEYS)
    assert answer.status_code == 200, answer.text
    job_id: str = answer.json()["jobId"]
    return job_id


def test_the_batches_dialect_answers_its_own_body_and_the_other_route_is_absent() -> None:
    with (
        RunningSimulator(SimulatorConfig(job_api="batches")) as simulator,
        httpx.Client(base_url=simulator.base_url, timeout=5) as http,
    ):
        job = create(http, "v4.1")
        status = http.get(f"/api/v4.1/integrations/batches/{job}/status", headers=KEYS)
        assert status.json() == {
            "batchId": job,
            "status": "completed",
            "progress": 100,
            "totalItems": 2,
            "processedItems": 2,
            "failedItems": 1,
            "results": [{"customerId": "a", "message": "Customer created successfully"}],
            "errors": [{"customerId": "b", "error": "Invalid email address"}],
        }
        stopped = http.post(f"/api/v4.0/integrations/batches/{job}/stop", headers=KEYS)
        assert stopped.json() == {
            "batchId": job,
            "status": "completed",
            "message": "Batch stopped successfully",
        }
        # The other dialect: a bare 404, whatever the credentials.
        absent = http.get(f"/api/v4.0/integrations/batch/{job}")
        assert (absent.status_code, absent.text) == (404, "Not Found")
        assert http.delete(f"/api/v4.0/integrations/batch/{job}").status_code == 404
        stats = http.get("/_sim/stats").json()
        assert stats["job_api"] == "batches"
        assert stats["requests"]["absent"] == {"404": 2}


@pytest.mark.parametrize(
    ("secret", "status", "code"), [("wrong", 403, 1002), ("demo-secret-key", 404, None)]
)
def test_errors_come_in_gameball_s_envelope_when_asked(
    secret: str, status: int, code: int | None
) -> None:
    with RunningSimulator(SimulatorConfig(error_envelope=True)) as simulator:
        headers = {**KEYS, "SecretKey": secret}
        answer = httpx.get(
            f"{simulator.base_url}/api/v4.0/integrations/batch/0", headers=headers, timeout=5
        )
        assert answer.status_code == status
        body = answer.json()
        assert set(body) == {"code", "type", "message", "requestId"}
        assert body["code"] == code
        assert body["requestId"]


def test_a_minimum_version_refuses_older_paths_only() -> None:
    with (
        RunningSimulator(SimulatorConfig(min_api_version="v4.1")) as simulator,
        httpx.Client(base_url=simulator.base_url, timeout=5) as http,
    ):
        create(http, "v4.1")
        refused = http.post("/api/v4.0/integrations/batch/customers", json=BODY, headers=KEYS)
        assert refused.status_code == 403
        assert "v4.1" in refused.json()["message"]


def test_the_dialect_served_can_change_at_run_time() -> None:
    with (
        RunningSimulator() as simulator,
        httpx.Client(base_url=simulator.base_url, timeout=5) as http,
    ):
        job = create(http)
        assert http.get(f"/api/v4.0/integrations/batch/{job}", headers=KEYS).is_success
        assert http.post("/_sim/config", json={"job_api": "batches"}).is_success
        assert http.get(f"/api/v4.0/integrations/batch/{job}", headers=KEYS).status_code == 404
        assert http.post("/_sim/config", json={"job_api": "neither"}).status_code == 400
