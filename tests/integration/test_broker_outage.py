"""The broker goes away mid-stream and comes back on the same log: the service waits, resumes.

An Apache Kafka node of the test's own is stopped while the service is delivering, once
cleanly (SIGTERM) and once as a crash (SIGKILL), and restarted on the same log directory
and ports. The log and the group's committed offsets survive, as they do on any real
cluster, so the test holds the service to what an operator expects:

* it stays alive (``/healthz``: a restart would not help) and reports itself not ready
  while the broker is unreachable (``/readyz``, ``broker_reachable: false``);
* it is ready again once the broker is back, delivers everything, commits to the end;
* it does not redo what was committed before the outage: no record below the offsets
  committed at the moment the broker went away is applied by the API a second time.

``CHAOS_OUTAGE_SECONDS`` sets the outage (8 s in ``make test``, 30 s in ``make chaos``).
Replica failover (a broker of several going away) is ``make chaos``'s three-node run.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    ServiceProcess,
    committed,
    fully_committed,
    produce,
    service_env,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow
OUTAGE_SECONDS = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "8"))
PARTITIONS = 3


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(job_duration_seconds=0.2, seed=5)


@pytest.fixture
def own_broker() -> Iterator[KafkaNode]:
    """Not the session broker: this test stops it."""
    with KafkaNode() as node:
        yield node


def _readiness(service: ServiceProcess) -> dict[str, object] | None:
    response = service.get("/readyz")
    if response is None:
        return None
    body: dict[str, object] = response.json()
    body["status_code"] = response.status_code
    return body


@pytest.mark.timeout(240)
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_the_service_resumes_from_the_surviving_log_after_an_outage(
    stop: Literal["sigterm", "sigkill"],
    own_broker: KafkaNode,
    simulator: RunningSimulator,
    tmp_path: Path,
) -> None:
    topic, group = unique("outage"), unique("outage-group")
    own_broker.create_topics({topic: PARTITIONS, f"{topic}.dlq": 1})
    events = list(generate(3000, 3000, seed=5))  # distinct customers: one application each
    produced = produce(own_broker.bootstrap, topic, events, partitions=PARTITIONS)
    where = {e.customer_id: (p, o) for e, p, o in produced.events}
    slow = {"BATCH_MAX_RECORDS": "50", "MAX_JOBS_IN_FLIGHT": "2"}  # ~500 records/s
    env = service_env(own_broker, simulator.base_url, topic, group, **slow)
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        wait_for(
            lambda: sum(committed(own_broker.bootstrap, group, topic, PARTITIONS).values()) >= 600,
            60,
            "part of the stream committed before the outage",
            interval=0.2,
        )
        before = committed(own_broker.bootstrap, group, topic, PARTITIONS)
        assert sum(before.values()) < len(events), "the outage came too late to prove anything"

        if stop == "sigterm":
            own_broker.terminate()
        else:
            own_broker.kill()
        down_at = time.monotonic()
        state = wait_for(
            lambda: (r := _readiness(service)) and r["status_code"] == 503 and r,
            20,
            "not ready while the broker is down",
        )
        assert state["broker_reachable"] is False
        noticed = time.monotonic() - down_at
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            assert service.process is not None
            assert service.process.poll() is None, service.logs()[-3000:]
            alive = service.get("/healthz")
            assert alive is not None
            assert alive.status_code == 200
            time.sleep(0.5)

        own_broker.restart()
        up_at = time.monotonic()
        wait_for(service.ready, 60, "ready again after the broker came back")
        recovered = time.monotonic() - up_at
        wait_for(
            lambda: fully_committed(own_broker.bootstrap, group, topic),
            90,
            "the whole log committed after the outage",
            interval=0.5,
        )
        simulator.state.settle()
        assert set(simulator.state.latest) == {e.customer_id for e in events}, "records lost"
        applications = Counter(entry.customer_id for entry in simulator.state.applied)
        redone = [
            customer
            for customer, count in applications.items()
            if count > 1 and where[customer][1] < before.get(where[customer][0], 0)
        ]
        assert redone == [], f"{len(redone)} committed records were delivered again"
        assert service.process is not None
        assert service.process.poll() is None
        print(
            f"broker {stop}, outage {OUTAGE_SECONDS:.0f}s: not ready {noticed:.1f}s after it "
            f"stopped, ready {recovered:.1f}s after it came back; "
            f"{sum(c - 1 for c in applications.values())} uncommitted records delivered again"
        )
    finally:
        service.stop()
