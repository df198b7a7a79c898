"""ROUTES_FILE: the routes it declares, today's one customers route without it, and one
sentence naming the route and the field for every mistake."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from service.config import Settings, load_settings
from service.delivery.decoding import Customer, Decoder
from service.delivery.items import ItemMapping
from service.delivery.mapping import FieldMapping, load_field_mapping
from service.delivery.routes import Limits, Route, load_routes, routes_from_settings
from service.errors import ConfigError
from service.gameball.budget import Window
from service.gameball.operations import Delivery, Operation

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "routes.example.yaml"
BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
    "KAFKA_DLQ_TOPIC": "all.dlq",
}
ORDERS = """\
  - name: orders
    operation: orders
    topics: [shop.orders]
    mapping: {customerId: c, orderId: id, orderDate: at, totalPaid: total}
"""


def orders_without(key: str) -> str:
    kept = [line for line in ORDERS.splitlines() if not line.strip().startswith(f"{key}:")]
    return "routes:\n" + "\n".join(kept) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def load(path: Path) -> tuple[Route, ...]:
    return load_routes(path, dead_letter_topic="all.dlq")


def settings(**environ: str) -> Settings:
    return load_settings({**BASE, **environ})


# --- what a file declares ---------------------------------------------------------------------


def test_the_example_file_loads_every_operation_with_its_delivery() -> None:
    routes = load(EXAMPLE)
    assert [(r.name, r.operation, r.delivery) for r in routes] == [
        ("customers", Operation.CUSTOMERS, Delivery.UPSERT),
        ("orders", Operation.ORDERS, Delivery.KEYED),
        ("cashback", Operation.CASHBACK, Delivery.KEYED),
        ("redemptions", Operation.REDEEM, Delivery.KEYED),
        ("events", Operation.EVENTS, Delivery.IDLESS),
        ("adjustments", Operation.BALANCE_ADJUSTMENT, Delivery.IDLESS),
    ]
    by_name = {route.name: route for route in routes}
    assert by_name["orders"].topics == ("shop.public.orders",)
    assert by_name["orders"].natural_key == "orderId"
    assert isinstance(by_name["customers"].mapping, FieldMapping)
    assert isinstance(by_name["orders"].mapping, ItemMapping)
    assert [r.unsafe_without_ids for r in routes] == [False] * 4 + [True] * 2
    assert by_name["events"].limits == Limits(per_second=100, per_30s=1200)
    assert by_name["events"].limits.windows() == (Window(100, 1.0), Window(1200, 30.0))
    assert by_name["orders"].limits is None
    assert by_name["adjustments"].dead_letter_topic == "shop.adjustments.dlq"
    assert by_name["orders"].dead_letter_topic == "all.dlq"


def test_routes_are_frozen() -> None:
    route = load(EXAMPLE)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.name = "other"  # type: ignore[misc]


def test_a_customers_route_without_a_mapping_matches_columns_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  - {name: c, operation: customers, topics: [a, b]}\n")
    (route,) = load(path)
    assert route.mapping is None
    assert route.topics == ("a", "b")


def test_a_customers_mapping_means_what_field_mapping_file_means(tmp_path: Path) -> None:
    text = """\
routes:
  - name: members
    operation: customers
    topics: [shop.members]
    mapping:
      customerId: member_no
      customerAttributes.joinDate: {column: signed_up, type: timestamp-micros}
      custom.tier: tier
