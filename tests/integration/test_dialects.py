"""The service against the simulator in each job dialect, on Apache Kafka, as real processes.

What a user sees: every record delivered, the offsets committed, a rejected record
dead-lettered with the API's words, and which dialect and version the service
speaks in ``customer_sync_api_info``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import Event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import fully_committed, produce, read_all
from tests.integration.test_delivery import (
    PARTITIONS,
    everything_applied,
    latest_versions,
    setup_topic,
    start_service,
)

pytestmark = pytest.mark.integration

REJECTED = Event(
    b"reject-me",
    b'{"customerId":"reject-me","email":"no-at-sign"}',
    "reject-me",
    1,
    "record_rejected",
)


@pytest.mark.parametrize(
    ("served", "job_api", "version", "envelope"),
    [
        ("batches", "auto", "v4.0", False),
        ("batch", "batch", "v4.0", False),
        ("batches", "batches", "v4.1", True),
    ],
    ids=["auto-finds-batches", "batch", "batches-v4.1-envelope"],
)
def test_records_are_delivered_and_committed_in_each_dialect(
    broker: KafkaNode, tmp_path: Path, served: str, job_api: str, version: str, envelope: bool
) -> None:
    config = SimulatorConfig(
        seed=1,
        job_api=served,
        error_envelope=envelope,
        min_api_version="v4.1" if version == "v4.1" else "",
    )
    topic, group = setup_topic(broker)
    events = [*generate(300, 100, seed=5), REJECTED]
    produced = produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
    with RunningSimulator(config) as simulator:
        service = start_service(
            broker,
            simulator,
            topic,
            group,
            tmp_path,
            GAMEBALL_JOB_API=job_api,
            GAMEBALL_API_VERSION=version,
            BATCH_MAX_RECORDS="40",  # several jobs in flight at once: the first reads race
        )
        try:
            expected = latest_versions(produced)
            wait_for(lambda: everything_applied(simulator, expected), 60, "every customer")
            (letter,) = read_all(broker.bootstrap, f"{topic}.dlq", 1, timeout=30)
            assert letter.headers["dlq.reason"] == "record_rejected"
            assert letter.headers["dlq.error"] == "Invalid email address"
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "offsets")
            wait_for(lambda: service.ready(), 10, "readiness")
            assert (
                service.metric("customer_sync_api_info", job_api=served, api_version=version) == 1
            )
            assert service.metric("customer_sync_records_total") == len(events)
            absent = sum(simulator.state.requests.get("absent", {}).values())
            jobs = simulator.state.jobs_created
            # auto asked the absent route at its first read (and maybe its first credentials
            # check), never again for the jobs after; a configured dialect never did.
            if job_api == "auto":
                assert 1 <= absent <= 2 < jobs, (absent, jobs)
            else:
                assert absent == 0
        finally:
            assert service.stop() == 0, service.logs()[-3000:]
        if job_api == "auto":
            chosen = [line for line in service.logs().splitlines() if "job_api_chosen" in line]
            assert len(chosen) == 1, chosen
            assert '"job_api": "batches"' in chosen[0], chosen
