"""The mixed workload (``--mixed``): orders, cashback and events beside the customers changes.

Each fact route reads its own topic (``<topic>.orders``, ``.cashback``, ``.events``) and the
routes file (:func:`routes_file`) binds them, with the customers topic, in one process and
one group. Facts are interleaved with the customers changes, and only of customers whose
first good change was produced before them: a fact then waits at most for its customer's
job ("customer not found" is retried), except for a customer whose only good changes the API
rejected, which the checker accepts as ``customer_not_found``.

Every fact is unique, so the simulator's logs tell a second application from a first: an
order's ``orderId`` and a cashback's ``transactionId`` come from a sequence, and each event
carries that sequence number in its metadata (``{"purchase": {"seq": 17}}``), which makes its
content unique and the simulator's ``double_applied`` a count of events the service sent
twice. The fact's id goes to the manifest (``f``) beside the expectation (``x``):

* ``deliver``: applied once, or dead-lettered for a reason the API gave (see
  :mod:`tests.chaos.facts_checker`);
* ``skip``: an event's snapshot read (``op: r``), update or delete, or a tombstone, which an
  id-less route never sends: never applied, never dead-lettered;
* a dead-letter reason: an order without its id or a cashback with an amount that is no
  number (``invalid_event``), an event row without Debezium's envelope
  (``unsupported_operation``: it cannot say it is a creation).

A share of orders is re-sent with the same bytes (a connector that restarted): refused by
the API as a duplicate, counted as delivered, never dead-lettered. Orders also come as
snapshot reads (``op: r``): keyed routes send those.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from service.tools.samples import Event
from tests.chaos.workload import DELIVER, SKIP, Planned

FACT_ROUTES = ("orders", "cashback", "events")
"""The fact routes of the mixed workload, each on its topic ``<customers topic>.<route>``."""
CUSTOMERS = "customers"

_MOMENT = 1_765_000_000_000
"""Orders and cashback are dated in the past (ms since 1970): never "in the future"."""
_EVENT_NAMES = ("purchase", "visit", "review")


def fact_topics(topic: str) -> dict[str, str]:
    """Each fact route's topic, named after the customers ``topic``."""
    return {route: f"{topic}.{route}" for route in FACT_ROUTES}


def routes_file(topic: str) -> str:
    """The ``ROUTES_FILE`` of the mixed run: customers, orders, cashback, events."""
    facts = fact_topics(topic)
    return f"""\
routes:
  - {{name: customers, operation: customers, topics: [{topic}]}}
  - name: orders
    operation: orders
    topics: [{facts["orders"]}]
    mapping: {{customerId: customer_id, orderId: id, orderDate: placed_at, totalPaid: total}}
  - name: cashback
    operation: cashback
    topics: [{facts["cashback"]}]
    mapping:
      {{customerId: customer_id, transactionId: id, transactionTime: paid_at, amount: amount}}
  - name: events
    operation: events
    topics: [{facts["events"]}]
    unsafe_without_ids: true
    mapping: {{customerId: customer_id, events.$name: event_name, events.$metadata: properties}}
"""


def _change(op: str, row: dict[str, Any] | None, table: str) -> bytes:
    before = row if op == "d" else None
    after = None if op == "d" else row
    source = {"connector": "postgresql", "db": "shop", "schema": "public", "table": table}
    return orjson.dumps({"before": before, "after": after, "op": op, "source": source})


def _order(n: int, customer: str, rng: random.Random) -> Planned:
    fact = f"o{n}"
    row = {"customer_id": customer, "id": fact, "placed_at": _MOMENT + n, "total": 5 + n % 500}
    op = "r" if rng.random() < 0.1 else "c"
    value = _change(op, row, "orders")
    return Planned("orders", Event(customer.encode(), value, customer, 0, DELIVER), fact)


def _cashback(n: int, customer: str) -> Planned:
    fact = f"t{n}"
    row = {"customer_id": customer, "id": fact, "paid_at": _MOMENT + n, "amount": 1 + n % 50}
    value = _change("c", row, "cashback")
    return Planned("cashback", Event(customer.encode(), value, customer, 0, DELIVER), fact)


def _event_row(n: int, customer: str) -> dict[str, Any]:
    name = _EVENT_NAMES[n % len(_EVENT_NAMES)]
    return {"customer_id": customer, "event_name": name, "properties": {"seq": n}}


def _event(n: int, customer: str) -> Planned:
    value = _change("c", _event_row(n, customer), "customer_events")
    return Planned("events", Event(customer.encode(), value, customer, 0, DELIVER), str(n))


def _bad_fact(n: int, kind: int, customer: str) -> Planned:
    """A fact row the service must not deliver, with the outcome it must have."""
    key = customer.encode()
    row = _event_row(n, customer)
    if kind == 0:  # an order without its id
        value = _change("c", {"customer_id": customer, "placed_at": _MOMENT, "total": 1}, "orders")
        return Planned("orders", Event(key, value, customer, 0, "invalid_event"))
    if kind == 1:  # a cashback whose amount is no number
        bad = {"customer_id": customer, "id": f"t{n}", "paid_at": _MOMENT, "amount": "lots"}
        value = _change("c", bad, "cashback")
        return Planned("cashback", Event(key, value, customer, 0, "invalid_event"), f"t{n}")
    if kind == 2:  # an event row without the envelope: it cannot say it is a creation
        value = orjson.dumps(row)
        return Planned("events", Event(key, value, customer, 0, "unsupported_operation"), str(n))
    if kind == 5:  # a tombstone of the events table
        return Planned("events", Event(key, None, customer, 0, SKIP))
    op = {3: "r", 4: "u", 6: "d"}[kind]  # a snapshot's read, an update, a delete: never sent
    value = _change(op, row, "customer_events")
    return Planned("events", Event(key, value, customer, 0, SKIP), str(n))


_BAD_KINDS = 7


def mixed(
    changes: Iterator[Event],
    count: int,
    *,
    seed: int,
    fact_fraction: float = 0.4,
    bad_fraction: float = 0.02,
    resend_fraction: float = 0.01,
) -> Iterator[Planned]:
    """``count`` records: the customers ``changes`` with facts among them (``fact_fraction``
    of the records once a customer is known), ``bad_fraction`` of the facts bad, and
    ``resend_fraction`` of the orders re-sent once."""
    rng = random.Random(seed)
    created: list[str] = []  # customers with a good change produced, in that order
    seen: set[str] = set()
    sent_orders: list[Planned] = []
    bad_seen = 0
    for n in range(count):
        if not created or rng.random() >= fact_fraction:
            change = next(changes)
            if change.expected == DELIVER and change.customer_id not in seen:
                seen.add(change.customer_id or "")
                created.append(change.customer_id or "")
            yield Planned(CUSTOMERS, change)
            continue
        customer = rng.choice(created)
        roll = rng.random()
        if roll < bad_fraction:
            yield _bad_fact(n, bad_seen % _BAD_KINDS, customer)
            bad_seen += 1
        elif roll < bad_fraction + resend_fraction and sent_orders:
            yield rng.choice(sent_orders)
        elif roll < 0.4:
            order = _order(n, customer, rng)
            sent_orders.append(order)
            yield order
        elif roll < 0.7:
            yield _cashback(n, customer)
        else:
            yield _event(n, customer)


def route_topics(topic: str) -> Mapping[str, str]:
    """Every route's topic: the customers ``topic`` and the facts'."""
    return {CUSTOMERS: topic, **fact_topics(topic)}
