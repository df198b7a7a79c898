"""The broker goes away mid-run and comes back: the service waits, says so, and resumes.

Tansu keeps everything in memory, so the broker that comes back is empty:
the topics are recreated here and the group's committed offsets are gone.
That is harsher than a real Kafka outage (where the log and the offsets
survive) and different from it: what this test can show is that the process
survives, reports not ready while the broker is unreachable (``/readyz``
``broker_reachable: false``), stays alive (``/healthz``: a restart would not
help), and afterwards consumes, delivers and commits again. What it cannot
show: resuming from the committed offsets of the *same* log, in-sync replica
failover, or a partial outage of one broker among several. For those, run the
same scenario against a real cluster: point ``KAFKA_BOOTSTRAP_SERVERS`` at it
and stop a broker (``docker compose stop kafka``/``kubectl delete pod``) for
the outage instead of :meth:`EmbeddedBroker.stop` (see README, "Reliability").

``CHAOS_OUTAGE_SECONDS`` sets the outage (8 s in ``make test``, 30 s in
``make chaos``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator
from service.tools.embedded_broker import EmbeddedBroker
from service.tools.samples import generate
from tests.helpers import wait_for
from tests.integration.harness import (
    ServiceProcess,
    committed,
    fully_committed,
    produce,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration
OUTAGE_SECONDS = float(os.environ.get("CHAOS_OUTAGE_SECONDS", "8"))


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """Not the session broker: this test stops it."""
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


def _readiness(service: ServiceProcess) -> dict[str, object] | None:
    response = service.get("/readyz")
    if response is None:
        return None
    body: dict[str, object] = response.json()
    body["status_code"] = response.status_code
    return body


@pytest.mark.timeout(180)
def test_the_service_rides_out_a_broker_outage(
    own_broker: EmbeddedBroker, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("outage"), unique("outage-group")
    topics = {topic: 3, f"{topic}.dlq": 1}
    own_broker.create_topics(topics)
    service = ServiceProcess(
        service_env(own_broker, simulator.base_url, topic, group), tmp_path / "service.log"
    ).start()
    restarted: EmbeddedBroker | None = None
    try:
        wait_for(service.ready, 30, "ready before the outage")
        before = produce(
            own_broker.bootstrap, topic, generate(600, 100, seed=5, prefix="a-"), partitions=3
        )
        wait_for(
            lambda: fully_committed(own_broker.bootstrap, group, topic, before),
            30,
            "everything before the outage committed",
            interval=0.5,
        )

        own_broker.stop()
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

        restarted = EmbeddedBroker(port=own_broker.port).start()  # same address, empty memory
        up_at = time.monotonic()
        restarted.create_topics(topics)
        # Fewer records than before: a service still counting offsets of the old log
        # would commit past the end of the new one.
        after = produce(
            restarted.bootstrap, topic, generate(90, 30, seed=6, prefix="b-"), partitions=3
        )
        wait_for(service.ready, 60, "ready again after the broker came back")
        recovered = time.monotonic() - up_at
        latest = {e.customer_id: e.version for e in generate(90, 30, seed=6, prefix="b-")}
        state_ = simulator.state

        def delivered() -> bool:
            state_.settle()
            return all(
                state_.latest.get(c, {}).get("custom", {}).get("version") == v
                for c, v in latest.items()
            )

        wait_for(delivered, 60, "the records produced after the outage delivered")
        wait_for(
            lambda: fully_committed(restarted.bootstrap, group, topic, after),
            30,
            "the new log committed",
            interval=0.5,
        )
        offsets = committed(restarted.bootstrap, group, topic, 3)
        for partition, count in after.per_partition.items():
            assert offsets[partition] == count, (
                f"partition {partition}: committed {offsets[partition]}, but the log "
                f"holds {count} records"
            )
        assert service.process is not None
        assert service.process.poll() is None
        print(
            f"outage {OUTAGE_SECONDS:.0f}s: not ready {noticed:.1f}s after the broker stopped, "
            f"ready again {recovered:.1f}s after it came back"
        )
    finally:
        service.stop()
        if restarted is not None:
            restarted.stop()
