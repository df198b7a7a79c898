"""FIELD_MAPPING_FILE: columns, paths, stated types and custom attributes."""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.delivery.debezium import ColumnType, Kind
from service.delivery.decoding import Customer, Decoder
from service.delivery.mapping import Source, load_field_mapping
from service.errors import ConfigError
from service.gameball.customer import CustomerShape

MAPPING = """\
customerId: member_no
email: contact.mail
customerAttributes.joinDate:
  column: signed_up
  type: timestamp-micros
customerAttributes.custom.tier: tier
custom.balance: {column: balance, type: decimal, scale: 2}
custom.points: {column: points, type: decimal}
custom.since: {column: since, type: date}
custom.credit: {column: credit, type: org.apache.kafka.connect.data.Decimal, scale: 1}
"""


def decode(mapping: Path, row: dict[str, Any], shape: CustomerShape = "nested") -> dict[str, Any]:
    decoder = Decoder(load_field_mapping(mapping), shape=shape)
    result = decoder.decode(orjson.dumps({"op": "r", "after": row}))
    assert isinstance(result, Customer), result
    customer: dict[str, Any] = json.loads(result.payload, parse_float=decimal.Decimal)
    return customer


def test_a_mapping_file_states_types_and_feeds_custom_attributes(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING)
    mapping = load_field_mapping(path)
    assert mapping.fields["customerAttributes.joinDate"] == Source(
        ("signed_up",), ColumnType(Kind.TIMESTAMP, 10**6)
    )
    row = {
        "member_no": 12,
        "contact": '{"mail": "m@example.com"}',
        "signed_up": 1_000_000,  # 1 s after the epoch in µs: a guess would say 1970-01-12
        "tier": "gold",
        "balance": "MDk=",  # 123.45 as Debezium's precise mode writes it, schemas off
        "points": "98765.4321",  # decimal.handling.mode=string
        "since": 19000,
        "credit": "/w==",  # -1 at scale 1
        "email": "ignored@example.com",  # email is mapped: no fallback to the name
        "name": "Ada",  # not mapped: matched by name
        "notes": "never sent",  # not an API field, not mapped to custom
    }
    assert decode(path, row) == {
        "customerId": "12",
        "email": "m@example.com",
        "customerAttributes": {
            "displayName": "Ada",
            "email": "m@example.com",  # the merge key fills the profile's own too
            "joinDate": "1970-01-01",
            "custom": {
                "tier": "gold",
                "balance": decimal.Decimal("123.45"),
                "points": decimal.Decimal("98765.4321"),
                "since": "2022-01-08",
                "credit": decimal.Decimal("-0.1"),
            },
        },
    }


def test_custom_attributes_join_a_json_custom_column_and_win(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"custom.tier": "tier"}))
    row = {"customer_id": "a", "custom": '{"tier": "old", "x": 1}', "tier": "gold"}
    assert decode(path, row)["customerAttributes"]["custom"] == {"tier": "gold", "x": 1}
    assert decode(path, row, "flat")["custom"] == {"tier": "gold", "x": 1}
    assert "customerAttributes" not in decode(path, {"customer_id": "a", "tier": None})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("joinDate: {column: x, type: micros}", "joinDate: unknown type 'micros'"),
        ("joinDate: {type: date}", "joinDate: needs a column"),
        ("joinDate: {column: x, type: date, scale: 2}", "joinDate: only a decimal has a scale"),
        ("custom.b: {column: x, scale: 2}", "custom.b: a scale needs a type"),
        ("custom.b: {column: x, type: decimal, scale: two}", "scale must be an integer"),
        ("joinDate: {column: x, kind: date}", "unknown key(s) kind"),
        ("first.name: x", "only customerAttributes.<field> and custom attributes"),
        ("custom.: x", "only customerAttributes.<field> and custom attributes"),
        ("customerAttributes.a.b: x", "only customerAttributes.<field> and custom attributes"),
        ("email: contact..mail", "is not a column path"),
        ("email: 3", "must be a column path"),
        ("- a list", "must map API field names"),
    ],
)
def test_a_wrong_entry_is_named_in_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="FIELD_MAPPING_FILE") as raised:
        load_field_mapping(path)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
