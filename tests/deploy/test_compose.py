"""docker-compose.yml cannot run here (no Docker engine): check its structure and wiring instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import _parser
from service.config import Settings, load_settings
from tests.deploy.tools import DEPLOY, ROOT, run, tool

COMPOSE = DEPLOY / "docker-compose.yml"
SERVICES = {
    "kafka",
    "kafka-init",
    "simulator",
    "customer-sync",
    "sample-events",
    "prometheus",
    "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_every_service_is_there_and_depends_only_on_services_that_exist(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= SERVICES - {name}, name
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
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), f"{name}: pin {image}"


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith("@kafka:9093")
    command = " ".join(compose["services"]["kafka-init"]["command"])
    sync_env = compose["services"]["customer-sync"]["environment"]
    for topic in (sync_env["KAFKA_SOURCE_TOPICS"], sync_env["KAFKA_DLQ_TOPIC"]):
        assert f"--topic {topic} " in command, topic


def test_the_service_environment_is_a_valid_spec_configuration(compose: dict[str, Any]) -> None:
    service = compose["services"]["customer-sync"]
    env = {k: str(v) for k, v in service["environment"].items()}
    names = {name.upper() for name in Settings.model_fields if name != "kafka_client"}
    assert set(env) <= names, set(env) - names
    settings = load_settings(env)
    grace = float(service["stop_grace_period"].removesuffix("s"))
    assert grace > settings.shutdown_timeout_seconds
    simulator = compose["services"]["simulator"]
    args = _parser().parse_args(simulator["command"])
    assert args.command == "simulate"
    assert args.host == "0.0.0.0"
    assert settings.gameball_base_url == f"http://simulator:{args.port}"
    assert f"{settings.http_port}:{settings.http_port}" in service["ports"]
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
