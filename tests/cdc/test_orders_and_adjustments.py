"""Orders and point adjustments from PostgreSQL: each row that becomes a fact reaches the API
once, as the row says, and nothing else does.

The session's one run (``conftest.cdc_run``): the set-ups with facts (``dbz_json``, and
``dbz_avro`` for Debezium's Avro logical types) read customers, ``orders`` and
``point_adjustments`` through a ``ROUTES_FILE``. The scripted changes (``shop.STEPS``) place
orders in the snapshot and after it, two of one customer in one transaction, one with its new
customer in the same transaction, one before its customer's row exists (refused "customer not
found" until that customer reaches the API, when the service reads it first), ship an order
(an UPDATE) and reword an adjustment (an UPDATE): neither UPDATE may send anything.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from service.gameball.operations import Operation
from tests.cdc import chain, shop
from tests.cdc.conftest import SETUPS, Run
from tests.integration.harness import fully_committed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WITH_FACTS = [s.name for s in SETUPS if s.facts]


def applied(run: Run, setup: str, operation: Operation) -> list[dict[str, Any]]:
    state = run.pipes[setup].simulator.state
    return [entry["item"] for entry in state.items_applied_since(operation, 0, None)]


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_every_order_row_is_applied_once_as_the_row_says(cdc_run: Run, setup: str) -> None:
    """orderId, customerId, orderDate (UTC, milliseconds cut), totalPaid and the rest, from
    the snapshot's ``r`` and the inserts' ``c`` alike; every offset committed."""
    orders = applied(cdc_run, setup, Operation.ORDERS)
    assert sorted(o["orderId"] for o in orders) == sorted(cdc_run.orders), "each order once"
    for order in orders:
        assert order == chain.as_received(cdc_run.orders[order["orderId"]]), order["orderId"]
    group = f"customer-sync-{setup}"
    for topic in cdc_run.pipes[setup].sources:
        assert fully_committed(cdc_run.bootstrap, group, topic), topic


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_order_totals_arrive_with_their_exact_digits(cdc_run: Run, setup: str) -> None:
    """On the request bodies' bytes: numeric(12,2)'s largest value, 9999999999.99, and
    149.90 with its zero, never through a float; every body, retries included."""
    sent = [
        item
        for body in cdc_run.pipes[setup].recorder.bodies("orders")
        for item in chain.exact_json(body.decode())["body"]
    ]
    assert sent, "no orders request recorded"
    for item in sent:
        assert item == cdc_run.orders[item["orderId"]], item["orderId"]
    totals = {item["orderId"]: str(item["totalPaid"]) for item in sent}
    assert totals["5001"] == "9999999999.99"
    assert totals["1"] == "149.90"


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_an_order_s_update_sends_nothing(cdc_run: Run, setup: str) -> None:
    """A shipped order's UPDATE (op ``u``) is skipped: the order went out once, with its
    INSERT. Sent again it would be refused as a duplicate, which the simulator counts."""
    pipe = cdc_run.pipes[setup]
    sent = Counter(
        item["orderId"]
        for body in pipe.recorder.bodies("orders")
        for item in chain.exact_json(body.decode())["body"]
    )
    for order_id in shop.UPDATED_ORDERS:
        assert sent[order_id] == 1, order_id
    assert pipe.simulator.state.stats()["operations"]["orders"]["duplicates"] == 0


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_each_adjustment_inserted_is_applied_once_and_nothing_else(
    cdc_run: Run, setup: str
) -> None:
    """Only the INSERTs after the snapshot are sent: the snapshot's row (op ``r``) may be
    one the API applied already, and the UPDATE of a note would award the points again."""
    adjustments = applied(cdc_run, setup, Operation.BALANCE_ADJUSTMENT)
    assert sorted((a["customerId"], a["amount"]) for a in adjustments) == sorted(
        (row.customer_id, row.points) for row in cdc_run.adjustments if row.sent
    )
    reasons = {a["reason"] for a in adjustments}
    assert "welcome bonus" not in reasons, "the snapshot's adjustment was sent"
    assert "goodwill: late delivery" in reasons, "sent as inserted"
    stats = cdc_run.pipes[setup].simulator.state.stats()["operations"]["balance-adjustment"]
    assert stats["double_applied"] == 0
