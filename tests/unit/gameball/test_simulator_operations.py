"""The simulator's other batch operations: orders, cashback, redeem, events, balance-adjustment.

Each is served like customers (prefixes, credentials, faults, limits, the job store and both
job dialects), checks its request, answers per record what Gameball would (a duplicate key,
an unknown customer, a time in the future), and keeps a log that counts double applications.
Real HTTP against one module-wide server reset per test, as in ``test_simulator.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import httpx
import pytest
from jsonschema import Draft202012Validator

from service.contracts import schemas
from service.gameball.models import MAX_BATCH_RECORDS, JobStatus, result_customer, result_text
from service.gameball.operations import FACTS, Operation
from service.gameball.simulator import RunningSimulator, SimulatorConfig, SimulatorState
from service.gameball.simulator.cli import add_arguments, banner, config_from_args
from service.gameball.simulator.requests import REQUESTS

KEYS = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}
BATCH = "/api/v4.0/integrations/batch"
OTHERS = [op for op in Operation if op is not Operation.CUSTOMERS]
KEYED = [op for op in OTHERS if FACTS[op].natural_key is not None]
IDLESS = [op for op in OTHERS if FACTS[op].natural_key is None]
CAIRO = timezone(timedelta(hours=2))
DUPLICATE = {
    Operation.ORDERS: "Order id already exists",
    Operation.CASHBACK: "Transaction id already exists",
    Operation.REDEEM: "Transaction id already exists",
}


def iso(seconds_from_now: float = -60.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item(operation: Operation, customer: str, key: str) -> dict[str, Any]:
    """A valid item of ``operation`` for ``customer``; ``key`` is its natural key, or for
    events and adjustments what makes its content unique."""
    match operation:
        case Operation.ORDERS:
            return {"customerId": customer, "orderId": key, "orderDate": iso(), "totalPaid": 10.5}
        case Operation.CASHBACK:
            return {
                "customerId": customer,
                "transactionId": key,
                "transactionTime": iso(),
                "amount": 5,
            }
        case Operation.REDEEM:
            return {
                "customerId": customer,
                "transactionId": key,
                "transactionTime": iso(),
                "points": 7,
            }
        case Operation.EVENTS:
            return {"customerId": customer, "events": {"purchase": {"ref": key}}}
        case _:
            return {"customerId": customer, "amount": -3, "reason": key}


class Api:
    def __init__(self, simulator: RunningSimulator) -> None:
        self.simulator = simulator
        self.http = httpx.Client(base_url=simulator.base_url, headers=KEYS, timeout=10)

    def post(self, operation: Operation, body: Any, prefix: str = "/api/v4.0") -> httpx.Response:
        return self.http.post(f"{prefix}/integrations/batch/{operation}", json={"body": body})

    def submit(self, operation: Operation, body: list[dict[str, Any]]) -> str:
        response = self.post(operation, body)
        assert response.status_code == 200, response.text
        job_id: str = response.json()["jobId"]
        return job_id

    def customers(self, *ids: str) -> None:
        self.submit(Operation.CUSTOMERS, [{"customerId": customer} for customer in ids])

    def document(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{BATCH}/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def results(self, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A finished job's successful and failed entries (the tutorial's dialect)."""
        response = self.document(job_id)["response"]
        return response["successful"], response["failed"]

    def applied(self, operation: Operation, **params: Any) -> list[dict[str, Any]]:
        answer = self.http.get("/_sim/applied", params={"operation": operation, **params})
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["applied"]
        return entries

    def rejected(self, operation: Operation) -> list[dict[str, Any]]:
        answer = self.http.get("/_sim/rejected", params={"operation": operation})
        entries: list[dict[str, Any]] = answer.json()["rejected"]
        return entries

    def counts(self, operation: Operation) -> dict[str, int]:
        counts: dict[str, int] = self.http.get("/_sim/stats").json()["operations"][operation]
        return counts

    def configure(self, **changes: object) -> None:
        self.http.post("/_sim/config", json=changes).raise_for_status()


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningSimulator]:
    with RunningSimulator(SimulatorConfig(seed=5)) as simulator:
        yield simulator


