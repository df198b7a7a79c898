"""A row → the customer item of the chosen shape, through a plan built once per schema.

The other half of :mod:`service.delivery.decoding`: that module finds the row in a Kafka
value (and the schema it carries); this one turns it into the customer. A :class:`Plan` says,
for every column that feeds the customer, its field, its converter (chosen once from the
column's type and the field's kind) and whether it lands inside ``customerAttributes``; the
layout (:func:`~service.delivery.mapping.layout`) is resolved once for the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from service.delivery.debezium import PLAIN, ColumnType, converter
from service.delivery.fields import Invalid, Target, target_of, to_text
from service.delivery.mapping import (
    ATTRIBUTE_PREFIX,
    NESTED_ATTRIBUTE_PREFIX,
    NESTED_PREFIX,
    FieldMapping,
    Layout,
    Source,
)
from service.gameball.customer import ATTRIBUTES

Convert = Callable[[Any], Any]
Path = tuple[str, ...]
"""A field's place in the API item: ``("email",)``, ``("customerAttributes", "custom", "x")``."""
_read_json = msgspec.json.decode
_UNKNOWN: Any = object()
"""A mapped column Debezium could not read (an unchanged TOASTed value)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How the rows of one schema become customers.

    ``columns``: column name → (API field, converter, inside ``customerAttributes``) for the
    fields matched by name, walked in the row's order; ``mapped`` and ``attributes``: the
    mapping file's entries, each (name, column, path inside the column, converter), a field
    also with whether it is nested, an attribute with its label for errors
    (``custom.<name>``); ``tags``: where the tags are read from (column, path, converter),
    for comparing an update's ``before`` row, when they travel beside the item.
    """

    columns: dict[str, tuple[str, Convert, bool]]
    mapped: tuple[tuple[str, str, tuple[str, ...], Convert, bool], ...]
    attributes: tuple[tuple[str, str, tuple[str, ...], Convert, str], ...]
    tags: tuple[str, tuple[str, ...], Convert] | None


