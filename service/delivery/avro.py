"""Avro in the Confluent wire format: a zero byte, a 4-byte schema id, then Avro binary.

Debezium writes it through Confluent's ``AvroConverter`` or Apicurio's in Confluent-compatible
mode; the schema lives in a registry (``SCHEMA_REGISTRY_URL``). Reading it is confluent-kafka's
own ``SchemaRegistryClient`` and ``AvroDeserializer`` (fastavro), both caching by schema id:
nothing here reads Avro by hand.

**One conversion, the JSON path's.** A Connect schema written as Avro keeps its logical type
as ``connect.name`` (and ``connect.parameters``), so each column's Avro type is read back into
the Connect schema the JSON converter would have sent and typed by the same
:func:`~service.delivery.debezium.column_type`. Avro's values differ from the JSON converter's
only where Avro has a richer type: bytes (a ``Decimal``, ``VariableScaleDecimal``'s
``value``), which JSON carries as base64, and the Avro logical types fastavro turns into Python
objects (``decimal``, ``date``, ``timestamp-millis``, ``time-millis``). Those few columns,
found once per schema, are put back into the JSON converter's form; every other value is used
as fastavro gives it, and the plan and converters of :mod:`service.delivery.rows` do the rest,
so the API sees the same values from either format.

**Failures say whose fault they are.** A schema id the registry does not know is the record's
(``invalid_event``, naming the id); a record that does not read by its schema too (the Avro
error); a registry that cannot be asked is nobody's record's fault:
:class:`~service.errors.RegistryUnavailable`, which the pipeline waits out.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from service.delivery.debezium import PLAIN, ColumnType, column_type
from service.errors import RegistryUnavailable

MAGIC = 0
"""The Confluent wire format's first byte."""
_EPOCH_DAY = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PLAIN_AVRO = frozenset({"string", "int", "long", "float", "double", "boolean", "null", "enum"})
_MAX_SCHEMAS = 256
_ROWS = ("before", "after")


class UnknownSchema(Exception):
    """The registry answered that it has no schema of this id."""


class NotItsSchema(Exception):
    """The record's Avro does not read by the schema its id names."""


class Registry(Protocol):
    """What is used of ``SchemaRegistryClient`` (a stand-in in unit tests)."""

    def get_schema(
        self, schema_id: int, subject_name: str | None = None, fmt: str | None = None
    ) -> Any: ...


def schema_id(value: bytes) -> int | None:
    """The schema id of a value in the Confluent wire format, else ``None``."""
    if len(value) < 5 or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:5], "big")


class AvroReader:
    """Wire-format values → (event, its row's column types), schemas cached by id."""

    def __init__(self, registry: Registry) -> None:
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        self._registry = registry
        self._deserialize: Callable[[bytes], Any] = AvroDeserializer(registry)
        # id → (the row's typed columns or None, the columns Avro gives in another form)
        self._schemas: dict[int, tuple[dict[str, ColumnType] | None, tuple[str, ...]]] = {}
        # id → what its fetch in a thread (prefetch) met, for the next schema() to raise
        self._failed: dict[int, UnknownSchema | RegistryUnavailable] = {}

    def unfetched(self, values: Iterable[bytes | None]) -> set[int]:
        """The schema ids of these values (those in the wire format) not fetched yet."""
        known = self._schemas
        ids = set()
        for value in values:
            if value and value[0] == MAGIC:
                sid = schema_id(value)
                if sid is not None and sid not in known:
                    ids.add(sid)
        return ids

    def prefetch(self, sid: int) -> None:
        """Fetch schema ``sid`` into the cache: blocking, so in a thread, not on the loop.

        The first record of a new schema would otherwise wait for the registry on the event
        loop, and every job's HTTP exchange with it (up to the client's timeout when the
        registry does not answer). What the fetch met is kept for the next :meth:`schema`
        call of that id to raise, without asking the registry again.
        """
        self._failed.pop(sid, None)  # an older failure nobody acted on: ask again
        try:
            self.schema(sid)
        except (UnknownSchema, RegistryUnavailable) as exc:
            self._failed[sid] = exc

    @classmethod
    def from_config(cls, config: dict[str, str | int]) -> AvroReader:
        """A reader of the registry ``config`` describes (no network until a record needs it)."""
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient(config))

    def schema(self, sid: int) -> tuple[dict[str, ColumnType] | None, tuple[str, ...]]:
        """The row's typed columns and the columns to put in JSON form, of schema ``sid``.

        Raises :class:`UnknownSchema` or :class:`~service.errors.RegistryUnavailable`.
        """
        known = self._schemas.get(sid)
        if known is not None:
            return known
        failed = self._failed.pop(sid, None)
        if failed is not None:
            raise failed
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._registry.get_schema(sid)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UnknownSchema(
                    f"schema id {sid} is not in the schema registry ({exc.error_message})"
                ) from None
            raise RegistryUnavailable(f"schema id {sid}: {exc}") from exc
        except Exception as exc:  # httpx2's connect and timeout errors, TLS, DNS: not the record's
            raise RegistryUnavailable(f"schema id {sid}: {type(exc).__name__}: {exc}") from exc
        try:
            parsed = json.loads(schema.schema_str)
        except (TypeError, ValueError):
            parsed = None
        if len(self._schemas) >= _MAX_SCHEMAS:
            self._schemas.clear()
        known = self._schemas[sid] = row_types(parsed)
        return known

    def read(self, value: bytes, sid: int) -> Any:
        """The value's Avro as Python (records as dicts), its schema already fetched.

        Raises :class:`NotItsSchema` with the Avro error.
        """
        try:
            return self._deserialize(value)
        except Exception as exc:  # noqa: BLE001 - fastavro's EOFError, IndexError, UnicodeDecodeError...
            raise NotItsSchema(
                f"the record does not read as Avro of schema id {sid}: {type(exc).__name__}: {exc}"
            ) from None


