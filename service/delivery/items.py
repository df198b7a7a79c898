"""A row → the item of a non-customers operation (orders, cashback, redeem, events,
balance-adjustment), through a plan built once per schema.

The customers' counterpart is :mod:`service.delivery.rows`; this module reads columns the same
way (:func:`~service.delivery.debezium.converter` by the schema's logical type, else the
mapping's stated type, else the guessing normalisers) and differs where the operations do:

* **Every field is mapped.** No column is matched by name: a route's ``mapping:`` names each
  API field path (``orderId: order_id``, ``merchant.uniqueId: store.id``), and start-up stops
  on a mapping that lacks the operation's natural key or a field the OpenAPI requires
  (:func:`item_mapping`).
* **Values take the item model's types.** Ids (``customerId``, ``orderId``,
  ``transactionId``) become strings whatever the column's type; amounts stay exact numbers
  (a decimal is written as its digits, never through a float); ``points`` is a whole number;
  a field the model does not declare passes through as the column holds it (a decimal as
  its exact number, a JSON column as its object).
* **Date-times are instants in UTC** (:mod:`service.delivery.instants`): ``orderDate`` and
  ``transactionTime`` are sent as ``2026-12-07T09:30:00.123Z``, never in the future. A time
  after the builder's clock is sent as the clock's time, and the item says which fields
  were moved (:attr:`Item.clamped`), for the caller to count and log.
* **Events fold.** ``events: column`` takes a JSON object ``{name: metadata}``;
  ``events.$name`` and ``events.$metadata`` build ``{name: metadata}`` from two columns,
  metadata ``{}`` when unmapped or NULL.
* **The item is checked against its model.** The bytes are validated by the operation's
  pydantic model (:mod:`service.gameball.operations`) before they leave: a required field
  that is NULL, a redemption with neither amount, points nor hold, an empty ``events``.
  That costs about 1.5 µs of the 5 a four-field order takes (``benchmarks/items.py``);
  the customers' decoder skips it by proving its normalisers instead, which a builder
  whose items pass any field through cannot.

A value that cannot become its field raises :class:`~service.delivery.fields.Invalid` naming
the field: the decoder turns it into an ``invalid_event`` dead letter, as for customers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import ValidationError

from service.delivery.debezium import PLAIN, UNAVAILABLE_VALUE, ColumnType, converter
from service.delivery.fields import Invalid, Target
from service.delivery.instants import instant_ms, not_in_future, utc_text
from service.delivery.mapping import Source, column_source
from service.delivery.rows import walk
from service.errors import ConfigError
from service.gameball.operations import Operation

Convert = Callable[[Any], Any]
EVENT_NAME = "events.$name"
EVENT_METADATA = "events.$metadata"
_TARGETS = {
    "customerId": Target.ID,
    "orderId": Target.ID,
    "transactionId": Target.ID,
    "holdReference": Target.TEXT,
    "totalPaid": Target.NUMBER,
    "amount": Target.NUMBER,
    "points": Target.INTEGER,
    "email": Target.TEXT,
    "mobile": Target.TEXT,
    "reason": Target.TEXT,
    "events": Target.OBJECT,
}
"""What the item models declare, by field; anything else passes through (``ATTRIBUTE``)."""
_ONE_WAY_TO_REDEEM = ("amount", "points", "holdReference")
_ERROR_LIMIT = 1000
_write_json = msgspec.json.encode


# --- the mapping ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemMapping:
    """A route's ``mapping:`` for a non-customers operation: API field path → source.

    ``events_name`` and ``events_metadata``: the two columns ``events`` is folded from
    (``events.$name``, ``events.$metadata``), when it is not mapped whole.
    """

    operation: Operation
    fields: tuple[tuple[tuple[str, ...], Source], ...]
    events_name: Source | None = None
    events_metadata: Source | None = None


def item_mapping(operation: Operation, data: Any, label: str) -> ItemMapping:
    """Parse and check a route's mapping for ``operation``; ``ConfigError`` starts with
    ``label`` (``ROUTES_FILE '...', route '...', mapping``) and names the field."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{label} must map the {operation} item's fields to source columns "
            "(apiField: source.column.path), customerId at least"
        )
    fields: list[tuple[tuple[str, ...], Source]] = []
    folded: dict[str, Source] = {}
    for key, value in data.items():
        try:
            path = _api_path(key, operation)
            source = column_source(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{label}: {key}: {exc}") from None
        if key in (EVENT_NAME, EVENT_METADATA):
            folded[key] = source
        else:
            fields.append((path, source))
    _check_paths(fields, folded, label)
    facts = operation.facts
    mapped = {path[0] for path, _ in fields} | ({"events"} if folded else set())
    for field in facts.required:
        if field not in mapped:
            why = (
                "its natural key: a second delivery is refused as a duplicate only when the id "
                "comes from the source"
                if field == facts.natural_key
                else "the OpenAPI requires it"
            )
            raise ConfigError(f"{label}: {field} is not mapped, and {operation} needs it ({why})")
    if operation is Operation.REDEEM and not mapped & set(_ONE_WAY_TO_REDEEM):
        raise ConfigError(
            f"{label}: maps none of amount, points or holdReference, and a redemption needs one"
        )
    return ItemMapping(operation, tuple(fields), folded.get(EVENT_NAME), folded.get(EVENT_METADATA))


def _api_path(key: Any, operation: Operation) -> tuple[str, ...]:
    if not isinstance(key, str) or not key:
        raise ValueError("an entry's name must be an API field path (field or field.subfield)")
    path = tuple(key.split("."))
    if not all(path):
        raise ValueError(f"{key!r} is not an API field path (field or field.subfield)")
    if path[0] == "events" and operation is Operation.EVENTS and len(path) > 1:
        if key not in (EVENT_NAME, EVENT_METADATA):
            raise ValueError(
                "events is mapped whole (events: a JSON column of {name: metadata}) or folded "
                f"from two columns ({EVENT_NAME}, {EVENT_METADATA})"
            )
    elif any(part.startswith("$") for part in path):
        raise ValueError(f"only {EVENT_NAME} and {EVENT_METADATA} (for events) start with $")
    return path


def _check_paths(
    fields: list[tuple[tuple[str, ...], Source]], folded: dict[str, Source], label: str
) -> None:
    """No field both whole and with subfields; ``events`` whole or folded, not both."""
    paths = {path for path, _ in fields}
    for path in sorted(paths):
        for cut in range(1, len(path)):
            if path[:cut] in paths:
                raise ConfigError(
                    f"{label}: {'.'.join(path)}: {'.'.join(path[:cut])} is mapped whole too; "
                    "map the object or its fields, not both"
                )
    if folded and ("events",) in paths:
        raise ConfigError(
            f"{label}: events is mapped whole and folded ({EVENT_NAME}) too; choose one"
        )
    if EVENT_METADATA in folded and EVENT_NAME not in folded:
        raise ConfigError(
            f"{label}: {EVENT_METADATA} is mapped without {EVENT_NAME}: the metadata needs "
            "the event's name"
        )


# --- the builder ------------------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    """An item ready to batch: its bytes as the API takes them, whose it is, and its key.

    ``key``: the natural key's value (``orderId``, ``transactionId``), ``None`` for events and
    balance adjustments. ``clamped``: the date-time fields that were in the future and are sent
    as the time the item was built.
    """

    customer_id: str
    key: str | None
    payload: bytes
    clamped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemPlan:
    """How the rows of one schema become items: for each mapped field its name (its path,
    dotted), its path when it is nested (``None`` at the top), its column, the keys inside
    the column and its converter; the date-times apart (their converters give milliseconds);
    the events' name and metadata columns, if folded."""

    fields: tuple[tuple[str, tuple[str, ...] | None, str, tuple[str, ...], Convert], ...]
    times: tuple[tuple[str, str, tuple[str, ...], Callable[[Any], int]], ...]
    events: tuple[str, tuple[str, ...], Convert, str | None, tuple[str, ...], Convert] | None


class ItemBuilder:
    """Rows → items of one route's operation; pure but for its clock (``now``, in seconds)."""

    def __init__(
        self,
        mapping: ItemMapping,
        unavailable: str = UNAVAILABLE_VALUE,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._mapping = mapping
        facts = mapping.operation.facts
        if facts.item is None:
            raise ValueError("customers are built by service.delivery.rows, not here")
        self._validate = facts.item.model_validate_json
        self._times = frozenset(facts.times)
        self._key = facts.natural_key
        self._unavailable = unavailable
        self._now = now

    @property
    def operation(self) -> Operation:
        return self._mapping.operation

    @property
    def idless(self) -> bool:
        """Whether the items carry no id (events, balance adjustments): sent at most once."""
        return self._key is None

    def plan(self, columns: dict[str, ColumnType] | None) -> ItemPlan:
        """Converters for every mapped field, chosen once for a schema's typed ``columns``
        (``None``: no schema). A column's type is the schema's logical type if it has one,
        else the mapping's stated type, else plain."""
        typed = columns or {}

        def column_type(source: Source) -> ColumnType:
            if len(source.path) > 1:  # a value inside a JSON column: only a stated type
                return source.type or PLAIN
            return typed.get(source.column) or source.type or PLAIN

        fields, times = [], []
        for path, source in self._mapping.fields:
            name = ".".join(path)
            if len(path) == 1 and name in self._times:
                times.append(
                    (name, source.column, source.path[1:], instant_ms(column_type(source)))
                )
                continue
            target = _TARGETS.get(name, Target.ATTRIBUTE) if len(path) == 1 else Target.ATTRIBUTE
            convert = converter(column_type(source), target)
            nested = path if len(path) > 1 else None
            fields.append((name, nested, source.column, source.path[1:], convert))
        events = None
        name_source, metadata = self._mapping.events_name, self._mapping.events_metadata
        if name_source is not None:
            events = (
                name_source.column,
                name_source.path[1:],
                converter(column_type(name_source), Target.TEXT),
                None if metadata is None else metadata.column,
                () if metadata is None else metadata.path[1:],
                converter(PLAIN if metadata is None else column_type(metadata), Target.OBJECT),
            )
        return ItemPlan(tuple(fields), tuple(times), events)

    def build(self, row: dict[str, Any], plan: ItemPlan) -> Item:
        """Row → item, or :class:`Invalid` naming the field. A NULL column leaves its field out
        (the model then says whether it may be); a value Debezium did not carry (an unchanged
        TOASTed column) is refused: an item is a fact sent once, with nothing to keep."""
        item: dict[str, Any] = {}
        field = ""
        clamped: list[str] = []
        try:
            unavailable = self._unavailable
            for field, nested, column, inner, convert in plan.fields:
                value = row.get(column)
                if value is None:
                    continue
                if inner or value == unavailable or type(value) is list:  # the rarer cases
                    value = self._column(row, column, inner)
                    if value is None:
                        continue
                if nested is None:
                    item[field] = convert(value)
                else:
                    _put(item, nested, convert(value))
            if plan.times:
                now = int(self._now() * 1000)
                for field, column, inner, read in plan.times:
                    value = self._column(row, column, inner)
                    if value is not None:
                        ms = read(value)
                        if ms > now:
                            ms = not_in_future(ms, now)
                            clamped.append(field)
                        item[field] = utc_text(ms)
            if plan.events is not None:
                field = EVENT_NAME
                column, inner, to_name, meta_column, meta_inner, to_meta = plan.events
                value = self._column(row, column, inner)
                if value is not None:
                    name = to_name(value)
                    field = EVENT_METADATA
                    meta = (
                        None if meta_column is None else self._column(row, meta_column, meta_inner)
                    )
                    item["events"] = {name: {} if meta is None else to_meta(meta)}
        except (Invalid, OverflowError, ValueError, RecursionError) as exc:
            raise Invalid(f"{field}: {exc}"[:_ERROR_LIMIT]) from None
        payload = _write_json(item)
        try:
            self._validate(payload)
        except ValidationError as exc:
            raise Invalid(_first_error(exc)) from None
        key = self._key
        return Item(item["customerId"], None if key is None else item[key], payload, tuple(clamped))

    def _column(self, row: dict[str, Any], column: str, inner: tuple[str, ...]) -> Any:
        """A mapped column's value (or a key inside a JSON column); ``None``: NULL or absent."""
        value = row.get(column)
        if value is None:
            return None
        unavailable = self._unavailable
        if value == unavailable or (type(value) is list and unavailable in value):
            raise Invalid(
                f"column {column} was not carried by the change (an unchanged TOASTed value; "
                "REPLICA IDENTITY FULL carries it)"
            )
        return walk(value, inner) if inner else value


def _put(item: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    holder = item
    for part in path[:-1]:
        holder = holder.setdefault(part, {})
    holder[path[-1]] = value


def _first_error(error: ValidationError) -> str:
    """pydantic's first complaint as ``field: message``, as the decoder's errors read."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the item"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "required, but the column is NULL or absent"
    return f"{where}: {message}"[:_ERROR_LIMIT]
