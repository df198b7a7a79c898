"""A CDC row becomes an orders, cashback, redeem, events or balance-adjustment item as the API
takes it: ids as strings, exact numbers, UTC times never in the future, events folded, and a
clear error naming the field for a row that cannot become one."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.delivery.debezium import UNAVAILABLE_VALUE, row_columns
from service.delivery.fields import Invalid
from service.delivery.items import Item, ItemBuilder, item_mapping
from service.errors import ConfigError
from service.gameball.operations import Operation

NOW = dt.datetime(2026, 12, 7, 9, 30, 0, 123456, tzinfo=dt.UTC)
NOW_TEXT = "2026-12-07T09:30:00.123Z"
ORDER = {"customerId": "customer_id", "orderId": "id", "orderDate": "at", "totalPaid": "total"}


def schema(**columns: dict[str, Any]) -> dict[str, Any]:
    """A Debezium envelope's schema whose ``after`` has these columns' schemas."""
    fields = [{"field": name, "optional": True, **spec} for name, spec in columns.items()]
    return {
        "type": "struct",
        "fields": [{"field": "after", "type": "struct", "fields": fields}],
    }


def build(
    mapping: dict[str, Any],
    row: dict[str, Any],
    operation: Operation = Operation.ORDERS,
    columns: dict[str, dict[str, Any]] | None = None,
) -> Item:
    builder = ItemBuilder(item_mapping(operation, mapping, "mapping"), now=NOW.timestamp)
    plan = builder.plan(row_columns(schema(**columns)) if columns is not None else None)
    return builder.build(row, plan)


def sent(item: Item) -> dict[str, Any]:
    """The item as the API reads it, numbers exact."""
    body: dict[str, Any] = json.loads(item.payload, parse_float=decimal.Decimal)
    return body


def order(**row: Any) -> dict[str, Any]:
    return {"customer_id": 42, "id": 981, "at": "2026-01-02T03:04:05Z", "total": 10, **row}


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(42, "42"), (42.0, "42"), ("c-42", "c-42"), ({"scale": 0, "value": "Kg=="}, "42")],
)
def test_ids_are_sent_as_strings_whatever_the_column_type(value: Any, text: str) -> None:
    item = build(ORDER, order(customer_id=value, id=value))
    assert sent(item)["customerId"] == text
    assert sent(item)["orderId"] == text
    assert (item.customer_id, item.key) == (text, text)


def test_a_decimal_id_column_is_sent_as_its_digits() -> None:
    columns = {
        "id": {
            "type": "bytes",
            "name": "org.apache.kafka.connect.data.Decimal",
            "parameters": {"scale": "0"},
        }
    }
    item = build(
        ORDER, order(id=base64.b64encode((10**20).to_bytes(9, "big")).decode()), columns=columns
    )
    assert item.key == "100000000000000000000"


def test_the_key_is_the_operations_natural_key_and_none_without_one() -> None:
    cashback = build(
        {"customerId": "c", "transactionId": "t", "transactionTime": "at", "amount": "a"},
        {"c": 1, "t": 77, "at": "2026-01-01T00:00:00Z", "a": 5},
        Operation.CASHBACK,
    )
    assert cashback.key == "77"
    adjustment = build(
        {"customerId": "c", "amount": "a"}, {"c": 1, "a": -5}, Operation.BALANCE_ADJUSTMENT
    )
    assert adjustment.key is None
    assert sent(adjustment) == {"customerId": "1", "amount": -5}


# --- date-times -------------------------------------------------------------------------------

AT = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
AT_US = int(AT.timestamp()) * 10**6 + 678901
AT_TEXT = "2026-01-02T03:04:05.678Z"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("io.debezium.time.Timestamp", AT_US // 1000),
        ("org.apache.kafka.connect.data.Timestamp", AT_US // 1000),
        ("io.debezium.time.MicroTimestamp", AT_US),
        ("io.debezium.time.NanoTimestamp", AT_US * 1000 + 999),
        ("io.debezium.time.ZonedTimestamp", "2026-01-02T03:04:05.678901Z"),
        ("io.debezium.time.ZonedTimestamp", "2026-01-02T05:04:05.678901+02:00"),
        ("io.debezium.time.IsoTimestamp", "2026-01-02T03:04:05.678901"),
    ],
)
def test_each_debezium_timestamp_is_sent_as_utc_with_milliseconds(name: str, value: Any) -> None:
    columns = {"at": {"type": "string" if isinstance(value, str) else "int64", "name": name}}
    assert sent(build(ORDER, order(at=value), columns=columns))["orderDate"] == AT_TEXT


def test_a_date_column_is_that_day_at_midnight_utc() -> None:
    columns = {"at": {"type": "int32", "name": "io.debezium.time.Date"}}
    days = (dt.date(2026, 1, 2) - dt.date(1970, 1, 1)).days
    assert sent(build(ORDER, order(at=days), columns=columns))["orderDate"] == (
        "2026-01-02T00:00:00.000Z"
    )


def test_a_microsecond_count_near_the_epoch_is_read_by_its_schema_not_its_size() -> None:
    columns = {"at": {"type": "int64", "name": "io.debezium.time.MicroTimestamp"}}
    item = build(ORDER, order(at=1_000_000), columns=columns)
    assert sent(item)["orderDate"] == "1970-01-01T00:00:01.000Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2026-01-02T03:04:05.678901Z", AT_TEXT),
        ("2026-01-02 03:04:05.678901", AT_TEXT),  # no offset: UTC
        ("2026-01-01T22:04:05.678-05:00", AT_TEXT),
        ("2026-01-02", "2026-01-02T00:00:00.000Z"),
        (AT_US // 1000, AT_TEXT),  # milliseconds, by magnitude
        (AT_US, AT_TEXT),  # microseconds
        (AT_US * 1000, AT_TEXT),  # nanoseconds
        (20455, "2026-01-02T00:00:00.000Z"),  # days
        (10**13, "1970-04-26T17:46:40.000Z"),  # the smallest read as microseconds
        (10**16, "1970-04-26T17:46:40.000Z"),  # the smallest read as nanoseconds
        (10**5, "1970-01-01T00:01:40.000Z"),  # the smallest read as milliseconds
    ],
)
def test_without_a_schema_text_is_iso_and_numbers_are_read_by_magnitude(
    value: Any, text: str
) -> None:
    assert sent(build(ORDER, order(at=value)))["orderDate"] == text


def test_a_stated_type_reads_a_column_without_a_schema() -> None:
    mapping = {**ORDER, "orderDate": {"column": "at", "type": "timestamp-micros"}}
    assert sent(build(mapping, order(at=1_000_000)))["orderDate"] == "1970-01-01T00:00:01.000Z"


def test_a_future_time_is_sent_as_now_and_said() -> None:
    future = build(ORDER, order(at="2027-01-01T00:00:00Z"))
    assert sent(future)["orderDate"] == NOW_TEXT
    assert future.clamped == ("orderDate",)
    present = build(ORDER, order(at=NOW_TEXT))
    assert sent(present)["orderDate"] == NOW_TEXT
    assert present.clamped == ()


def test_a_future_transaction_time_is_clamped_too() -> None:
    item = build(
        {"customerId": "c", "transactionId": "t", "transactionTime": "at", "points": "p"},
        {"c": 1, "t": "r1", "at": 4_102_444_800_000, "p": 10},  # 2100, in milliseconds
        Operation.REDEEM,
    )
    assert sent(item)["transactionTime"] == NOW_TEXT
    assert item.clamped == ("transactionTime",)


@pytest.mark.parametrize(
    ("columns", "value", "error"),
    [
        (None, "yesterday", "orderDate: 'yesterday' is not an ISO 8601 date-time"),
        (None, True, "orderDate: 'True' is not a date-time"),
        (None, float("nan"), "orderDate: cannot convert float NaN to integer"),
        (None, 1e300, "orderDate: 10000000000000000525... ms from 1970-01-01 is past the year"),
        (
            None,
            10**30,
            "orderDate: 10000000000000000000... ms from 1970-01-01 is past the year 9999",
        ),
        (
            {"at": {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}},
            "AQ==",
            ("orderDate: a decimal column cannot be a date-time"),
        ),
        (
            {"at": {"type": "int64", "name": "io.debezium.time.MicroTime"}},
            5,
            ("orderDate: a time column cannot be a date-time"),
        ),
    ],
)
def test_a_value_that_is_no_date_time_is_refused_naming_the_field(
    columns: dict[str, dict[str, Any]] | None, value: Any, error: str
) -> None:
    with pytest.raises(Invalid) as raised:
        build(ORDER, order(at=value), columns=columns)
    assert str(raised.value).startswith(error)


# --- numbers ----------------------------------------------------------------------------------

DECIMAL = {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal"}


@pytest.mark.parametrize(
    ("columns", "value", "number"),
    [
        ({"total": {**DECIMAL, "parameters": {"scale": "2"}}}, "MDk=", "123.45"),
        (
            {"total": {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"}},
            {
                "scale": 3,
                "value": "AeJA",
            },
            "123.456",
        ),
        (None, "12345678901234567890.12", "12345678901234567890.12"),  # string mode
        (None, 12, "12"),
        (None, 12.5, "12.5"),
    ],
)
def test_amounts_stay_exact_numbers(
    columns: dict[str, dict[str, Any]] | None, value: Any, number: str
) -> None:
    body = sent(build(ORDER, order(total=value), columns=columns))
    assert body["totalPaid"] == decimal.Decimal(number)
    assert not isinstance(body["totalPaid"], str)


def test_points_are_whole_numbers() -> None:
    mapping = {"customerId": "c", "transactionId": "t", "transactionTime": "at", "points": "p"}
    row = {"c": 1, "t": "r1", "at": "2026-01-01T00:00:00Z", "p": "12.00"}
    assert sent(build(mapping, row, Operation.REDEEM))["points"] == 12
    with pytest.raises(Invalid, match=r"^points: 2\.5 is not an integer"):
        build(mapping, {**row, "p": 2.5}, Operation.REDEEM)


def test_a_text_that_is_no_number_is_refused_naming_the_field() -> None:
    with pytest.raises(Invalid, match=r"^totalPaid: 'lots' is not a decimal number"):
        build(ORDER, order(total="lots"))


def test_fields_the_model_does_not_declare_pass_through_as_the_column_holds_them() -> None:
    mapping = {**ORDER, "totalDiscount": "discount", "lineItems": "lines", "merchant.uniqueId": "s"}
    columns = {
        "discount": {**DECIMAL, "parameters": {"scale": "2"}},
        "lines": {"type": "string", "name": "io.debezium.data.Json"},
    }
    row = order(discount="AQ==", lines='[{"sku": "a", "qty": 2}]', s=7)
    body = sent(build(mapping, row, columns=columns))
    assert body["totalDiscount"] == decimal.Decimal("0.01")
    assert body["lineItems"] == [{"sku": "a", "qty": 2}]
    assert body["merchant"] == {"uniqueId": 7}


def test_a_key_inside_a_json_column_is_read() -> None:
    mapping = {**ORDER, "customerId": "buyer.id"}
    row = order(buyer='{"id": 7, "name": "Ada"}')
    assert build(mapping, row).customer_id == "7"


# --- events -----------------------------------------------------------------------------------

EVENTS = {"customerId": "c", "events": "events"}
FOLDED = {"customerId": "c", "events.$name": "name", "events.$metadata": "meta"}


def events(mapping: dict[str, Any], row: dict[str, Any], **columns: dict[str, Any]) -> Any:
    return sent(build(mapping, row, Operation.EVENTS, columns or None))["events"]


def test_an_events_column_holds_the_events_object() -> None:
    row = {"c": 1, "events": '{"purchase": {"sku": "a"}, "visit": {}}'}
    assert events(EVENTS, row) == {"purchase": {"sku": "a"}, "visit": {}}
    json_column = {"type": "string", "name": "io.debezium.data.Json"}
    assert events(EVENTS, row, events=json_column) == {"purchase": {"sku": "a"}, "visit": {}}


def test_a_name_and_a_metadata_column_fold_into_one_event() -> None:
    assert events(FOLDED, {"c": 1, "name": "purchase", "meta": '{"amount": 12.50}'}) == {
        "purchase": {"amount": decimal.Decimal("12.50")}
    }
    assert events(FOLDED, {"c": 1, "name": "visit", "meta": {"page": "/"}}) == {
        "visit": {"page": "/"}
    }


@pytest.mark.parametrize(
    "row", [{"c": 1, "name": "visit", "meta": None}, {"c": 1, "name": "visit"}]
)
def test_null_or_absent_metadata_is_an_empty_object(row: dict[str, Any]) -> None:
    assert events(FOLDED, row) == {"visit": {}}


def test_metadata_need_not_be_mapped() -> None:
    assert events({"customerId": "c", "events.$name": "name"}, {"c": 1, "name": "v"}) == {"v": {}}


@pytest.mark.parametrize(
    ("mapping", "row", "error"),
    [
        (FOLDED, {"c": 1, "name": "v", "meta": "[1, 2]"}, "events.$metadata: must be an object"),
        (FOLDED, {"c": 1, "name": None}, "events: required, but the column is NULL or absent"),
        (EVENTS, {"c": 1, "events": "{}"}, "events: Dictionary should have at least 1 item"),
        (EVENTS, {"c": 1, "events": '{"v": 3}'}, "events.v: Input should be an object"),
        (EVENTS, {"c": 1, "events": '"v"'}, "events: must be an object"),
    ],
)
def test_events_that_are_no_events_object_are_refused(
    mapping: dict[str, Any], row: dict[str, Any], error: str
) -> None:
    with pytest.raises(Invalid) as raised:
        build(mapping, row, Operation.EVENTS)
    assert str(raised.value).startswith(error)


# --- the item model ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (order(id=None), "orderId: required, but the column is NULL or absent"),
        (order(customer_id=""), "customerId: no customer id"),
        (order(customer_id=None), "customerId: required, but the column is NULL or absent"),
        (order(total=True), "totalPaid: True is not a number"),
    ],
)
def test_a_row_the_model_refuses_is_refused_naming_the_field(
    row: dict[str, Any], error: str
) -> None:
    with pytest.raises(Invalid) as raised:
        build(ORDER, row)
    assert str(raised.value).startswith(error)


def test_a_redemption_of_nothing_is_refused() -> None:
    mapping = {
        "customerId": "c",
        "transactionId": "t",
        "transactionTime": "at",
        "amount": "a",
        "points": "p",
    }
    row = {"c": 1, "t": "r", "at": "2026-01-01T00:00:00Z", "a": None, "p": None}
    with pytest.raises(Invalid, match="a redemption needs one of amount, points or holdReference"):
        build(mapping, row, Operation.REDEEM)


def test_a_value_debezium_did_not_carry_is_refused_not_left_out() -> None:
    with pytest.raises(Invalid, match=r"^totalPaid: column total was not carried by the change"):
        build(ORDER, order(total=UNAVAILABLE_VALUE))
    with pytest.raises(Invalid, match=r"^skus: column skus was not carried by the change"):
        build({**ORDER, "skus": "skus"}, order(skus=[UNAVAILABLE_VALUE]))
    assert sent(build({**ORDER, "skus": "skus"}, order(skus=["a", "b"])))["skus"] == ["a", "b"]


def test_a_cashback_item_carries_its_contact_fields() -> None:
    mapping = {
        "customerId": "c",
        "transactionId": "t",
        "transactionTime": "at",
        "amount": "a",
        "email": "mail",
    }
    row = {"c": 5, "t": "tx-1", "at": "2026-01-01T00:00:00Z", "a": "9.90", "mail": "a@b.c"}
    assert sent(build(mapping, row, Operation.CASHBACK)) == {
        "customerId": "5",
        "transactionId": "tx-1",
        "amount": decimal.Decimal("9.90"),
        "email": "a@b.c",
        "transactionTime": "2026-01-01T00:00:00.000Z",
    }


def test_customers_are_not_built_here() -> None:
    mapping = item_mapping(Operation.ORDERS, ORDER, "mapping")
    customers = type(mapping)(Operation.CUSTOMERS, mapping.fields)
    with pytest.raises(ValueError, match=r"customers are built by service\.delivery\.rows"):
        ItemBuilder(customers)


# --- the mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "mapping", "error"),
    [
        (
            Operation.ORDERS,
            {k: v for k, v in ORDER.items() if k != "orderId"},
            ("orderId is not mapped, and orders needs it (its natural key"),
        ),
        (
            Operation.ORDERS,
            {k: v for k, v in ORDER.items() if k != "totalPaid"},
            ("totalPaid is not mapped, and orders needs it (the OpenAPI requires it)"),
        ),
        (
            Operation.CASHBACK,
            {"customerId": "c", "transactionTime": "t", "amount": "a"},
            ("transactionId is not mapped, and cashback needs it (its natural key"),
        ),
        (
            Operation.CASHBACK,
            {"customerId": "c", "transactionId": "i", "amount": "a"},
            ("transactionTime is not mapped, and cashback needs it (the OpenAPI requires it)"),
        ),
        (
            Operation.REDEEM,
            {"customerId": "c", "transactionId": "i", "transactionTime": "t"},
            ("maps none of amount, points or holdReference, and a redemption needs one"),
        ),
        (
            Operation.REDEEM,
            {"transactionId": "i", "transactionTime": "t", "points": "p"},
            ("customerId is not mapped, and redeem needs it"),
        ),
        (Operation.EVENTS, {"customerId": "c"}, "events is not mapped, and events needs it"),
        (
            Operation.BALANCE_ADJUSTMENT,
            {"customerId": "c"},
            ("amount is not mapped, and balance-adjustment needs it"),
        ),
        (Operation.EVENTS, {**FOLDED, "events": "e"}, "events is mapped whole and folded"),
        (
            Operation.EVENTS,
            {"customerId": "c", "events.$metadata": "m"},
            ("events.$metadata is mapped without events.$name"),
        ),
        (
            Operation.EVENTS,
            {**EVENTS, "events.purchase": "p"},
            ("events.purchase: events is mapped whole (events: a JSON column"),
        ),
        (Operation.ORDERS, {**ORDER, "$name": "n"}, "$name: only events.$name and"),
        (
            Operation.ORDERS,
            {**ORDER, "merchant": "m", "merchant.uniqueId": "u"},
            ("merchant.uniqueId: merchant is mapped whole too"),
        ),
        (Operation.ORDERS, {**ORDER, "a..b": "x"}, "a..b: 'a..b' is not an API field path"),
        (Operation.ORDERS, {**ORDER, "orderId": 3}, "orderId: must be a column path"),
        (Operation.ORDERS, {**ORDER, "orderId": "a..b"}, "orderId: 'a..b' is not a column path"),
        (
            Operation.ORDERS,
            {**ORDER, "orderId": {"column": "i", "type": "uuid"}},
            ("orderId: unknown type 'uuid'"),
        ),
        (Operation.ORDERS, {}, "mapping must map the orders item's fields to source columns"),
        (Operation.ORDERS, ["customerId"], "mapping must map the orders item's fields"),
        (Operation.ORDERS, None, "mapping must map the orders item's fields"),
    ],
)
def test_a_mapping_mistake_is_one_sentence_naming_the_field(
    operation: Operation, mapping: Any, error: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        item_mapping(operation, mapping, "mapping")
    message = str(raised.value)
    assert message.startswith("mapping")
    assert error in message
    assert "\n" not in message


# --- any row ----------------------------------------------------------------------------------

COLUMNS = ("c", "id", "at", "total", "name", "meta", "p")
ANY_MAPPING = {
    Operation.ORDERS: ORDER | {"customerId": "c", "totalPaid": "total", "x.y": "meta"},
    Operation.REDEEM: {
        "customerId": "c",
        "transactionId": "id",
        "transactionTime": "at",
        "points": "p",
        "holdReference": "name",
    },
    Operation.EVENTS: {"customerId": "c", "events.$name": "name", "events.$metadata": "meta"},
    Operation.BALANCE_ADJUSTMENT: {"customerId": "c", "amount": "total", "reason": "meta.why"},
}
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2026-01-01T00:00:00Z", "12.50", '{"a": {}}', "MDk=", UNAVAILABLE_VALUE])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(ANY_MAPPING, key=str)),
    st.dictionaries(st.sampled_from(COLUMNS), values, max_size=7),
)
def test_any_row_is_an_item_its_model_accepts_or_invalid(
    operation: Operation, row: dict[str, Any]
) -> None:
    try:
        item = build(ANY_MAPPING[operation], row, operation)
    except Invalid:
        return
    model = operation.facts.item
    assert model is not None
    model.model_validate_json(item.payload)
    assert item.customer_id == sent(item)["customerId"]
