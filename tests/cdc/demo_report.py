"""The closing tables of ``make demo-cdc``: what PostgreSQL holds against what the API received.

Customers field by field (the ``api_*`` views against the simulator's latest item of each),
every order against the simulator's applied log of orders (``api_orders``: each row applied
once, as it says), and every point adjustment against the applied log of balance
adjustments (each row inserted after the snapshot applied once, nothing else). Each function
prints its table and says whether everything matched.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.cdc import chain


def compare_customers(
    console: Console,
    expected: dict[str, dict[str, dict[str, Any]]],
    latest: dict[str, Any],
    *,
    tables: tuple[str, ...],
    shown: tuple[str, ...],
    avro: bool,
) -> bool:
    """A few customers (``shown``), field by field: the row in PostgreSQL against what the
    API holds; then how many of the surviving rows of ``tables`` it holds exactly.

    ``avro``: Apicurio's converter wrote the records, and a NULL in a column with a DEFAULT
    as that default (README): such a field is expected to hold the default, and said so.
    """
    defaults = 0

    def wanted(customer_id: str, row: dict[str, Any]) -> dict[str, Any]:
        nonlocal defaults
        item: dict[str, Any] = chain.as_received(chain.nested(row))
        if avro:
            item, filled = chain.with_column_defaults(item, latest.get(customer_id, {}))
            defaults += filled
        return item

    rows = {cid: c for table in tables for cid, c in expected[table].items()}
    table = Table(title="PostgreSQL (the api_* views) against what the API received")
    for column in ("customer", "field", "PostgreSQL", "API", ""):
        table.add_column(column, overflow="fold")
    all_same = True
    for customer_id in shown:
        want = _flat(wanted(customer_id, rows.get(customer_id, {})))
        got = _flat(latest.get(customer_id, {}))
        for n, field in enumerate(sorted(set(want) | set(got))):
            same = want.get(field) == got.get(field)
            all_same &= same
            table.add_row(
                customer_id[:13] if n == 0 else "",
                field,
                _short(want.get(field, "(NULL)")),
                _short(got.get(field, "(absent)")),
                "✓" if same else "✗",
                end_section=n == len(set(want) | set(got)) - 1,
            )
    console.print(table)
    defaults = 0  # counted again over every row, not only those shown
    differ = [cid for cid, row in rows.items() if latest.get(cid) != wanted(cid, row)]
    every = len(rows) - len(differ)
    if defaults:
        console.print(
            f"  Avro: {defaults} fields hold their column's DEFAULT where the row holds NULL: "
            "Apicurio's converter writes such a NULL as the default (README, From PostgreSQL "
            "with Debezium)"
        )
    mark = "✓" if every == len(rows) else "✗"
    console.print(
        f"{mark} {every} of {len(rows)} surviving rows are, field for field, what the API holds "
        "(deleted and truncated rows keep their last change: the API has no delete)"
        + (f"; not: {', '.join(differ)}" if differ else "")
    )
    return all_same and every == len(rows)


def _flat(item: dict[str, Any]) -> dict[str, Any]:
    """The nested item's attributes as rows of their own (``customerAttributes.name``)."""
    attributes = item.get("customerAttributes")
    if not isinstance(attributes, dict):
        return item
    flat = {k: v for k, v in item.items() if k != "customerAttributes"}
    flat.update({f"customerAttributes.{k}": v for k, v in attributes.items()})
    return flat


def _short(value: Any, limit: int = 48) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    text: str = value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_orders(
    console: Console,
    expected: dict[str, dict[str, Any]],
    applied: list[dict[str, Any]],
    counts: dict[str, int],
) -> bool:
    """Every row of ``orders`` (``expected``: ``api_orders`` by orderId) against the items of
    the simulator's applied log of orders (``applied``); ``counts``: its ``/_sim/stats``."""
    times = Counter(item["orderId"] for item in applied)
    received = {item["orderId"]: item for item in applied}
    table = Table(title="orders as the API applied them, against PostgreSQL (api_orders)")
    for column in ("orderId", "customerId", "orderDate", "totalPaid", "applied", ""):
        table.add_column(column, overflow="fold")
    all_same = set(times) <= set(expected)
    for order_id in sorted(expected, key=int):
        want = chain.as_received(expected[order_id])
        got = received.get(order_id, {})
        same = times[order_id] == 1 and got == want
        all_same &= same
        table.add_row(
            order_id,
            want["customerId"],
            got.get("orderDate", "(absent)"),
            _short(got.get("totalPaid", "(absent)")),
            str(times[order_id]),
            "✓" if same else f"✗ PostgreSQL: {_short(want)}",
        )
    console.print(table)
    mark = "✓" if all_same else "✗"
    console.print(
        f"{mark} {len(received)} of {len(expected)} orders applied, each once; the API refused "
        f'{counts["duplicates"]} as duplicates and answered "customer not found" '
        f"{counts['customer_not_found']} times (an order read before its customer reached it: "
        "retried until it had)"
    )
    return all_same


def compare_adjustments(
    console: Console,
    rows: list[chain.Adjustment],
    applied: list[dict[str, Any]],
    counts: dict[str, int],
) -> bool:
    """Every row of ``point_adjustments`` against the simulator's applied log of balance
    adjustments: each row inserted after the snapshot applied once, with the note it was
    inserted with; the snapshot's rows never. Items carry no id: a row's item is the one of
    its customer and points."""
    times = Counter((item["customerId"], item["amount"]) for item in applied)
    reasons = {(item["customerId"], item["amount"]): item.get("reason") for item in applied}
    table = Table(title="point adjustments: PostgreSQL against what the API applied")
    for column in ("id", "customer", "points", "note (PostgreSQL now)", "API: amount, reason"):
        table.add_column(column, overflow="fold")
    table.add_column("applied")
    table.add_column("")
    all_same = sum(times.values()) == sum(1 for row in rows if row.sent)
    for row in rows:
        key = (row.customer_id, row.points)
        if key in times:
            got = f"{key[1]:+d}, {reasons[key]!r}"
        else:
            got = "(not applied)" if row.sent else "not sent: read by the snapshot (op r)"
        same = times[key] == (1 if row.sent else 0)
        all_same &= same
        table.add_row(
            str(row.id),
            row.customer_id,
            f"{row.points:+d}",
            row.note or "",
            got,
            str(times[key]),
            "✓" if same else "✗",
        )
    console.print(table)
    mark = "✓" if all_same and counts["double_applied"] == 0 else "✗"
    console.print(
        f"{mark} {len(applied)} adjustments applied, {counts['double_applied']} applied twice; "
        "an UPDATE of a row sends nothing (a reworded note keeps the API's reason)"
    )
    return all_same and counts["double_applied"] == 0
