"""Decoding (SPEC §3): every input ends as a customer, a skip, or a dead-letter reason."""

from __future__ import annotations

import json
import random
import traceback
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from service.delivery.decoding import Customer, Decoder, Reject, Skip
from service.delivery.fields import DAYS, GUESS, Target, guess_date
from service.delivery.mapping import load_field_mapping
from service.errors import ConfigError
from service.gameball.customer import FlatCustomer, StrictNestedCustomer
from service.labels import DeadLetterReason
from service.metrics import Metrics
from service.tools.samples import change_event


def customer(result: object) -> dict[str, object]:
    assert isinstance(result, Customer), result
    decoded: dict[str, object] = orjson.loads(result.payload)
    return decoded


ROW = {
    "customer_id": 42,
    "email": "a@example.com",
    "date_of_birth": 19000,  # epoch days
    "join_date": 1_700_000_000_000,  # epoch ms
    "tags": "vip, newsletter,",
    "custom": '{"points": 5}',
    "internal_column": "dropped",
}


def test_debezium_row_is_normalised_like_cdc_delivers_it() -> None:
    """The default, nested: the merge key on top and in the profile, tags beside the item."""
    event = orjson.dumps({"before": None, "after": ROW, "op": "u", "ts_ms": 1})
    result = Decoder().decode(event)
    assert customer(result) == {
        "customerId": "42",
        "email": "a@example.com",
        "customerAttributes": {
            "email": "a@example.com",
            "dateOfBirth": "2022-01-08",
            "joinDate": "2023-11-14",
            "custom": {"points": 5},
        },
    }
    assert isinstance(result, Customer)
    assert result.tags == ["vip", "newsletter"]


def test_the_flat_shape_keeps_every_field_at_the_top_with_its_tags() -> None:
    event = orjson.dumps({"before": None, "after": ROW, "op": "u", "ts_ms": 1})
    result = Decoder(shape="flat").decode(event)
    assert customer(result) == {
        "customerId": "42",
        "email": "a@example.com",
        "dateOfBirth": "2022-01-08",
        "joinDate": "2023-11-14",
        "tags": ["vip", "newsletter"],
        "custom": {"points": 5},
    }
    assert isinstance(result, Customer)
    assert result.tags is None  # in the item: nothing travels beside it


def test_schema_wrapped_envelopes_and_plain_objects_are_accepted() -> None:
    wrapped = {"schema": {}, "payload": {"op": "r", "after": {"customerId": "a"}}}
    assert customer(Decoder().decode(orjson.dumps(wrapped))) == {"customerId": "a"}
    plain = {"customerId": "b", "dateOfBirth": "1990-01-01", "mobile": "+201"}
    nested = {
        "customerId": "b",
        "mobile": "+201",
        "customerAttributes": {"dateOfBirth": "1990-01-01", "mobile": "+201"},
    }
    assert customer(Decoder().decode(orjson.dumps(plain))) == nested
    assert customer(Decoder().decode(b"\xef\xbb\xbf" + orjson.dumps(plain))) == nested
    assert customer(Decoder(shape="flat").decode(orjson.dumps(plain))) == plain


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", DeadLetterReason.INVALID_JSON),
        (b"\xff\xfe", DeadLetterReason.INVALID_JSON),
        (b"[1, 2]", DeadLetterReason.INVALID_EVENT),
        (b'{"email": "a@example.com"}', DeadLetterReason.INVALID_EVENT),
        (b'{"customerId": "  "}', DeadLetterReason.INVALID_EVENT),
        (b'{"customerId": "a", "dateOfBirth": "2024-02-30"}', DeadLetterReason.INVALID_EVENT),
        (b'{"customerId": "a", "tags": {"x": 1}}', DeadLetterReason.INVALID_EVENT),
        (b'{"op": "c", "after": null}', DeadLetterReason.INVALID_EVENT),
        (b'{"op": "m", "after": null}', DeadLetterReason.UNSUPPORTED_OPERATION),
        (b"[" * 10_000 + b"]" * 10_000, DeadLetterReason.INVALID_JSON),
    ],
)
def test_undeliverable_values_get_a_reason(value: bytes, reason: DeadLetterReason) -> None:
    result = Decoder().decode(value)
    assert isinstance(result, Reject)
    assert result.reason is reason
    assert result.error


