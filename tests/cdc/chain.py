"""PostgreSQL → Debezium → Kafka, set up for several converter set-ups at once.

One PostgreSQL cluster holds the shop database (``tests/cdc/shop.py``); one Connect worker runs
one Debezium connector per :class:`SetUp` (each with its own slot, publication and topic
prefix, so every set-up sees the very same transactions). What a set-up's customer-sync sees
differs only by what the connector and the converter make of those transactions.

Every wait here is time-limited and asks the broker, never sleeps: a snapshot is done when the
set-up's topics hold one record per seed row (Apache Kafka's high watermarks are exact), and a
scenario has reached Kafka when the record of the row written last (``marker``) is on every
set-up's marker topic. Debezium reads the WAL in commit order and one Connect task produces in
that order, through one producer with one request in flight per broker: once the marker is
written, so is everything committed before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tests.cdc import shop
from tests.cdc.connect import connector_config
from tests.cdc.postgres import PostgresCluster
from tests.helpers import wait_for
from tests.integration.harness import end_offsets

DBNAME = "shop"
PARTITIONS = 3


@dataclass(frozen=True)
class SetUp:
    """One connector and the customer-sync that reads it."""

    name: str  # the customer-sync's, and the connector's unless ``source`` names another
    about: str
    source: str | None = None  # read the topics of this set-up's connector
    schemas: bool = True
    connector: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, Any] = field(default_factory=dict)  # FIELD_MAPPING_FILE's entries
    tables: tuple[str, ...] = shop.TABLES  # the tables its customer-sync consumes
    delete_policy: str = "skip"
    avro: bool = False  # Avro through a schema registry (Apicurio's converter), not JSON
    facts: bool = False  # orders and point adjustments too, each a route of a ROUTES_FILE

    def connector_config(self, pg: PostgresCluster, registry: str | None = None) -> dict[str, str]:
        """``registry``: the registry's own API, which an Avro set-up's converter writes to."""
        assert pg.port is not None
        if self.avro and registry is None:
            raise ValueError(f"{self.name} writes Avro: it needs the registry's URL")
        return connector_config(
            self.name,
            port=pg.port,
            dbname=DBNAME,
            tables=shop.table_include_list(),
            schemas=self.schemas,
            connector={"skipped.operations": "none", **self.connector},
            avro_registry=registry if self.avro else None,
        )

    @property
    def topics(self) -> dict[str, str]:
        return shop.topics(self.source or self.name)

    @property
    def source_topics(self) -> list[str]:
        """Every topic its customer-sync reads: the customer tables', and the facts' too."""
        facts = shop.FACT_TABLES if self.facts else ()
        return [self.topics[t] for t in (*self.tables, *facts)]

    def routes(self) -> dict[str, Any]:
        """The ``ROUTES_FILE`` of a set-up with facts: its customer tables through its mapping
        (which means there what ``FIELD_MAPPING_FILE`` means), and each fact table's route."""
        customers = {
            "name": "customers",
            "operation": "customers",
            "topics": [self.topics[t] for t in self.tables],
            **({"mapping": self.mapping} if self.mapping else {}),
        }
        facts = [
            {"name": "", "operation": "", "topics": [self.topics[t]], **shop.FACT_ROUTES[t]}
            for t in shop.FACT_TABLES
        ]  # the keys in the order docs/routes.md writes them
        return {"routes": [customers, *facts]}

    def sources_env(self, directory: Path) -> dict[str, str]:
        """The settings that name its topics and mappings, their files written to
        ``directory``: a ``ROUTES_FILE`` with facts, else ``KAFKA_SOURCE_TOPICS`` and a
        ``FIELD_MAPPING_FILE``."""
        if self.facts:
            return {"ROUTES_FILE": str(self.write_routes(directory))}
        return {
            "KAFKA_SOURCE_TOPICS": ",".join(self.source_topics),
            "FIELD_MAPPING_FILE": str(self.write_mapping(directory)),
        }

    def write_routes(self, directory: Path) -> Path:
        path = directory / f"{self.name}-routes.yaml"
        path.write_text(yaml.safe_dump(self.routes(), sort_keys=False))
        return path

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def write_mapping(self, directory: Path) -> Path:
        path = directory / f"{self.name}-mapping.yaml"
        path.write_text(yaml.safe_dump(self.mapping, sort_keys=False))
        return path


