"""Row-to-customer field mapping: defaults by name, or ``FIELD_MAPPING_FILE``.

By default a column feeds the API field of the same name in camelCase or snake_case
(``date_of_birth`` → ``dateOfBirth``). The mapping file (YAML or JSON) says otherwise, one
entry per API field::

    customerId: id                      # a column
    email: contact.mail                 # a key inside a JSON column (dotted path)
    joinDate:                           # a column with its type stated
      column: signed_up_at
      type: timestamp-micros
    custom.tier: loyalty_tier           # a column the API does not know, as a custom attribute
    custom.balance: {column: balance, type: decimal, scale: 2}

A mapped field no longer falls back to name matching. Columns the API does not know reach
``custom`` only through ``custom.<attribute>`` entries; a ``custom`` entry (a JSON column)
and ``custom.<attribute>`` entries combine, the attributes winning.

A stated ``type`` matters only where the event does not say it: without the JSON converter's
schemas, or a schema without a logical type (``decimal.handling.mode=string`` gives a plain
string). A logical type in the schema always wins. Types: ``date`` (epoch days),
``timestamp-millis``, ``timestamp-micros``, ``timestamp-nanos``, ``decimal`` (with ``scale``:
base64 of the unscaled integer, Debezium's ``precise`` mode; without: a decimal string or
number), ``json`` (a string holding JSON), or any Debezium / Connect logical type name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from service.delivery.debezium import STATED_TYPES, ColumnType, stated_type
from service.errors import ConfigError

API_FIELDS = (
    "customerId",
    "email",
    "name",
    "gender",
    "dateOfBirth",
    "joinDate",
    "tags",
    "custom",
    "mobile",
    "displayName",
    "firstName",
    "lastName",
    "country",
    "city",
    "referrerCode",
)
ATTRIBUTE_PREFIX = "custom."
_SHORT_TYPES = (
    "date",
    "timestamp-millis",
    "timestamp-micros",
    "timestamp-nanos",
    "decimal",
    "json",
)


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class Source:
    """Where an API field comes from: a column, then keys inside it (a JSON column)."""

    path: tuple[str, ...]
    type: ColumnType | None = None  # stated in the file

    @property
    def column(self) -> str:
        return self.path[0]


class FieldMapping:
    """``apiField -> Source``; fields not mapped fall back to name matching.

    ``fields`` holds the API's own fields, ``attributes`` the ``custom.<name>`` entries
    (attribute name -> source).
    """

    def __init__(self, entries: dict[str, str | Source]) -> None:
        self.fields: dict[str, Source] = {}
        self.attributes: dict[str, Source] = {}
        for key, entry in entries.items():
            source = entry if isinstance(entry, Source) else Source(tuple(entry.split(".")))
            if key.startswith(ATTRIBUTE_PREFIX):
                self.attributes[key[len(ATTRIBUTE_PREFIX) :]] = source
            else:
                self.fields[key] = source


def load_field_mapping(path: str | Path) -> FieldMapping:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"FIELD_MAPPING_FILE {str(file)!r} cannot be read: {exc.strerror}"
        ) from None
    try:
        data = orjson.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML's message spans lines; a log line must not
        raise ConfigError(f"FIELD_MAPPING_FILE {str(file)!r} is not valid: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"FIELD_MAPPING_FILE {str(file)!r} must map API field names to source column paths "
            "(apiField: source.column.path)"
        )
    entries: dict[str, str | Source] = {}
    for key, value in data.items():
        try:
            entries[_key(key)] = _source(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"FIELD_MAPPING_FILE {str(file)!r}: {key}: {exc}") from None
    return FieldMapping(entries)


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("an entry's name must be an API field (or custom.<attribute>)")
    if "." in key and (not key.startswith(ATTRIBUTE_PREFIX) or key == ATTRIBUTE_PREFIX):
        raise ValueError(
            "only custom attributes have a dot in their name (custom.<attribute>); API fields "
            f"are plain names such as {', '.join(API_FIELDS[:4])}"
        )
    return key


def _source(value: Any) -> Source:
    if isinstance(value, str):
        return Source(_path(value))
    if not isinstance(value, dict):
        raise TypeError("must be a column path, or {column: ..., type: ..., scale: ...}")
    unknown = set(value) - {"column", "type", "scale"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    column = value.get("column")
    if not isinstance(column, str):
        raise TypeError("needs a column (column: source.column.path)")
    name, scale = value.get("type"), value.get("scale")
    if name is None:
        if scale is not None:
            raise ValueError("a scale needs a type (type: decimal)")
        return Source(_path(column))
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int)):
        raise ValueError(f"scale must be an integer, not {scale!r}")
    if scale is not None and name not in ("decimal", "org.apache.kafka.connect.data.Decimal"):
        raise ValueError("only a decimal has a scale")
    if not isinstance(name, str) or name not in STATED_TYPES:
        raise ValueError(f"unknown type {name!r}; one of {', '.join(_SHORT_TYPES)}")
    return Source(_path(column), stated_type(name, scale))


def _path(text: str) -> tuple[str, ...]:
    path = tuple(text.split("."))
    if not all(path):
        raise ValueError(f"{text!r} is not a column path (column or column.key.key)")
    return path