def test_tombstones_and_deletes_follow_the_policy() -> None:
    delete = b'{"op": "d", "before": {"customer_id": "a"}, "after": null}'
    assert Decoder().decode(None) == Skip("tombstone")
    assert Decoder().decode(b'{"schema": {}, "payload": null}') == Skip("tombstone")
    assert Decoder().decode(delete) == Skip("delete")
    result = Decoder(delete_policy="dead-letter").decode(delete)
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.UNSUPPORTED_OPERATION


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_mapping_file_maps_any_schema(tmp_path: Path, suffix: str) -> None:
    mapping = {
        "customerId": "account.id",
        "email": "contact.mail",
        "customerAttributes.custom": "extra",
    }
    path = tmp_path / f"mapping{suffix}"
    path.write_text(
        orjson.dumps(mapping).decode()
        if suffix == ".json"
        else "\n".join(f"{k}: {v}" for k, v in mapping.items())
    )
    decoder = Decoder(load_field_mapping(path))
    row = {"account": {"id": 7}, "contact": '{"mail": "m@example.com"}', "extra": {"a": 1}}
    assert customer(decoder.decode(orjson.dumps({"op": "c", "after": row}))) == {
        "customerId": "7",
        "email": "m@example.com",
        "customerAttributes": {"email": "m@example.com", "custom": {"a": 1}},
    }


