"""The customer's shape (GAMEBALL_CUSTOMER_SHAPE) and where tags go (TAGS_SYNC).

Nested (the default): the merge keys and device fields on top, the profile inside
``customerAttributes``, typed as Gameball's reference types it; flat: the tutorial's item.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from service.config import load_settings
from service.delivery.decoding import Customer, Decoder, Reject
from service.delivery.mapping import FieldMapping, load_field_mapping
from service.errors import ConfigError
from service.gameball.customer import NESTED_ATTRIBUTES, StrictNestedCustomer
from service.labels import DeadLetterReason
from service.tools.samples import SCHEMA


def decoded(result: object) -> Customer:
    assert isinstance(result, Customer), result
    return result


def item(result: object) -> dict[str, Any]:
    customer: dict[str, Any] = orjson.loads(decoded(result).payload)
    return customer


def event(after: dict[str, Any], op: str = "c", before: Any = None) -> bytes:
    return orjson.dumps({"before": before, "after": after, "op": op, "ts_ms": 1})


SAMPLE_VALUES: dict[str, Any] = {
    "displayName": "Ada L.",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
    "mobile": "+201000000000",
    "gender": "F",
    "dateOfBirth": "1815-12-10",
    "joinDate": "2024-01-31",
    "country": "EG",
    "city": "Cairo",
    "zip": "11511",
    "preferredLanguage": "ar",
    "source": "web-shop",
    "utms": [{"source": "news"}],
    "devices": ["ios"],
    "paymentMethods": ["card"],
    "totalSpent": 1234.5,
    "avgOrderAmount": 61.7,
    "totalOrders": 20,
    "lastOrderDate": "2024-06-01T10:00:00Z",
    "channel": "web",
    "custom": {"tier": "gold"},
}


@pytest.mark.parametrize("spelling", ["camelCase", "snake_case"])
def test_every_documented_attribute_lands_in_its_place_by_name(spelling: str) -> None:
    assert set(SAMPLE_VALUES) == set(NESTED_ATTRIBUTES)
    top = {"customerId": "c1", "deviceToken": "tok", "osType": "ios", "referrerCode": "R1"}
    row = {**top, "guest": False, **SAMPLE_VALUES}
    if spelling == "snake_case":
        from service.delivery.mapping import snake_case

        row = {snake_case(key): value for key, value in row.items()}
    customer = item(Decoder().decode(event(row)))
    assert customer == {
        **top,
        "email": "ada@example.com",
        "mobile": "+201000000000",
        "guest": False,
        "customerAttributes": SAMPLE_VALUES,
    }
    StrictNestedCustomer.model_validate(customer)


def test_a_name_column_is_the_display_name_and_the_merge_keys_fill_both_places() -> None:
    row = {"customer_id": "c1", "name": "Ada", "email": "a@example.com", "mobile": "+20"}
    assert item(Decoder().decode(event(row))) == {
        "customerId": "c1",
        "email": "a@example.com",
        "mobile": "+20",
        "customerAttributes": {"displayName": "Ada", "email": "a@example.com", "mobile": "+20"},
    }


def test_numbers_are_typed_and_decimals_stay_exact() -> None:
    row = {"customer_id": "c1", "total_spent": "12345678901234567890.10", "total_orders": "7.00"}
    result = decoded(Decoder().decode(event(row)))
    assert b'"totalSpent":12345678901234567890.10' in result.payload
    assert item(result)["customerAttributes"]["totalOrders"] == 7
    assert item(Decoder().decode(event({"customer_id": "c", "channel": "POS"}))) == {
        "customerId": "c",
        "customerAttributes": {"channel": "pos"},
    }


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("total_orders", 2.5, "customerAttributes.totalOrders: 2.5 is not an integer"),
        ("totalOrders", "3.25", "customerAttributes.totalOrders: '3.25' is not an integer"),
        ("channel", "fax", "customerAttributes.channel: 'fax' is not one of mobile, pos, web"),
        ("total_spent", "lots", "customerAttributes.totalSpent: 'lots' is not a decimal"),
        ("avg_order_amount", True, "customerAttributes.avgOrderAmount: True is not a number"),
        ("guest", "maybe", "guest: 'maybe' is not a boolean"),
        ("utms", "web", "customerAttributes.utms:"),
    ],
)
def test_a_value_the_field_cannot_hold_dead_letters_the_record_naming_it(
    column: str, value: Any, error: str
) -> None:
    result = Decoder().decode(event({"customer_id": "c1", column: value}))
    assert isinstance(result, Reject), result
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert result.error.startswith(error), result.error


def test_a_typed_schema_column_reaches_a_number_exactly() -> None:
    """``numeric(10,2)`` from Debezium (base64, the schema's scale) into totalSpent."""
    wrapped = {
        "schema": {
            "type": "struct",
            "fields": [
                {"type": "string", "field": "customer_id"},
                {
                    "type": "bytes",
                    "name": "org.apache.kafka.connect.data.Decimal",
                    "parameters": {"scale": "2"},
                    "field": "total_spent",
                },
            ],
        },
        "payload": {"customer_id": "c1", "total_spent": "MDk="},
    }
    result = decoded(Decoder().decode(orjson.dumps(wrapped)))
    assert result.payload == b'{"customerId":"c1","customerAttributes":{"totalSpent":123.45}}'


# --- the mapping file names paths of the chosen shape ----------------------------------------


def mapping_file(tmp_path: Path, text: str) -> FieldMapping:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return load_field_mapping(path)


def test_mapping_paths_feed_the_profile_and_custom_through_either_spelling(tmp_path: Path) -> None:
    mapping = mapping_file(
        tmp_path,
        "customerId: id\n"
        "customerAttributes.city: address.city\n"
        "customerAttributes.email: profile_mail\n"
        "customerAttributes.custom.tier: tier\n"
        "custom.points: points\n",
    )
    row = {
        "id": 9,
        "address": '{"city": "Giza"}',
        "email": "merge@example.com",  # by name: the merge key only, the profile's is mapped
        "profile_mail": "profile@example.com",
        "tier": "gold",
        "points": 5,
        "city": "ignored: customerAttributes.city is mapped",
    }
    assert item(Decoder(mapping).decode(event(row))) == {
        "customerId": "9",
        "email": "merge@example.com",
        "customerAttributes": {
            "city": "Giza",
            "email": "profile@example.com",
            "custom": {"tier": "gold", "points": 5},
        },
    }


@pytest.mark.parametrize(
    ("shape", "entry", "message"),
    [
        (
            "nested",
            "city: town",
            "maps city, which the nested customer does not define "
            "(GAMEBALL_CUSTOMER_SHAPE=nested): map it as customerAttributes.city",
        ),
        ("nested", "name: full_name", "map it as customerAttributes.displayName"),
        ("nested", "loyaltyTier: tier", "maps loyaltyTier, which the nested customer does not"),
        ("nested", "customerAttributes.nickname: n", "maps customerAttributes.nickname"),
        (
            "flat",
            "customerAttributes.city: town",
            "the flat customer does not define (GAMEBALL_CUSTOMER_SHAPE=flat): map it as city",
        ),
        ("flat", "customerAttributes.custom.tier: t", "map it as custom.tier"),
        ("flat", "totalOrders: n", "maps totalOrders, which the flat customer does not define"),
    ],
)
def test_a_field_the_shape_does_not_define_stops_start_up_naming_it(
    tmp_path: Path, shape: Any, entry: str, message: str
) -> None:
    mapping = mapping_file(tmp_path, entry + "\n")
    with pytest.raises(ConfigError) as raised:
        Decoder(mapping, shape=shape)
    text = str(raised.value)
    assert message in text
    assert text.startswith("FIELD_MAPPING_FILE ")
    assert "\n" not in text


def test_the_service_refuses_to_start_on_such_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("joinDate: signed_up\n")
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
            "GAMEBALL_API_KEY": "k",
            "GAMEBALL_SECRET_KEY": "s",
            "FIELD_MAPPING_FILE": str(path),
        }
    )
    assert settings.gameball_customer_shape == "nested"
    assert settings.tags_sync == "changed"
    with pytest.raises(ConfigError, match=r"map it as customerAttributes\.joinDate"):
        Decoder.from_settings(settings)
    flat = settings.model_copy(update={"gameball_customer_shape": "flat"})
    assert item(Decoder.from_settings(flat).decode(event({"customerId": "a", "signed_up": 0})))


