"""What Debezium and Kafka Connect put in a column, read by its logical type.

With the JSON converter's ``schemas.enable=true`` every column of a change event comes with
its Connect schema: a physical type and, for anything richer than a string or a number, a
logical type name (SPEC §3, TOOLS.md's table). The name, never the value's magnitude, says
what the value means:

==========================================================  ===============================
logical type                                                JSON value
==========================================================  ===============================
``io.debezium.time.Date``, ``...connect.data.Date``         days since the epoch
``io.debezium.time.Timestamp``, ``...connect.data.Timestamp``  milliseconds since the epoch
``io.debezium.time.MicroTimestamp``                         microseconds since the epoch
``io.debezium.time.NanoTimestamp``                          nanoseconds since the epoch
``io.debezium.time.ZonedTimestamp``, ``IsoTimestamp``,      an ISO-8601 string (UTC from
``IsoDate``                                                 PostgreSQL)
``io.debezium.time.(Micro|Nano)Time``, ``...connect.data.Time``  a time of day, no date
``org.apache.kafka.connect.data.Decimal`` (``scale``)       base64 of the unscaled integer
``io.debezium.data.VariableScaleDecimal``                   ``{"scale": s, "value": base64}``
``io.debezium.data.Json``                                   a string holding JSON
an ``array`` schema                                         an array of its ``items``' type
anything else (``Uuid``, ``Enum``, ``Xml``, plain types)    the value as it is
==========================================================  ===============================

:func:`column_type` reads one column's schema into a :class:`ColumnType`; a mapping file can
state the same types for events that carry no schema (:data:`STATED_TYPES`). :func:`converter`
composes, once per column and API field, the function that turns a value of that type into
what the field takes; columns of plain type get the guessing normalisers of
:mod:`service.delivery.fields`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgspec

from service.delivery.fields import (
    DAYS,
    GUESS,
    MS_PER_DAY,
    NS_PER_DAY,
    US_PER_DAY,
    Invalid,
    Target,
    base64_decimal_text,
    day_text,
    decimal_literal,
    is_variable_decimal,
    iso_day,
    to_integer,
    variable_decimal_text,
)

UNAVAILABLE_VALUE = "__debezium_unavailable_value"
"""Debezium's default ``unavailable.value.placeholder``: a TOASTed value the WAL did not carry."""


class Kind(Enum):
    PLAIN = "plain"  # a string, number or boolean as it is (also Uuid, Enum, Xml, ...)
    DATE = "date"  # days
    TIMESTAMP = "timestamp"  # an integer count of ``unit`` since the epoch
    TIMESTAMP_TEXT = "timestamp-text"  # ISO 8601
    TIME = "time"  # an integer count of ``unit`` since midnight
    DECIMAL = "decimal"  # base64 unscaled integer at ``scale``
    DECIMAL_TEXT = "decimal-text"  # a decimal as a string or a JSON number
    VARIABLE_DECIMAL = "variable-decimal"  # {"scale", "value"}
    JSON = "json"  # a string holding JSON
    ARRAY = "array"  # of ``items``


@dataclass(frozen=True, slots=True)
class ColumnType:
    kind: Kind
    unit: int = 1  # per second, for TIMESTAMP and TIME: 1_000, 1_000_000 or 1_000_000_000
    scale: int = 0  # for DECIMAL
    items: ColumnType | None = None  # for ARRAY


PLAIN = ColumnType(Kind.PLAIN)
_MS, _US, _NS = 1_000, 1_000_000, 1_000_000_000

