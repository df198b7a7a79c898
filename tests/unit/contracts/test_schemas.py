"""``schemas/`` against the code: no drift, the seeds' examples, the simulator's real answers."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

from service.contracts import schemas
from service.contracts.events import DeadLetterHeaders, InputEvent
from service.delivery.deadletter import DeadLetter
from service.delivery.decoding import Customer, Decoder
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.labels import DeadLetterReason
from service.tools.samples import BAD_EVENTS, generate

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "seeds"
JOBS = "/api/v4.0/integrations/batch"
AUTH = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((schemas.DIRECTORY / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(name: str, document: Any) -> list[str]:
    return [e.message for e in validator(name).iter_errors(document)]


def seed(name: str) -> Any:
    return json.loads((SEEDS / name).read_text(encoding="utf-8"))


def test_the_committed_schemas_are_what_the_code_generates() -> None:
    assert schemas.drift() == [], "schemas/ is stale: run `make schemas`"


def test_drift_is_detected(tmp_path: Path) -> None:
    assert schemas.main(["--directory", str(tmp_path)]) == 0
    assert schemas.drift(tmp_path) == []
    (tmp_path / "api-job-status.schema.json").write_text("{}\n")
    assert schemas.drift(tmp_path) == ["api-job-status.schema.json"]
    assert schemas.main(["--check", "--directory", str(tmp_path)]) == 1


@pytest.mark.parametrize(
    "name", ["api-batch-request.schema.json", "api-batch-request-flat.schema.json"]
)
def test_the_seeds_batch_request_is_valid_and_its_limits_hold(name: str) -> None:
    request = seed("batch-request.json")  # flat: the nested shape allows unknown keys too
    assert errors(name, request) == []
    too_many = {"body": [{"customerId": str(i)} for i in range(1001)]}
    assert errors(name, too_many)
    assert errors(name, {"body": [{"email": "no-id@example.com"}]})
    assert errors(
        name,
        {"body": [{"customerId": "1", "dateOfBirth": "1/2/90"}]}
        if "flat" in name
        else {"body": [{"customerId": "1", "customerAttributes": {"dateOfBirth": "1/2/90"}}]},
    )


def test_the_nested_schema_types_the_profile() -> None:
    def item(**attributes: Any) -> dict[str, Any]:
        return {"body": [{"customerId": "1", "customerAttributes": attributes}]}

    name = "api-batch-request.schema.json"
    assert errors(name, item(channel="web", totalOrders=3, totalSpent=12.5, utms=[])) == []
    assert errors(name, item(channel="fax"))
    assert errors(name, item(totalOrders=2.5))
    assert errors(name, item(totalSpent="12"))
    assert errors(name, {"body": [{"customerId": "1", "guest": "yes"}]})


@pytest.mark.parametrize("state", ["queued", "running", "completed", "failed", "stopped"])
def test_the_seeds_job_statuses_are_valid(state: str) -> None:
    assert errors("api-job-status.schema.json", seed(f"job-status-{state}.json")) == []


def test_status_is_accepted_in_any_case_and_nothing_else() -> None:
    document = seed("job-status-completed.json")
    assert errors("api-job-status.schema.json", {**document, "status": "Completed"}) == []
    assert errors("api-job-status.schema.json", {**document, "status": "done"})


def test_a_job_id_under_any_accepted_key() -> None:
    for body in ({"jobId": "a"}, {"JobId": "a"}, {"id": 7}):
        assert errors("api-job-created.schema.json", body) == []
    assert errors("api-job-created.schema.json", {"job": "a"})


def test_sample_cdc_events_and_plain_customers_are_valid_input_events() -> None:
    for event in generate(300, 50, tombstone_fraction=0.0):
        assert event.value is not None
        assert errors("input-event.schema.json", orjson.loads(event.value)) == []
        InputEvent.model_validate_json(event.value)
    for customer in seed("batch-request.json")["body"]:
        assert errors("input-event.schema.json", customer) == []
        # ...and the decoder agrees: the plain form in the tutorial's shape is delivered as is
        # in that shape, and nested in the default one.
        decoded = Decoder(None, delete_policy="skip", shape="flat").decode(orjson.dumps(customer))
        assert isinstance(decoded, Customer)
        assert orjson.loads(decoded.payload) == customer
        nested = Decoder(None, delete_policy="skip").decode(orjson.dumps(customer))
        assert isinstance(nested, Customer)
        body = {"body": [orjson.loads(nested.payload)]}
        assert errors("api-batch-request.schema.json", body) == []
        assert body["body"][0]["customerAttributes"]["displayName"] == customer["name"]


def test_every_real_debezium_value_is_a_valid_input_event() -> None:
    """What Debezium 3.6.1 wrote (tests/fixtures/debezium), truncates included."""
    fixtures = SEEDS.parent / "debezium"
    values = [
        record["value"]
        for path in sorted(fixtures.glob("*/*.json"))
        for record in json.loads(path.read_text())["records"]
        if record["value"] is not None
    ]
    assert len(values) > 90
    for value in values:
        assert errors("input-event.schema.json", orjson.loads(value)) == [], value[-300:]


def test_the_input_schema_rejects_what_the_service_dead_letters() -> None:
    message, _reason = BAD_EVENTS["message op"]
    assert errors("input-event.schema.json", orjson.loads(message))
    assert errors("input-event.schema.json", {"op": "u", "before": {}, "after": None})
    assert errors("input-event.schema.json", {"customerId": ""})


def test_the_dead_letter_writer_headers_match_the_contract() -> None:
    letter = DeadLetter(
        topic="customers",
        partition=3,
        offset=42,
        timestamp_ms=1_700_000_000_000,
        key=b"c1",
        value=b"{}",
        reason=DeadLetterReason.RECORD_REJECTED,
        error="Invalid email address",
        attempts=2,
        job_id="job-1",
    )
    headers = {k: v.decode() for k, v in letter.headers() if isinstance(v, bytes)}
    assert errors("dead-letter-headers.schema.json", headers) == []
    parsed = DeadLetterHeaders.model_validate(headers)
    assert (parsed.reason, parsed.source_offset, parsed.job_id) == (
        "record_rejected",
        "42",
        "job-1",
    )


def _status(client: httpx.Client, job: str) -> dict[str, Any]:
    response = client.get(f"{JOBS}/{job}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert errors("api-job-status.schema.json", body) == [], body
    return body


def _wait(client: httpx.Client, job: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (body := _status(client, job))["status"] != status:
        assert time.monotonic() < deadline, body
        time.sleep(0.02)
    return body


def _submit(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post(f"{JOBS}/customers", json=body)
    assert response.status_code == 200, response.text
    created = response.json()
    assert errors("api-job-created.schema.json", created) == [], created
    job: str = created.get("jobId") or created.get("JobId") or created["id"]
    return job


def test_the_simulator_answers_match_the_schemas_in_every_state() -> None:
    request = seed("batch-request.json")
    request["body"][1]["email"] = "no-at-sign"  # the simulator rejects it: a `failed` entry
    with (
        RunningSimulator(  # the seed request is the tutorial's flat shape
            SimulatorConfig(
                seed=3, job_failure_rate=1.0, job_duration_seconds=1.0, customer_shape="flat"
            )
        ) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5) as client,
    ):
        failing = _submit(client, request)
        assert _status(client, failing)["status"] in ("queued", "failed")
        assert _wait(client, failing, "failed")["response"]["failed"]
        client.post("/_sim/config", json={"job_failure_rate": 0.0, "job_duration_seconds": 0.0})
        completed = _wait(client, _submit(client, request), "completed")
        assert completed["errorCount"] == 1
        client.post("/_sim/config", json={"stuck_job_rate": 1.0, "job_duration_seconds": 0.2})
        stuck = _submit(client, request)
        _wait(client, stuck, "running")
        assert client.delete(f"{JOBS}/{stuck}").status_code == 200
        _wait(client, stuck, "stopped")