def test_an_unknown_shape_or_tags_setting_is_one_sentence() -> None:
    base = {"KAFKA_BOOTSTRAP_SERVERS": "b", "GAMEBALL_API_KEY": "k", "GAMEBALL_SECRET_KEY": "s"}
    with pytest.raises(ConfigError, match="GAMEBALL_CUSTOMER_SHAPE is invalid 'tree'"):
        load_settings({**base, "GAMEBALL_CUSTOMER_SHAPE": "tree"})
    with pytest.raises(ConfigError, match="TAGS_SYNC is invalid 'sometimes'"):
        load_settings({**base, "TAGS_SYNC": "sometimes"})
    assert (
        load_settings({**base, "GAMEBALL_CUSTOMER_SHAPE": "Flat"}).gameball_customer_shape == "flat"
    )


# --- tags --------------------------------------------------------------------------------

ROW = {"customer_id": "c1", "name": "Ada", "tags": ["vip", "beta"]}


@pytest.mark.parametrize("op", ["c", "r"])
def test_tags_travel_beside_the_item_and_changed_on_create_and_snapshot(op: str) -> None:
    result = decoded(Decoder().decode(event(ROW, op)))
    assert "tags" not in item(result)
    assert (result.tags, result.tags_changed) == (["vip", "beta"], True)


