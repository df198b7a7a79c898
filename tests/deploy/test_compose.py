"""docker-compose.yml cannot run here (no Docker engine): check its structure and wiring instead."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import _parser
from service.config import Settings, load_settings
from service.delivery.mapping import load_field_mapping
from tests.cdc.connect import connector_config, versions
from tests.cdc.postgres import PostgresCluster
from tests.deploy.tools import DEPLOY, ROOT, run, tool

COMPOSE = DEPLOY / "docker-compose.yml"
SERVICES = {
    "kafka",
    "kafka-init",
    "postgres",
    "connect",
    "connector-init",
    "simulator",
    "customer-sync",
    "sample-events",
    "prometheus",
    "grafana",
}
AVRO_PROFILE = {"registry", "connector-avro-init", "customer-sync-avro"}
"""Started only with ``--profile avro``: the same table as Avro through a schema registry."""


def mounted(service: dict[str, Any], target: str) -> Path:
    """The repository file a service sees at ``target``."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return (COMPOSE.parent / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_every_service_is_there_and_depends_only_on_services_that_exist(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == SERVICES | AVRO_PROFILE
    for name, service in services.items():
        depends = set(service.get("depends_on", []))
        if name in AVRO_PROFILE:
            assert service["profiles"] == ["avro"], name
            assert depends <= (SERVICES | AVRO_PROFILE) - {name}, name
        else:
            assert "profiles" not in service, name
            assert depends <= SERVICES - {name}, f"{name} would need the avro profile"
    assert services["customer-sync"]["depends_on"]["kafka-init"]["condition"] == (
        "service_completed_successfully"
    ), "topics exist before the service starts (it never creates them)"


def test_images_are_pinned_and_ours_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
            continue
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?(\.Final)?", image), f"{name}: {image}"


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith("@kafka:9093")
    command = " ".join(compose["services"]["kafka-init"]["command"])
    sync_env = compose["services"]["customer-sync"]["environment"]
    for topic in [*sync_env["KAFKA_SOURCE_TOPICS"].split(","), sync_env["KAFKA_DLQ_TOPIC"]]:
        assert f"--topic {topic} " in command, topic


