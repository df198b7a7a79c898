"""The end-to-end tier: PostgreSQL → Debezium → Apache Kafka → customer-sync → the API.

One PostgreSQL cluster, one Connect worker and one run of the scripted changes per test
session, shared by every test here (``cdc_run``): starting Connect costs 5-12 s and each
connector's snapshot more, so the tier runs the chain once, under every converter set-up at
the same time, and the tests then examine what it produced. The broker is the session's
(``tests/conftest.py``). Every process is started and stopped here; every wait has a limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from tests.brokers.apache import KafkaNode
from tests.cdc import chain
from tests.cdc.chain import SetUp
from tests.cdc.connect import ConnectWorker
from tests.cdc.postgres import PostgresCluster
from tests.cdc.recorder import BodyRecorder
from tests.helpers import wait_for
from tests.integration.harness import ServiceProcess, fully_committed, protocol_env
from tests.registry.apicurio import Apicurio, converter_plugins

# Custom attributes from columns the API does not know (SPEC §3: only when the mapping says).
ATTRIBUTES = {
    "custom.tier": "loyalty_tier",
    "custom.balance": "balance",
    "custom.points": "lifetime_points",
    "custom.vip": "is_vip",
    "custom.loyaltyPoints": "loyalty_points",
}

SETUPS = [
    SetUp(
        "dbz_json",
        "JsonConverter schemas on, decimal.handling.mode=precise: every type from the schema; "
        "customers, orders and point adjustments, each a route of a ROUTES_FILE",
        mapping=ATTRIBUTES,
        facts=True,
    ),
    SetUp(
        "dbz_plain",
        "schemas off, precise: numeric(p,s) is base64 text that only the mapping file can call "
        "a decimal; deletes dead-lettered. Not customers_uuid: its timestamp(3) 1 ms after the "
        "epoch reads as a day without a schema, and a stated type is per column name, which "
        "the other tables' join_date (microseconds) shares",
        schemas=False,
        mapping={
            **ATTRIBUTES,
            "custom.balance": {"column": "balance", "type": "decimal", "scale": 2},
            "custom.loyaltyPoints": {"column": "loyalty_points", "type": "decimal", "scale": 0},
        },
        tables=("customers", "customers_int", "customers_text"),
        delete_policy="dead-letter",
    ),
    SetUp(
        "dbz_string",
        "schemas on, decimal.handling.mode=string: the schema says string, the mapping decimal",
        connector={"decimal.handling.mode": "string"},
        mapping={
            **ATTRIBUTES,
            "custom.balance": {"column": "balance", "type": "decimal"},
            "custom.points": {"column": "lifetime_points", "type": "decimal"},
            "custom.loyaltyPoints": {"column": "loyalty_points", "type": "decimal"},
        },
    ),
    SetUp(
        "dbz_double",
        "schemas on, decimal.handling.mode=double: numbers as doubles (17 significant digits)",
        connector={"decimal.handling.mode": "double"},
        mapping=ATTRIBUTES,
    ),
    SetUp(
        "dbz_avro",
        "Avro on key and value through a schema registry (Apicurio's AvroConverter in the "
        "Confluent wire format), precise: every type from the Avro schema; orders and point "
        "adjustments too",
        mapping=ATTRIBUTES,
        avro=True,
        facts=True,
    ),
    SetUp(
        "dbz_json_crm",
        "the second source: crm.members, other column names, through FIELD_MAPPING_FILE "
        "(read from dbz_json's connector)",
        mapping={  # API field paths of the nested shape (the default)
            "customerId": "member_no",
            "email": "mail",
            "customerAttributes.displayName": "full_name",
            "customerAttributes.gender": "sex",
            "customerAttributes.dateOfBirth": "birthday",
            "customerAttributes.joinDate": "signed_up_at",
            "tags": "segments",
            "customerAttributes.custom": "attributes",
            "customerAttributes.custom.tier": "tier",
            "custom.points": "points_balance",  # the alias: the same place
        },
        source="dbz_json",
        tables=("crm.members",),
    ),
]
CONNECTORS = [s for s in SETUPS if s.source is None]


@dataclass
class Pipe:
    """One set-up's customer-sync, its API simulator and what the API received."""

    setup: SetUp
    simulator: RunningSimulator
    recorder: BodyRecorder
    service: ServiceProcess
    sources: list[str]