@pytest.fixture
def api(shared: RunningSimulator) -> Iterator[Api]:
    client = Api(shared)
    try:
        client.configure(**dataclasses.asdict(SimulatorConfig(seed=5)))
        client.http.post("/_sim/reset").raise_for_status()
        yield client
    finally:
        client.http.close()


# --- served like customers ---------------------------------------------------------------


@pytest.mark.parametrize("operation", OTHERS)
def test_each_operation_is_a_job_read_and_stopped_in_both_dialects(
    api: Api, operation: Operation
) -> None:
    api.customers("a", "b")
    body = [item(operation, "a", "k1"), item(operation, "b", "k2")]
    response = api.post(operation, body, prefix="/api/v4.1")
    assert response.status_code == 200
    job_id = response.json()["jobId"]
    document = api.document(job_id)
    assert document["status"] == "completed"
    assert document["operation"].endswith("Batch Job")
    assert document["operation"] != "Customer Creation Batch Job"
    successful, failed = api.results(job_id)
    assert failed == []
    assert [set(entry) for entry in successful] == [{"customerId", "message"}] * 2
    assert [entry["customerId"] for entry in successful] == ["a", "b"]
    # What the service reads of it, in either dialect.
    batches = api.http.get(f"/api/v4.0/integrations/batches/{job_id}/status")
    assert batches.json()["results"] == successful
    for content in (api.http.get(f"{BATCH}/{job_id}").content, batches.content):
        status = JobStatus.read(content, entries=True)
        assert status.response is not None
        assert [result_customer(e) for e in status.response.successful] == ["a", "b"]
    assert api.http.delete(f"{BATCH}/{job_id}").status_code == 200
    stop = api.http.post(f"/api/v4.0/integrations/batches/{job_id}/stop")
    assert stop.json()["status"] == "completed"
    assert [e["item"] for e in api.applied(operation)] == body
    assert api.applied(Operation.CUSTOMERS) == api.applied(Operation.CUSTOMERS, since=0)
    assert [e["customerId"] for e in api.http.get("/_sim/applied").json()["applied"]] == ["a", "b"]


def test_credentials_faults_and_the_key_s_limits_cover_every_operation(api: Api) -> None:
    bare = httpx.post(
        f"{api.simulator.base_url}{BATCH}/orders", json={"body": [item(Operation.ORDERS, "a", "o")]}
    )
    assert bare.status_code == 401
    api.configure(rate_limit_rate=1.0, retry_after_seconds=0.5)
    limited = api.post(Operation.EVENTS, [item(Operation.EVENTS, "a", "e")])
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "0.5")
    api.configure(rate_limit_rate=0.0, limit_per_second=1)
    api.customers("a")  # the key's one request this second ...
    refused = api.post(Operation.CASHBACK, [item(Operation.CASHBACK, "a", "t")])
    assert refused.status_code == 429  # ... so an operation's request waits like any other
    stats = api.http.get("/_sim/stats").json()
    assert stats["jobs_created"] == 1
    assert stats["requests"]["create"] == {"401": 1, "429": 2, "200": 1}


def test_requests_are_counted_per_operation_of_the_job_they_name(api: Api) -> None:
    api.customers("a")
    order = api.submit(Operation.ORDERS, [item(Operation.ORDERS, "a", "o1")])
    api.document(order)
    api.http.get(f"/api/v4.0/integrations/batches/{order}/status")
    api.http.delete(f"{BATCH}/{order}")
    api.http.get(f"{BATCH}/no-such-job")  # names no job: counted by kind only
    api.configure(limit_per_second=1)
    answers = [api.post(Operation.EVENTS, [item(Operation.EVENTS, "a", e)]) for e in "ef"]
    assert [answer.status_code for answer in answers] == [200, 429]
    stats = api.http.get("/_sim/stats").json()
    assert stats["requests_by_operation"] == {
        "customers": {"create": 1},
        "orders": {"create": 1, "status": 2, "stop": 1},
        "events": {"create": 2},  # the 429 too: the key's budget paid for it
    }
    assert stats["requests"]["status"] == {"200": 2, "404": 1}
    api.http.post("/_sim/reset").raise_for_status()
    assert api.http.get("/_sim/stats").json()["requests_by_operation"] == {}


