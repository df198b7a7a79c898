"""The demo's routes file and its sample shop agree: the file loads as start-up loads it, and
every order and adjustment the sample writes becomes its operation's item, none dead-lettered,
each keyed or told apart as its operation needs. (The demo itself runs in
tests/integration/test_demo.py; this catches a mapping and a sample drifting apart in a
second, without a broker.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from service.config import load_settings
from service.delivery.assembly import decoders
from service.delivery.decoding import Customer, Fact, Reject
from service.delivery.routes import routes_from_settings
from service.metrics import Metrics
from service.tools.demo import DLQ, OPERATIONS, ROUTES, TOPICS
from service.tools.samples import ADJUSTMENTS, CUSTOMERS, ORDERS, shop


def decoded(tmp_path: Path, count: int, customers: int) -> dict[str, list[object]]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "ROUTES_FILE": str(routes),
            "KAFKA_DLQ_TOPIC": DLQ,
            "GAMEBALL_BASE_URL": "http://127.0.0.1:9",
            "GAMEBALL_API_KEY": "k",
            "GAMEBALL_SECRET_KEY": "s",
            "TAGS_SYNC": "item",
        }
    )
    by_topic = decoders(settings, routes_from_settings(settings), Metrics())
    found: dict[str, list[object]] = {table: [] for table in TOPICS}
    for change in shop(count, customers, tombstone_fraction=0.005, malformed=True):
        found[change.table].append(by_topic[TOPICS[change.table]].decode(change.event.value))
    return found


@pytest.mark.parametrize(
    ("count", "customers"),
    [(1500, 200), (4000, 20)],  # one fact per customer; several per customer
)
def test_every_sample_order_and_adjustment_becomes_an_item_of_its_route(
    tmp_path: Path, count: int, customers: int
) -> None:
    found = decoded(tmp_path, count, customers)
    orders, adjustments = found[ORDERS], found[ADJUSTMENTS]
    assert len(orders) == count // 8 + 1  # one written twice
    assert len(adjustments) == count // 40
    assert all(isinstance(f, Fact) for f in orders + adjustments), [
        f for f in orders + adjustments if not isinstance(f, Fact)
    ]
    facts = [f for f in orders + adjustments if isinstance(f, Fact)]
    assert {f.operation.value for f in facts} == {
        OPERATIONS[ORDERS].value,
        OPERATIONS[ADJUSTMENTS].value,
    }
    keys = Counter(
        orjson.loads(f.payload)["orderId"] for f in facts if f.operation is OPERATIONS[ORDERS]
    )
    assert [k for k, n in keys.items() if n > 1] == ["1"], "only the first order twice"
    items = [orjson.loads(f.payload) for f in facts if f.operation is OPERATIONS[ADJUSTMENTS]]
    assert len({orjson.dumps(i, option=orjson.OPT_SORT_KEYS) for i in items}) == len(items), (
        "no two adjustments alike: a double application is one the sink sent twice"
    )
    assert all(f.clamped == () for f in facts), "sample times lie in the past"


def test_the_customers_changes_decode_as_before_but_for_one_of_each_malformed_kind(
    tmp_path: Path,
) -> None:
    changes = decoded(tmp_path, 1500, 200)[CUSTOMERS]
    rejected = Counter(r.reason.value for r in changes if isinstance(r, Reject))
    assert rejected == {
        "invalid_json": 2,
        "invalid_event": 3,
        "unsupported_operation": 1,
    }
    assert sum(isinstance(c, Customer) for c in changes) > 1000
