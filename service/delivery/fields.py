"""What each API field takes, and the normalisers that make a column value into it.

The API's customer has these kinds of field (SPEC §3, GAMEBALL-API.md §2): the id (a
non-empty string), the dates (``YYYY-MM-DD``), ``tags`` (an array of strings), ``custom`` (an
object), and text for most others; the nested shape adds numbers (``totalSpent``,
``avgOrderAmount``), an integer (``totalOrders``), an enum (``channel``), a boolean
(``guest``) and arrays of anything (``utms``, ``devices``, ``paymentMethods``). A mapped custom
attribute (``custom.<name>`` in the mapping file) is one more: any JSON value. Each normaliser
here either returns a value of the type the shape's model
(:mod:`service.gameball.customer`) requires or raises :class:`Invalid`; a customer built only
from their results is valid by construction (a property test holds them to both models),
which is what lets the decoder skip a pydantic pass per record.

These are the normalisers for a value whose type nothing states: no schema in the event, or
a schema without a logical type. They read values the way CDC delivers them, and where two
encodings look alike (an epoch-day date and an epoch-millisecond timestamp near 1970) they
guess by magnitude; docs/input.md lists what cannot be told apart. When the type is
known, :mod:`service.delivery.debezium` converts exactly and falls back to these only for
plain values.
"""

from __future__ import annotations

import binascii
import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

import msgspec

K = TypeVar("K")
V = TypeVar("V")

EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
MS_PER_DAY = 86_400_000
US_PER_DAY = 86_400_000_000
NS_PER_DAY = 86_400_000_000_000


class Invalid(Exception):
    """A value that cannot become the field it is mapped to (the record is dead-lettered)."""


class Target(Enum):
    """The kind of API field a column is mapped to: it decides the normaliser."""

    ID = "id"
    DATE = "date"
    TAGS = "tags"
    OBJECT = "object"
    TEXT = "text"
    ATTRIBUTE = "attribute"  # a value inside ``custom``, mapped as ``custom.<name>``
    NUMBER = "number"
    INTEGER = "integer"
    CHANNEL = "channel"
    BOOLEAN = "boolean"
    LIST = "array"


_TARGETS = {
    "customerId": Target.ID,
    "dateOfBirth": Target.DATE,
    "joinDate": Target.DATE,
    "tags": Target.TAGS,
    "custom": Target.OBJECT,
    "totalSpent": Target.NUMBER,
    "avgOrderAmount": Target.NUMBER,
    "totalOrders": Target.INTEGER,
    "channel": Target.CHANNEL,
    "guest": Target.BOOLEAN,
    "utms": Target.LIST,
    "devices": Target.LIST,
    "paymentMethods": Target.LIST,
}


def target_of(field: str) -> Target:
    return _TARGETS.get(field, Target.TEXT)


