"""A fast gate in front of :class:`~service.gameball.models.BatchRequest`.

Nearly every body the simulator receives is valid, and proving that is most of what a POST
costs. msgspec checks the body in C against a mirror of the model: the same fields, types
and constraints, every other key skipped the way ``extra="allow"`` lets it through. A body
the gate passes is one the model passes (``tests/unit/gameball/test_gate.py`` holds the two
together with generated bodies), so the model runs only on a body the gate refuses: to
decide, and to word the errors exactly as before.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from service.gameball.models import MAX_BATCH_RECORDS

# The model's pattern runs on Rust's regex engine, where ``$`` is the end of the text;
# Python's ``$`` also matches before a final newline, so the mirror says ``\Z``.
_Date = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}\Z")]


class _Customer(msgspec.Struct):
    """:class:`~service.gameball.models.ApiCustomer`, field for field."""

    customerId: Annotated[str, msgspec.Meta(min_length=1)]
    email: str | None = None
    name: str | None = None
    gender: str | None = None
    dateOfBirth: _Date | None = None
    joinDate: _Date | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None


class _Batch(msgspec.Struct):
    body: Annotated[list[_Customer], msgspec.Meta(min_length=1, max_length=MAX_BATCH_RECORDS)]


_check = msgspec.json.Decoder(_Batch).decode


def passes(body: bytes) -> bool:
    """Whether ``body`` is a valid batch request; ``False`` leaves the verdict to the model."""
    try:
        _check(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return False
    return True
