"""Every route of a routes file end to end on Apache Kafka, against the simulator over HTTP.

Customers, orders and balance adjustments on their own topics, one process, one group: each
order applied once (a duplicate of the source's id refused, counted as delivered, never
dead-lettered), each adjustment applied once (no double application), orders of customers the
API does not know yet retried until their customers job has applied them, and every offset
committed.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from service.gameball.operations import Operation
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import Event, generate
from tests.brokers.apache import KafkaNode
from tests.integration.harness import (
    ServiceProcess,
    end_offsets,
    fully_committed,
    produce,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration


def change(op: str, row: dict[str, object], key: str) -> Event:
    return Event(key.encode(), orjson.dumps({"op": op, "after": row}), None, 0, "deliver")


def test_customers_orders_and_adjustments_each_delivered_as_their_operation_bears(
    broker: KafkaNode, tmp_path: Path
) -> None:
    customers, orders, adjustments = unique("customers"), unique("orders"), unique("adjust")
    dlq = f"{customers}.dlq"
    broker.create_topics({customers: 2, orders: 2, adjustments: 1, dlq: 1})
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"""\
routes:
  - {{name: customers, operation: customers, topics: [{customers}]}}
  - name: orders
    operation: orders
    topics: [{orders}]
    mapping: {{customerId: customer_id, orderId: id, orderDate: placed_at, totalPaid: total}}
  - name: adjustments
    operation: balance-adjustment
    topics: [{adjustments}]
    unsafe_without_ids: true
    mapping: {{customerId: customer_id, amount: points, reason: note}}
"""
    )
    events = [e for e in generate(60, 20, seed=3) if e.expected in ("deliver", "skip")]
    people = sorted({e.customer_id for e in events if e.customer_id is not None})
    placed = 1_765_000_000_000
    order_events = [
        change("c", {"customer_id": c, "id": f"o-{c}-{n}", "placed_at": placed, "total": 5 + n}, c)
        for n in range(3)
        for c in people
    ]
    # The source re-sent one order (a connector restarted, say): refused as a duplicate.
    order_events.append(order_events[0])
    adjustment_events = [
        change("c", {"customer_id": c, "points": 10, "note": f"welcome {c}"}, c) for c in people
    ]
    # A snapshot's read of the table and an update: never sent (they would pay out again).
    adjustment_events.append(change("r", {"customer_id": people[0], "points": 99}, people[0]))
    adjustment_events.append(change("u", {"customer_id": people[0], "points": 98}, people[0]))

    # The facts first: read before their customers reach the API, they are retried ("customer
    # not found") until the customers jobs applied them.
    produce(broker.bootstrap, orders, order_events, partitions=2)
    produce(broker.bootstrap, adjustments, adjustment_events, partitions=1)
    produce(broker.bootstrap, customers, events, partitions=2)

    with RunningSimulator(SimulatorConfig(seed=7)) as simulator:
        group = unique("group")
        env = service_env(broker, simulator.base_url, customers, group, ROUTES_FILE=str(routes))
        del env["KAFKA_SOURCE_TOPICS"]
        env["KAFKA_DLQ_TOPIC"] = dlq
        service = ServiceProcess(env, tmp_path / "service.jsonl")
        summary = service.run_until_idle(120)
        simulator.state.settle()
        stats = simulator.state.stats()["operations"]
        applied_orders = [
            e["item"]["orderId"]
            for e in simulator.state.items_applied_since(Operation.ORDERS, 0, None)
        ]
        applied_adjustments = simulator.state.items_applied_since(
            Operation.BALANCE_ADJUSTMENT, 0, None
        )

    sent_orders = {orjson.loads(e.value or b"")["after"]["id"] for e in order_events}
    assert sorted(applied_orders) == sorted(sent_orders), "every order applied, each once"
    assert stats["orders"]["duplicates"] >= 1, "the re-sent order was refused as a duplicate"
    assert sorted(e["item"]["reason"] for e in applied_adjustments) == sorted(
        f"welcome {c}" for c in people
    ), "every adjustment applied once; the snapshot's read and the update never"
    assert stats["balance-adjustment"]["double_applied"] == 0
    assert end_offsets(broker.bootstrap, dlq) == {0: 0}, "nothing dead-lettered"
    assert summary.outcomes["dead_lettered"] == 0
    assert summary.settled == summary.consumed
    for topic in (customers, orders, adjustments):
        assert fully_committed(broker.bootstrap, group, topic), topic
