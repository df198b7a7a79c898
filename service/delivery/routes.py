"""Routes: which source topics feed which Gameball operation, through which mapping.

``ROUTES_FILE`` (YAML, SPEC §6; docs/routes.md) lists them::

    routes:
      - name: orders                      # unique; named in logs and route_info
        operation: orders                 # customers | orders | cashback | redeem | events |
                                          # balance-adjustment
        topics: [shop.public.orders]      # a topic belongs to one route
        mapping: {customerId: customer_id, orderId: id, orderDate: created_at, totalPaid: total}
        dead_letter_topic: orders.dlq     # optional: KAFKA_DLQ_TOPIC by default
        limits: {per_second: 100, per_30s: 1200}   # optional: its submissions' own budget
      - name: adjustments
        operation: balance-adjustment
        topics: [shop.public.point_adjustments]
        unsafe_without_ids: true          # events and balance-adjustment only, and required
        mapping: {customerId: customer_id, amount: points, reason: note}

Without ``ROUTES_FILE`` the settings mean one customers route named ``customers``: the topics
of ``KAFKA_SOURCE_TOPICS`` read through ``FIELD_MAPPING_FILE`` (:func:`routes_from_settings`),
which is everything the service did before routes. With it, neither of those two may be set
(:class:`~service.config.Settings` refuses the pair): a variable that would be ignored is a
mistake to say at start, not to discover in production.

A customers route's ``mapping`` means what ``FIELD_MAPPING_FILE`` means and is read and
checked by the same code (:func:`~service.delivery.mapping.field_mapping`, then
:func:`~service.delivery.mapping.layout` for the shape); the other operations' mappings are
:func:`~service.delivery.items.item_mapping`'s. Every mistake stops start-up with one
:class:`~service.errors.ConfigError` sentence that starts ``ROUTES_FILE '<path>', route
'<name>'`` and names the field.

``unsafe_without_ids`` is the operator's signature under at-most-once delivery: an events or
balance-adjustment item carries no id, so a second delivery awards or deducts points again,
and the service would rather dead-letter an item whose fate is unknown (``outcome_unknown``)
than send it twice. It is required there and refused on the operations whose items carry
their id, where it would mean nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service.config import Settings
from service.delivery.items import ItemMapping, item_mapping
from service.delivery.mapping import FieldMapping, field_mapping, layout, load_field_mapping
from service.errors import ConfigError
from service.gameball.budget import Window
from service.gameball.customer import CustomerShape, TagsSync
from service.gameball.operations import Delivery, Operation

DEFAULT_ROUTE = "customers"
KEYS = (
    "name",
    "operation",
    "topics",
    "mapping",
    "unsafe_without_ids",
    "dead_letter_topic",
    "limits",
)
LIMIT_KEYS = {"per_second": 1.0, "per_30s": 30.0}
"""A route's limits, each a number of requests in that many seconds."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_OPERATIONS = ", ".join(operation.value for operation in Operation)


@dataclass(frozen=True, slots=True)
class Limits:
    """A route's own request limits, where Gameball gives its operation other limits than the
    batch endpoints' (the rate-limit page: Events 100/s and 1,200 per 30 s)."""

    per_second: int | None = None
    per_30s: int | None = None

    def windows(self) -> tuple[Window, ...]:
        """The limits as the request budget counts them."""
        found = []
        if self.per_second is not None:
            found.append(Window(self.per_second, LIMIT_KEYS["per_second"]))
        if self.per_30s is not None:
            found.append(Window(self.per_30s, LIMIT_KEYS["per_30s"]))
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Route:
    """Source topics → one operation, through one mapping.

    ``mapping``: a :class:`FieldMapping` for customers (``None``: columns matched by name, as
    without ``FIELD_MAPPING_FILE``), an :class:`ItemMapping` for every other operation.
    ``limits``: ``None`` shares the group's budget.
    """

    name: str
    operation: Operation
    topics: tuple[str, ...]
    mapping: FieldMapping | ItemMapping | None
    dead_letter_topic: str
    unsafe_without_ids: bool = False
    limits: Limits | None = None

    @property
    def delivery(self) -> Delivery:
        return self.operation.facts.delivery

    @property
    def natural_key(self) -> str | None:
        return self.operation.facts.natural_key