@pytest.mark.parametrize("name", ["customer-sync", "customer-sync-avro"])
def test_the_service_environment_is_a_valid_spec_configuration(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    env = {k: str(v) for k, v in service["environment"].items()}
    names = {name.upper() for name in Settings.model_fields if name != "kafka_client"}
    assert set(env) <= names, set(env) - names
    env["FIELD_MAPPING_FILE"] = str(mounted(service, env["FIELD_MAPPING_FILE"]))
    settings = load_settings(env)
    assert settings.field_mapping_file is not None
    load_field_mapping(settings.field_mapping_file)
    grace = float(service["stop_grace_period"].removesuffix("s"))
    assert grace > settings.shutdown_timeout_seconds
    simulator = compose["services"]["simulator"]
    args = _parser().parse_args(simulator["command"])
    assert args.command == "simulate"
    assert args.host == "0.0.0.0"
    assert settings.gameball_base_url == f"http://simulator:{args.port}"
    assert any(p.endswith(f":{settings.http_port}") for p in service["ports"])
    assert service["read_only"] is True


def test_mounted_files_exist_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = 0
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
                mounts += 1
    assert mounts >= 5


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    volumes = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    provisioning = COMPOSE.parent / next(
        s for s, t in volumes.items() if t.endswith("provisioning")
    )
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "customer-sync.yml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    dashboard = next(s for s, t in volumes.items() if t.startswith(folder))
    assert Path(COMPOSE.parent / dashboard).resolve() == DEPLOY / "grafana" / "customer-sync.json"


def test_compose_prometheus_config_is_valid_and_scrapes_the_service(
    compose: dict[str, Any],
) -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = run([tool("promtool"), "check", "config", config])
    assert result.returncode == 0, result.stdout + result.stderr
    scrape = yaml.safe_load(config.read_text())["scrape_configs"][0]
    port = compose["services"]["customer-sync"]["environment"]["HTTP_PORT"]
    assert scrape["static_configs"][0]["targets"] == [f"customer-sync:{port}"]


def test_debezium_is_configured_as_the_readme_recommends_and_feeds_the_service(
    compose: dict[str, Any],
) -> None:
    """The connector the stack registers is the one the end-to-end tier runs (tests/cdc),
    pointed at the compose database, and its topic is created and read."""
    services = compose["services"]
    register = services["connector-init"]
    url = register["command"][-1]
    assert url == "http://connect:8083/connectors/shop/config"
    assert register["command"][register["command"].index("-X") + 1] == "PUT", "idempotent"
    config = json.loads(mounted(register, "/etc/debezium/shop.json").read_text())
    recommended = connector_config("shop", port=5432, dbname="shop", tables="public.customers")
    for key in recommended.keys() - {"name", "slot.drop.on.stop", "slot.name", "publication.name"}:
        expected = "postgres" if key == "database.hostname" else recommended[key]
        if key == "database.password":
            expected = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        assert config.get(key) == expected, key
    assert config["decimal.handling.mode"] == "precise"
    assert config["skipped.operations"] == "none", "a TRUNCATE reaches the service's log"
    topic = f"{config['topic.prefix']}.{config['table.include.list']}"
    assert topic in services["customer-sync"]["environment"]["KAFKA_SOURCE_TOPICS"].split(",")
    assert f"--topic {topic} " in " ".join(services["kafka-init"]["command"])
    connect = services["connect"]
    assert connect["image"].endswith(f":{versions()[1]}"), "the Debezium the tests run"
    assert connect["environment"]["BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_postgres_replicates_logically_and_its_table_is_created(compose: dict[str, Any]) -> None:
    """The init script, run on PostgreSQL 15 here, creates the table and its first rows."""
    postgres = compose["services"]["postgres"]
    assert "wal_level=logical" in postgres["command"]
    script = mounted(postgres, "/docker-entrypoint-initdb.d/shop.sql").read_text()
    with PostgresCluster() as pg:
        pg.execute("CREATE DATABASE shop")
        pg.execute(script, dbname="shop")
        rows = pg.query("SELECT customer_id, relreplident FROM customers, pg_class "
                        "WHERE relname = 'customers' ORDER BY 1", dbname="shop")  # fmt: skip
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][1] == "f", "REPLICA IDENTITY FULL: unchanged TOASTed values in updates"


def test_the_avro_profile_writes_the_confluent_wire_format_the_service_reads(
    compose: dict[str, Any],
) -> None:
    """The avro profile's connector is the JSON one with the converter the end-to-end tier's
    Avro set-up uses (Apicurio's, as-confluent), writing to a topic the second customer-sync
    reads through the same registry's Confluent-compatible API."""
    services = compose["services"]
    register = services["connector-avro-init"]
    assert register["command"][-1] == "http://connect:8083/connectors/shop-avro/config"
    config = json.loads(mounted(register, "/etc/debezium/shop-avro.json").read_text())
    json_config = json.loads(
        mounted(services["connector-init"], "/etc/debezium/shop.json").read_text()
    )
    registry = "http://registry:8080/apis/registry/v2"
    tested = connector_config("x", port=1, dbname="x", tables="x", avro_registry=registry)
    for key, value in tested.items():
        if ".converter" in key:
            assert config.get(key) == value, key
    assert not {k for k in config if ".converter." in k and "apicurio" not in k}
    own = {"topic.prefix", "slot.name", "publication.name"}
    for key, value in json_config.items():
        if ".converter" not in key and key not in own:
            assert config[key] == value, key
    assert all(config[k] != json_config[k] for k in own), "a slot and topics of its own"
    topic = f"{config['topic.prefix']}.{config['table.include.list']}"
    env = services["customer-sync-avro"]["environment"]
    assert env["KAFKA_SOURCE_TOPICS"] == topic
    assert env["SCHEMA_REGISTRY_URL"] == "http://registry:8080/apis/ccompat/v7"
    command = " ".join(services["kafka-init"]["command"])
    for needed in (topic, env["KAFKA_DLQ_TOPIC"]):
        assert f"--topic {needed} " in command, needed
    assert services["registry"]["image"].endswith(":2.6.13.Final"), "the registry the tests run"
    assert services["connect"]["environment"]["ENABLE_APICURIO_CONVERTERS"] == "true"