def start_database() -> PostgresCluster:
    """A private cluster with the shop database, its tables and the rows that exist before
    any connector starts (they arrive as the snapshot, ``op: r``)."""
    pg = PostgresCluster().start()
    try:
        pg.execute(f"CREATE DATABASE {DBNAME}")
        pg.execute(shop.SCHEMA_SQL + shop.SEED_SQL, dbname=DBNAME)
    except BaseException:
        pg.stop()
        raise
    return pg


def all_topics(setups: list[SetUp]) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for setup in setups:
        for table, topic in setup.topics.items():
            wanted[topic] = 1 if table == "marker" else PARTITIONS
        wanted[setup.dlq] = 1
    return wanted


def records_on(bootstrap: str, topics: list[str]) -> int:
    return sum(sum(end_offsets(bootstrap, topic).values()) for topic in topics)


def wait_for_snapshots(
    bootstrap: str, setups: list[SetUp], alive: Callable[[], None], timeout: float = 90
) -> None:
    """Every set-up's snapshot on its topics: one ``r`` record per seed row."""
    data = [t for s in setups for name, t in s.topics.items() if name != "marker"]

    def done() -> bool:
        alive()
        return all(
            records_on(bootstrap, [setup.topics[t] for t in shop.SNAPSHOT_TABLES]) >= shop.SEED_ROWS
            for setup in setups
        )

    wait_for(done, timeout, f"the snapshots of {len(setups)} connectors on {len(data)} topics")


def apply(pg: PostgresCluster, on_step: Callable[[shop.Step], None] | None = None) -> None:
    """The scripted changes, one transaction per step, then the end marker."""
    for step in shop.STEPS:
        if on_step is not None:
            on_step(step)
        pg.transaction(step.sql, dbname=DBNAME)
    pg.transaction("INSERT INTO marker (label) VALUES ('end')", dbname=DBNAME)


def wait_for_marker(
    bootstrap: str, setups: list[SetUp], alive: Callable[[], None], timeout: float = 60
) -> None:
    def seen() -> bool:
        alive()
        return all(records_on(bootstrap, [s.topics["marker"]]) >= 1 for s in setups)

    wait_for(seen, timeout, "the end marker on every set-up's topic")


