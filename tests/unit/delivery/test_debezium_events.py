"""Real Debezium output (tests/fixtures/debezium) decodes to what the database holds.

Every fixture is what Debezium 3.6.1 put on a topic for a known SQL change, captured under a
converter set-up users run (schemas on and off, the three ``decimal.handling.mode``\\s,
``time.precision.mode=connect``, NULLs kept or replaced by defaults, TRUNCATE emitted); its
``expected_api`` is the customer the database row should become, read from the database. The
decoder must agree field for field, except where the topic itself does not carry the
database's value: a NULL the converter replaced by the column's DEFAULT, and a TOASTed value
the WAL left out (both documented in the README).
"""

from __future__ import annotations

import decimal
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.delivery.debezium import stated_type
from service.delivery.decoding import Customer, Decoder, Reject, Skip
from service.delivery.mapping import FieldMapping, Source
from service.gameball.customer import CustomerShape

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "debezium"
ID_COLUMN_IS_ID = ("customers", "customers_uuid")  # the others name it customer_id


@cache
def fixture(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


FILES = sorted(FIXTURES.glob("*/*.json"))


def table_of(record: dict[str, Any]) -> str:
    return str(record["topic"]).rsplit(".", 1)[1]


def decoder_for(table: str, shape: CustomerShape = "flat", **extra: str | Source) -> Decoder:
    """What a user runs for this table: ``customerId: id`` where the key column is ``id``."""
    entries: dict[str, str | Source] = {"customerId": "id"} if table in ID_COLUMN_IS_ID else {}
    return Decoder(FieldMapping({**entries, **extra}), shape=shape)


def decode(
    record: dict[str, Any], decoder: Decoder | None = None, shape: CustomerShape = "flat"
) -> Any:
    value = record["value"]
    result = (decoder or decoder_for(table_of(record), shape)).decode(
        None if value is None else value.encode()
    )
    if isinstance(result, Customer):
        customer = orjson.loads(result.payload)
        return customer if shape == "flat" else flattened(customer, result.tags)
    return result


def flattened(customer: dict[str, Any], tags: list[str] | None) -> dict[str, Any]:
    """A nested customer in the flat names the fixtures' ``expected_api`` uses; the merge
    keys must be the same on top and in the profile."""
    attributes = customer.pop("customerAttributes", {})
    for key in ("email", "mobile"):
        assert attributes.pop(key, None) == customer.get(key), key
    if "displayName" in attributes:
        attributes["name"] = attributes.pop("displayName")
    assert not set(attributes) & set(customer), "a field both on top and in the profile"
    flat = {**customer, **attributes}
    if tags is not None:
        flat["tags"] = tags
    return flat


def default_literal(column: dict[str, Any]) -> Any:
    """A column's DEFAULT as the API would see it (``'EG'::text`` → ``EG``), or a marker."""
    text = column.get("default")
    if text is None:
        return "<no default>"
    match = re.fullmatch(r"'(.*)'::[\w ]+", text)
    return match.group(1) if match else text


@pytest.mark.parametrize("shape", ["flat", "nested"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_captured_record_becomes_what_the_database_holds(
    path: Path, shape: CustomerShape
) -> None:
    """In both shapes: the nested customer is compared in the flat names (:func:`flattened`)."""
    doc = fixture(path)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in doc["records"]:
        outcome = decode(record, shape=shape)
        assert not isinstance(outcome, Reject), (record["value"] or "")[-600:]
        if isinstance(outcome, dict):
            latest[(table_of(record), outcome["customerId"])] = outcome
    replaced_nulls = doc["setup"] != "nulls-kept"  # replace.null.with.default left at true
    for expected in doc["expected_api"]:
        table, truth = expected["table"], expected["customer"]
        got = latest.get((table, truth["customerId"]))
        if doc["case"] in ("delete", "delete-full-identity", "truncate"):
            continue  # the row is gone; what the API holds of it is the earlier change's
        assert got is not None, f"no customer {truth['customerId']} of {table} decoded"
        columns = doc["columns"][table]["columns"]
        for field in sorted(set(truth) | set(got)):
            if got.get(field) == truth.get(field):
                continue
            column = columns.get(re.sub(r"(?<!^)(?=[A-Z])", "_", field).lower(), {})
            if replaced_nulls and field not in truth and got[field] == default_literal(column):
                continue  # a NULL the converter turned into the column's DEFAULT
            if doc["case"] == "toast-unchanged" and field == "custom" and field not in got:
                continue  # the unchanged TOASTed value is not in the WAL: the API keeps its own
            raise AssertionError(
                f"{table} {truth['customerId']} {field}: decoded {got.get(field)!r}, "
                f"the database holds {truth.get(field)!r}"
            )


def records_of(setup: str, case: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = fixture(FIXTURES / setup / f"{case}.json")["records"]
    return records


def test_timestamps_near_1970_are_read_by_their_logical_type_not_their_size() -> None:
    """``timestamp`` 1971-06-15 is 4.6e13 µs: guessed as ms it was the year 3421."""
    for setup in ("json-schemas", "json-plain", "time-connect", "decimal-string"):
        edge = next(r for r in records_of(setup, "snapshot") if '"id":3' in r["key"])
        assert decode(edge)["joinDate"] == "1971-06-15"
    # timestamp(3) one millisecond after the epoch: io.debezium.time.Timestamp, milliseconds.
    created = decoder_for("customers", joinDate="created_at")
    edge = next(r for r in records_of("json-schemas", "snapshot") if '"id":3' in r["key"])
    assert decode(edge, created)["joinDate"] == "1970-01-01"


def exact_numbers(payload: dict[str, Any]) -> Any:
    return json.loads(json.dumps(payload), parse_float=decimal.Decimal)


def custom_of(record: dict[str, Any], decoder: Decoder) -> dict[str, Any]:
    result = decoder.decode(record["value"].encode())
    assert isinstance(result, Customer), result
    custom: dict[str, Any] = json.loads(result.payload, parse_float=decimal.Decimal)["custom"]
    return custom


@pytest.mark.parametrize("setup", ["json-schemas", "time-connect", "nulls-kept"])
def test_numerics_reach_custom_as_exact_numbers(setup: str) -> None:
    """numeric(10,2) arrives as base64 of the unscaled integer, unscaled numeric as
    {"scale", "value"}: both become JSON numbers with every digit (28 here)."""
    decoder = decoder_for(
        "customers", **{"custom.balance": "balance", "custom.points": "lifetime_points"}
    )
    by_id = {
        json.loads(r["key"])["payload"]["id"]: r
        for r in records_of(setup, "snapshot")
        if table_of(r) == "customers"
    }
    assert custom_of(by_id[1], decoder) == {
        "tier": "gold",
        "points": decimal.Decimal("98765.4321"),
        "nested": {"a": [1, 2]},
        "balance": decimal.Decimal("1234.56"),
    }
    edge = custom_of(by_id[3], decoder)
    assert edge["balance"] == decimal.Decimal("-0.01")
    assert str(edge["points"]) == "12345678901234567890.123456789"


def test_a_numeric_id_is_the_right_customer() -> None:
    """numeric(12,0) 1000000 is base64 "D0JA": read as text it was customer "D0JA"."""
    decoder = decoder_for("customers_text", customerId="points")
    [row] = [r for r in records_of("json-schemas", "snapshot") if '"C-0001"' in (r["key"] or "")]
    assert decode(row, decoder)["customerId"] == "1000000"
    double = [r for r in records_of("decimal-double", "snapshot") if '"C-0001"' in r["key"]]
    assert decode(double[0], decoder)["customerId"] == "1000000"


def test_without_schemas_the_mapping_file_states_what_cannot_be_told_apart() -> None:
    """Schemas off: numeric(10,2) is a base64 string like any text, and timestamp(3) one ms
    after the epoch is 1, which reads as a day. Stated types make both exact."""
    [edge] = [r for r in records_of("json-plain", "snapshot") if r["key"] == '{"id":3}']
    guessed = decoder_for("customers", joinDate="created_at", referrerCode="balance")
    assert decode(edge, guessed)["joinDate"] == "1970-01-02"  # the documented ambiguity
    assert decode(edge, guessed)["referrerCode"] == "/w=="
    stated = decoder_for(
        "customers",
        joinDate=Source(("created_at",), stated_type("timestamp-millis", None)),
        referrerCode=Source(("balance",), stated_type("decimal", 2)),
        **{"custom.balance": Source(("balance",), stated_type("decimal", 2))},
    )
    customer = decode(edge, stated)
    assert customer["joinDate"] == "1970-01-01"
    assert customer["referrerCode"] == "-0.01"
    assert custom_of(edge, stated)["balance"] == decimal.Decimal("-0.01")


def test_string_and_double_decimal_modes() -> None:
    """decimal.handling.mode=string gives "1234.56" (a plain string in the schema: only a
    stated type makes it a number), double gives 1234.56 (28 digits become 17)."""
    text_mode = decoder_for(
        "customers", **{"custom.balance": Source(("balance",), stated_type("decimal", None))}
    )
    [row] = [r for r in records_of("decimal-string", "snapshot") if r["key"].endswith('{"id":1}}')]
    assert custom_of(row, text_mode)["balance"] == decimal.Decimal("1234.56")
    [row] = [r for r in records_of("decimal-double", "snapshot") if r["key"].endswith('{"id":3}}')]
    custom = custom_of(row, decoder_for("customers", **{"custom.points": "lifetime_points"}))
    assert custom["points"] == decimal.Decimal("1.2345678901234567E+19")


def test_truncate_is_skipped() -> None:
    """Emitted only with skipped.operations=none: op "t", a null key, no row."""
    [record] = records_of("truncate-emitted", "truncate")
    assert record["key"] is None
    assert decode(record) == Skip("truncate")
    assert Decoder(delete_policy="dead-letter").decode(record["value"].encode()) == Skip("truncate")


def test_an_unchanged_toasted_value_is_left_out_not_sent_and_not_dead_lettered() -> None:
    for setup in ("json-schemas", "json-plain"):
        big, renamed = records_of(setup, "toast-unchanged")
        assert "__debezium_unavailable_value" in renamed["value"]
        assert "blob" in decode(big)["custom"]
        customer = decode(renamed)
        assert customer["name"] == "Renamed"
        assert "custom" not in customer


def test_a_primary_key_change_is_a_delete_a_tombstone_and_a_create() -> None:
    outcomes = [decode(r) for r in records_of("json-schemas", "update-primary-key")]
    assert outcomes[:2] == [Skip("delete"), Skip("tombstone")]
    assert outcomes[2]["customerId"] == "20"


def test_keys_are_objects_of_the_key_columns_never_read_as_ids() -> None:
    """The decoder takes the id from the row: a key is {"id": 101}, or schema-wrapped."""
    record = records_of("json-schemas", "insert")[0]
    assert json.loads(record["key"])["payload"] == {"id": 101}
    assert decode(record)["customerId"] == "101"
