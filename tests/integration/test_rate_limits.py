"""Two instances sharing one API key against the documented limits: no 429, nothing lost.

The simulator enforces Gameball's limits for the batch endpoints (30 requests/s
and 360 per 30 s per key, in sliding windows) and answers 429 without
``Retry-After``, as the documentation implies the real API does. Small batches
make the two instances want far more than the key allows: sent freely, their
requests would pass 30 in a second within moments and 360 in 30 s soon after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.gameball.simulator import DOCUMENTED_LIMITS, RunningSimulator, SimulatorConfig
from service.tools.embedded_broker import EmbeddedBroker
from service.tools.samples import generate
from tests.helpers import wait_for
from tests.integration.harness import fully_committed, produce
from tests.integration.test_delivery import (
    PARTITIONS,
    everything_applied,
    latest_versions,
    setup_topic,
    start_service,
)

pytestmark = pytest.mark.integration

# ~220 jobs of up to 25 records: ~450 requests, about 40 s of the key's quota for the two.
# The budget is the service's default (Gameball's documented limits), not the harness's wide
# one; tags ride in the item: 8,000 tags calls would take the key's quota for 11 minutes.
HUNGRY = {
    "BATCH_MAX_RECORDS": "25",
    "MAX_JOBS_IN_FLIGHT": "16",
    "GAMEBALL_RATE_LIMIT_PER_SECOND": "30",
    "GAMEBALL_QUOTA_REQUESTS": "360",
    "TAGS_SYNC": "item",
}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(
        seed=17, job_duration_seconds=0.2, limit_retry_after=False, **DOCUMENTED_LIMITS
    )


@pytest.mark.timeout(240)
def test_two_instances_sharing_a_key_stay_inside_its_limits_and_deliver_everything(
    broker: EmbeddedBroker, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    produced = produce(
        broker.bootstrap, topic, generate(8000, 8000, seed=41), partitions=PARTITIONS
    )
    one = start_service(broker, simulator, topic, group, tmp_path, **HUNGRY)
    two = start_service(broker, simulator, topic, group, tmp_path, **HUNGRY)
    try:
        expected = latest_versions(produced)
        wait_for(lambda: everything_applied(simulator, expected), 180, "every change delivered")
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "offsets")
        stats = simulator.state.stats()
        sent = sum(sum(codes.values()) for codes in stats["requests"].values())
        assert sent > DOCUMENTED_LIMITS["limit_per_window"], "the quota was never in play"
        assert stats["rate_limited"] == 0, stats["requests"]
        # Each spent the share of the key its partitions are, without talking to the other.
        rates = [
            service.metric("customer_sync_api_budget_requests_per_second") for service in (one, two)
        ]
        assert all(rate > 1.0 for rate in rates), rates  # both own partitions, not idle
        assert sum(rates) <= 12, rates  # the key's quota: 360 per 30 s
        for service in (one, two):
            assert service.metric("customer_sync_api_requests_total", code="429") == 0
    finally:
        assert one.stop() == 0, one.logs()[-3000:]
        assert two.stop() == 0, two.logs()[-3000:]
