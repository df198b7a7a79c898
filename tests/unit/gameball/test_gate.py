"""The simulator's msgspec gate never lets through a body the shape's model refuses.

Four gates: each shape, strict (``extra="forbid"``) or lenient."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.gameball.customer import CustomerShape, batch_request
from service.gameball.models import MAX_BATCH_RECORDS
from service.gameball.simulator.gate import passes

MODES = [("flat", False), ("flat", True), ("nested", False), ("nested", True)]

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
ATTRIBUTE_FIELDS = (
    "displayName",
    "email",
    "dateOfBirth",
    "totalSpent",
    "avgOrderAmount",
    "totalOrders",
    "channel",
    "utms",
    "custom",
    "extra",
)
edge_values = values | st.sampled_from(["web", "pos", "fax", 2.5, 2.0, 3, True, [], {}])
nested = st.builds(
    lambda base, top, attributes: {**base, **top, "customerAttributes": attributes},
    st.fixed_dictionaries({"customerId": st.text(min_size=1, max_size=5)}),
    st.dictionaries(
        st.sampled_from(["guest", "deviceToken", "tags", "name"]), edge_values, max_size=2
    ),
    st.dictionaries(st.sampled_from(ATTRIBUTE_FIELDS), edge_values, max_size=3) | values,
)


def model_accepts(body: bytes, shape: CustomerShape = "flat", strict: bool = False) -> bool:
    try:
        batch_request(shape, strict=strict).model_validate(orjson.loads(body))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("shape", "strict"), MODES)
@settings(max_examples=300, deadline=None)
@given(body=st.lists(customer | nested, max_size=4) | values)
@example(body=[{"customerId": "c1", "dateOfBirth": "2024-01-31\n"}])
@example(body=[{"customerId": "c1", "tags": "vip"}])
@example(body=[{"customerId": ""}])
@example(body=[{"customerId": "c1", "customerAttributes": {"channel": "fax"}}])
@example(body=[{"customerId": "c1", "customerAttributes": {"totalOrders": 2.5}}])
@example(body={"body": []})
def test_a_body_the_gate_passes_is_one_the_model_passes(
    shape: CustomerShape, strict: bool, body: Any
) -> None:
    content = orjson.dumps(body if isinstance(body, dict) else {"body": body})
    if passes(content, shape, strict=strict):
        assert model_accepts(content, shape, strict)


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
    assert model_accepts(body, "flat", strict=True)
    assert passes(body, "flat", strict=True)


def test_the_strict_gates_refuse_the_other_shape_and_pass_their_own() -> None:
    flat = orjson.dumps({"body": [{"customerId": "c1", "name": "Ada", "city": "Cairo"}]})
    nested = orjson.dumps(
        {
            "body": [
                {
                    "customerId": "c1",
                    "email": "a@example.com",
                    "guest": False,
                    "customerAttributes": {
                        "displayName": "Ada",
                        "email": "a@example.com",
                        "totalSpent": 12.5,
                        "totalOrders": 3,
                        "channel": "web",
                        "utms": [{"source": "x"}],
                        "custom": {"tier": "gold"},
                    },
                }
            ]
        }
    )
    assert passes(nested, "nested", strict=True)
    assert model_accepts(nested, "nested", strict=True)
    assert not passes(flat, "nested", strict=True)
    assert not model_accepts(flat, "nested", strict=True)
    assert not passes(nested, "flat", strict=True)
    assert not model_accepts(nested, "flat", strict=True)
    assert passes(flat, "nested", strict=False)  # lenient: allowed, the server drops them


def test_the_gate_refuses_a_body_over_the_limit_and_bytes_that_are_not_json() -> None:
    too_many = orjson.dumps({"body": [{"customerId": "c"}] * (MAX_BATCH_RECORDS + 1)})
    assert not passes(too_many)
    assert not passes(b'{"body": [')