# --- the request schema ------------------------------------------------------------------

MALFORMED = {
    Operation.ORDERS: (
        {"customerId": "c1", "orderDate": iso(), "totalPaid": "ten"},
        ["body[1] (customerId=c1): orderId: Field required", "body[1] (customerId=c1): totalPaid"],
    ),
    Operation.CASHBACK: (
        {"customerId": "c1", "transactionId": "t", "transactionTime": iso()},
        ["body[1] (customerId=c1): amount: Field required"],
    ),
    Operation.REDEEM: (
        {"customerId": "c1", "transactionId": "t", "transactionTime": iso()},
        ["body[1] (customerId=c1): Value error, a redemption needs one of amount, points"],
    ),
    Operation.EVENTS: (
        {"customerId": "c1", "events": {}},
        ["body[1] (customerId=c1): events: Dictionary should have at least 1 item"],
    ),
    Operation.BALANCE_ADJUSTMENT: (
        {"customerId": "", "amount": 1},
        ["body[1] (customerId=): customerId: String should have at least 1 character"],
    ),
}


@pytest.mark.parametrize("operation", OTHERS)
def test_a_malformed_body_is_400_naming_each_error_and_creates_nothing(
    api: Api, operation: Operation
) -> None:
    bad, said = MALFORMED[operation]
    response = api.post(operation, [item(operation, "c0", "k0"), bad])
    assert response.status_code == 400
    message = response.json()["message"]
    assert all(text in message for text in said), message
    assert "body[0]" not in message
    valid = [item(operation, f"c{i}", f"k{i}") for i in range(MAX_BATCH_RECORDS + 1)]
    too_many = api.post(operation, valid)
    assert too_many.status_code == 400
    assert "1000" in too_many.json()["message"]
    for content in (b"{nope", b"[]", b'{"body": []}', b'{"body": [1]}'):
        answer = api.http.post(f"{BATCH}/{operation}", content=content)
        assert answer.status_code == 400
        assert answer.json()["message"]
    assert api.http.get("/_sim/stats").json()["jobs_created"] == 0


@pytest.mark.parametrize("operation", OTHERS)
def test_the_committed_schema_agrees_with_the_simulator(operation: Operation) -> None:
    schema = json.loads(
        (schemas.DIRECTORY / f"api-batch-request-{operation}.schema.json").read_text()
    )
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert list(validator.iter_errors({"body": [item(operation, "c0", "k0")]})) == []
    assert list(validator.iter_errors({"body": [MALFORMED[operation][0]]}))
    assert list(validator.iter_errors({"body": []}))
    assert set(REQUESTS) == set(OTHERS)
    assert get_args(REQUESTS[operation].model_fields["body"].annotation) == (FACTS[operation].item,)


# --- per record: duplicates, unknown customers, future times, echoed keys ---------------


