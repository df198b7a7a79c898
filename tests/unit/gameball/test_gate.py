"""The simulator's msgspec gate never lets through a body ``BatchRequest`` refuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.gameball.models import MAX_BATCH_RECORDS, BatchRequest
from service.gameball.simulator.gate import passes

FIELDS = ("customerId", "email", "name", "gender", "dateOfBirth", "joinDate", "tags", "custom")

ARABIC_INDIC_DATE = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in "2024-01-31")
# Values near each field's edge: dates with a trailing newline or other digits, empty text,
# numbers where text belongs, text where a list belongs, and JSON's other kinds.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "2024-01-31", "2024-01-31\n", ARABIC_INDIC_DATE, "2024-1-31", "a@b"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
valid = st.fixed_dictionaries(
    {"customerId": st.text(min_size=1, max_size=5)},
    optional={
        "email": st.none() | st.text(max_size=5),
        "dateOfBirth": st.none() | st.sampled_from(["2024-01-31", "1990-12-01"]),
        "tags": st.none() | st.lists(st.text(max_size=3), max_size=2),
        "custom": st.none() | st.dictionaries(st.text(max_size=3), values, max_size=2),
    },
)
# A valid customer with up to two keys given edge values: one wrong field at a time is
# where a mirror that is slightly too lax would show.
customer = st.builds(
    lambda base, changes: {**base, **changes},
    valid,
    st.dictionaries(st.sampled_from([*FIELDS, "mobile", "extra"]), values, max_size=2),
)


def model_accepts(body: bytes) -> bool:
    try:
        BatchRequest.model_validate(orjson.loads(body))
    except ValidationError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.lists(customer, max_size=4) | values)
@example([{"customerId": "c1", "dateOfBirth": "2024-01-31\n"}])
@example([{"customerId": "c1", "tags": "vip"}])
@example([{"customerId": ""}])
@example({"body": []})
def test_a_body_the_gate_passes_is_one_the_model_passes(shape: Any) -> None:
    body = orjson.dumps(shape if isinstance(shape, dict) else {"body": shape})
    if passes(body):
        assert model_accepts(body)


@pytest.mark.parametrize(
    "customers",
    [
        [{"customerId": "c1"}],
        [
            {
                "customerId": "c1",
                "email": "c1@example.com",
                "name": "Customer",
                "gender": "F",
                "mobile": "+201000000000",
                "dateOfBirth": "1990-01-31",
                "joinDate": "2024-02-01",
                "tags": ["vip"],
                "custom": {"points": 3, "nested": {"a": [1, None]}},
                "country": "EG",
            }
        ],
        [{"customerId": f"c{i}", "email": None} for i in range(MAX_BATCH_RECORDS)],
    ],
)
def test_the_gate_passes_what_the_service_sends(customers: list[dict[str, Any]]) -> None:
    body = orjson.dumps({"body": customers})
    assert model_accepts(body)
    assert passes(body)


def test_the_gate_refuses_a_body_over_the_limit_and_bytes_that_are_not_json() -> None:
    too_many = orjson.dumps({"body": [{"customerId": "c"}] * (MAX_BATCH_RECORDS + 1)})
    assert not passes(too_many)
    assert not passes(b'{"body": [')
