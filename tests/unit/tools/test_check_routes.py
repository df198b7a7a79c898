"""``check`` reports each route (name, operation, topics, delivery) and fails on a bad routes
file with the loader's own sentence."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from confluent_kafka.admin import ClusterMetadata

from service.config import load_settings
from service.delivery.routes import load_routes, routes_from_settings
from service.errors import ConfigError
from service.tools.check import OWN_LIMITS, check_topics, describe_routes, run_checks
from service.tools.check_results import FAIL, OK, Result

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "routes.example.yaml"
ENVIRON = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # nothing listens: the checks after fail fast
    "GAMEBALL_BASE_URL": "http://127.0.0.1:9",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
    "KAFKA_DLQ_TOPIC": "all.dlq",
}


def check(environ: dict[str, str]) -> tuple[int, list[Result]]:
    emitted: list[Result] = []
    code = run_checks(argparse.Namespace(timeout=0.3), emitted.append, environ)
    return code, emitted


def test_each_route_is_one_line_with_its_operation_topics_and_delivery() -> None:
    lines = [r.line() for r in describe_routes(load_routes(EXAMPLE, dead_letter_topic="all.dlq"))]
    assert lines == [
        "✓ route customers: customers from shop.public.customers: upsert, the latest state of a "
        "customer wins → dead letters all.dlq",
        "✓ route orders: orders from shop.public.orders: keyed by orderId, a second delivery is "
        "refused as a duplicate → dead letters all.dlq",
        "✓ route cashback: cashback from shop.public.cashback: keyed by transactionId, a second "
        "delivery is refused as a duplicate → dead letters all.dlq",
        "✓ route redemptions: redeem from shop.public.redemptions: keyed by transactionId, a "
        "second delivery is refused as a duplicate → dead letters all.dlq",
        "✓ route events: events from shop.public.customer_events: no id, at most once: an item "
        "whose fate is unknown is dead-lettered (unsafe_without_ids); own limits 100/s, "
        f"1200/30 s ({OWN_LIMITS}) → dead letters all.dlq",
        "✓ route adjustments: balance-adjustment from shop.public.point_adjustments: no id, at "
        "most once: an item whose fate is unknown is dead-lettered (unsafe_without_ids) → dead "
        "letters shop.adjustments.dlq",
    ]


def test_a_bad_routes_file_fails_the_check_with_the_loaders_sentence(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("routes:\n  - {name: o, operation: order, topics: [a]}\n")
    with pytest.raises(ConfigError) as raised:
        load_routes(path, dead_letter_topic="all.dlq")
    code, emitted = check({**ENVIRON, "ROUTES_FILE": str(path)})
    assert code == 2
    assert emitted == [Result(FAIL, "configuration", str(raised.value))]


def test_the_routes_are_reported_after_the_configuration() -> None:
    code, emitted = check({**ENVIRON, "ROUTES_FILE": str(EXAMPLE)})
    assert code == 1  # no broker, no API
    names = ("customers", "orders", "cashback", "redemptions", "events", "adjustments")
    assert [r.name for r in emitted[:7]] == ["configuration", *(f"route {n}" for n in names)]
    assert [r.mark for r in emitted[:7]] == [OK] * 7, "run delivers every operation"
    assert "routes " + str(EXAMPLE) in emitted[0].detail


def test_without_a_routes_file_the_one_customers_route_is_reported() -> None:
    _, emitted = check({**ENVIRON, "KAFKA_SOURCE_TOPICS": "a,b"})
    assert emitted[1].line() == (
        "✓ route customers: customers from a, b: upsert, the latest state of a customer wins "
        "→ dead letters all.dlq"
    )


def test_the_topics_checked_are_every_routes_and_each_dead_letter_topic() -> None:
    settings = load_settings({**ENVIRON, "ROUTES_FILE": str(EXAMPLE)})
    results = check_topics(settings, routes_from_settings(settings), ClusterMetadata())
    assert [r.name for r in results] == [
        "source topic shop.public.customers",
        "source topic shop.public.orders",
        "source topic shop.public.cashback",
        "source topic shop.public.redemptions",
        "source topic shop.public.customer_events",
        "source topic shop.public.point_adjustments",
        "dead-letter topic all.dlq",
        "dead-letter topic shop.adjustments.dlq",
    ]