@dataclass
class Run:
    pipes: dict[str, Pipe]
    expected: dict[str, dict[str, dict[str, Any]]]
    orders: dict[str, dict[str, Any]]  # the order each row must become, by orderId
    adjustments: list[chain.Adjustment]  # every row of point_adjustments
    bootstrap: str
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    pg = chain.start_database()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def registry() -> Iterator[Apicurio]:
    """The schema registry the Avro set-up's converter writes to and its customer-sync reads."""
    with Apicurio() as running:
        yield running


@pytest.fixture(scope="session")
def cdc_run(
    broker: KafkaNode,
    postgres: PostgresCluster,
    registry: Apicurio,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    started = time.monotonic()
    work = tmp_path_factory.mktemp("cdc")
    broker.create_topics(chain.all_topics(CONNECTORS))
    for setup in SETUPS:
        broker.create_topics({setup.dlq: 1})
    pipes: dict[str, Pipe] = {}
    worker = ConnectWorker(
        broker.bootstrap,
        [s.connector_config(postgres, registry.native_url) for s in CONNECTORS],
        plugin_paths=(converter_plugins(),),
    )
    try:
        for setup in SETUPS:
            pipes[setup.name] = _start_pipe(setup, broker, work, registry)
        worker.start()
        wait_for(worker.running, 90, "every connector RUNNING")
        chain.wait_for_snapshots(broker.bootstrap, CONNECTORS, worker.alive)
        timings = {"connect_start_to_snapshots_s": time.monotonic() - (worker.started_at or 0)}
        chain.apply(postgres)
        chain.wait_for_marker(broker.bootstrap, CONNECTORS, worker.alive)
        for pipe in pipes.values():
            group = f"customer-sync-{pipe.setup.name}"
            wait_for(
                lambda pipe=pipe, group=group: all(
                    fully_committed(broker.bootstrap, group, t) for t in pipe.sources
                ),
                60,
                f"{pipe.setup.name}'s customer-sync to commit every record",
            )
        timings["tier_s"] = time.monotonic() - started
        timings["connect_peak_rss_mb"] = worker.rss_mb()
        yield Run(
            pipes,
            chain.expected(postgres),
            chain.expected_orders(postgres),
            chain.adjustments(postgres),
            broker.bootstrap,
            timings,
        )
    finally:
        for pipe in pipes.values():
            pipe.service.stop()
            pipe.simulator.__exit__(None, None, None)
        worker.stop()


def _start_pipe(setup: SetUp, broker: KafkaNode, work: Path, registry: Apicurio) -> Pipe:
    simulator = RunningSimulator(SimulatorConfig(seed=1))
    recorder = BodyRecorder(simulator.app)
    simulator.app = recorder
    simulator.__enter__()
    sources = setup.source_topics
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        **setup.sources_env(work),
        "KAFKA_GROUP_ID": f"customer-sync-{setup.name}",
        "KAFKA_DLQ_TOPIC": setup.dlq,
        **protocol_env("classic"),
        "GAMEBALL_BASE_URL": simulator.base_url,
        "GAMEBALL_API_KEY": simulator.config.api_key,
        "GAMEBALL_SECRET_KEY": simulator.config.secret_key,
        "DELETE_POLICY": setup.delete_policy,
        # The nested shape (the default); tags in the item until the per-customer tags call
        # is delivered, so the comparison covers them too.
        "TAGS_SYNC": "item",
        "BATCH_MAX_WAIT_SECONDS": "0.2",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
        **({"SCHEMA_REGISTRY_URL": registry.url} if setup.avro else {}),
    }
    service = ServiceProcess(env, work / f"{setup.name}.log").start()
    return Pipe(setup, simulator, recorder, service, sources)
