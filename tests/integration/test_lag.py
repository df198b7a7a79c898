"""``consumer_lag_records`` is exact: the broker's end offset minus the group's committed offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator
from service.tools.samples import generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    ServiceProcess,
    committed,
    end_offsets,
    fully_committed,
    produce,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration

PARTITIONS = 3


def lag_metric(service: ServiceProcess, topic: str) -> dict[int, float]:
    return {
        p: service.metric("customer_sync_consumer_lag_records", topic=topic, partition=str(p))
        for p in range(PARTITIONS)
    }


def broker_lag(broker: KafkaNode, group: str, topic: str) -> dict[int, float]:
    ends = end_offsets(broker.bootstrap, topic)
    done = committed(broker.bootstrap, group, topic, PARTITIONS)
    return {p: float(end - done.get(p, 0)) for p, end in ends.items()}


def test_lag_is_the_brokers_end_offset_minus_the_committed_offset(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("lag"), unique("lag-group")
    broker.create_topics({topic: PARTITIONS, f"{topic}.dlq": 1})
    env = service_env(broker, simulator.base_url, topic, group, SHUTDOWN_TIMEOUT_SECONDS="3")
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        produce(broker.bootstrap, topic, generate(300, 300, seed=3), partitions=PARTITIONS)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "all committed")
        wait_for(
            lambda: lag_metric(service, topic) == dict.fromkeys(range(PARTITIONS), 0.0),
            30,
            "a lag of 0 on every partition once everything is committed",
            interval=0.5,
        )
        # From now on jobs never finish: records are consumed but nothing settles, so the
        # committed offsets stay where they are while the log grows.
        simulator.state.update_config({"stuck_job_rate": 1.0})
        # Distinct customers: a change superseding another would settle as coalesced.
        distinct = generate(150, 10**6, seed=4, prefix="d")
        produce(broker.bootstrap, topic, distinct, partitions=PARTITIONS)
        wait_for(
            lambda: service.metric("customer_sync_records_consumed_total") == 450,
            30,
            "the new records consumed",
        )
        expected = broker_lag(broker, group, topic)
        assert sum(expected.values()) == 150
        wait_for(
            lambda: lag_metric(service, topic) == expected,
            30,
            f"the lag metric to read {expected} exactly",
            interval=0.5,
        )
    finally:
        service.stop()
