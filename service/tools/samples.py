"""Realistic CDC events for the demo, the tests and the benchmarks.

Shaped like what Debezium 3.6's PostgreSQL connector writes for a ``customers`` table
(``tests/fixtures/debezium`` holds the real thing): the full envelope with its ``source``
block, columns encoded as Debezium encodes them (epoch days, microsecond timestamps, an ISO
``timestamptz``, base64 ``numeric``, a ``text[]``, ``jsonb`` as a string), columns the API
does not know, and for 30% of the events the JSON converter's schema block, byte for byte in
its layout, which is most of such a record's size. The bench therefore pays what users' records
cost.

Every good event carries ``custom.version``: the n-th change of a customer has
version n, so a checker can tell whether an older change was ever applied
after a newer one.

:func:`shop` adds the same shop's ``orders`` and ``point_adjustments`` tables (inserts, without
schemas, ``numeric`` as text) for the sample customers, in one write order with their changes:
the demo's routes file feeds them to the orders and balance-adjustment operations.
"""

from __future__ import annotations

import base64
import datetime as dt
import heapq
import itertools
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

_FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Leslie",
)
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
_TAGS = ("vip", "newsletter", "premium", "churn-risk", "beta", "mobile")

BAD_EVENTS: dict[str, tuple[bytes, str]] = {
    "not json": (b"{this is not json", "invalid_json"),
    "not utf-8": (b"\xff\xfe\x00garbage", "invalid_json"),
    "no customer id": (b'{"op":"c","after":{"email":"x@example.com"}}', "invalid_event"),
    "impossible date": (
        b'{"op":"u","after":{"customer_id":"bad-date","date_of_birth":"2024-02-30"}}',
        "invalid_event",
    ),
    "wrong type": (b'{"customerId":"bad-tags","tags":{"a":1}}', "invalid_event"),
    # A logical decoding message (pg_logical_emit_message) routed onto the customer topic.
    "message op": (
        b'{"op":"m","ts_ms":1700000000000,"message":{"prefix":"audit","content":"aGk="}}',
        "unsupported_operation",
    ),
}


@dataclass(frozen=True, slots=True)
class Event:
    key: bytes | None
    value: bytes | None
    customer_id: str | None
    version: int
    # "deliver", "skip", "api_reject" (the chaos workload), "duplicate" (an order written
    # twice, :func:`shop`) or a dead-letter reason
    expected: str


# --- the table, as Debezium describes it --------------------------------------------------------


def _column(
    field: str, kind: str, optional: bool = True, logical: str | None = None, **more: Any
) -> dict[str, Any]:
    """One field of a Connect struct schema, keys in the JSON converter's order."""
    column: dict[str, Any] = {"type": kind, "optional": optional}
    if logical is not None:
        column.update(name=logical, version=1)
    column.update(more)
    column["field"] = field
    return column


