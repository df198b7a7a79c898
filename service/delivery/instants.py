"""Date-times as the batch API takes them: instants in UTC with milliseconds, never in the
future.

``orderDate`` and ``transactionTime`` are instants (``2026-12-07T09:30:00.123Z``). Debezium
sends a column of a date-time type as a count since 1970 in the unit of its logical type, as
a day count, or as ISO 8601 text (``ZonedTimestamp``); :func:`instant_ms` picks the reader
of a column's type once, and every reader gives milliseconds since 1970, finer digits cut.
A ``timestamp`` without zone is its wall-clock reading, taken as UTC, and so is ISO text
without an offset. Without a schema a number is read by magnitude, with the customers' date
bounds (:func:`~service.delivery.fields.guess_date`). A time after now is sent as now
(:func:`not_in_future`): Gameball refuses a future ``transactionTime``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from service.delivery.debezium import ColumnType, Kind
from service.delivery.fields import DAYS, MS_PER_DAY, Invalid, day_text

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
_END_OF_DATES = (
    dt.date(9999, 12, 31).toordinal() - dt.date(1970, 1, 1).toordinal() + 1
) * MS_PER_DAY
_HOURS = tuple(f"T{hour:02d}:" for hour in range(24))
_SIXTY = tuple(f"{count:02d}" for count in range(60))
_MILLIS = tuple(f".{milli:03d}Z" for milli in range(1000))


def utc_text(ms: int) -> str:
    """Milliseconds since the epoch → ``2026-12-07T09:30:00.123Z``.

    The day comes from the decoder's memo of day texts, the time of day from integer
    arithmetic and tables of the digits: 0.7 µs, where ``datetime.isoformat`` took 2.2 and
    an f-string of the same parts 1.1 (measured on this machine under load).
    """
    day, rest = divmod(ms, MS_PER_DAY)
    text = DAYS.get(day)
    if text is None:
        text = day_text(day)  # Invalid outside years 1-9999
    seconds, milli = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return text + _HOURS[hours] + _SIXTY[minutes] + ":" + _SIXTY[seconds] + _MILLIS[milli]


def not_in_future(ms: int, now: int) -> int:
    """``ms``, or ``now`` where it is later: the API takes no future time. A time past the
    year 9999 is no time at all, not one to move (``Invalid``)."""
    if ms <= now:
        return ms
    if ms >= _END_OF_DATES:
        shown = str(ms) if ms < 10**20 else f"{str(ms)[:20]}..."
        raise Invalid(f"{shown} ms from 1970-01-01 is past the year 9999")
    return now


def iso_ms(text: str) -> int:
    """ISO 8601 text → milliseconds since the epoch; without an offset it is UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{text[:40]!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        return (moment - _EPOCH) // _MS
    return (moment - _EPOCH_UTC) // _MS


def guess_ms(value: Any) -> int:
    """A date-time whose type nothing states → milliseconds since the epoch.

    Text is ISO 8601. A number is read by magnitude, with :func:`~service.delivery.fields.
    guess_date`'s bounds: days below 10⁵, milliseconds below 10¹³, microseconds below 10¹⁶,
    nanoseconds beyond.
    """
    kind = type(value)
    if kind is str:
        return iso_ms(value)
    if kind is int or kind is float:
        number = int(value)
        size = -number if number < 0 else number
        if size < 100_000:
            return number * MS_PER_DAY
        if size < 10**13:
            return number
        if size < 10**16:
            return number // 1_000
        return number // 1_000_000
    raise Invalid(f"{str(value)[:40]!r} is not a date-time")


def instant_ms(column: ColumnType) -> Callable[[Any], int]:
    """The reader of a date-time column of type ``column``, to milliseconds since the epoch.

    Debezium's ``Timestamp``, ``MicroTimestamp`` and ``NanoTimestamp`` count from the epoch in
    their unit (a ``timestamp`` without zone: its wall-clock reading, taken as UTC), ``Date``
    in days; ``ZonedTimestamp`` and the ISO types are text. A decimal, a time of day or an
    array cannot be one.
    """
    kind = column.kind
    if kind is Kind.TIMESTAMP:
        per_ms = column.unit // 1_000

        def count(value: Any) -> int:
            if type(value) is not int:
                raise Invalid(f"{str(value)[:40]!r} is not a count of time since the epoch")
            return value // per_ms if per_ms > 1 else value

        return count
    if kind is Kind.DATE:

        def days(value: Any) -> int:
            if type(value) is not int:
                raise Invalid(f"{str(value)[:40]!r} is not a count of days since the epoch")
            return value * MS_PER_DAY

        return days
    if kind is Kind.PLAIN or kind is Kind.TIMESTAMP_TEXT:
        return guess_ms

    def refuse(value: Any) -> int:
        raise Invalid(f"a {kind.value} column cannot be a date-time")

    return refuse
