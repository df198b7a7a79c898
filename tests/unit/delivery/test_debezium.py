"""Logical types (service.delivery.debezium) and the decoder's schema cache."""

from __future__ import annotations

import decimal
import json
from typing import Any

import orjson
import pytest

from service.delivery import decoding
from service.delivery.debezium import PLAIN, ColumnType, Kind, column_type, row_columns
from service.delivery.decoding import Customer, Decoder, Reject, Skip
from service.delivery.fields import guess_date
from service.delivery.mapping import FieldMapping
from service.labels import DeadLetterReason


def FlatDecoder(*args: Any, **kwargs: Any) -> Decoder:
    """The tutorial's flat shape: these tests are about reading Debezium's types, which do
    not depend on the shape, and compare with field names as the database has them; the
    nested default places the same values (tests/unit/delivery/test_shapes.py)."""
    return Decoder(*args, shape="flat", **kwargs)


def field(name: str, kind: str, logical: str | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, "optional": True, "field": name, **extra}
    if logical:
        schema["name"] = logical
    return schema


def envelope_schema(*columns: dict[str, Any]) -> dict[str, Any]:
    row = {"type": "struct", "fields": list(columns), "optional": True, "name": "t.Value"}
    return {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {"type": "string", "optional": False, "field": "op"},
        ],
        "optional": False,
        "name": "t.Envelope",
    }


def wrapped(schema: dict[str, Any], after: dict[str, Any] | None, op: str = "c") -> bytes:
    """Exactly the JSON converter's layout: compact, schema first."""
    return orjson.dumps({"schema": schema, "payload": {"before": None, "after": after, "op": op}})


def decoded(result: object) -> dict[str, Any]:
    assert isinstance(result, Customer), result
    customer: dict[str, Any] = json.loads(result.payload, parse_float=decimal.Decimal)
    return customer


ID = field("customer_id", "int64")
ZONED = "io.debezium.time.ZonedTimestamp"
DECIMAL = "org.apache.kafka.connect.data.Decimal"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (field("d", "int32", "io.debezium.time.Date"), -1, "1969-12-31"),
        (field("d", "int32", "org.apache.kafka.connect.data.Date"), 19000, "2022-01-08"),
        (field("d", "int64", "io.debezium.time.Timestamp"), 1, "1970-01-01"),
        (field("d", "int64", "org.apache.kafka.connect.data.Timestamp"), -1, "1969-12-31"),
        (field("d", "int64", "io.debezium.time.MicroTimestamp"), 45_792_000_000_000, "1971-06-15"),
        (field("d", "int64", "io.debezium.time.NanoTimestamp"), 86_400 * 10**9, "1970-01-02"),
        (field("d", "string", ZONED), "2025-01-01T03:30:00.000000Z", "2025-01-01"),
        (field("d", "string", ZONED), "2024-12-31T22:30:00-05:00", "2025-01-01"),
        (field("d", "string", "io.debezium.time.IsoDate"), "2024-02-29Z", "2024-02-29"),
    ],
)  # fmt: skip
def test_a_date_field_reads_each_logical_type_by_its_name(
    column: dict[str, Any], value: object, expected: str
) -> None:
    decoder = FlatDecoder(FieldMapping({"joinDate": "d"}))
    value_bytes = wrapped(envelope_schema(ID, column), {"customer_id": 1, "d": value})
    assert decoded(decoder.decode(value_bytes))["joinDate"] == expected


@pytest.mark.parametrize(
    ("column", "value", "text", "attribute"),
    [
        (field("n", "bytes", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "2"}),
         "MDk=", "123.45", decimal.Decimal("123.45")),
        (field("n", "bytes", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "0"}),
         "AA==", "0", 0),
        (field("n", "bytes", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "-2"}),
         "BQ==", "500", 500),  # PostgreSQL 16 allows numeric(p, -s)
        (field("n", "double", "org.apache.kafka.connect.data.Decimal", parameters={"scale": "2"}),
         1.5, "1.5", decimal.Decimal("1.5")),  # JsonConverter decimal.format=NUMERIC
        (field("n", "struct", "io.debezium.data.VariableScaleDecimal"),
         {"scale": 3, "value": "/w=="}, "-0.001", decimal.Decimal("-0.001")),
        (field("n", "int64", "io.debezium.time.MicroTimestamp"), 1_500_000,
         "1970-01-01T00:00:01.500000", "1970-01-01T00:00:01.500000"),
        (field("n", "int64", "io.debezium.time.MicroTime"), 3_723_000_001, "01:02:03.000001",
         "01:02:03.000001"),
        (field("n", "int32", "io.debezium.time.Date"), 0, "1970-01-01", "1970-01-01"),
        (field("n", "string", "io.debezium.data.Json"), '{"a": 1}', '{"a": 1}', {"a": 1}),
        (field("n", "boolean"), True, "true", True),
    ],
)  # fmt: skip
def test_typed_columns_become_text_or_custom_attributes(
    column: dict[str, Any], value: object, text: str, attribute: object
) -> None:
    decoder = FlatDecoder(FieldMapping({"city": "n", "custom.n": "n"}))
    value_bytes = wrapped(envelope_schema(ID, column), {"customer_id": 1, "n": value})
    customer = decoded(decoder.decode(value_bytes))
    assert customer["city"] == text
    assert customer["custom"] == {"n": attribute}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        (field("d", "bytes", DECIMAL, parameters={"scale": "2"}), "MDk="),
        (field("d", "int64", "io.debezium.time.MicroTime"), 1),
        (field("d", "int64", "io.debezium.time.MicroTimestamp"), "not a number"),
        (field("d", "int32", "io.debezium.time.Date"), 10**9),
    ],
)  # fmt: skip
def test_a_type_that_cannot_be_a_date_is_dead_lettered_naming_the_field(
    column: dict[str, Any], value: object
) -> None:
    decoder = FlatDecoder(FieldMapping({"dateOfBirth": "d"}))
    result = decoder.decode(wrapped(envelope_schema(ID, column), {"customer_id": 1, "d": value}))
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert result.error.startswith("dateOfBirth: ")