def test_a_bad_mapping_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FIELD_MAPPING_FILE"):
        load_field_mapping(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="FIELD_MAPPING_FILE"):
        load_field_mapping(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    _assert_one_outcome(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "customerId",
        "customer_id",
        "email",
        "tags",
        "custom",
        "date_of_birth",
        "joinDate",
        "op",
        "after",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(field_names, json_values, max_size=6))
def test_decode_never_raises_on_arbitrary_rows(row: dict[str, object]) -> None:
    _assert_one_outcome(orjson.dumps(row))


row_values = st.one_of(
    json_values,
    st.integers(-(10**17), 10**17),  # epoch days, ms and µs, and beyond
    st.sampled_from(["2024-02-29", "0000-00-00", "1990-01-01T10:00:00Z", "a,b,,c", '["x", 1]']),
)


nested_names = st.sampled_from(
    [
        "customer_id",
        "email",
        "mobile",
        "name",
        "guest",
        "device_token",
        "total_spent",
        "avgOrderAmount",
        "total_orders",
        "channel",
        "utms",
        "payment_methods",
        "last_order_date",
        "zip",
        "tags",
        "custom",
        "join_date",
    ]
)
nested_values = st.one_of(
    row_values,
    st.sampled_from(["web", "POS", "fax", "true", "f", "12.50", "3.0", "2.5", "1e999999", "[1]"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats(),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(field_names, row_values, max_size=7))
def test_every_customer_the_decoder_emits_is_valid_for_the_api(row: dict[str, object]) -> None:
    """The decoder skips the pydantic pass for speed: its normalisers must be as strict."""
    result = Decoder(shape="flat").decode(orjson.dumps(row))
    if isinstance(result, Customer):
        model = FlatCustomer.model_validate_json(result.payload)
        assert model.customerId == result.customer_id
        assert model.model_dump(mode="json", exclude_none=True) == orjson.loads(result.payload)


@settings(max_examples=700, deadline=None)
@given(st.dictionaries(nested_names | field_names, nested_values, max_size=9))
def test_every_nested_customer_the_decoder_emits_is_valid_for_the_strict_model(
    row: dict[str, object],
) -> None:
    """The same promise for the default shape, held to the strict model the simulator uses."""
    result = Decoder().decode(orjson.dumps(row))
    if isinstance(result, Customer):
        model = StrictNestedCustomer.model_validate_json(result.payload)
        assert model.customerId == result.customer_id
        assert model.model_dump(mode="json", exclude_none=True) == orjson.loads(result.payload)
        assert "tags" not in orjson.loads(result.payload)  # TAGS_SYNC=changed: beside it
    else:
        assert isinstance(result, Reject), result
        assert result.error


def test_a_decoded_customer_holds_no_more_memory_than_its_bytes() -> None:
    """The buffer's footprint is records x payload: a payload must not pin a bigger allocation."""
    rng = random.Random(3)
    values = [change_event(f"c{i}", 1, rng) for i in range(2000)]
    decoder = Decoder()
    for value in values:  # warm the bounded date and tag memos: they are not per record
        decoder.decode(value)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        payloads = [customer_payload(decoder.decode(value)) for value in values]
        retained = (tracemalloc.get_traced_memory()[0] - before) / len(payloads)
    finally:
        tracemalloc.stop()
    average = sum(len(p) for p in payloads) / len(payloads)
    assert retained < average + 200, (
        f"{retained:.0f} bytes retained for {average:.0f}-byte payloads"
    )


def customer_payload(result: object) -> bytes:
    assert isinstance(result, Customer), result
    return result.payload


def _assert_one_outcome(value: bytes | None) -> None:
    """Every input ends as exactly one of the three, each well-formed, and bad input is
    never taken for a bug of ours (``decoder_fault``)."""
    result = Decoder().decode(value)
    if isinstance(result, Customer):
        customer = orjson.loads(result.payload)
        assert customer["customerId"] == result.customer_id
        assert result.customer_id.strip()
    elif isinstance(result, Reject):
        assert not result.fault, result.error
        assert result.error
    else:
        assert isinstance(result, Skip)


envelopes = st.fixed_dictionaries(
    {"op": st.sampled_from(["c", "u", "r", "d", "t", "x", ""]) | json_values},
    optional={
        "after": st.dictionaries(field_names, json_values, max_size=6) | json_values,
        "before": json_values,
        "ts_ms": json_values,
        "source": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    event=envelopes,
    wrap=st.booleans(),
    bom=st.booleans(),
    cut=st.none() | st.integers(min_value=0, max_value=400),
)
def test_envelopes_wrapped_bom_prefixed_or_truncated_end_in_one_outcome(
    event: dict[str, object], wrap: bool, bom: bool, cut: int | None
) -> None:
    document: object = {"schema": {"type": "struct"}, "payload": event} if wrap else event
    value = orjson.dumps(document)
    if bom:
        value = b"\xef\xbb\xbf" + value
    if cut is not None:
        value = value[:cut]
    _assert_one_outcome(value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_and_text_end_in_one_well_formed_outcome(value: bytes) -> None:
    _assert_one_outcome(value)


column_schemas = st.fixed_dictionaries(
    {"field": field_names | nested_names},
    optional={
        "name": st.sampled_from(
            [
                "io.debezium.time.Date",
                "io.debezium.time.MicroTimestamp",
                "io.debezium.data.Json",
                "io.debezium.data.VariableScaleDecimal",
                "org.apache.kafka.connect.data.Decimal",
            ]
        )
        | json_values,
        "type": st.sampled_from(["bytes", "array", "int64", "string"]) | json_values,
        "parameters": st.fixed_dictionaries({}, optional={"scale": json_values | st.integers()})
        | json_values,
        "items": json_values,
        "default": json_values | st.integers(),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(column_schemas, max_size=5) | json_values,
    row=st.dictionaries(nested_names | field_names, nested_values, max_size=6),
    compact=st.booleans(),
)
def test_arbitrary_schemas_end_in_one_outcome(fields: object, row: object, compact: bool) -> None:
    """A schema's metadata is input too: odd names, parameters and huge defaults are not bugs."""
    document = {"schema": {"type": "struct", "fields": fields}, "payload": row}
    try:
        value = orjson.dumps(document) if compact else json.dumps(document).encode()
    except (TypeError, ValueError):  # a number JSON cannot carry; nothing to decode
        return
    _assert_one_outcome(value)
    _assert_one_outcome(value)  # again, with the schema cached


def test_memoised_normalisations_give_the_same_answers_and_stay_bounded() -> None:
    row = {
        "customer_id": "a",
        "date_of_birth": 19000,
        "join_date": 1_700_000_000_000,
        "tags": "x, y",
    }
    first = customer(Decoder(shape="flat").decode(orjson.dumps(row)))
    again = customer(Decoder(shape="flat").decode(orjson.dumps(row)))  # served from the memos
    assert first == again
    assert first["dateOfBirth"] == "2022-01-08"
    assert first["tags"] == ["x", "y"]
    for day in range(DAYS.limit + 10):
        guess_date(day)
    assert len(DAYS) <= DAYS.limit


# --- internal faults are not bad input ---------------------------------------------------------


def _broken_email(value: object) -> str:
    raise KeyError("a normaliser bug")


def test_a_normaliser_bug_is_a_decoder_fault_logged_with_its_stack_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(GUESS, Target.TEXT, _broken_email)  # before the decoder builds its plan
    metrics = Metrics()
    decoder = Decoder(metrics=metrics)
    with capture_logs() as logs:
        result = decoder.decode(b'{"customerId": "a", "email": "a@example.com"}')
    assert isinstance(result, Reject)
    assert result.fault
    # Its dlq.reason stays within SPEC §5's closed set; its error says it is our bug.
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert result.error.startswith("decoder_fault: ")
    assert "KeyError" in result.error
    assert "a bug" in result.error
    [fault] = [entry for entry in logs if entry["event"] == "decoder_fault"]
    assert fault["log_level"] == "error"
    stack = "".join(traceback.format_exception(fault["exc_info"]))
    assert "_broken_email" in stack  # the stack says where the bug is
    assert "_broken_email" in fault["error"]
    assert metrics.registry.get_sample_value("customer_sync_decoder_faults_total") == 1


def test_a_fault_repeating_on_every_record_is_counted_each_time_and_logged_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(GUESS, Target.TEXT, _broken_email)
    metrics = Metrics()
    decoder = Decoder(metrics=metrics)
    with capture_logs() as logs:
        for i in range(50):
            decoder.decode(orjson.dumps({"customerId": str(i), "email": f"{i}@example.com"}))
    assert metrics.registry.get_sample_value("customer_sync_decoder_faults_total") == 50
    assert [entry["event"] for entry in logs] == ["decoder_fault"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", DeadLetterReason.INVALID_JSON),
        (b'{"customerId": "a", "dateOfBirth": "2024-02-30"}', DeadLetterReason.INVALID_EVENT),
        (
            b'{"schema": {"type": "struct", "fields": [{"field": "x", "name": []}]}, "payload": '
            b'{"customerId": "a"}}',
            None,
        ),
        (
            b'{"schema": {"type": "struct", "x": 18446744073709551616}, "payload": '
            b'{"customerId": "a"}}',
            None,
        ),
        (
            b'{"customerId": "a", "name": {"scale": -10000000, "value": "AQ=="}}',
            DeadLetterReason.INVALID_EVENT,
        ),
    ],
)
def test_malformed_records_are_bad_input_not_faults(
    value: bytes, reason: DeadLetterReason | None
) -> None:
    """Including what used to reach the catch-all only by crashing (found by fuzzing it)."""
    metrics = Metrics()
    with capture_logs() as logs:
        result = Decoder(metrics=metrics).decode(value)
    if reason is None:
        assert customer(result) == {"customerId": "a"}
    else:
        assert isinstance(result, Reject)
        assert result.reason is reason
    assert metrics.registry.get_sample_value("customer_sync_decoder_faults_total") == 0
    assert logs == []