"""
    (route,) = load(write(tmp_path, text))
    assert isinstance(route.mapping, FieldMapping)
    assert route.mapping.fields["customerId"].path == ("member_no",)
    assert route.mapping.attributes["tier"].path == ("tier",)


def test_a_customer_decodes_the_same_through_a_route_and_through_field_mapping_file(
    tmp_path: Path,
) -> None:
    entries = "customerId: member_no\ncustomerAttributes.joinDate: {column: t, type: date}\n"
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(entries)
    indented = "".join(f"      {line}\n" for line in entries.splitlines())
    routes = write(
        tmp_path,
        "routes:\n  - name: c\n    operation: customers\n    topics: [a]\n    mapping:\n"
        + indented,
    )
    (route,) = load(routes)
    assert isinstance(route.mapping, FieldMapping)
    value = orjson.dumps({"op": "c", "after": {"member_no": 7, "t": 20000, "city": "Giza"}})
    through_route = Decoder(route.mapping).decode(value)
    through_file = Decoder(load_field_mapping(mapping_file)).decode(value)
    assert isinstance(through_route, Customer)
    assert through_route == through_file
    assert orjson.loads(through_route.payload)["customerAttributes"]["joinDate"] == "2024-10-04"


# --- without a routes file ----------------------------------------------------------------------


def test_without_a_routes_file_the_settings_mean_one_customers_route() -> None:
    (route,) = routes_from_settings(settings(KAFKA_SOURCE_TOPICS="a,b"))
    assert route == Route("customers", Operation.CUSTOMERS, ("a", "b"), None, "all.dlq")


def test_without_a_routes_file_the_customers_route_reads_field_mapping_file(
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("customerId: member_no\n")
    (route,) = routes_from_settings(settings(FIELD_MAPPING_FILE=str(mapping)))
    assert isinstance(route.mapping, FieldMapping)
    assert route.mapping.fields["customerId"].path == ("member_no",)
    assert route.topics == ("customer-changes",)


def test_the_settings_read_the_routes_file() -> None:
    routes = routes_from_settings(settings(ROUTES_FILE=str(EXAMPLE)))
    assert len(routes) == 6
    assert routes[1].dead_letter_topic == "all.dlq"  # KAFKA_DLQ_TOPIC is the default


@pytest.mark.parametrize("variable", ["FIELD_MAPPING_FILE", "KAFKA_SOURCE_TOPICS"])
def test_a_routes_file_with_a_variable_it_replaces_stops_start_up(variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        settings(ROUTES_FILE=str(EXAMPLE), **{variable: "x"})
    assert str(raised.value).startswith(f"ROUTES_FILE and {variable} are both set")
    assert f"unset {variable}" in str(raised.value)


def test_a_customers_mapping_field_the_shape_lacks_names_the_route(tmp_path: Path) -> None:
    text = "routes:\n  - {name: c, operation: customers, topics: [a], mapping: {city: town}}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        routes_from_settings(settings(ROUTES_FILE=str(path)))
    assert str(raised.value) == (
        f"ROUTES_FILE {str(path)!r}, route 'c', mapping maps city, which the nested customer "
        "does not define (GAMEBALL_CUSTOMER_SHAPE=nested): map it as customerAttributes.city"
    )
    routes_from_settings(settings(ROUTES_FILE=str(path), GAMEBALL_CUSTOMER_SHAPE="flat"))


# --- mistakes -----------------------------------------------------------------------------------

ROUTE = "ROUTES_FILE '{path}', route 'orders': "
MAPPING = "ROUTES_FILE '{path}', route 'orders', mapping: "


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # the file
        ("routes: [", "ROUTES_FILE '{path}' is not valid YAML: "),
        ("- orders", "ROUTES_FILE '{path}' must hold routes: a list of routes"),
        ("", "ROUTES_FILE '{path}' must hold routes: a list of routes"),
        ("routes: []\nroute: []", "ROUTES_FILE '{path}' has an unknown key 'route'"),
        ("routes: []", "ROUTES_FILE '{path}': routes must be a list of at least one route"),
        ("routes: {name: orders}", "ROUTES_FILE '{path}': routes must be a list of at least"),
        # a route's name
        ("routes: [orders]", "ROUTES_FILE '{path}', route #1 must be a mapping of name, "),
        ("routes:\n  - {operation: orders}", "ROUTES_FILE '{path}', route #1: name is missing"),
        ("routes:\n  - {name: 'a b'}", "ROUTES_FILE '{path}', route #1: name 'a b' is not a name"),
        (
            f"routes:\n{ORDERS}{ORDERS.replace('shop.orders', 'other')}",
            ROUTE + "name: route #1 has this name too; names are unique",
        ),
        # keys, operation, topics
        (f"routes:\n{ORDERS}    topic: x\n", ROUTE + "unknown key 'topic'; a route's keys are "),
        (
            f"routes:\n{ORDERS.replace('operation: orders', 'operation: order')}",
            ROUTE + "operation 'order' is not an operation; one of customers, orders, cashback, "
            "redeem, events, balance-adjustment",
        ),
        (
            orders_without("operation"),
            ROUTE + "operation is missing; one of customers",
        ),
        (
            orders_without("topics"),
            ROUTE + "topics is missing; a route reads at least one topic",
        ),
        (
            f"routes:\n{ORDERS.replace('[shop.orders]', '[]')}",
            ROUTE + "topics must be a list of at least one topic",
        ),
        (
            f"routes:\n{ORDERS.replace('[shop.orders]', 'shop.orders')}",
            ROUTE + "topics must be a list of at least one topic",
        ),
        (f"routes:\n{ORDERS.replace('[shop.orders]', '[3]')}", ROUTE + "topics: 3 is not a topic"),
        (
            f"routes:\n{ORDERS.replace('[shop.orders]', '[a, a]')}",
            ROUTE + "topics: a is named twice",
        ),
        (
            f"routes:\n{ORDERS.replace('orders', 'first', 1)}{ORDERS}",
            ROUTE + "topics: shop.orders is route 'first''s already; a topic belongs to one route",
        ),
        # mappings
        (
            f"routes:\n{ORDERS.replace('orderId: id, ', '')}",
            MAPPING + "orderId is not mapped, and orders needs it (its natural key",
        ),
        (
            f"routes:\n{ORDERS.replace('totalPaid: total', 'totalPaid: 3')}",
            MAPPING + "totalPaid: must be a column path",
        ),
        (
            orders_without("mapping"),
            "ROUTES_FILE '{path}', route 'orders', mapping must map the orders item's fields",
        ),
        (
            "routes:\n  - {name: c, operation: customers, topics: [a], mapping: {email: 3}}",
            "ROUTES_FILE '{path}', route 'c', mapping: email: must be a column path",
        ),
        (
            "routes:\n  - {name: c, operation: customers, topics: [a], mapping: [email]}",
            "ROUTES_FILE '{path}', route 'c', mapping must map API field names",
        ),
        # unsafe_without_ids
        (
            "routes:\n  - {name: e, operation: events, topics: [a], "
            "mapping: {customerId: c, events: e}}",
            "ROUTES_FILE '{path}', route 'e': unsafe_without_ids: events items carry no id, so "
            "a second delivery applies again: set unsafe_without_ids: true",
        ),
        (
            "routes:\n  - {name: b, operation: balance-adjustment, topics: [a], "
            "unsafe_without_ids: false, mapping: {customerId: c, amount: p}}",
            "ROUTES_FILE '{path}', route 'b': unsafe_without_ids: balance-adjustment items "
            "carry no id",
        ),
        (
            "routes:\n  - {name: b, operation: balance-adjustment, topics: [a], "
            "unsafe_without_ids: 'yes', mapping: {customerId: c, amount: p}}",
            "ROUTES_FILE '{path}', route 'b': unsafe_without_ids: balance-adjustment items",
        ),
        (
            "routes:\n  - {name: c, operation: customers, topics: [a], unsafe_without_ids: true}",
            "ROUTES_FILE '{path}', route 'c': unsafe_without_ids: customers items carry their id "
            "(customerId)",
        ),
        (
            f"routes:\n{ORDERS}    unsafe_without_ids: false\n",
            ROUTE + "unsafe_without_ids: orders items carry their id (orderId)",
        ),
        # options
        (f"routes:\n{ORDERS}    dead_letter_topic: ''\n", ROUTE + "dead_letter_topic must be a"),
        (f"routes:\n{ORDERS}    dead_letter_topic: [a]\n", ROUTE + "dead_letter_topic must be a"),
        (f"routes:\n{ORDERS}    limits: 100\n", ROUTE + "limits must be a mapping of per_second"),
        (f"routes:\n{ORDERS}    limits: {{}}\n", ROUTE + "limits must be a mapping of per_second"),
        (f"routes:\n{ORDERS}    limits:\n", ROUTE + "limits must be a mapping of per_second"),
        (
            f"routes:\n{ORDERS}    limits: {{per_minute: 5}}\n",
            ROUTE + "limits: unknown key 'per_minute'; the limits are per_second and per_30s",
        ),
        (
            f"routes:\n{ORDERS}    limits: {{per_second: 0}}\n",
            ROUTE + "limits: per_second must be a whole number of requests of at least 1, not 0",
        ),
        (
            f"routes:\n{ORDERS}    limits: {{per_30s: 2.5}}\n",
            ROUTE + "limits: per_30s must be a whole number of requests of at least 1, not 2.5",
        ),
        (
            f"routes:\n{ORDERS}    limits: {{per_30s: true}}\n",
            ROUTE + "limits: per_30s must be a whole number",
        ),
        (
            "routes:\n"
            + ORDERS.replace("shop.orders", "a.orders").replace("name: orders", "name: web")
            + "    limits: {per_second: 5}\n"
            + ORDERS
            + "    limits: {per_second: 6}\n",
            ROUTE + "limits: route 'web' gives orders other limits; an operation's limits are "
            "the API's, one set for all its routes",
        ),
    ],
)
def test_every_mistake_is_one_sentence_naming_the_route_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load(path)
    assert str(raised.value).startswith(message.format(path=path))
    assert "\n" not in str(raised.value)


def test_an_unreadable_file_is_said(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as raised:
        load(missing)
    assert (
        str(raised.value)
        == f"ROUTES_FILE {str(missing)!r} cannot be read: No such file or directory"
    )
    binary = tmp_path / "routes.yaml"
    binary.write_bytes(b"routes: \xff\xfe")
    with pytest.raises(ConfigError) as raised:
        load(binary)
    assert str(raised.value) == f"ROUTES_FILE {str(binary)!r} cannot be read: it is not UTF-8 text"