_LOGICAL: dict[str, ColumnType] = {
    "io.debezium.time.Date": ColumnType(Kind.DATE),
    "org.apache.kafka.connect.data.Date": ColumnType(Kind.DATE),
    "io.debezium.time.Timestamp": ColumnType(Kind.TIMESTAMP, _MS),
    "org.apache.kafka.connect.data.Timestamp": ColumnType(Kind.TIMESTAMP, _MS),
    "io.debezium.time.MicroTimestamp": ColumnType(Kind.TIMESTAMP, _US),
    "io.debezium.time.NanoTimestamp": ColumnType(Kind.TIMESTAMP, _NS),
    "io.debezium.time.ZonedTimestamp": ColumnType(Kind.TIMESTAMP_TEXT),
    "io.debezium.time.IsoTimestamp": ColumnType(Kind.TIMESTAMP_TEXT),
    "io.debezium.time.IsoDate": ColumnType(Kind.TIMESTAMP_TEXT),
    "io.debezium.time.Time": ColumnType(Kind.TIME, _MS),
    "org.apache.kafka.connect.data.Time": ColumnType(Kind.TIME, _MS),
    "io.debezium.time.MicroTime": ColumnType(Kind.TIME, _US),
    "io.debezium.time.NanoTime": ColumnType(Kind.TIME, _NS),
    "io.debezium.data.VariableScaleDecimal": ColumnType(Kind.VARIABLE_DECIMAL),
    "io.debezium.data.Json": ColumnType(Kind.JSON),
}
DECIMAL_NAME = "org.apache.kafka.connect.data.Decimal"
STATED_TYPES: dict[str, ColumnType] = {
    "date": _LOGICAL["io.debezium.time.Date"],
    "timestamp-millis": _LOGICAL["io.debezium.time.Timestamp"],
    "timestamp-micros": _LOGICAL["io.debezium.time.MicroTimestamp"],
    "timestamp-nanos": _LOGICAL["io.debezium.time.NanoTimestamp"],
    "decimal": ColumnType(Kind.DECIMAL_TEXT),  # with ``scale``: base64 (precise mode)
    "json": _LOGICAL["io.debezium.data.Json"],
    **_LOGICAL,
    DECIMAL_NAME: ColumnType(Kind.DECIMAL_TEXT),
}
"""Types a mapping file may state for a column (``type:``), for events without a schema."""


def stated_type(name: str, scale: int | None) -> ColumnType:
    """A mapping file's ``type`` (and ``scale``), or ``KeyError`` for an unknown name."""
    if name in ("decimal", DECIMAL_NAME) and scale is not None:
        return ColumnType(Kind.DECIMAL, scale=scale)
    return STATED_TYPES[name]


def column_type(schema: Any) -> ColumnType:
    """One column's Connect schema → its type (``PLAIN`` for whatever needs no conversion)."""
    if type(schema) is not dict:
        return PLAIN
    name = schema.get("name")
    if type(name) is str:  # anything else names no logical type (and would not hash)
        known = _LOGICAL.get(name)
        if known is not None:
            return known
        if name == DECIMAL_NAME:
            parameters = schema.get("parameters") or {}
            try:
                scale = int(parameters["scale"]) if "scale" in parameters else 0
            except (TypeError, ValueError, OverflowError):  # parameters not an object, too
                return PLAIN
            if schema.get("type") == "bytes":
                return ColumnType(Kind.DECIMAL, scale=scale)
            return ColumnType(Kind.DECIMAL_TEXT)  # JsonConverter decimal.format=NUMERIC
    if schema.get("type") == "array":
        items = column_type(schema.get("items"))
        return PLAIN if items is PLAIN else ColumnType(Kind.ARRAY, items=items)
    return PLAIN


def row_columns(schema: Any) -> dict[str, ColumnType] | None:
    """The typed columns of a value schema, or ``None`` when it describes no row.

    A Debezium envelope's row is the ``after`` struct; a flattened row (the
    ``ExtractNewRecordState`` transform, or a plain source connector) is the struct itself.
    Columns whose type needs no conversion are left out.
    """
    if type(schema) is not dict or schema.get("type") != "struct":
        return None
    fields = schema.get("fields")
    if type(fields) is not list:
        return None
    for field in fields:
        if type(field) is dict and field.get("field") == "after" and field.get("type") == "struct":
            fields = field.get("fields")
            if type(fields) is not list:
                return None
            break
    columns: dict[str, ColumnType] = {}
    for field in fields:
        if type(field) is dict and type(field.get("field")) is str:
            kind = column_type(field)
            if kind is not PLAIN:
                columns[field["field"]] = kind
    return columns


# --- values of a known type into API fields ---------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1)


