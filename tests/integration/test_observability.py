"""The dashboard and the alerts against a real Prometheus scraping a real, busy service.

Prometheus (Debian package) runs on loopback with a temporary configuration
that scrapes ``customer-sync run`` every second and loads the alert rules.
The service consumes sample CDC events from Apache Kafka (produced by
the compose stack's own ``produce_samples.py``) and delivers them to the
simulator, with a few bad events and API record failures so that dead-letter
series exist. Then every dashboard query and every alert expression goes
through Prometheus's HTTP API: each must parse, each dashboard query must
return data, and in this healthy run every alert must stay silent.

Lag values are asserted exactly in ``test_lag.py``; here only the series must exist.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.embedded_broker import free_port
from tests.brokers.apache import KafkaNode
from tests.deploy.dashboard import queries
from tests.deploy.rules import ALERTS, rule_groups
from tests.deploy.tools import DEPLOY, tool
from tests.helpers import wait_for
from tests.integration.harness import ServiceProcess, service_env, unique

pytestmark = pytest.mark.integration

EVENTS = 1500
BAD_FRACTION = 0.01

# Queries with no data in a healthy run, and why: the credentials-rejected series only exist
# once the API has answered 401/403, which a healthy run never provokes.
NO_DATA_WHEN_HEALTHY = {
    'sum(rate(customer_sync_api_requests_total{job=~".+",code=~"401|403"}[1m]))',
}
# Queries that must show activity (not just a series of zeros) after the run.
BUSY = {"Throughput in / out", "Consumed", "Delivered", "Outcomes", "Dead letters by reason"}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(seed=4, record_failure_rate=0.01, job_duration_seconds=0.2)


class Prometheus:
    def __init__(self, tmp: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "alerts.yml").write_text(ALERTS.read_text())
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "customer-sync", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = tmp / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(tool("prometheus")),
                    f"--config.file={tmp / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )

    def ready(self) -> bool:
        """Whether it serves queries: until its storage and rules are loaded it answers 503."""
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def value(self, promql: str) -> float | None:
        try:
            body = self.query(promql)
        except httpx.HTTPError:
            return None
        result = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Observed:
    """The service, the Prometheus scraping it, and a way to feed the service's topic."""

    def __init__(self, broker: KafkaNode, topic: str, service: ServiceProcess) -> None:
        self.broker, self.topic, self.service = broker, topic, service
        self.produced = 0

    def produce(self, events: int, seed: int) -> None:
        """With the compose stack's own producer script, so that script is exercised too."""
        result = subprocess.run(
            [sys.executable, DEPLOY / "compose" / "produce_samples.py"],
            env={
                "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
                "TOPIC": self.topic,
                "EVENTS": str(events),
                "CUSTOMERS": "400",
                "BAD_FRACTION": str(BAD_FRACTION),
                "SEED": str(seed),
                "PATH": "/usr/bin:/bin",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"produced {events} events" in result.stdout
        self.produced += events


@pytest.fixture
def observed(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> Iterator[tuple[Observed, Prometheus]]:
    topic, group = unique("observed"), unique("group")
    broker.create_topics({topic: 3, f"{topic}.dlq": 1})
    env = service_env(broker, simulator.base_url, topic, group)
    service = ServiceProcess(env, tmp_path / "service.jsonl")
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{service.port}")
    service.start()
    try:
        wait_for(prometheus.ready, 60, "Prometheus to be ready")
        yield Observed(broker, topic, service), prometheus
    finally:
        prometheus.stop()
        assert service.stop() == 0, service.logs()[-3000:]


def settled(observed: Observed, prometheus: Prometheus) -> None:
    """Every record produced so far is settled, and Prometheus has scraped that."""
    wait_for(
        lambda: observed.service.metric("customer_sync_records_total") == observed.produced,
        60,
        f"{observed.produced} records settled",
    )
    wait_for(
        lambda: prometheus.value("sum(customer_sync_records_total)") == observed.produced,
        30,
        "Prometheus to scrape the settled counts",
    )


def test_every_dashboard_query_and_alert_evaluates_against_the_running_service(
    observed: tuple[Observed, Prometheus],
) -> None:
    feed, prometheus = observed
    # The first scrape is queryable only ~5 s after Prometheus starts.
    wait_for(
        lambda: prometheus.value("customer_sync_build_info") == 1, 30, "Prometheus's first scrape"
    )
    # Two waves: counters born in the first (per-topic series) have a scraped value before the
    # second, so rates over the run are real rates, not a single sample.
    feed.produce(EVENTS // 3, seed=1)
    settled(feed, prometheus)
    feed.produce(EVENTS - EVENTS // 3, seed=2)
    settled(feed, prometheus)
    wait_for(
        lambda: prometheus.value("count(customer_sync_consumer_lag_records)") is not None,
        30,
        "the lag series (after the first commit and lag refresh)",
    )
    assert feed.service.metric("customer_sync_dead_letter_records_total") > 0

    checked = 0
    for query in queries():
        promql = query.promql()
        body = prometheus.query(promql)
        assert body["status"] == "success", (query, body)
        result = body["data"]["result"]
        if promql in NO_DATA_WHEN_HEALTHY:
            assert result == [], (query, result)
            continue
        assert result, f"no data for {query.panel} [{query.ref}]: {promql}"
        if query.panel in BUSY:
            values = [float(series["value"][1]) for series in result]
            assert any(math.isfinite(v) and v > 0 for v in values), (query, values)
        checked += 1
    assert checked == len(queries()) - len(NO_DATA_WHEN_HEALTHY)

    for group in rule_groups():
        for rule in group["rules"]:
            body = prometheus.query(rule["expr"])
            assert body["status"] == "success", (rule["alert"], body)
            assert body["data"]["result"] == [], f"{rule['alert']} fires on a healthy service"

    # Prometheus itself loaded the rules file and evaluates every rule without error.
    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert set(loaded) == {r["alert"] for g in rule_groups() for r in g["rules"]}
    for name, rule in loaded.items():
        assert rule["health"] in ("ok", "unknown"), (name, rule.get("lastError"))
        assert rule["state"] == "inactive", name