def row_types(schema: Any) -> tuple[dict[str, ColumnType] | None, tuple[str, ...]]:
    """An Avro value schema → its row's typed columns (``None``: no row) and the columns whose
    Avro values are not in the JSON converter's form.

    The row is a Debezium envelope's ``after`` record (defined where it first appears, in
    ``before``, and named by ``after``), or the record itself (a flattened row).
    """
    if type(schema) is not dict or schema.get("type") != "record":
        return None, ()
    fields = schema.get("fields")
    if type(fields) is not list:
        return None, ()
    rows = [_unwrap(f.get("type")) for f in fields if type(f) is dict and f.get("name") in _ROWS]
    for record in rows:  # the row's record is defined in ``before``; ``after`` names it
        if type(record) is dict and record.get("type") == "record":
            fields = record.get("fields")
            if type(fields) is not list:
                return None, ()
            break
    columns: dict[str, ColumnType] = {}
    other: list[str] = []
    for field in fields:
        if type(field) is not dict or type(field.get("name")) is not str:
            continue
        avro_type = _unwrap(field.get("type"))
        kind = column_type(_connect(avro_type))
        if kind is not PLAIN:
            columns[field["name"]] = kind
        if not _json_shaped(avro_type):
            other.append(field["name"])
    return columns, tuple(other)


def _unwrap(avro_type: Any) -> Any:
    """An optional type (``["null", T]``) → ``T``."""
    if type(avro_type) is list:
        members = [t for t in avro_type if t != "null"]
        return members[0] if len(members) == 1 else avro_type
    return avro_type


def _connect(avro_type: Any) -> Any:
    """The Connect schema an Avro type was written from, as the JSON converter spells it."""
    if type(avro_type) is not dict:
        return {"type": avro_type}
    kind = avro_type.get("type")
    if type(kind) is dict:  # {"type": {"type": "int", ...}}
        return _connect(kind)
    connect: dict[str, Any] = {
        "type": {"record": "struct"}.get(kind, kind) if type(kind) is str else kind,
        "name": avro_type.get("connect.name"),
        "parameters": avro_type.get("connect.parameters"),
    }
    if kind == "array":
        connect["items"] = _connect(_unwrap(avro_type.get("items")))
    return connect


def _json_shaped(avro_type: Any) -> bool:
    """Whether fastavro gives this type's values as the JSON converter writes them."""
    if type(avro_type) is str:
        return avro_type in _PLAIN_AVRO
    if type(avro_type) is dict:
        kind = avro_type.get("type")
        if "logicalType" in avro_type:
            return False
        if type(kind) is str and kind in _PLAIN_AVRO:
            return True
        if kind == "array":
            return _json_shaped(_unwrap(avro_type.get("items")))
    return False  # bytes, fixed, records, maps, unions of several types


def json_form(value: Any) -> Any:
    """A value fastavro read → the JSON converter's form of it (bytes as base64, dates as
    days, timestamps as milliseconds, times as milliseconds since midnight, decimals as
    base64 of the unscaled integer), inside records and arrays too."""
    kind = type(value)
    if kind is bytes:
        return base64.b64encode(value).decode("ascii")
    if kind is decimal.Decimal:
        return _decimal_base64(value)
    if kind is dict:
        return {k: json_form(v) for k, v in value.items()}
    if kind is list:
        return [json_form(v) for v in value]
    if kind is dt.datetime:
        delta = value - _EPOCH if value.tzinfo is not None else value - _EPOCH.replace(tzinfo=None)
        return delta // dt.timedelta(milliseconds=1)
    if kind is dt.date:
        return (value - _EPOCH_DAY).days
    if kind is dt.time:
        return (value.hour * 3600 + value.minute * 60 + value.second) * 1000 + (
            value.microsecond // 1000
        )
    return value


def _decimal_base64(value: decimal.Decimal) -> str:
    """fastavro's ``Decimal`` (exponent = -scale) → base64 of its unscaled two's complement."""
    sign, digits, _ = value.as_tuple()
    unscaled = int("".join(map(str, digits)) or "0")
    if sign:
        unscaled = -unscaled
    size = unscaled.bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode("ascii")