def test_arrays_read_their_items_type_and_drop_null_elements() -> None:
    tags = field("tags", "array", items={"type": "string", "optional": True})
    days = field("days", "array", items={"type": "int32", "name": "io.debezium.time.Date"})
    decoder = FlatDecoder(FieldMapping({"custom.days": "days"}))
    value = wrapped(
        envelope_schema(ID, tags, days),
        {"customer_id": 1, "tags": ["a", None, ""], "days": [0, None]},
    )
    assert decoded(decoder.decode(value)) == {
        "customerId": "1",
        "tags": ["a", ""],
        "custom": {"days": ["1970-01-01", None]},
    }


def test_column_types_are_read_from_the_after_struct_or_a_flattened_row() -> None:
    date = field("d", "int32", "io.debezium.time.Date")
    assert row_columns(envelope_schema(ID, date)) == {"d": ColumnType(Kind.DATE)}
    flat = {"type": "struct", "fields": [ID, date], "name": "t.Value"}  # ExtractNewRecordState
    assert row_columns(flat) == {"d": ColumnType(Kind.DATE)}
    assert row_columns({"type": "string"}) is None
    assert column_type(field("x", "string", "io.debezium.data.Uuid")) is PLAIN
    assert column_type(field("x", "string", "io.debezium.data.Enum")) is PLAIN


def test_without_a_schema_dates_are_guessed_where_each_unit_is_plausible() -> None:
    assert guess_date(19_000) == "2022-01-08"  # days
    assert guess_date(1_700_000_000_000) == "2023-11-14"  # ms
    assert guess_date(45_792_000_000_000) == "1971-06-15"  # µs: was read as ms (year 3421)
    assert guess_date(-100_000_000_000_000) == "1966-10-31"  # µs before 1970
    assert guess_date(1_700_000_000_000_000_000) == "2023-11-14"  # ns
    assert guess_date(1) == "1970-01-02"  # 1 ms after the epoch reads as a day: documented


# --- the schema cache --------------------------------------------------------------------------

SCHEMA = envelope_schema(ID, field("d", "int32", "io.debezium.time.Date"))