class Rows:
    """Rows → customers for one decoder: its mapping, its layout and Debezium's placeholder."""

    def __init__(self, mapping: FieldMapping, layout: Layout, unavailable: str) -> None:
        self._mapping = mapping
        self._layout = layout
        self._nested = layout.shape == "nested"
        self._copies = layout.copies
        self._unavailable = unavailable

    def plan(self, columns: dict[str, ColumnType] | None) -> Plan:
        """Converters for every column that feeds the customer, chosen once.

        ``columns`` holds the schema's typed columns (``None``: no schema). A column's type is
        the schema's logical type if it has one, else the type the mapping file states, else
        plain (the guessing normalisers).
        """
        typed = columns or {}
        layout = self._layout

        def convert(source: Source | None, column: str, target: Target) -> Convert:
            stated = source.type if source is not None else None
            if source is not None and len(source.path) > 1:
                return converter(stated or PLAIN, target)  # a value inside a JSON column
            return converter(typed.get(column) or stated or PLAIN, target)

        by_name = {
            column: (slot.name, convert(None, column, target_of(slot.name)), slot.nested)
            for column, slot in layout.by_name.items()
        }
        mapped = tuple(
            (name, s.column, s.path[1:], convert(s, s.column, target_of(name)), slot.nested)
            for slot, s in layout.mapped.items()
            for name in (slot.name,)
        )
        prefix = NESTED_ATTRIBUTE_PREFIX if self._nested else ATTRIBUTE_PREFIX
        attributes = tuple(
            (name, s.column, s.path[1:], convert(s, s.column, Target.ATTRIBUTE), prefix + name)
            for name, s in self._mapping.attributes.items()
        )
        tags = None
        if layout.tags_aside:
            for field, column, path, convert_tags, nested in mapped:
                if field == "tags" and not nested:
                    tags = (column, path, convert_tags)
            for column, (field, convert_tags, nested) in by_name.items():
                if tags is None and field == "tags" and not nested:
                    tags = (column, (), convert_tags)
        return Plan(by_name, mapped, attributes, tags)

    def map(self, row: dict[str, Any], plan: Plan, unknown: list[Path]) -> dict[str, Any]:
        """Row → customer; every value passes its field's converter (or ``Invalid``).

        A NULL column, and a column Debezium could not read (an unchanged TOASTed value:
        the placeholder, or an array of it), are left out of the customer; the latter's
        field is added to ``unknown``, so a coalesced earlier change can say it
        (``batching.merge_items``).
        """
        customer: dict[str, Any] = {}
        nested: dict[str, Any] = {}  # customerAttributes
        columns = plan.columns
        unavailable = self._unavailable
        field, inside = "", False
        try:
            for column, value in row.items():
                entry = columns.get(column)
                if entry is None or value is None:
                    continue
                field, convert, inside = entry
                if type(value) is str:
                    if value == unavailable:
                        unknown.append((ATTRIBUTES, field) if inside else (field,))
                        continue
                    if convert is to_text:
                        (nested if inside else customer)[field] = value  # without a call
                        continue
                elif type(value) is list and unavailable in value:
                    unknown.append((ATTRIBUTES, field) if inside else (field,))
                    continue
                (nested if inside else customer)[field] = convert(value)
            if plan.mapped:
                for field, column, path, convert, inside in plan.mapped:
                    value = self._column(row, column, path)
                    if value is _UNKNOWN:
                        unknown.append((ATTRIBUTES, field) if inside else (field,))
                    elif value is not None:
                        (nested if inside else customer)[field] = convert(value)
            for field in self._copies:  # the merge keys fill the profile's own fields too
                value = customer.get(field)
                if value is not None:
                    nested[field] = value
                elif unknown and (field,) in unknown:
                    unknown.append((ATTRIBUTES, field))
            if plan.attributes:
                attributes = {}
                inside = False  # the label says where
                holder_path = (ATTRIBUTES, "custom") if self._nested else ("custom",)
                for name, column, path, convert, label in plan.attributes:
                    field = label
                    value = self._column(row, column, path)
                    if value is _UNKNOWN:
                        unknown.append((*holder_path, name))
                    elif value is not None:
                        attributes[name] = convert(value)
                if attributes:
                    holder = nested if self._nested else customer
                    custom = holder.get("custom")
                    holder["custom"] = {**custom, **attributes} if custom else attributes
        except (Invalid, OverflowError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise Invalid(f"{NESTED_PREFIX + field if inside else field}: {exc}") from None
        if nested:
            customer[ATTRIBUTES] = nested
        return customer

    def tags_before(self, plan: Plan, before: Any) -> list[str] | None:
        """The tags an update's ``before`` row held, or ``None`` where it cannot tell.

        ``before`` is the envelope's row, still as its JSON bytes (read only here, for an
        update whose tags travel beside the item). Unknown: no tags column, a NULL, a value
        the WAL did not carry (Debezium's placeholder), or one that is not tags.
        """
        if plan.tags is None:
            return None
        if type(before) is msgspec.Raw:
            try:
                before = _read_json(before)
            except (msgspec.DecodeError, RecursionError):
                return None
        if type(before) is not dict:
            return None
        column, path, convert = plan.tags
        old = self._column(before, column, path)
        if old is None or old is _UNKNOWN:
            return None
        try:
            previous: list[str] = convert(old)
        except (Invalid, OverflowError, ValueError):
            return None
        return previous

    def _column(self, row: dict[str, Any], column: str, path: tuple[str, ...]) -> Any:
        """A mapped column's value (or a key inside it); ``None``: absent; ``_UNKNOWN``: the
        column is Debezium's placeholder."""
        value = row.get(column)
        if value is None:
            return None
        if value == self._unavailable or (type(value) is list and self._unavailable in value):
            return _UNKNOWN
        return walk(value, path) if path else value


def walk(value: Any, path: tuple[str, ...]) -> Any:
    """Keys ``path`` inside a column's value, parsing JSON text on the way (``None``: absent)."""
    current = value
    for part in path:
        if isinstance(current, str):
            try:
                current = _read_json(current)
            except msgspec.DecodeError:
                return None
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current
