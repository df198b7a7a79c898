"""``check``'s topic lines: a topic whose leader is still being elected is not a missing one."""

from __future__ import annotations

from confluent_kafka import KafkaError
from confluent_kafka.admin import ClusterMetadata, PartitionMetadata, TopicMetadata

from service.config import load_settings
from service.delivery.routes import routes_from_settings
from service.tools.check import check_topics
from service.tools.check_results import FAIL, OK

SETTINGS = load_settings(
    {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SOURCE_TOPICS": "orders",
        "KAFKA_DLQ_TOPIC": "orders.dlq",
        "GAMEBALL_API_KEY": "k",
        "GAMEBALL_SECRET_KEY": "s",
    }
)


def metadata(**topics: KafkaError | None) -> ClusterMetadata:
    found = ClusterMetadata()
    for name, error in topics.items():
        topic = TopicMetadata()
        topic.topic, topic.error = name, error
        topic.partitions = {} if error is not None else {0: PartitionMetadata()}
        found.topics[name] = topic
    return found


def lines(found: ClusterMetadata) -> dict[str, tuple[str, str]]:
    routes = routes_from_settings(SETTINGS)
    return {r.name: (r.mark, r.detail) for r in check_topics(SETTINGS, routes, found)}


def test_a_topic_without_a_leader_yet_is_said_to_exist() -> None:
    found = metadata(orders=KafkaError(KafkaError.LEADER_NOT_AVAILABLE), **{"orders.dlq": None})
    mark, detail = lines(found)["source topic orders"]
    assert mark == FAIL
    assert detail.startswith("exists but is not served yet (LEADER_NOT_AVAILABLE")
    assert "create it" not in detail
    assert lines(found)["dead-letter topic orders.dlq"][0] == OK


def test_an_unknown_topic_is_missing_with_the_command_that_creates_it() -> None:
    found = metadata(orders=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    assert lines(found)["source topic orders"][1].startswith("does not exist; create it: ")
    assert lines(found)["dead-letter topic orders.dlq"][1].startswith("does not exist; create it")