def routes_from_settings(settings: Settings) -> tuple[Route, ...]:
    """The routes the settings describe: ``ROUTES_FILE``'s, or the one customers route of
    ``KAFKA_SOURCE_TOPICS`` and ``FIELD_MAPPING_FILE``. Raises :class:`ConfigError`."""
    if settings.routes_file is None:
        path = settings.field_mapping_file
        mapping = load_field_mapping(path) if path is not None else None
        layout(mapping, settings.gameball_customer_shape, settings.tags_sync)
        return (
            Route(
                DEFAULT_ROUTE,
                Operation.CUSTOMERS,
                settings.kafka_source_topics,
                mapping,
                settings.kafka_dlq_topic,
            ),
        )
    return load_routes(
        settings.routes_file,
        dead_letter_topic=settings.kafka_dlq_topic,
        shape=settings.gameball_customer_shape,
        tags_sync=settings.tags_sync,
    )


def load_routes(
    path: str | Path,
    *,
    dead_letter_topic: str,
    shape: CustomerShape = "nested",
    tags_sync: TagsSync = "changed",
) -> tuple[Route, ...]:
    """Read and check a routes file; ``dead_letter_topic`` is a route's default."""
    file = Path(path)
    where = f"ROUTES_FILE {str(file)!r}"
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(f"{where} cannot be read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())  # YAML's message spans lines; a log line must not
        raise ConfigError(f"{where} is not valid YAML: {detail}") from None
    return parse_routes(data, where, dead_letter_topic, shape, tags_sync)


def parse_routes(
    data: Any,
    where: str,
    dead_letter_topic: str,
    shape: CustomerShape = "nested",
    tags_sync: TagsSync = "changed",
) -> tuple[Route, ...]:
    """A routes file's content → its routes, checked whole; errors start with ``where``."""
    if not isinstance(data, dict) or "routes" not in data:
        raise ConfigError(f"{where} must hold routes: a list of routes (see docs/routes.md)")
    unknown = sorted(str(key) for key in data if key != "routes")
    if unknown:
        raise ConfigError(f"{where} has an unknown key {unknown[0]!r}: it holds only routes")
    entries = data["routes"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: routes must be a list of at least one route")
    routes: list[Route] = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    limits: dict[Operation, tuple[str, Limits]] = {}
    for number, entry in enumerate(entries, start=1):
        route = _route(
            entry, f"{where}, route #{number}", where, dead_letter_topic, shape, tags_sync
        )
        label = f"{where}, route {route.name!r}"
        if route.name in names:
            raise ConfigError(
                f"{label}: name: route #{names[route.name]} has this name too; names are unique"
            )
        names[route.name] = number
        if route.limits is not None:
            other = limits.setdefault(route.operation, (route.name, route.limits))
            if other[1] != route.limits:
                raise ConfigError(
                    f"{label}: limits: route {other[0]!r} gives {route.operation.value} other "
                    "limits; an operation's limits are the API's, one set for all its routes"
                )
        for topic in route.topics:
            if topic in owners:
                raise ConfigError(
                    f"{label}: topics: {topic} is route {owners[topic]!r}'s already; a topic "
                    "belongs to one route"
                )
            owners[topic] = route.name
        routes.append(route)
    return tuple(routes)


def _route(
    entry: Any,
    numbered: str,
    where: str,
    dead_letter_topic: str,
    shape: CustomerShape,
    tags_sync: TagsSync,
) -> Route:
    if not isinstance(entry, dict):
        raise ConfigError(f"{numbered} must be a mapping of {', '.join(KEYS[:4])} and options")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = "is missing" if name is None else f"{name!r} is not a name"
        raise ConfigError(
            f"{numbered}: name {shown}: a route needs a name of letters, digits, '.', '_' or "
            "'-' (it labels metrics and logs)"
        )
    label = f"{where}, route {name!r}"
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {unknown[0]!r}; a route's keys are {', '.join(KEYS)}"
        )
    operation = _operation(entry.get("operation"), label)
    topics = _topics(entry.get("topics"), label)
    unsafe = _unsafe(entry.get("unsafe_without_ids"), "unsafe_without_ids" in entry, operation)
    if unsafe is not None:
        raise ConfigError(f"{label}: unsafe_without_ids: {unsafe}")
    mapping: FieldMapping | ItemMapping | None
    raw = entry.get("mapping")
    if operation is Operation.CUSTOMERS:
        mapping = None if raw is None else field_mapping(raw, where, f"{label}, mapping")
        layout(mapping, shape, tags_sync)  # a field the shape does not define: named here
    else:
        mapping = item_mapping(operation, raw, f"{label}, mapping")
    dlq = entry.get("dead_letter_topic", dead_letter_topic)
    if not isinstance(dlq, str) or not dlq.strip():
        raise ConfigError(f"{label}: dead_letter_topic must be a topic name")
    return Route(
        name,
        operation,
        topics,
        mapping,
        dlq.strip(),
        operation.facts.delivery is Delivery.IDLESS,
        _limits(entry.get("limits"), "limits" in entry, label),
    )


def _operation(value: Any, label: str) -> Operation:
    try:
        return Operation(value)
    except ValueError:
        shown = "is missing" if value is None else f"{value!r} is not an operation"
        raise ConfigError(f"{label}: operation {shown}; one of {_OPERATIONS}") from None


def _topics(value: Any, label: str) -> tuple[str, ...]:
    if value is None:
        raise ConfigError(f"{label}: topics is missing; a route reads at least one topic")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{label}: topics must be a list of at least one topic ([a, b])")
    topics: list[str] = []
    for topic in value:
        if not isinstance(topic, str) or not topic.strip():
            raise ConfigError(f"{label}: topics: {topic!r} is not a topic name")
        if topic.strip() in topics:
            raise ConfigError(f"{label}: topics: {topic.strip()} is named twice")
        topics.append(topic.strip())
    return tuple(topics)


def _unsafe(value: Any, given: bool, operation: Operation) -> str | None:
    """What is wrong with ``unsafe_without_ids`` for ``operation``, or ``None``."""
    facts = operation.facts
    if facts.delivery is not Delivery.IDLESS:
        if not given:
            return None
        return (
            f"{operation} items carry their id ({facts.natural_key}), so a second delivery is "
            "harmless; the key is only for events and balance-adjustment, and must go"
        )
    if value is True:
        return None
    return (
        f"{operation} items carry no id, so a second delivery applies again: set "
        "unsafe_without_ids: true to accept that an item whose fate is unknown is dead-lettered "
        "(outcome_unknown), never sent twice"
    )


def _limits(value: Any, given: bool, label: str) -> Limits | None:
    if not given:
        return None
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"{label}: limits must be a mapping of per_second and/or per_30s, "
            "e.g. {per_second: 100, per_30s: 1200}"
        )
    counts: dict[str, int] = {}
    for key, count in value.items():
        if key not in LIMIT_KEYS:
            raise ConfigError(
                f"{label}: limits: unknown key {str(key)!r}; the limits are per_second and per_30s"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(
                f"{label}: limits: {key} must be a whole number of requests of at least 1, "
                f"not {count!r}"
            )
        counts[key] = count
    return Limits(counts.get("per_second"), counts.get("per_30s"))


def source_topics(routes: tuple[Route, ...]) -> tuple[str, ...]:
    """Every route's topics, in the file's order (a topic belongs to one route)."""
    return tuple(topic for route in routes for topic in route.topics)
