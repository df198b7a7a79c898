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
"""

from __future__ import annotations

import base64
import datetime as dt
import random
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
    expected: str  # "deliver", "skip", "api_reject" (the chaos workload) or a dead-letter reason


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


def change_event(customer_id: str, version: int, rng: random.Random) -> bytes:
    row = customer_row(customer_id, version, rng)
    ts_ms = 1_700_000_000_000 + version
    envelope = {
        "before": None,
        "after": row,
        "source": {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": ts_ms - 1,
            "snapshot": "false",
            "db": "shop",
            "sequence": f'["{version * 512}","{version * 512 + 128}"]',
            "ts_us": (ts_ms - 1) * 1000,
            "ts_ns": (ts_ms - 1) * 1_000_000,
            "schema": "public",
            "table": "customers",
            "txId": 700 + version,
            "lsn": version * 512 + 128,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": "c" if version == 1 else "u",
        "ts_ms": ts_ms,
        "ts_us": ts_ms * 1000,
        "ts_ns": ts_ms * 1_000_000,
    }
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