def test_a_schema_is_parsed_once_then_recognised_by_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the first record's value is parsed whole: the others' payloads alone."""
    decoder = FlatDecoder(FieldMapping({"joinDate": "d"}))
    parsed: list[int] = []
    for name in ("_read_json", "_read_envelope"):  # every parse the decoder makes
        real = getattr(decoding, name)
        spy = lambda b, real=real: parsed.append(len(b)) or real(b)  # noqa: E731
        monkeypatch.setattr(decoding, name, spy)
    values = [wrapped(SCHEMA, {"customer_id": day, "d": day}) for day in range(5)]
    for day, value in enumerate(values):
        assert decoded(decoder.decode(value))["joinDate"] == f"1970-01-0{day + 1}"
    whole = [size for size in parsed if size == len(values[0])]
    assert len(whole) == 1, parsed


def test_other_spellings_of_the_same_event_decode_the_same() -> None:
    decoder = FlatDecoder(FieldMapping({"joinDate": "d"}))
    after = {"customer_id": 7, "d": 1}
    event = {"schema": SCHEMA, "payload": {"before": None, "after": after, "op": "u"}}
    spaced = json.dumps(event).encode()  # ", " and ": ": not the converter's compact form
    reordered = orjson.dumps({"payload": event["payload"], "schema": SCHEMA})
    with_newline = orjson.dumps(event) + b"\n"
    for value in (orjson.dumps(event), spaced, reordered, with_newline, spaced):
        assert decoded(decoder.decode(value)) == {"customerId": "7", "joinDate": "1970-01-02"}


def test_a_payload_key_inside_the_row_or_the_schema_does_not_confuse_the_split() -> None:
    payload_column = field("payload", "string")
    schema = envelope_schema(ID, field("d", "int32", "io.debezium.time.Date"), payload_column)
    schema["parameters"] = {"x": "1", "payload": "a parameter named payload"}
    decoder = FlatDecoder(FieldMapping({"joinDate": "d", "custom.p": "payload"}))
    for _ in range(2):  # learned, then from the cache
        after = {"customer_id": 1, "d": 2, "payload": '{"payload":1}'}
        value = wrapped(schema, after)
        assert value.count(b',"payload":') == 3
        assert decoded(decoder.decode(value)) == {
            "customerId": "1",
            "joinDate": "1970-01-03",
            "custom": {"p": '{"payload":1}'},
        }


def test_a_known_schema_followed_by_a_broken_payload_is_still_invalid_json() -> None:
    decoder = FlatDecoder()
    decoder.decode(wrapped(SCHEMA, {"customer_id": 1}))
    broken = wrapped(SCHEMA, {"customer_id": 1})[:-3] + b"}"
    result = decoder.decode(broken)
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.INVALID_JSON


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "_MAX_SCHEMAS", 4)
    decoder = FlatDecoder()
    for version in range(20):
        schema = {**SCHEMA, "version": version}
        assert decoded(decoder.decode(wrapped(schema, {"customer_id": version})))
    cached = sum(map(len, decoder._by_length.values())) + len(decoder._by_dump)
    assert cached <= 4


def test_schema_wrapped_tombstones_deletes_and_flattened_deletes() -> None:
    assert Decoder().decode(orjson.dumps({"schema": SCHEMA, "payload": None})) == Skip("tombstone")
    assert FlatDecoder().decode(wrapped(SCHEMA, None, op="d")) == Skip("delete")
    # ExtractNewRecordState with delete.handling.mode=rewrite: the row, marked deleted.
    flattened = orjson.dumps({"customer_id": 1, "__deleted": "true"})
    assert FlatDecoder().decode(flattened) == Skip("delete")
    rejected = FlatDecoder(delete_policy="dead-letter").decode(flattened)
    assert isinstance(rejected, Reject)
    assert rejected.reason is DeadLetterReason.UNSUPPORTED_OPERATION
    kept = orjson.dumps({"customer_id": 1, "__deleted": "false"})
    assert decoded(FlatDecoder().decode(kept)) == {"customerId": "1"}


def test_the_unavailable_placeholder_is_left_out_even_in_arrays_and_when_configured() -> None:
    row = {
        "customer_id": 1,
        "name": "__debezium_unavailable_value",
        "tags": ["__debezium_unavailable_value"],
        "email": "a@example.com",
    }
    assert decoded(FlatDecoder().decode(orjson.dumps(row))) == {
        "customerId": "1",
        "email": "a@example.com",
    }
    custom = FlatDecoder(unavailable_value="~toasted~")
    assert decoded(custom.decode(orjson.dumps({"customer_id": 1, "name": "~toasted~"}))) == {
        "customerId": "1"
    }
    mapped = FlatDecoder(FieldMapping({"custom.notes": "notes", "tags": "labels"}))
    placeholder = "__debezium_unavailable_value"
    row = {"customer_id": 1, "notes": placeholder, "labels": [placeholder]}
    assert decoded(mapped.decode(orjson.dumps(row))) == {"customerId": "1"}


def test_a_placeholder_names_its_field_unknown_and_a_null_does_not() -> None:
    """Coalescing fills what a change could not say from an earlier change, never a NULL."""
    placeholder = "__debezium_unavailable_value"
    mapping = FieldMapping(
        {"custom.notes": "notes", "tags": "labels", "customerAttributes.city": "town"}
    )
    row = {
        "customer_id": 1,
        "custom": placeholder,
        "name": None,
        "notes": placeholder,
        "labels": [placeholder],
        "town": None,
    }
    result = Decoder(mapping).decode(orjson.dumps({"op": "u", "after": row}))
    assert isinstance(result, Customer)
    assert set(result.unknown) == {
        ("customerAttributes", "custom"),
        ("customerAttributes", "custom", "notes"),
        ("tags",),
    }
    plain = Decoder().decode(orjson.dumps({"op": "u", "after": {"customer_id": 1, "name": None}}))
    assert isinstance(plain, Customer)
    assert plain.unknown == ()


def test_two_schemas_of_one_length_are_told_apart_by_their_bytes() -> None:
    as_date = envelope_schema(ID, field("d", "int64", "io.debezium.time.Date"))
    as_time = envelope_schema(ID, field("d", "int64", "io.debezium.time.Time"))
    assert len(orjson.dumps(as_date)) == len(orjson.dumps(as_time))
    decoder = FlatDecoder(FieldMapping({"joinDate": "d", "city": "d"}))
    for _ in range(2):
        date = decoded(decoder.decode(wrapped(as_date, {"customer_id": 1, "d": 1})))
        assert date["city"] == "1970-01-02"
        time = decoder.decode(wrapped(as_time, {"customer_id": 1, "d": 1}))
        assert isinstance(time, Reject)
        assert "a time of day cannot become a date field" in time.error