def _instant_text(count: int, unit: int) -> str:
    """A ``timestamp`` (no zone) as ISO 8601, as PostgreSQL's wall-clock value reads."""
    try:
        return (_EPOCH + dt.timedelta(microseconds=count * _US // unit)).isoformat()
    except OverflowError:
        raise Invalid(f"{count} is out of the range of timestamps") from None


def _time_text(count: int, unit: int) -> str:
    micros = count * _US // unit
    seconds, micro = divmod(micros, _US)
    if not 0 <= seconds < 86_400:
        raise Invalid(f"{count} is not a time of day")
    return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro).isoformat()


def _int(value: Any) -> int:
    if type(value) is not int:
        raise Invalid(f"{value!r} is not an integer")
    return value


def _days(per_day: int) -> Callable[[Any], str]:
    """Days, or a count of ``1/per_day`` days, since the epoch → ``YYYY-MM-DD`` (memoised)."""

    def days(value: Any) -> str:
        if type(value) is not int:
            raise Invalid(f"{value!r} is not an integer")
        day = value // per_day
        text = DAYS.get(day)
        return text if text is not None else day_text(day)

    return days


def _decimal(column: ColumnType) -> Callable[[Any], str]:
    """The exact digits of a decimal column's value, whichever way the converter wrote it."""
    if column.kind is Kind.DECIMAL:
        scale = column.scale

        def base64_decimal(value: Any) -> str:
            if type(value) is str:
                return base64_decimal_text(value, scale)
            return decimal_literal(value)  # a number: JsonConverter decimal.format=NUMERIC

        return base64_decimal
    if column.kind is Kind.VARIABLE_DECIMAL:

        def variable_decimal(value: Any) -> str:
            if type(value) is dict and is_variable_decimal(value):
                return variable_decimal_text(value)
            return decimal_literal(value)  # decimal.handling.mode string or double

        return variable_decimal
    return decimal_literal


def _json(value: Any) -> Any:
    return msgspec.json.decode(value) if type(value) is str else value


def converter(column: ColumnType, target: Target) -> Callable[[Any], Any]:
    """The function a value of type ``column`` goes through to become a ``target`` field.

    Built once per column of a schema (or mapping entry), so the per-record work is one call.
    A type that cannot become the target (a decimal as a date, a time of day as a date) raises
    :class:`Invalid`: the record is dead-lettered, naming the field. Dates and timestamps
    become ``YYYY-MM-DD`` in a date field (a ``timestamptz`` its UTC day) and ISO 8601 in
    text; decimals their exact digits, as text or, in ``custom``, as a JSON number.
    """
    kind = column.kind
    guess = GUESS[target]
    if kind is Kind.PLAIN:
        return guess
    if kind is Kind.DATE or kind is Kind.TIMESTAMP:
        if target is Target.DATE or (kind is Kind.DATE and target in _SCALARS):
            return _days(_PER_DAY[column.unit] if kind is Kind.TIMESTAMP else 1)
        if target in _SCALARS:
            unit = column.unit
            return lambda value: _instant_text(_int(value), unit)
        return guess if target is Target.ID else _refuse("a date", target)
    if kind is Kind.TIMESTAMP_TEXT:
        if target is Target.DATE:
            return lambda value: iso_day(value) if type(value) is str else guess(value)
        return guess
    if kind is Kind.TIME:
        if target in _SCALARS:
            unit = column.unit
            return lambda value: _time_text(_int(value), unit)
        return _refuse("a time of day", target)
    if kind is Kind.JSON:
        return guess if target is Target.TEXT else lambda value: guess(_json(value))
    if kind is Kind.ARRAY:
        if target is Target.TAGS or target is Target.ATTRIBUTE or target is Target.LIST:
            item = converter(column.items or PLAIN, _ITEMS[target])
            return lambda value: guess([None if v is None else item(v) for v in _list(value)])
        return guess
    text = _decimal(column)  # DECIMAL, DECIMAL_TEXT, VARIABLE_DECIMAL
    if target is Target.ATTRIBUTE or target is Target.NUMBER:
        return lambda value: msgspec.Raw(text(value).encode())  # an exact JSON number
    if target is Target.TEXT or target is Target.ID:
        return text
    if target is Target.INTEGER:
        return lambda value: to_integer(text(value))
    return _refuse("a decimal", target)


_SCALARS = (Target.TEXT, Target.ATTRIBUTE)
_ITEMS = {
    Target.TAGS: Target.TEXT,
    Target.ATTRIBUTE: Target.ATTRIBUTE,
    Target.LIST: Target.ATTRIBUTE,
}
_PER_DAY = {_MS: MS_PER_DAY, _US: US_PER_DAY, _NS: NS_PER_DAY}


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise Invalid("must be an array")
    return value


def _refuse(what: str, target: Target) -> Callable[[Any], Any]:
    def refuse(value: Any) -> Any:
        raise Invalid(f"{what} cannot become a {target.value} field")

    return refuse
