"""Realistic CDC events for the demo, the tests and the benchmarks.

Every good event carries ``custom.version``: the n-th change of a customer has
version n, so a checker can tell whether an older change was ever applied
after a newer one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

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


def customer_row(customer_id: str, version: int, rng: random.Random) -> dict[str, object]:
    """A source-table row as Debezium's JSON converter delivers it (snake_case, epoch days)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "customer_id": customer_id,
        "email": f"{first.lower()}.{last.lower()}.{customer_id}@example.com",
        "name": f"{first} {last}",
        "gender": rng.choice(("M", "F")),
        "date_of_birth": rng.randint(-3000, 12000),  # Debezium DATE: days since the epoch
        "join_date": 1_600_000_000_000 + rng.randint(0, 10**11),  # Timestamp: epoch ms
        "tags": ",".join(rng.sample(_TAGS, k=rng.randint(0, 3))),
        "custom": orjson.dumps({"version": version, "points": rng.randint(0, 5000)}).decode(),
    }


def change_event(customer_id: str, version: int, rng: random.Random) -> bytes:
    row = customer_row(customer_id, version, rng)
    envelope = {
        "before": None,
        "after": row,
        "op": "c" if version == 1 else "u",
        "ts_ms": 1_700_000_000_000 + version,
        "source": {"connector": "postgresql", "db": "shop", "table": "customers"},
    }
    if rng.random() < 0.3:  # JSON converter with schemas enabled
        return orjson.dumps({"schema": {"type": "struct", "optional": False}, "payload": envelope})
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