_COLUMNS = [
    _column("customer_id", "string", optional=False),
    _column("email", "string"),
    _column("name", "string"),
    _column("gender", "string"),
    _column("mobile", "string"),
    _column("date_of_birth", "int32", logical="io.debezium.time.Date"),
    _column("join_date", "int64", logical="io.debezium.time.MicroTimestamp"),
    _column("last_login", "string", logical="io.debezium.time.ZonedTimestamp"),
    _column("is_vip", "boolean", default=False),
    _column(
        "balance",
        "bytes",
        logical="org.apache.kafka.connect.data.Decimal",
        parameters={"scale": "2", "connect.decimal.precision": "10"},
        default="AA==",
    ),
    {
        "type": "array",
        "items": {"type": "string", "optional": True},
        "optional": True,
        "field": "tags",
    },
    _column("custom", "string", logical="io.debezium.data.Json"),
    _column("country", "string", default="EG"),
]
_SNAPSHOT_MARKS = (
    "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
)
_SOURCE_FIELDS = [
    _column("version", "string", optional=False),
    _column("connector", "string", optional=False),
    _column("name", "string", optional=False),
    _column("ts_ms", "int64", optional=False),
    _column(
        "snapshot",
        "string",
        logical="io.debezium.data.Enum",
        parameters={"allowed": _SNAPSHOT_MARKS},
        default="false",
    ),
    _column("db", "string", optional=False),
    _column("sequence", "string"),
    _column("ts_us", "int64"),
    _column("ts_ns", "int64"),
    _column("schema", "string", optional=False),
    _column("table", "string", optional=False),
    _column("txId", "int64"),
    _column("lsn", "int64"),
    _column("xmin", "int64"),
    _column("origin", "string"),
    _column("origin_lsn", "int64"),
]
_PREFIX = "shop.public.customers"
_ROW = {"type": "struct", "fields": _COLUMNS, "optional": True, "name": f"{_PREFIX}.Value"}
SCHEMA: dict[str, Any] = {
    "type": "struct",
    "fields": [
        {**_ROW, "field": "before"},
        {**_ROW, "field": "after"},
        {
            "type": "struct",
            "fields": _SOURCE_FIELDS,
            "optional": False,
            "name": "io.debezium.connector.postgresql.Source",
            "version": 1,
            "field": "source",
        },
        {
            "type": "struct",
            "fields": [
                _column("id", "string", optional=False),
                _column("total_order", "int64", optional=False),
                _column("data_collection_order", "int64", optional=False),
            ],
            "optional": True,
            "name": "event.block",
            "version": 1,
            "field": "transaction",
        },
        _column("op", "string", optional=False),
        _column("ts_ms", "int64"),
        _column("ts_us", "int64"),
        _column("ts_ns", "int64"),
    ],
    "optional": False,
    "name": f"{_PREFIX}.Envelope",
    "version": 2,
}
_SCHEMA_HEAD = b'{"schema":' + orjson.dumps(SCHEMA) + b',"payload":'
_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def customer_row(customer_id: str, version: int, rng: random.Random) -> dict[str, object]:
    """A ``customers`` row as Debezium encodes it (snake_case columns, logical types)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    cents = rng.randint(0, 10**7)
    login = _EPOCH + dt.timedelta(seconds=rng.randint(0, 10**8))
    return {
        "customer_id": customer_id,
        "email": f"{first.lower()}.{last.lower()}.{customer_id}@example.com",
        "name": f"{first} {last}",
        "gender": rng.choice(("M", "F")),
        "mobile": f"+2010{rng.randint(0, 10**8):08d}",
        "date_of_birth": rng.randint(-3000, 12000),  # io.debezium.time.Date: epoch days
        "join_date": 1_600_000_000_000_000 + rng.randint(0, 10**14),  # MicroTimestamp: µs
        "last_login": login.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # ZonedTimestamp
        "is_vip": rng.random() < 0.1,
        "balance": base64.b64encode(cents.to_bytes(4, "big", signed=True)).decode(),  # Decimal
        "tags": rng.sample(_TAGS, k=rng.randint(0, 3)),  # text[]
        "custom": orjson.dumps({"version": version, "points": rng.randint(0, 5000)}).decode(),
        "country": "EG",
    }


def _envelope(table: str, op: str, row: dict[str, object], n: int) -> dict[str, object]:
    """Debezium's envelope of the ``n``-th change (its LSN, transaction and time follow n)."""
    ts_ms = 1_700_000_000_000 + n
    return {
        "before": None,
        "after": row,
        "source": {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": ts_ms - 1,
            "snapshot": "false",
            "db": "shop",
            "sequence": f'["{n * 512}","{n * 512 + 128}"]',
            "ts_us": (ts_ms - 1) * 1000,
            "ts_ns": (ts_ms - 1) * 1_000_000,
            "schema": "public",
            "table": table,
            "txId": 700 + n,
            "lsn": n * 512 + 128,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": ts_ms,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }


def change_event(customer_id: str, version: int, rng: random.Random) -> bytes:
    row = customer_row(customer_id, version, rng)
    envelope = _envelope("customers", "c" if version == 1 else "u", row, version)
    if rng.random() < 0.3:  # the JSON converter with schemas enabled, in its exact layout
        return _SCHEMA_HEAD + orjson.dumps(envelope) + b"}"
    return orjson.dumps(envelope)


def generate(
    count: int,
    customers: int,
    *,
    seed: int = 7,
    bad_fraction: float = 0.0,
    tombstone_fraction: float = 0.0,
    prefix: str = "c",
) -> Iterator[Event]:
    """``count`` events over ``customers`` customers, versions increasing per customer."""
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    bad = list(BAD_EVENTS.values())
    for i in range(count):
        roll = rng.random()
        if roll < bad_fraction:
            value, reason = bad[i % len(bad)]
            yield Event(f"bad-{i}".encode(), value, None, 0, reason)
            continue
        customer = f"{prefix}{rng.randrange(customers)}"
        if roll < bad_fraction + tombstone_fraction:
            yield Event(customer.encode(), None, customer, 0, "skip")
            continue
        version = versions.get(customer, 0) + 1
        versions[customer] = version
        yield Event(
            customer.encode(), change_event(customer, version, rng), customer, version, "deliver"
        )


# --- a shop's other tables: orders and point adjustments, beside its customers ----------------

CUSTOMERS, ORDERS, ADJUSTMENTS = "customers", "orders", "point_adjustments"
"""The shop's tables, as ``source.table`` names them."""

_ORDERS_FROM = 1_764_547_200  # 2025-12-01T00:00:00Z: every order and adjustment lies in the past
_ADJUSTMENT_NOTES = ("welcome bonus", "goodwill", "birthday", "survey reward")


def order_row(order_id: int, customer_id: str, rng: random.Random) -> dict[str, object]:
    """An ``orders`` row as Debezium encodes it with ``decimal.handling.mode=string``."""
    cents = rng.randint(500, 50_000)
    discount = rng.choice((0, 0, 0, cents // 10))
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "created_at": (_ORDERS_FROM + order_id * 60) * 1_000_000,  # MicroTimestamp: µs
        "total": f"{cents // 100}.{cents % 100:02d}",  # numeric(12,2) as text
        "discount": f"{discount // 100}.{discount % 100:02d}",
        "status": rng.choice(("paid", "shipped")),  # a column the API does not know
    }


def adjustment_row(adjustment_id: int, customer_id: str, rng: random.Random) -> dict[str, object]:
    """A ``point_adjustments`` row; its note names it, so no two adjustments are alike."""
    return {
        "id": adjustment_id,
        "customer_id": customer_id,
        "points": rng.choice((25, 50, 100, 250)),
        "note": f"{rng.choice(_ADJUSTMENT_NOTES)} #{adjustment_id}",
        "created_at": (_ORDERS_FROM + adjustment_id * 600) * 1_000_000,
    }


def row_event(table: str, row: dict[str, object], n: int) -> bytes:
    """The insert of ``row`` (op ``c``) as the JSON converter writes it without schemas."""
    return orjson.dumps(_envelope(table, "c", row, n))


@dataclass(frozen=True, slots=True)
class ShopEvent:
    """One change of the shop's database: its table and the event its topic carries."""

    table: str
    event: Event


def shop(
    count: int,
    customers: int,
    *,
    seed: int = 7,
    tombstone_fraction: float = 0.0,
    malformed: bool = False,
) -> Iterator[ShopEvent]:
    """``count`` changes of a shop's customers, orders and point adjustments, in the order its
    database wrote them (lazily: the demo produces while they are made).

    The customers' changes are :func:`generate`'s. An eighth of ``count`` are orders and a
    fortieth point adjustments, dealt out over the customers as each first appears, one each
    while there are enough (a customer's facts go out one job after another: few per customer
    keep the run short). Each is written after its customer's first change, but one in twenty
    just *before* it (an order imported ahead of its customer): that one reaches the API first
    and is refused "customer not found" until a customers job has applied the customer. The
    first order is written twice, the second time at the end (a connector that restarted):
    the API refuses it as a duplicate of its ``order_id`` (``expected`` ``"duplicate"``).
    Every adjustment's note names it, so no two are alike and any second application is one a
    sink sent twice. With ``malformed``, each kind of :data:`BAD_EVENTS` replaces one
    customers' change (never a customer's first), spread over the run.
    """
    quotas = {ORDERS: count // 8, ADJUSTMENTS: count // 40}
    resent = 1 if quotas[ORDERS] else 0
    changes = count - sum(quotas.values()) - resent
    # About how many customers the changes will name: the facts are dealt out over them.
    named = max(1, round(customers * (1 - (1 - 1 / customers) ** changes)))
    rng = random.Random(seed + 1)
    serials = dict.fromkeys(quotas, 0)
    later: list[tuple[float, int, ShopEvent]] = []  # a heap of facts by write position
    ties = itertools.count()
    bad = list(BAD_EVENTS.values()) if malformed and changes > 2 * len(BAD_EVENTS) else []
    bad_at = deque((k * changes) // (len(bad) + 1) for k in range(1, len(bad) + 1))
    seen: dict[str, None] = {}  # customers named so far, in order
    first_order: ShopEvent | None = None

    def fact(table: str, customer: str) -> ShopEvent:
        nonlocal first_order
        serials[table] += 1
        n = serials[table]
        make, key = (order_row, "order_id") if table == ORDERS else (adjustment_row, "id")
        row = make(n, customer, rng)
        change = ShopEvent(
            table, Event(orjson.dumps({key: n}), row_event(table, row, n), customer, 0, "deliver")
        )
        if table == ORDERS and n == 1:
            first_order = change
        return change

    for i, event in enumerate(
        generate(changes, customers, seed=seed, tombstone_fraction=tombstone_fraction)
    ):
        while later and later[0][0] <= i:
            yield heapq.heappop(later)[2]
        customer = event.customer_id
        new = event.expected == "deliver" and customer is not None and customer not in seen
        if bad_at and i >= bad_at[0] and not new:
            bad_at.popleft()
            value, reason = bad.pop(0)
            event = Event(f"malformed-{i}".encode(), value, None, 0, reason)
        if new and customer is not None:
            seen[customer] = None
            rank = len(seen)
            for table, total in quotas.items():
                share = min(total, total * rank // named) - min(total, total * (rank - 1) // named)
                for _ in range(share):
                    change = fact(table, customer)
                    if rng.random() < 0.05:
                        yield change  # just before its customer's first change
                    else:
                        heapq.heappush(later, (rng.uniform(i, changes), next(ties), change))
        yield ShopEvent(CUSTOMERS, event)
    # Fewer customers than expected: the facts left go to the ones there are, at the end.
    for table, total in quotas.items():
        for _ in range(total - serials[table] if seen else 0):
            yield fact(table, rng.choice(list(seen)))
    while later:
        yield heapq.heappop(later)[2]
    if first_order is not None:
        event = first_order.event
        yield ShopEvent(ORDERS, Event(event.key, event.value, event.customer_id, 0, "duplicate"))
