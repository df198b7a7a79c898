"""The mixed chaos workload: what it promises the checker about the facts it produces."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from service.delivery.decoding import Decoder, Fact, Reject, Skip
from service.delivery.items import ItemBuilder, ItemMapping
from service.delivery.routes import load_routes
from tests.chaos.mixed import mixed, routes_file
from tests.chaos.workload import Planned, plan


def workload(count: int = 6000) -> list[Planned]:
    return list(mixed(plan(count, 300, seed=1), count, seed=2))


def test_every_fact_is_unique_but_the_orders_the_source_re_sent() -> None:
    records = workload()
    facts = [r for r in records if r.route != "customers" and r.fact is not None]
    counts = Counter((r.route, r.fact) for r in facts)
    again = {fact: n for fact, n in counts.items() if n > 1}
    assert again, "some orders are re-sent"
    assert {route for route, _ in again} == {"orders"}
    resent = {r.fact: r.event.value for r in facts if (r.route, r.fact) in again}
    assert all(r.event.value == resent[r.fact] for r in facts if (r.route, r.fact) in again), (
        "a re-sent order is the same bytes"
    )
    assert Counter(r.route for r in records).keys() == {"customers", "orders", "cashback", "events"}


def test_a_fact_follows_a_good_change_of_its_customer() -> None:
    created: set[str | None] = set()
    for record in workload():
        if record.route == "customers":
            if record.event.expected == "deliver":
                created.add(record.event.customer_id)
        else:
            assert record.event.customer_id in created, record


def test_each_fact_decodes_to_the_outcome_the_workload_expects(tmp_path: Path) -> None:
    """The checker trusts these expectations: they must be what the service's decoder makes
    of the records under the mixed run's routes file."""
    path = tmp_path / "routes.yaml"
    path.write_text(routes_file("chaos"))
    decoders = {
        route.name: Decoder(items=ItemBuilder(route.mapping))
        for route in load_routes(path, dead_letter_topic="chaos.dlq")
        if isinstance(route.mapping, ItemMapping)
    }
    outcomes: Counter[tuple[str, str]] = Counter()
    for record in workload():
        if record.route == "customers":
            continue
        decoded = decoders[record.route].decode(record.event.value)
        if isinstance(decoded, Fact):
            outcome = "deliver"
        elif isinstance(decoded, Skip):
            outcome = "skip"
        else:
            assert isinstance(decoded, Reject)
            outcome = decoded.reason.value
        assert outcome == record.event.expected, record
        outcomes[record.route, outcome] += 1
    assert outcomes.keys() == {
        ("orders", "deliver"),
        ("orders", "invalid_event"),
        ("cashback", "deliver"),
        ("cashback", "invalid_event"),
        ("events", "deliver"),
        ("events", "skip"),
        ("events", "unsupported_operation"),
    }
