"""Row-to-customer field mapping: defaults by name, or ``FIELD_MAPPING_FILE``.

Entries name API field *paths* in the chosen shape (``GAMEBALL_CUSTOMER_SHAPE``, see
:mod:`service.gameball.customer`). Nested (the default)::

    customerId: id                      # a column
    email: contact.mail                 # a key inside a JSON column (dotted path)
    customerAttributes.joinDate:        # a column with its type stated
      column: signed_up_at
      type: timestamp-micros
    customerAttributes.city: address.city
    customerAttributes.custom.tier: loyalty_tier   # a custom attribute (custom.tier is the same)
    custom.balance: {column: balance, type: decimal, scale: 2}

Flat (the tutorial's) names the same fields without ``customerAttributes.`` (``joinDate``,
``city``) and has ``name`` and ``tags``. ``custom`` and ``custom.<attribute>`` mean the
customer's ``custom`` object in both shapes. A field the chosen shape does not define stops
start-up with one sentence naming it and where it belongs (:func:`layout`).

**By name**, without an entry: a column named like a field, in camelCase or snake_case
(``date_of_birth`` → ``dateOfBirth``), feeds it wherever the shape keeps it; in the nested
shape a column ``name`` feeds ``customerAttributes.displayName``, and a column ``email`` or
``mobile`` fills both the top-level merge key and the profile's own field (as does a mapped
top-level ``email``, unless ``customerAttributes.email`` is mapped too). A mapped field no
longer falls back to name matching. Columns the API does not know reach ``custom`` only
through ``custom.<attribute>`` entries; a ``custom`` entry (a JSON column) and
``custom.<attribute>`` entries combine, the attributes winning.

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
from service.gameball.customer import (
    ATTRIBUTES,
    FLAT_FIELDS,
    MERGE_KEYS,
    NESTED_ATTRIBUTES,
    NESTED_TOP,
    CustomerShape,
    TagsSync,
)

ATTRIBUTE_PREFIX = "custom."
NESTED_PREFIX = ATTRIBUTES + "."
NESTED_ATTRIBUTE_PREFIX = NESTED_PREFIX + ATTRIBUTE_PREFIX
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

    ``fields`` holds the API's own fields by path as written (``email``,
    ``customerAttributes.city``), ``attributes`` the custom attributes (``custom.<name>`` or
    ``customerAttributes.custom.<name>``: attribute name -> source); ``nested_attributes``
    the names written the second way (valid in the nested shape only). ``origin`` is the
    file; ``label`` names the mapping in errors (``FIELD_MAPPING_FILE '...'``, or a route's).
    """

    def __init__(self, entries: dict[str, str | Source], origin: str = "", label: str = "") -> None:
        self.fields: dict[str, Source] = {}
        self.attributes: dict[str, Source] = {}
        self.nested_attributes: set[str] = set()
        self.origin = origin
        # How an error names this mapping: the file, or a route's entry in ROUTES_FILE.
        self.label = label or (f"FIELD_MAPPING_FILE {origin!r}" if origin else "the field mapping")
        for key, entry in entries.items():
            source = entry if isinstance(entry, Source) else Source(tuple(entry.split(".")))
            if key.startswith(NESTED_ATTRIBUTE_PREFIX):
                name = key[len(NESTED_ATTRIBUTE_PREFIX) :]
                self.attributes[name] = source
                self.nested_attributes.add(name)
            elif key.startswith(ATTRIBUTE_PREFIX):
                self.attributes[key[len(ATTRIBUTE_PREFIX) :]] = source
            else:
                self.fields[key] = source


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a value lands: ``name`` at the top level, or inside ``customerAttributes``."""

    name: str
    nested: bool = False

    @property
    def path(self) -> str:
        return NESTED_PREFIX + self.name if self.nested else self.name


@dataclass(frozen=True, slots=True)
class Layout:
    """The customer the decoder builds, resolved once from the shape, the mapping and
    ``TAGS_SYNC``.

    ``by_name``: column name → slot, for fields the mapping does not map; ``mapped``: the
    mapping's entries, slot → source; ``copies``: top-level merge keys whose value also fills
    the profile's own field; ``tags_aside``: tags travel beside the item (``Customer.tags``),
    not in it.
    """

    shape: CustomerShape
    by_name: dict[str, Slot]
    mapped: dict[Slot, Source]
    copies: tuple[str, ...]
    tags_aside: bool


def layout(
    mapping: FieldMapping | None,
    shape: CustomerShape = "nested",
    tags_sync: TagsSync = "changed",
) -> Layout:
    """Resolve where every mapped and by-name field lands; ``ConfigError`` names a mapped
    field ``shape`` does not define, and where it belongs if it belongs anywhere."""
    mapping = mapping or FieldMapping({})
    nested = shape == "nested"
    with_tags = tags_sync != "off"
    mapped: dict[Slot, Source] = {}
    for key, source in mapping.fields.items():
        slot = _slot(key, shape, mapping.label)
        if slot.name == "tags" and not slot.nested and not with_tags:
            continue  # TAGS_SYNC=off: tags are not sent, whatever feeds them
        mapped[slot] = source
    if not nested and mapping.nested_attributes:
        name = sorted(mapping.nested_attributes)[0]
        raise _not_in_shape(f"{NESTED_ATTRIBUTE_PREFIX}{name}", shape, f"custom.{name}", mapping)
    taken = {slot.path for slot in mapped}
    by_name: dict[str, Slot] = {}

    def by(field: str, slot: Slot) -> None:
        if slot.path not in taken:
            for column in (field, snake_case(field)):
                by_name.setdefault(column, slot)

    if nested:
        for field in NESTED_TOP:
            by(field, Slot(field))
        if with_tags:
            by("tags", Slot("tags"))
        for field in NESTED_ATTRIBUTES:
            if field not in MERGE_KEYS:
                by(field, Slot(field, nested=True))
        by("name", Slot("displayName", nested=True))
        copies = tuple(key for key in MERGE_KEYS if Slot(key, nested=True) not in mapped)
    else:
        for field in FLAT_FIELDS:
            if field != "tags" or with_tags:
                by(field, Slot(field))
        copies = ()
    return Layout(shape, by_name, mapped, copies, nested and tags_sync in ("changed", "always"))


def _slot(key: str, shape: CustomerShape, label: str) -> Slot:
    hint: str | None = None
    if shape == "flat":
        if key in FLAT_FIELDS:
            return Slot(key)
        name = key.removeprefix(NESTED_PREFIX)
        if name in FLAT_FIELDS:
            hint = name
        raise _not_in_shape(key, shape, hint, label)
    if key in NESTED_TOP or key == "tags":
        return Slot(key)
    if key == "custom":  # the custom object, where each shape keeps it
        return Slot("custom", nested=True)
    name = key.removeprefix(NESTED_PREFIX)
    if key.startswith(NESTED_PREFIX) and name in NESTED_ATTRIBUTES:
        return Slot(name, nested=True)
    if key == name and name in NESTED_ATTRIBUTES:
        hint = NESTED_PREFIX + name
    elif key == "name":
        hint = NESTED_PREFIX + "displayName"
    raise _not_in_shape(key, shape, hint, label)


def _not_in_shape(
    key: str, shape: CustomerShape, hint: str | None, where: str | FieldMapping
) -> ConfigError:
    source = where.label if isinstance(where, FieldMapping) else where
    advice = (
        f"map it as {hint}"
        if hint
        else "see the README's table of fields, or send it as custom.<attribute>"
    )
    return ConfigError(
        f"{source} maps {key}, which the {shape} customer does not define "
        f"(GAMEBALL_CUSTOMER_SHAPE={shape}): {advice}"
    )


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
    return field_mapping(data, str(file), f"FIELD_MAPPING_FILE {str(file)!r}")


def field_mapping(data: Any, origin: str, label: str) -> FieldMapping:
    """A parsed mapping (the file's content, or a customers route's ``mapping:``), validated;
    ``ConfigError`` starts with ``label``."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label} must map API field names to source column paths "
            "(apiField: source.column.path)"
        )
    entries: dict[str, str | Source] = {}
    for key, value in data.items():
        try:
            entries[_key(key)] = column_source(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{label}: {key}: {exc}") from None
    return FieldMapping(entries, origin, label)


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("an entry's name must be an API field (or custom.<attribute>)")
    if "." not in key:
        return key
    for prefix in (NESTED_ATTRIBUTE_PREFIX, ATTRIBUTE_PREFIX):
        if key.startswith(prefix) and key != prefix:
            return key
    attribute = key.removeprefix(NESTED_PREFIX)
    if key.startswith(NESTED_PREFIX) and attribute and "." not in attribute:
        return key
    raise ValueError(
        "only customerAttributes.<field> and custom attributes (custom.<attribute>) have a "
        f"dot in their name; top-level fields are plain names such as {', '.join(NESTED_TOP[:4])}"
    )


def column_source(value: Any) -> Source:
    """A mapping entry's value: ``column.path`` or ``{column, type, scale}``; ``ValueError`` or
    ``TypeError`` say what is wrong with it."""
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