@pytest.mark.parametrize("operation", KEYED)
def test_a_duplicate_key_is_refused_per_record_and_never_applied_twice(
    api: Api, operation: Operation
) -> None:
    api.customers("a", "b")
    first = api.submit(
        operation,
        [item(operation, "a", "k1"), item(operation, "b", "k2"), item(operation, "a", "k1")],
    )
    ok, refused = api.results(first)
    assert [e["customerId"] for e in ok] == ["a", "b"]
    assert refused == [{"customerId": "a", "error": DUPLICATE[operation]}]
    second = api.submit(operation, [item(operation, "b", "k2"), item(operation, "b", "K2")])
    ok, refused = api.results(second)
    assert refused == [{"customerId": "b", "error": DUPLICATE[operation]}]
    assert [e["customerId"] for e in ok] == ["b"]  # keys are case-sensitive
    key = FACTS[operation].natural_key
    assert [e["item"][key] for e in api.applied(operation)] == ["k1", "k2", "K2"]
    assert [(e["item"][key], e["error"]) for e in api.rejected(operation)] == [
        ("k1", DUPLICATE[operation]),
        ("k2", DUPLICATE[operation]),
    ]
    counts = api.counts(operation)
    assert (counts["applied"], counts["duplicates"], counts["double_applied"]) == (3, 2, 0)


@pytest.mark.parametrize("operation", OTHERS)
def test_an_unknown_customer_is_not_found_until_a_customers_job_applies_it(
    api: Api, operation: Operation
) -> None:
    api.submit(Operation.CUSTOMERS, [{"customerId": "bad", "email": "no-at-sign"}])
    early = api.submit(operation, [item(operation, "x", "k1"), item(operation, "bad", "k2")])
    assert api.results(early) == (
        [],
        [
            {"customerId": "x", "error": "Customer not found"},
            {"customerId": "bad", "error": "Customer not found"},
        ],
    )
    api.customers("x")
    later = api.submit(operation, [item(operation, "x", "k1")])  # the refused key was not taken
    assert [e["customerId"] for e in api.results(later)[0]] == ["x"]
    assert api.counts(operation)["customer_not_found"] == 2
    api.configure(all_customers_known=True)
    anyone = api.submit(operation, [item(operation, "nobody", "k3")])
    assert api.results(anyone)[1] == []
    assert [e["customerId"] for e in api.applied(operation)] == ["x", "nobody"]


def test_an_order_processed_before_its_customer_is_not_found() -> None:
    """Across overlapping jobs a customer is known from its record's finish time on."""
    state = SimulatorState(SimulatorConfig(job_duration_seconds=1.0))
    people = state.create_job([{"customerId": f"c{i}"} for i in range(10)])
    orders = state.create_job(
        [item(Operation.ORDERS, f"c{i}", f"o{i}") for i in (9, 0)], Operation.ORDERS
    )
    state.settle(max(people.created, orders.created) + 1.0)
    # The orders job's first record (c9) finishes half-way, before c9's customer at the very
    # end of the customers job; its second (c0) at the end, long after c0's customer.
    assert orders.failed == [{"customerId": "c9", "error": "Customer not found"}]
    assert [e["customerId"] for e in orders.successful] == ["c0"]
    assert len(state.applied) == 10


@pytest.mark.parametrize("operation", [Operation.ORDERS, Operation.CASHBACK, Operation.REDEEM])
def test_a_transaction_time_in_the_future_is_refused_beyond_a_few_seconds_of_skew(
    api: Api, operation: Operation
) -> None:
    api.configure(all_customers_known=True)
    field = FACTS[operation].times[0]
    times = {
        "past": iso(-3600),
        "skewed": iso(2),
        "future": iso(60),
        "offset": (datetime.now(UTC) + timedelta(minutes=10)).astimezone(CAIRO).isoformat(),
        "naive-past": "2024-01-31T10:00:00",
        "garbage": "yesterday",
    }
    body = [{**item(operation, "a", name), field: moment} for name, moment in times.items()]
    ok, refused = api.results(api.submit(operation, body))
    key = FACTS[operation].natural_key
    assert len(ok) == 3
    future = f"Invalid transaction time: {field} is in the future"
    assert [e["error"] for e in refused] == [
        future,
        future,
        f"Invalid transaction time: {field} is not an ISO 8601 date-time",
    ]
    assert [e["item"][key] for e in api.applied(operation)] == ["past", "skewed", "naive-past"]
    assert api.counts(operation)["invalid_time"] == 3