def expected(pg: PostgresCluster) -> dict[str, dict[str, dict[str, Any]]]:
    """What each table's rows must become at the API, by table and customer id, from the
    ``api_*`` views: numbers as :class:`~decimal.Decimal` (their exact value), NULLs absent."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for table, view in shop.VIEWS.items():
        sql = f"SELECT json_strip_nulls(row_to_json(v))::text FROM {view} v"  # noqa: S608 - ours
        rows = pg.query(sql, dbname=DBNAME)
        customers = [exact_json(text or "null") for (text,) in rows]
        found[table] = {c["customerId"]: c for c in customers}
    return found


def expected_orders(pg: PostgresCluster) -> dict[str, dict[str, Any]]:
    """The order each row of ``orders`` must become (``api_orders``), by ``orderId``,
    numbers exact, NULLs absent."""
    sql = "SELECT json_strip_nulls(row_to_json(v))::text FROM api_orders v"
    orders = [exact_json(text or "null") for (text,) in pg.query(sql, dbname=DBNAME)]
    return {order["orderId"]: order for order in orders}


@dataclass(frozen=True)
class Adjustment:
    """A row of ``point_adjustments`` as PostgreSQL holds it now."""

    id: int
    customer_id: str
    points: int
    note: str | None

    @property
    def sent(self) -> bool:
        """Inserted after the snapshot: to be sent, once (``shop.SNAPSHOT_ADJUSTMENTS``)."""
        return self.id > shop.SNAPSHOT_ADJUSTMENTS


def adjustments(pg: PostgresCluster) -> list[Adjustment]:
    """Every point adjustment, by id."""
    sql = "SELECT id, customer_id, points, note FROM point_adjustments ORDER BY id"
    return [
        Adjustment(int(row_id or 0), str(customer), int(points or 0), note)
        for row_id, customer, points, note in pg.query(sql, dbname=DBNAME)
    ]


def upserted(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """What an upserting API holds after every request body, in order, numbers exact.

    A field a change leaves out (an unchanged TOASTed value's placeholder) keeps what the API
    had; ``customerAttributes`` and ``custom`` are kept key by key the same way. This is the
    API's own reading of a partial change, which the simulator's ``latest`` (the last change
    as sent) does not model.
    """
    return upserted_items(c for body in bodies for c in exact_json(body.decode())["body"])


def upserted_items(customers: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What an upserting API holds after ``customers``, in the order applied (see
    :func:`upserted`)."""
    held: dict[str, dict[str, Any]] = {}
    for customer in customers:
        held[customer["customerId"]] = _upsert(held.get(customer["customerId"], {}), customer)
    return held


def _upsert(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for name, value in new.items():
        before = merged.get(name)
        nested = name in ("customerAttributes", "custom")
        if nested and isinstance(before, dict) and isinstance(value, dict):
            merged[name] = _upsert(before, value)
        else:
            merged[name] = value
    return merged


def exact_json(text: str) -> Any:
    """JSON with its numbers kept exact (orjson reads them as floats)."""
    return json.loads(text, parse_float=Decimal)


def as_received(value: Any) -> Any:
    """An exact expected value as the simulator holds it: it parses numbers as floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: as_received(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_received(v) for v in value]
    return value


def with_column_defaults(
    expected: dict[str, Any], received: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """``expected`` with a column's DEFAULT where its row holds NULL and ``received`` holds
    that very default: what Apicurio's ``AvroConverter`` writes for such a NULL
    (``shop.COLUMN_DEFAULTS``). Returns the item and how many fields were filled."""
    item = _copy(expected)  # ours to change
    filled = 0
    for path, default in shop.COLUMN_DEFAULTS.items():
        given: Any = received
        for key in path:
            given = given.get(key, _MISSING) if isinstance(given, dict) else _MISSING
        if given is _MISSING or given != default:
            continue
        holder = item
        for key in path[:-1]:
            holder = holder.setdefault(key, {})
        if path[-1] not in holder:
            holder[path[-1]] = given
            filled += 1
    return item, filled


_MISSING = object()


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


TOP_LEVEL = ("customerId", "email", "mobile", "tags")
"""What stays on top of a nested item (tags too: the CDC run sends them with TAGS_SYNC=item)."""


def nested(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer as the ``api_*`` views spell it (the tutorial's flat names) → the nested
    item the default shape sends: ``name`` is the profile's ``displayName``, the merge keys
    ``email`` and ``mobile`` are on top and in the profile, the rest inside."""
    item = {key: customer[key] for key in TOP_LEVEL if key in customer}
    renamed = {"name": "displayName"}
    attributes = {
        renamed.get(key, key): value
        for key, value in customer.items()
        if key not in TOP_LEVEL or key in ("email", "mobile")
    }
    if attributes:
        item["customerAttributes"] = attributes
    return item


def exact_bodies(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """The last version of each customer in the request bodies the API received, numbers exact.

    Two jobs in flight never carry the same customer, so the last body holding a customer holds
    its latest change.
    """
    latest: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for customer in exact_json(body.decode())["body"]:
            latest[customer["customerId"]] = customer
    return latest
