"""The item builder's CPU per record, beside the customers decoder's on the bench's changes.

Orders rows as Debezium writes them with schemas on (``MicroTimestamp``, a ``numeric(12,2)``
in base64, an integer customer id, a JSON column passed through) and the same rows without a
schema (ISO text, decimal strings), and folded events, go through
:class:`~service.delivery.items.ItemBuilder` (the row already parsed, as the decoder hands
it over); the customers decoder decodes the bench's twenty-column changes from their bytes,
envelope parse included, for scale. CPU time is ``time.process_time``, best of ``--rounds``.

    python -m benchmarks.items [--records 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import random
import time
from collections.abc import Callable
from typing import Any

from service.delivery.debezium import ColumnType, Kind
from service.delivery.decoding import Decoder
from service.delivery.items import ItemBuilder, item_mapping
from service.gameball.operations import Operation
from service.tools.samples import change_event

ORDERS = {
    "customerId": "customer_id",
    "orderId": "id",
    "orderDate": "created_at",
    "totalPaid": "total",
    "totalDiscount": "discount",
    "lineItems": "lines",
}
TYPED = {
    "created_at": ColumnType(Kind.TIMESTAMP, 1_000_000),
    "total": ColumnType(Kind.DECIMAL, scale=2),
    "discount": ColumnType(Kind.DECIMAL, scale=2),
    "lines": ColumnType(Kind.JSON),
}
EVENTS = {"customerId": "customer_id", "events.$name": "name", "events.$metadata": "properties"}


def _cents(amount: int) -> str:
    return base64.b64encode(amount.to_bytes(4, "big", signed=True)).decode()


def rows(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(7)
    typed, plain, events = [], [], []
    for index in range(count):
        micros = 1_700_000_000_000_000 + rng.randrange(10**14)
        total, discount = rng.randrange(10**6), rng.randrange(10**3)
        lines = f'[{{"sku": "a-{index % 97}", "qty": {1 + index % 3}}}]'
        typed.append(
            {
                "id": 10**6 + index,
                "customer_id": index % 5000,
                "created_at": micros,
                "total": _cents(total),
                "discount": _cents(discount),
                "lines": lines,
                "status": "paid",
            }
        )
        plain.append(
            {
                "id": f"o-{index}",
                "customer_id": f"c{index % 5000}",
                "created_at": f"2026-0{1 + index % 9}-1{index % 10}T09:30:00.{index % 10**6:06d}Z",
                "total": f"{total / 100:.2f}",
                "discount": f"{discount / 100:.2f}",
                "lines": lines,
                "status": "paid",
            }
        )
        events.append(
            {
                "customer_id": index % 5000,
                "name": ("purchase", "visit", "review")[index % 3],
                "properties": f'{{"amount": {index % 500}, "channel": "web"}}',
            }
        )
    return typed, plain, events


def cpu_per_record(run: Callable[[Any], object], values: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for value in values:
            run(value)
        best = min(best, time.process_time() - start)
    return best / len(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    typed, plain, events = rows(args.records)
    orders = ItemBuilder(item_mapping(Operation.ORDERS, ORDERS, "benchmark"))
    fired = ItemBuilder(item_mapping(Operation.EVENTS, EVENTS, "benchmark"))
    with_types, without, folded = orders.plan(TYPED), orders.plan(None), fired.plan(None)
    rng = random.Random(7)
    changes = [change_event(f"c{i % 5000}", i + 2, rng) for i in range(args.records)]
    decoder = Decoder()
    for label, run, values in (
        ("orders, schema types", lambda row: orders.build(row, with_types), typed),
        ("orders, no schema", lambda row: orders.build(row, without), plain),
        ("events, folded", lambda row: fired.build(row, folded), events),
        ("customers decoder (bytes)", decoder.decode, changes),
    ):
        print(f"{label:28} {cpu_per_record(run, values, args.rounds):6.2f} µs/record")


if __name__ == "__main__":
    main()