class Memo(dict[K, V]):
    """A bounded memo for normalisations whose inputs repeat (days, tag lists).

    A source table has few distinct birth dates, join days and tag
    combinations, so most lookups hit; when the memo fills up it simply starts
    over, which bounds memory whatever the input. Values handed out are shared:
    a customer is serialised once and never mutated, so sharing is safe.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def keep(self, key: K, value: V) -> V:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


DAYS: Memo[int, str] = Memo(100_000)
_ISO_DAYS: Memo[str, str] = Memo(100_000)
_TAGS: Memo[str, list[str]] = Memo(10_000)


def day_text(days: int) -> str:
    """Days since 1970-01-01 → ``YYYY-MM-DD`` (memoised; years 1-9999 only)."""
    text = DAYS.get(days)
    if text is not None:
        return text
    try:
        return DAYS.keep(days, dt.date.fromordinal(EPOCH_ORDINAL + days).isoformat())
    except (ValueError, OverflowError):
        raise Invalid(f"{days} days from 1970-01-01 is out of the range of dates") from None


def iso_day(text: str) -> str:
    """An ISO-8601 date or date-time → the day it names; an instant with an offset → its UTC day.

    ``timestamptz`` arrives from Debezium as ``2024-06-30T21:30:00.000000Z`` (always UTC), so
    the common case is the first ten characters, checked once per distinct day.
    """
    if len(text) > 10 and text[-1] != "Z" and ("+" in text[10:] or "-" in text[10:]):
        try:
            instant = dt.datetime.fromisoformat(text)
        except ValueError:
            raise Invalid(f"{text!r} is not a date") from None
        if instant.tzinfo is not None:
            return instant.astimezone(dt.UTC).date().isoformat()
    head = text[:10]
    day = _ISO_DAYS.get(head)
    if day is not None:
        return day
    try:
        return _ISO_DAYS.keep(head, dt.date.fromisoformat(head).isoformat())
    except ValueError:
        raise Invalid(f"{text!r} is not a date") from None


def guess_date(value: Any) -> str:
    """A date whose encoding nothing states, guessed by magnitude (docs/input.md lists the limits).

    Debezium sends epoch days (``date``), milliseconds (``timestamp(0-3)``), microseconds
    (``timestamp``, ``timestamp(4-6)``) or nanoseconds. Each unit is read where it gives a date
    between about 1700 and 2200, the boundaries set where the neighbouring units cannot:

    * |n| < 10⁵: days. Milli-, micro- and nanoseconds this small are the first 100 s after the
      epoch and earlier.
    * |n| < 10¹³: milliseconds (dates up to 2286). Microseconds here are 1969-09 to 1970-04.
    * |n| < 10¹⁶: microseconds (up to 2286). Nanoseconds here are 1969-09 to 1970-04.
    * beyond: nanoseconds.

    A stated type (schema or mapping file) never comes here.
    """
    kind = type(value)
    if kind is int or kind is float:
        number = int(value)
        size = -number if number < 0 else number
        if size < 100_000:
            days = number
        elif size < 10**13:
            days = number // MS_PER_DAY
        elif size < 10**16:
            days = number // US_PER_DAY
        else:
            days = number // NS_PER_DAY
        text = DAYS.get(days)
        return text if text is not None else day_text(days)
    if kind is str:
        return iso_day(value)
    if kind is bool:
        raise Invalid("a date cannot be a boolean")
    raise Invalid("a date must be a string or a number")


def to_tags(value: Any) -> list[str]:
    """An array (``text[]``), a JSON array in a string, or a comma-separated string."""
    if type(value) is str:
        tags = _TAGS.get(value)
        if tags is not None:
            return tags
        if "[" not in value:
            return _TAGS.keep(value, [tag for tag in map(str.strip, value.split(",")) if tag])
        value = msgspec.json.decode(value)
    if type(value) is list:
        for tag in value:
            if type(tag) is not str:
                break
        else:
            return value  # the common case, an array of text (a fresh list, ours to keep)
    if type(value) is list and all(
        type(t) is str or type(t) is int or type(t) is float or t is None for t in value
    ):
        return [t if type(t) is str else str(t) for t in value if t is not None]
    raise Invalid("tags must be an array of strings or a comma-separated string")


def to_object(value: Any) -> dict[str, Any]:
    if type(value) is str:
        value = msgspec.json.decode(value)
    if type(value) is not dict:
        raise Invalid("must be an object")
    return value


EXACT_FLOAT_LIMIT = 2**53
"""Past this a float no longer holds every integer: an id read as one would be another id."""


def to_id(value: Any) -> str:
    kind = type(value)
    if kind is float:
        # A number written with a fraction or exponent: 1.2345678901234568e+29
        # would become customer 123456789012345677877719597056, somebody else.
        if abs(value) >= EXACT_FLOAT_LIMIT:
            raise Invalid(f"the numeric id {value!r} is too large to be exact; send it as a string")
        if value.is_integer():
            value, kind = int(value), int
    if kind is str or kind is int or kind is float:
        text = str(value).strip()
        if text:
            return text
    if kind is dict and is_variable_decimal(value):
        return to_id(variable_decimal_text(value))
    raise Invalid("no customer id (customerId / customer_id is empty or not a scalar)")


def to_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]  # narrowed by the identity check
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if kind is dict and is_variable_decimal(value):
        return variable_decimal_text(value)
    raise Invalid("must be a string")


def to_attribute(value: Any) -> Any:
    """A custom attribute: any JSON value, a variable-scale decimal as its exact number."""
    if type(value) is dict and is_variable_decimal(value):
        return msgspec.Raw(variable_decimal_text(value).encode())
    return value


def to_number(value: Any) -> Any:
    """A JSON number; a decimal (text, or Debezium's variable-scale) as its exact digits."""
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
    elif kind is str:
        return msgspec.Raw(decimal_literal(value.strip()).encode())
    elif kind is dict and is_variable_decimal(value):
        return msgspec.Raw(variable_decimal_text(value).encode())
    raise Invalid(f"{_shown(value)} is not a number")


def to_integer(value: Any) -> int:
    """A whole number: ``12``, ``12.0`` or ``"12.00"``; ``2.5`` is refused, never rounded."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]  # narrowed by the identity check
    if kind is float and value.is_integer():
        return int(value)
    if kind is str or (kind is dict and is_variable_decimal(value)):
        text = decimal_literal(value.strip()) if kind is str else variable_decimal_text(value)
        number = Decimal(text)
        if number == number.to_integral_value():
            return int(number)
    raise Invalid(f"{_shown(value)} is not an integer")


CHANNELS = {"mobile": "mobile", "pos": "pos", "web": "web", "callcenter": "callcenter"}


def to_channel(value: Any) -> str:
    """One of ``mobile``, ``pos``, ``web``, ``callcenter`` (in any letter case)."""
    if type(value) is str:
        channel = CHANNELS.get(value) or CHANNELS.get(value.strip().lower())
        if channel is not None:
            return channel
    raise Invalid(f"{_shown(value)} is not one of mobile, pos, web, callcenter")


_BOOLEANS = {"true": True, "false": False, "t": True, "f": False, "1": True, "0": False}


def to_boolean(value: Any) -> bool:
    """A boolean, ``0``/``1``, or ``true``/``false`` (``t``/``f``, PostgreSQL's) as text."""
    kind = type(value)
    if kind is bool:
        return value  # type: ignore[no-any-return]  # narrowed by the identity check
    if kind is int and (value == 0 or value == 1):
        return bool(value)
    if kind is str:
        answer = _BOOLEANS.get(value.strip().lower())
        if answer is not None:
            return answer
    raise Invalid(f"{_shown(value)} is not a boolean")


def to_list(value: Any) -> list[Any]:
    """An array of any JSON values, or a JSON array in a string (a ``jsonb`` column)."""
    if type(value) is str:
        value = msgspec.json.decode(value)
    if type(value) is not list:
        raise Invalid("must be an array")
    return value


def _shown(value: Any) -> str:
    """A value quoted for an error, cut short: errors go into headers and logs."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


GUESS: dict[Target, Callable[[Any], Any]] = {
    Target.ID: to_id,
    Target.DATE: guess_date,
    Target.TAGS: to_tags,
    Target.OBJECT: to_object,
    Target.TEXT: to_text,
    Target.ATTRIBUTE: to_attribute,
    Target.NUMBER: to_number,
    Target.INTEGER: to_integer,
    Target.CHANNEL: to_channel,
    Target.BOOLEAN: to_boolean,
    Target.LIST: to_list,
}
"""The normaliser of each kind of field for a value of unknown type."""


# --- decimals --------------------------------------------------------------------------------

_DIGITS_LIMIT = 1000


def unscaled_text(unscaled: int, scale: int) -> str:
    """``unscaled * 10**-scale`` as a plain decimal literal: exact, never an exponent."""
    if not -_DIGITS_LIMIT < scale < _DIGITS_LIMIT:  # 10**-1e9 would take minutes and gigabytes
        raise Invalid(f"a decimal's scale of {scale} is out of range")
    if scale <= 0:
        return str(unscaled * 10**-scale)
    sign = "-" if unscaled < 0 else ""
    digits = str(-unscaled if unscaled < 0 else unscaled).rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def base64_decimal_text(value: str, scale: int) -> str:
    """Connect's ``Decimal`` (and Debezium's precise mode): base64 of the big-endian two's
    complement unscaled integer. ``"MDk="`` at scale 2 is ``123.45``."""
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{value!r} is not a base64-encoded decimal") from None
    if not raw:
        raise Invalid("an empty decimal")
    return unscaled_text(int.from_bytes(raw, "big", signed=True), scale)


def is_variable_decimal(value: dict[str, Any]) -> bool:
    """Debezium's ``VariableScaleDecimal`` (``numeric`` without a scale): ``{"scale", "value"}``.

    Recognisable by its shape even without a schema: a JSON column arrives as a string, so
    an object with exactly these two keys is this encoding.
    """
    return len(value) == 2 and type(value.get("scale")) is int and type(value.get("value")) is str


def variable_decimal_text(value: dict[str, Any]) -> str:
    return base64_decimal_text(value["value"], value["scale"])


def decimal_literal(value: Any) -> str:
    """A decimal given as text (``decimal.handling.mode=string``) or as a JSON number, checked."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str or kind is float:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise Invalid(f"{value!r} is not a decimal number") from None
        # A finite number of sane size: "1e999999999" would spell a billion digits.
        if number.is_finite() and -_DIGITS_LIMIT < number.adjusted() < _DIGITS_LIMIT:
            return format(number, "f")
    raise Invalid(f"{value!r} is not a decimal number")
