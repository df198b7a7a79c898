"""Compaction end to end: a quota-bound backlog on Apache Kafka reaches the simulator over HTTP
one change per customer, the newest, and a rejected change is dead-lettered with the source
bytes the service read again from Kafka (it kept only the API item while compacting)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from service.delivery.compaction import CAUGHT_UP
from service.gameball.simulator import RunningSimulator
from service.tools.samples import Event, generate
from tests.brokers.apache import KafkaNode
from tests.integration.harness import produce, read_all
from tests.integration.test_delivery import (
    PARTITIONS,
    applied_versions,
    latest_versions,
    service_for,
    setup_topic,
)

pytestmark = pytest.mark.integration

# Two requests a second for the key: 100-record jobs at two requests each carry 100 records/s,
# 2,880 in the 30 s horizon (less 4 % headroom); the backlog of 6,500 changes is beyond it.
QUOTA_BOUND = {
    "GAMEBALL_QUOTA_REQUESTS": "60",
    "BATCH_MAX_RECORDS": "100",
    "MAX_BUFFERED_RECORDS": "500",
}


def test_a_quota_bound_backlog_is_sent_once_per_customer_and_a_rejected_change_keeps_its_bytes(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    changes = list(generate(6000, 200, seed=17))  # Debezium envelopes, 30 changes a customer
    rejected = Event(
        b"reject-me",
        b'{"customerId":"reject-me","email":"no-at-sign"}',
        "reject-me",
        1,
        "record_rejected",
    )
    # The fill ends with less than compaction.CAUGHT_UP unread, possibly all of one partition's:
    # one change each of other customers comes last (about 1.5 CAUGHT_UP a partition), read
    # while the jobs go out.
    tail = list(generate(900, 900, seed=18, prefix="t"))
    assert len(tail) >= 1.5 * PARTITIONS * CAUGHT_UP
    produced = produce(
        broker.bootstrap,
        topic,
        [*changes[:3000], rejected, *changes[3000:], *tail],
        partitions=PARTITIONS,
    )
    summary = service_for(broker, simulator, topic, group, tmp_path, **QUOTA_BOUND).run_until_idle(
        180
    )
    expected = latest_versions(produced)
    versions = applied_versions(simulator)
    assert {c: v[-1] for c, v in versions.items()} == expected, "every customer's newest change"
    sent = Counter({c: len(v) for c, v in versions.items()})
    assert sent.most_common(1)[0][1] == 1, f"one change per customer, not {sent.most_common(3)}"
    stats = httpx.get(f"{simulator.base_url}/_sim/stats", timeout=10).json()
    assert stats["records_received"] == len(expected) + 1  # and the rejected one, once

    (letter,) = read_all(broker.bootstrap, f"{topic}.dlq", 1, timeout=60)
    assert letter.value == rejected.value, "the source bytes, read again from its offset"
    assert letter.key == rejected.key
    assert letter.headers["dlq.reason"] == "record_rejected"
    assert summary.outcomes["coalesced"] == len(changes) + len(tail) - len(expected)