def test_echo_keys_adds_the_natural_key_to_each_result_and_the_service_still_reads_it(
    api: Api,
) -> None:
    api.configure(all_customers_known=True)
    body = [item(Operation.ORDERS, "a", "o1"), item(Operation.ORDERS, "a", "o1")]
    plain = api.document(api.submit(Operation.ORDERS, body))
    assert plain["response"]["failed"] == [{"customerId": "a", "error": "Order id already exists"}]
    api.configure(echo_keys=True)
    echoed = api.submit(Operation.ORDERS, [item(Operation.ORDERS, "a", "o2"), body[0]])
    ok, refused = api.results(echoed)
    assert ok == [{"customerId": "a", "message": "Order created successfully", "orderId": "o2"}]
    assert refused == [{"customerId": "a", "error": "Order id already exists", "orderId": "o1"}]
    status = JobStatus.read(api.http.get(f"{BATCH}/{echoed}").content, entries=True)
    assert status.response is not None
    assert [result_text(e) for e in status.response.failed] == ["Order id already exists"]
    events = api.results(api.submit(Operation.EVENTS, [item(Operation.EVENTS, "a", "e")]))
    assert [set(e) for e in events[0]] == [{"customerId", "message"}]  # no key to echo


# --- idless operations: a repeat is applied again, and counted --------------------------


@pytest.mark.parametrize("operation", IDLESS)
def test_an_identical_item_is_applied_again_and_counted_as_a_double_application(
    api: Api, operation: Operation
) -> None:
    api.customers("a")
    once = item(operation, "a", "r1")
    reordered = dict(reversed(list(once.items())))  # the same content, keys in another order
    api.submit(operation, [once, item(operation, "a", "r2"), once])
    job = api.submit(operation, [reordered])
    assert len(api.results(job)[0]) == 1  # the API says nothing: it applied it again
    entries = api.applied(operation)
    assert [e["applications"] for e in entries] == [1, 1, 2, 3]
    assert {e["jobId"] for e in entries[3:]} == {job}
    counts = api.counts(operation)
    assert (counts["applied"], counts["double_applied"], counts["duplicates"]) == (4, 2, 0)


# --- the job store's faults, per operation ----------------------------------------------


def test_a_failed_job_applies_nothing_and_takes_no_key(api: Api) -> None:
    api.configure(all_customers_known=True, job_failure_rate=1.0, echo_keys=True)
    job = api.submit(Operation.CASHBACK, [item(Operation.CASHBACK, "a", "t1")])
    document = api.document(job)
    assert document["status"] == "failed"
    assert document["response"]["failed"] == [
        {"customerId": "a", "message": "Failed to reward cashback", "transactionId": "t1"}
    ]
    assert api.rejected(Operation.CASHBACK)[0]["error"] == "Failed to reward cashback"
    api.configure(job_failure_rate=0.0)
    again = api.submit(Operation.CASHBACK, [item(Operation.CASHBACK, "a", "t1")])
    assert len(api.results(again)[0]) == 1
    assert api.counts(Operation.CASHBACK)["failed"] == 1
    assert api.http.get("/_sim/rejected").json()["rejected"] == []  # the customers' log


def test_a_stuck_job_keeps_its_first_half_and_a_resubmission_refuses_it(api: Api) -> None:
    api.configure(all_customers_known=True, stuck_job_rate=1.0)
    body = [item(Operation.ORDERS, "a", f"o{i}") for i in range(4)]
    stuck = api.submit(Operation.ORDERS, body)
    assert api.document(stuck)["status"] == "running"
    assert api.http.delete(f"{BATCH}/{stuck}").status_code == 200
    api.configure(stuck_job_rate=0.0)
    ok, refused = api.results(api.submit(Operation.ORDERS, body))
    assert len(ok) == 2
    assert [e["error"] for e in refused] == ["Order id already exists"] * 2
    assert [e["item"]["orderId"] for e in api.applied(Operation.ORDERS)] == ["o0", "o1", "o2", "o3"]


