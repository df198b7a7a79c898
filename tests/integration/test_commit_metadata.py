"""The ledger the service commits is one Apache Kafka accepts, up to the brokers' limit.

Apache Kafka 4.1 refuses offset-commit metadata as long as ``offset.metadata.max.bytes``
(4,096 by default) with ``OFFSET_METADATA_TOO_LARGE``, failing that partition's commit: the
ledger must stay shorter than the limit, not merely within it.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from service.config import Settings
from service.delivery.ledger import decode, encode
from tests.brokers.apache import KafkaNode
from tests.helpers import marks_whose_full_ledger_is
from tests.integration.harness import committed_metadata, unique

pytestmark = pytest.mark.integration

LIMIT = Settings.model_fields["commit_metadata_max_bytes"].default  # the brokers' default


def commit(broker: KafkaNode, topic: str, group: str, metadata: str) -> str:
    """Commit offset 1 of partition 0 with ``metadata``; what the group then holds."""
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1, metadata)], asynchronous=False)
    finally:
        consumer.close()
    return committed_metadata(broker.bootstrap, group, topic, 1)[0][1]


def test_the_longest_ledger_the_service_commits_is_accepted(broker: KafkaNode) -> None:
    topic = unique("metadata")
    broker.create_topics({topic: 1})
    for length in (LIMIT, LIMIT - 4):  # the ledger's lengths step by 4 (base64)
        marks = marks_whose_full_ledger_is(length)
        text, level = encode(len(marks), {}, marks, LIMIT)
        assert len(text) < LIMIT
        held = commit(broker, topic, unique("group"), text)
        ledger = decode(held)
        assert ledger is not None
        assert ledger.length == len(marks)
        assert (ledger.marks == marks) is (level == "full")


def test_the_broker_refuses_metadata_as_long_as_its_limit(broker: KafkaNode) -> None:
    """Why the ledger stays below the limit (if Kafka ever accepts it, the margin can go)."""
    topic = unique("metadata")
    broker.create_topics({topic: 1})
    with pytest.raises(KafkaException, match="OFFSET_METADATA_TOO_LARGE"):
        commit(broker, topic, unique("group"), "x" * LIMIT)
