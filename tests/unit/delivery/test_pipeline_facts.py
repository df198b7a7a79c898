"""Fact routes (orders, events, ...) through the real pipeline between fakes: each item sent
once and never coalesced, one per customer per job, a duplicate id counted as delivered,
"customer not found" retried, customers first, and an id-less item whose POST answer was lost
dead-lettered ``outcome_unknown``, never sent again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from service.errors import OutcomeUnknown
from service.gameball.client import Spent
from service.gameball.models import JobStatus
from service.gameball.operations import Operation
from tests.unit.delivery.fakes import FakeApi, rig

ROUTES = """\
routes:
  - {name: members, operation: customers, topics: [members]}
  - name: orders
    operation: orders
    topics: [orders]
    mapping: {customerId: customer_id, orderId: id, orderDate: at, totalPaid: total}
  - name: adjustments
    operation: balance-adjustment
    topics: [adjustments]
    unsafe_without_ids: true
    mapping: {customerId: customer_id, amount: points}
"""


class OperationsApi(FakeApi):
    """Keeps every job's operation and items; answers per item as Gameball's books would:
    an order id applied before is refused, a customer no customers job applied (seen ended)
    is not found (unless ``known``), and ``lose_answers`` id-less submissions lose their
    answer."""

    def __init__(self, *, known: bool = True) -> None:
        super().__init__()
        self.known = known
        self.sent: list[tuple[Operation, list[dict[str, Any]]]] = []
        self.applied: dict[Operation, list[dict[str, Any]]] = {}
        self.customers: set[str] = set()
        self.order_ids: set[str] = set()
        self.lose_answers = 0
        self.crash_reads = 0  # status reads that raise as a bug of ours would
        self.open: dict[str, tuple[Operation, set[str]]] = {}  # jobs not yet seen ended
        self.overlaps: list[str] = []  # customers submitted while a job of theirs ran
        self._results: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}

    async def submit(  # type: ignore[override]
        self,
        body: bytes,
        *,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        operation: Operation = Operation.CUSTOMERS,
    ) -> str:
        if prepare is not None:
            await prepare()
        items = orjson.loads(body)["body"]
        self.sent.append((operation, items))
        job_id = f"job-{len(self.sent)}"
        self.jobs[job_id] = [str(i["customerId"]) for i in items]
        carried = set(self.jobs[job_id])
        for other, customers in self.open.values():
            if other is operation:
                self.overlaps += sorted(carried & customers)
        self.open[job_id] = (operation, carried)
        ok: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for item in items:
            customer = str(item["customerId"])
            result = {"customerId": customer}
            if operation is Operation.CUSTOMERS:
                pass  # applied when its job is seen ended (status)
            elif not self.known and customer not in self.customers:
                failed.append({**result, "message": "Customer not found"})
                continue
            elif operation is Operation.ORDERS and item["orderId"] in self.order_ids:
                failed.append({**result, "message": "Order id already exists"})
                continue
            if operation is Operation.ORDERS:
                self.order_ids.add(item["orderId"])
            self.applied.setdefault(operation, []).append(item)
            ok.append(result)
        self._results[job_id] = (ok, failed)
        if operation is Operation.BALANCE_ADJUSTMENT and self.lose_answers:
            self.lose_answers -= 1
            raise OutcomeUnknown("submit: ReadTimeout after the request may have reached the API")
        return job_id

    async def status(  # type: ignore[override]
        self, job_id: str, *, entries: bool = False, spent: Spent | None = None, **_: Any
    ) -> JobStatus:
        if self.crash_reads:
            self.crash_reads -= 1
            raise RuntimeError("a bug between the job's creation and its verdict")
        ok, failed = self._results[job_id]
        self.open.pop(job_id, None)
        if self.sent[int(job_id.split("-")[1]) - 1][0] is Operation.CUSTOMERS:
            self.customers.update(str(result["customerId"]) for result in ok)
        return JobStatus.model_validate(
            {
                "status": "completed",
                "totalCount": len(ok) + len(failed),
                "finishedCount": len(ok) + len(failed),
                "errorCount": len(failed),
                "response": {"successful": ok, "failed": failed},
            }
        )


def order(customer: str, order_id: str) -> bytes:
    row = {"customer_id": customer, "id": order_id, "at": 1_700_000_000_000, "total": 10}
    return orjson.dumps({"op": "c", "after": row})


def adjustment(customer: str, points: int, op: str = "c") -> bytes:
    return orjson.dumps({"op": op, "after": {"customer_id": customer, "points": points}})


def routes(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return {"ROUTES_FILE": str(path)}


async def test_every_fact_is_sent_once_one_per_customer_per_job_in_the_order_read(
    tmp_path: Path,
) -> None:
    api = OperationsApi()
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=routes(tmp_path), api=api)
    for n in range(3):  # three orders of one customer: three facts, never coalesced
        r.consumer.append(("orders", 0), order("c1", f"o{n}"))
    r.consumer.append(("orders", 0), order("c2", "o9"))
    await r.run()
    orders = [items for operation, items in api.sent if operation is Operation.ORDERS]
    assert [i["orderId"] for i in api.applied[Operation.ORDERS] if i["customerId"] == "c1"] == [
        "o0",
        "o1",
        "o2",
    ]
    assert all(len({i["customerId"] for i in job}) == len(job) for job in orders), (
        "a job never carries two items of one customer"
    )
    assert len(orders) == 3
    assert api.overlaps == [], "no customer in two jobs of the route at once"
    assert r.consumer.committed_offsets()[("orders", 0)] == 4
    assert r.count("customer_sync_records_total", outcome="succeeded") == 4


async def test_an_order_the_api_already_has_counts_as_delivered_not_dead_lettered(
    tmp_path: Path,
) -> None:
    api = OperationsApi()
    api.order_ids.add("o1")  # delivered before a crash, say
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=routes(tmp_path), api=api)
    r.consumer.append(("orders", 0), order("c1", "o1"))
    await r.run()
    assert r.producer.written == []
    assert r.count("customer_sync_records_already_applied_total", operation="orders") == 1
    assert r.count("customer_sync_records_total", outcome="succeeded") == 1
    assert r.consumer.committed_offsets()[("orders", 0)] == 1


async def test_a_customers_change_goes_before_the_order_read_after_it(tmp_path: Path) -> None:
    api = OperationsApi(known=False)  # an order of an unknown customer: "Customer not found"
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=routes(tmp_path), api=api)
    r.consumer.append(("members", 0), orjson.dumps({"customer_id": "c1", "email": "a@b.co"}))
    r.consumer.append(("orders", 0), order("c1", "o1"))
    await r.run()
    assert [operation for operation, _ in api.sent] == [Operation.CUSTOMERS, Operation.ORDERS]
    assert api.applied[Operation.ORDERS][0]["orderId"] == "o1"
    assert r.producer.written == []


async def test_an_order_of_an_unknown_customer_is_retried_then_dead_lettered(
    tmp_path: Path,
) -> None:
    api = OperationsApi(known=False)
    env = {**routes(tmp_path), "CUSTOMER_WAIT_SECONDS": "0.3", "BATCH_MAX_WAIT_SECONDS": "0.05"}
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=env, api=api)
    r.consumer.append(("orders", 0), order("c404", "o1"))
    await r.run()
    assert len(api.sent) >= 2, "retried while the customer may be on its way"
    assert r.producer.reasons == ["customer_not_found"]
    assert r.consumer.committed_offsets()[("orders", 0)] == 1


async def test_an_adjustment_whose_answer_was_lost_is_dead_lettered_never_resent(
    tmp_path: Path,
) -> None:
    api = OperationsApi()
    api.lose_answers = 1
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=routes(tmp_path), api=api)
    r.consumer.append(("adjustments", 0), adjustment("c1", 50))
    r.consumer.append(("adjustments", 0), adjustment("c1", 70, op="r"))  # a snapshot: not sent
    r.consumer.append(("adjustments", 0), adjustment("c1", 90, op="u"))  # an update: not sent
    await r.run()
    sent = [items for operation, items in api.sent if operation is Operation.BALANCE_ADJUSTMENT]
    assert sent == [[{"customerId": "c1", "amount": 50}]], "sent once, never again"
    assert r.producer.reasons == ["outcome_unknown"]
    assert r.consumer.committed_offsets()[("adjustments", 0)] == 3


async def test_an_adjustment_whose_batch_crashed_after_its_post_is_never_resent(
    tmp_path: Path,
) -> None:
    api = OperationsApi()
    api.crash_reads = 1
    r = rig({"members": 1, "orders": 1, "adjustments": 1}, env=routes(tmp_path), api=api)
    r.consumer.append(("adjustments", 0), adjustment("c1", 50))
    await r.run()
    sent = [items for operation, items in api.sent if operation is Operation.BALANCE_ADJUSTMENT]
    assert len(sent) == 1, "its job exists: sent again, the points would be paid twice"
    assert r.producer.reasons == ["outcome_unknown"]
    assert r.consumer.committed_offsets()[("adjustments", 0)] == 1
