"""Kafka value → API customer, a skip, or a dead-letter reason. Never raises.

Accepts a Debezium envelope (optionally ``{"schema", "payload"}``-wrapped), a
plain customer object, or a tombstone, and normalises values the way CDC
delivers them (epoch-day dates, epoch-ms timestamps, JSON-string columns,
comma-separated tags, numeric ids). The per-record cost is one orjson parse,
a dict walk, one pydantic validation and one orjson dump.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from service.mapping import API_FIELDS, FieldMapping, snake_case
from service.models import ApiCustomer
from service.records import DeadLetterReason

_EPOCH = dt.date(1970, 1, 1)
_DATE_FIELDS = frozenset({"dateOfBirth", "joinDate"})
_ERROR_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Skip:
    reason: Literal["tombstone", "delete"]


@dataclass(frozen=True, slots=True)
class Reject:
    reason: DeadLetterReason
    error: str


Decoded = Customer | Skip | Reject


class _Invalid(Exception):
    pass


def _to_date(value: Any) -> str:
    if isinstance(value, bool):
        raise _Invalid("a date cannot be a boolean")
    if isinstance(value, int | float):
        number = int(value)
        if abs(number) < 1_000_000:
            day = _EPOCH + dt.timedelta(days=number)  # Debezium DATE
        elif abs(number) > 10**14:
            day = (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=number)).date()
        else:
            day = (dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=number)).date()
        return day.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            raise _Invalid(f"{value!r} is not a date") from None
    raise _Invalid("a date must be a string or a number")


def _to_tags(value: Any) -> list[str]:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            value = orjson.loads(stripped)
        else:
            return [t.strip() for t in stripped.split(",") if t.strip()]
    if isinstance(value, list) and all(
        isinstance(t, str | int | float) and not isinstance(t, bool) for t in value
    ):
        return [str(t) for t in value]
    raise _Invalid("tags must be an array of strings or a comma-separated string")


def _to_object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = orjson.loads(value)
    if not isinstance(value, dict):
        raise _Invalid("must be an object")
    return value


def _to_id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise _Invalid("no customer id")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float | str):
        text = str(value).strip()
        if text:
            return text
    raise _Invalid("no customer id (customerId / customer_id is empty or not a scalar)")


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _Invalid("must be a string")


def _normalise(name: str, value: Any) -> Any:
    try:
        if name == "customerId":
            return _to_id(value)
        if name in _DATE_FIELDS:
            return _to_date(value)
        if name == "tags":
            return _to_tags(value)
        if name == "custom":
            return _to_object(value)
        return _to_text(value)
    except (_Invalid, orjson.JSONDecodeError, OverflowError, ValueError) as exc:
        raise _Invalid(f"{name}: {exc}") from None


class Decoder:
    def __init__(
        self,
        mapping: FieldMapping | None = None,
        delete_policy: Literal["skip", "dead-letter"] = "skip",
    ) -> None:
        self._delete_policy = delete_policy
        self._paths = mapping.paths if mapping else {}
        # Column name -> API field, built once.
        self._aliases: dict[str, str] = {}
        for field in API_FIELDS:
            if field not in self._paths:
                self._aliases[field] = field
                self._aliases[snake_case(field)] = field

    def decode(self, value: bytes | None) -> Decoded:
        try:
            return self._decode(value)
        except RecursionError:
            return Reject(DeadLetterReason.INVALID_EVENT, "the event is nested too deeply")
        except Exception as exc:  # noqa: BLE001 - last resort: bad input never crashes us
            return Reject(
                DeadLetterReason.INVALID_EVENT, f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]
            )

    def _decode(self, value: bytes | None) -> Decoded:
        if value is None:
            return Skip("tombstone")
        if value.startswith(b"\xef\xbb\xbf"):
            value = value[3:]
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return Reject(DeadLetterReason.INVALID_JSON, f"not UTF-8 JSON: {exc}"[:_ERROR_LIMIT])
        if not isinstance(event, dict):
            return Reject(DeadLetterReason.INVALID_EVENT, "the event is not a JSON object")
        if "schema" in event and "payload" in event:
            event = event["payload"]
            if event is None:
                return Skip("tombstone")
            if not isinstance(event, dict):
                return Reject(DeadLetterReason.INVALID_EVENT, "payload is not an object")
        if "op" in event:
            op = event.get("op")
            if op == "d":
                if self._delete_policy == "skip":
                    return Skip("delete")
                return Reject(
                    DeadLetterReason.UNSUPPORTED_OPERATION,
                    "delete events are dead-lettered (DELETE_POLICY=dead-letter)",
                )
            if op not in ("c", "u", "r"):
                return Reject(
                    DeadLetterReason.UNSUPPORTED_OPERATION, f"operation {op!r} is not supported"
                )
            row = event.get("after")
            if not isinstance(row, dict):
                return Reject(DeadLetterReason.INVALID_EVENT, f"op {op!r} without an 'after' row")
        else:
            row = event
        try:
            customer = self._map(row)
        except _Invalid as exc:
            return Reject(DeadLetterReason.INVALID_EVENT, str(exc)[:_ERROR_LIMIT])
        if "customerId" not in customer:
            return Reject(
                DeadLetterReason.INVALID_EVENT, "no customer id (customerId / customer_id)"
            )
        try:
            model = ApiCustomer.model_validate(customer)
        except ValidationError as exc:
            text = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            return Reject(DeadLetterReason.INVALID_EVENT, text[:_ERROR_LIMIT])
        return Customer(
            model.customerId, orjson.dumps(model.model_dump(mode="json", exclude_none=True))
        )

    def _map(self, row: dict[str, Any]) -> dict[str, Any]:
        customer: dict[str, Any] = {}
        aliases = self._aliases
        for column, value in row.items():
            field = aliases.get(column)
            if field is not None and value is not None:
                customer[field] = _normalise(field, value)
        for field, path in self._paths.items():
            value = _walk(row, path)
            if value is not None:
                customer[field] = _normalise(field, value)
        return customer


def _walk(row: dict[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = row
    for part in path:
        if isinstance(current, str):
            try:
                current = orjson.loads(current)
            except orjson.JSONDecodeError:
                return None
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current