@pytest.mark.parametrize(
    ("before", "changed"),
    [
        (None, True),  # REPLICA IDENTITY DEFAULT: no before row, so every update
        ({"customer_id": "c1", "tags": ["beta", "vip"]}, False),  # the same set
        ({"customer_id": "c1", "tags": ["vip"]}, True),
        ({"customer_id": "c1", "tags": None}, True),
        ({"customer_id": "c1", "tags": ["__debezium_unavailable_value"]}, True),
        ({"customer_id": "c1"}, True),
    ],
)
def test_an_update_s_tags_changed_when_its_before_row_says_so(
    before: dict[str, Any] | None, changed: bool
) -> None:
    result = decoded(Decoder().decode(event({**ROW, "name": "Ada2"}, "u", before)))
    assert (result.tags, result.tags_changed) == (["vip", "beta"], changed)
    # the same through the schema-carrying fast path (before kept raw, parsed only here)
    wrapped = orjson.dumps({"schema": SCHEMA, "payload": orjson.loads(event(ROW, "u", before))})
    decoder = Decoder()
    decoder.decode(wrapped)  # learns the schema
    again = decoded(decoder.decode(wrapped))
    assert (again.tags, again.tags_changed) == (["vip", "beta"], changed)


def test_always_marks_every_change_and_a_row_without_an_envelope_is_an_update() -> None:
    same = {"customer_id": "c1", "tags": ["vip", "beta"]}
    result = decoded(Decoder(tags_sync="always").decode(event(ROW, "u", same)))
    assert result.tags_changed
    plain = decoded(Decoder().decode(orjson.dumps(ROW)))  # ExtractNewRecordState's row
    assert (plain.tags, plain.tags_changed) == (["vip", "beta"], True)


def test_no_tags_column_null_or_unavailable_leaves_nothing_to_send() -> None:
    for row in (
        {"customer_id": "c1"},
        {"customer_id": "c1", "tags": None},
        {"customer_id": "c1", "tags": "__debezium_unavailable_value"},
    ):
        result = decoded(Decoder().decode(event(row)))
        assert (result.tags, result.tags_changed) == (None, False)


def test_item_keeps_tags_in_the_item_off_sends_none_and_flat_keeps_them() -> None:
    in_item = decoded(Decoder(tags_sync="item").decode(event(ROW)))
    assert item(in_item)["tags"] == ["vip", "beta"]
    assert in_item.tags is None
    off = decoded(Decoder(tags_sync="off").decode(event(ROW)))
    assert "tags" not in item(off)
    assert off.tags is None
    flat = decoded(Decoder(shape="flat").decode(event(ROW)))
    assert item(flat) == {"customerId": "c1", "name": "Ada", "tags": ["vip", "beta"]}
    assert flat.tags is None
    mapped = FieldMapping({"tags": "labels"})
    assert (
        decoded(Decoder(mapped, tags_sync="off").decode(event({**ROW, "labels": "x"}))).tags is None
    )


def test_a_mapped_tags_column_is_compared_in_the_before_row() -> None:
    decoder = Decoder(FieldMapping({"tags": "labels"}))
    after = {"customer_id": "c1", "labels": "a, b", "tags": ["ignored"]}
    same = decoded(decoder.decode(event(after, "u", {"customer_id": "c1", "labels": "b,a"})))
    assert (same.tags, same.tags_changed) == (["a", "b"], False)
    other = decoded(decoder.decode(event(after, "u", {"customer_id": "c1", "labels": "a"})))
    assert other.tags_changed
