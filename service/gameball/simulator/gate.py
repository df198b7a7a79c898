"""A fast gate in front of the batch request models of :mod:`service.gameball.customer`.

Nearly every body the simulator receives is valid, and proving that is most of what a POST
costs. msgspec checks the body in C against a mirror of the model: the same fields, types
and constraints, every other key skipped the way ``extra="allow"`` lets it through, or refused
the way ``extra="forbid"`` does (``forbid_unknown_fields``). A body the gate passes is one the
model passes (``tests/unit/gameball/test_gate.py`` holds each of the four mirrors, two shapes
by strict or lenient, to its model with generated bodies), so the model runs only on a body
the gate refuses: to decide, and to word the errors exactly as before. The gate may refuse
what the model accepts (``2.0`` as ``totalOrders``, which pydantic reads as ``2``): the model
then decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from service.gameball.customer import CustomerShape
from service.gameball.models import MAX_BATCH_RECORDS

# The model's pattern runs on Rust's regex engine, where ``$`` is the end of the text;
# Python's ``$`` also matches before a final newline, so the mirror says ``\Z``.
_Date = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}\Z")]
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_Channel = Literal["mobile", "pos", "web", "callcenter"]


class _Flat(msgspec.Struct):
    """:class:`~service.gameball.customer.FlatCustomer`, field for field."""

    customerId: _Id
    email: str | None = None
    name: str | None = None
    gender: str | None = None
    dateOfBirth: _Date | None = None
    joinDate: _Date | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None
    mobile: str | None = None
    displayName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    country: str | None = None
    city: str | None = None
    referrerCode: str | None = None


class _StrictFlat(_Flat, forbid_unknown_fields=True):
    pass


class _Attributes(msgspec.Struct):
    """:class:`~service.gameball.customer.CustomerAttributes`, field for field."""

    displayName: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    mobile: str | None = None
    gender: str | None = None
    dateOfBirth: _Date | None = None
    joinDate: _Date | None = None
    country: str | None = None
    city: str | None = None
    zip: str | None = None
    preferredLanguage: str | None = None
    source: str | None = None
    utms: list[Any] | None = None
    devices: list[Any] | None = None
    paymentMethods: list[Any] | None = None
    totalSpent: int | float | None = None
    avgOrderAmount: int | float | None = None
    totalOrders: int | None = None
    lastOrderDate: str | None = None
    channel: _Channel | None = None
    custom: dict[str, Any] | None = None


class _StrictAttributes(_Attributes, forbid_unknown_fields=True):
    pass


class _Nested(msgspec.Struct):
    """:class:`~service.gameball.customer.NestedCustomer`, field for field."""

    customerId: _Id
    email: str | None = None
    mobile: str | None = None
    deviceToken: str | None = None
    osType: str | None = None
    referrerCode: str | None = None
    guest: bool | None = None
    tags: list[str] | None = None
    customerAttributes: _Attributes | None = None


class _StrictNested(msgspec.Struct, forbid_unknown_fields=True):
    customerId: _Id
    email: str | None = None
    mobile: str | None = None
    deviceToken: str | None = None
    osType: str | None = None
    referrerCode: str | None = None
    guest: bool | None = None
    tags: list[str] | None = None
    customerAttributes: _StrictAttributes | None = None


def _gate(item: type[msgspec.Struct]) -> Callable[[bytes], Any]:
    body = Annotated[list[item], msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECORDS)]  # type: ignore[valid-type]
    batch = msgspec.defstruct("_Batch", [("body", body)])
    return msgspec.json.Decoder(batch).decode


_CHECKS: dict[tuple[str, bool], Callable[[bytes], Any]] = {
    ("flat", False): _gate(_Flat),
    ("flat", True): _gate(_StrictFlat),
    ("nested", False): _gate(_Nested),
    ("nested", True): _gate(_StrictNested),
}


def passes(body: bytes, shape: CustomerShape = "flat", *, strict: bool = False) -> bool:
    """Whether ``body`` is a valid batch request; ``False`` leaves the verdict to the model."""
    try:
        _CHECKS[shape, strict](body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return False
    return True