def test_random_record_failures_and_late_5xx_reach_every_operation(api: Api) -> None:
    api.configure(all_customers_known=True, record_failure_rate=1.0)
    ok, refused = api.results(api.submit(Operation.REDEEM, [item(Operation.REDEEM, "a", "t")]))
    assert (ok, refused) == ([], [{"customerId": "a", "error": "Failed to redeem points"}])
    api.configure(record_failure_rate=0.0, server_error_rate=1.0, seed=3)
    codes = {
        api.post(Operation.EVENTS, [item(Operation.EVENTS, "a", str(i))]).status_code
        for i in range(20)
    }
    assert codes <= {500, 502, 503}
    created = api.counts(Operation.EVENTS)["jobs_created"]
    assert 0 < created < 20  # half the POSTs' 5xx came after the job was created
    assert len(api.applied(Operation.EVENTS)) == created


# --- logs, stats, switches ---------------------------------------------------------------


def test_each_operation_has_its_own_paged_logs_and_counts(api: Api) -> None:
    api.customers("a")
    before = time.time()
    job = api.submit(Operation.ORDERS, [item(Operation.ORDERS, "a", f"o{i}") for i in range(3)])
    entries = api.applied(Operation.ORDERS)
    assert [set(e) for e in entries] == [
        {"seq", "customerId", "item", "jobId", "submittedAt", "at", "applications"}
    ] * 3
    assert [(e["seq"], e["jobId"]) for e in entries] == [(0, job), (1, job), (2, job)]
    assert all(before - 1 <= e["submittedAt"] <= e["at"] <= time.time() + 1 for e in entries)
    page = api.http.get("/_sim/applied", params={"operation": "orders", "since": 1, "limit": 1})
    assert page.json() == {"applied": entries[1:2], "next": 2}
    assert api.applied(Operation.CASHBACK) == []
    customers = api.http.get("/_sim/applied").json()["applied"]
    assert [set(e) for e in customers] == [
        {"seq", "customerId", "customer", "jobId", "submittedAt", "at"}
    ]
    for path in ("/_sim/applied", "/_sim/rejected"):
        unknown = api.http.get(path, params={"operation": "orders/transactions"})
        assert unknown.status_code == 400
        assert "balance-adjustment" in unknown.json()["message"]
    stats = api.http.get("/_sim/stats").json()
    assert (stats["jobs_created"], stats["records_received"], stats["records_applied"]) == (2, 4, 1)
    assert set(stats["operations"]) == {str(op) for op in OTHERS}
    assert stats["operations"]["orders"] == {
        "jobs_created": 1,
        "records_received": 3,
        "applied": 3,
        "failed": 0,
        "duplicates": 0,
        "customer_not_found": 0,
        "invalid_time": 0,
        "double_applied": 0,
    }
    api.http.post("/_sim/reset").raise_for_status()
    assert api.applied(Operation.ORDERS) == []
    assert api.counts(Operation.ORDERS)["applied"] == 0


def test_the_new_switches_are_settable_like_the_others(api: Api) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])) == SimulatorConfig()
    both = config_from_args(parser.parse_args(["--all-customers-known", "--echo-keys"]))
    assert both == SimulatorConfig(all_customers_known=True, echo_keys=True)
    assert api.http.post("/_sim/config", json={"echo_keys": "yes"}).status_code == 400
    answer = api.http.post("/_sim/config", json={"all_customers_known": True})
    assert answer.json()["config"]["all_customers_known"] is True
    text = banner(SimulatorConfig(), "http://x")
    assert all(str(operation) in text for operation in Operation)
    assert "7000" in text
    assert "every customer known" in banner(both, "http://x")
    assert "natural key" in banner(both, "http://x")
