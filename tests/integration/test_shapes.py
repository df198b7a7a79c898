"""Both customer shapes end to end on Apache Kafka, against a strict simulator.

The nested default runs everywhere else (test_delivery and the rest); here the flat shape
delivers to a flat server, and the service forced to send the flat shape to a server that
binds the nested one fails loudly: every record dead-lettered naming the fields the server
refused, nothing applied, never a silent success.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import Event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    ServiceProcess,
    fully_committed,
    produce,
    read_all,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration

PARTITIONS = 2


def prepare(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path, **extra: str
) -> tuple[str, str, ServiceProcess]:
    """A topic and the service for it, not started (a bounded run starts it itself)."""
    topic, group = unique("shapes"), unique("group")
    broker.create_topics({topic: PARTITIONS, f"{topic}.dlq": 1})
    env = service_env(broker, simulator.base_url, topic, group, **extra)
    return topic, group, ServiceProcess(env, tmp_path / f"{unique('log')}.jsonl")


def start(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path, **extra: str
) -> tuple[str, str, ServiceProcess]:
    topic, group, service = prepare(broker, simulator, tmp_path, **extra)
    return topic, group, service.start()


def rows_by_customer(events: list[Any]) -> dict[str, dict[str, Any]]:
    """The newest source row of each customer, as the samples wrote it."""
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        envelope = orjson.loads(event.value)
        latest[event.customer_id] = (envelope.get("payload") or envelope)["after"]
    return latest


def test_the_flat_shape_delivers_the_tutorial_s_item_to_a_flat_server(
    broker: KafkaNode, tmp_path: Path
) -> None:
    events = list(generate(120, 40, seed=5))
    rows = rows_by_customer(events)
    with RunningSimulator(SimulatorConfig(seed=1, customer_shape="flat")) as simulator:
        topic, group, service = prepare(broker, simulator, tmp_path, GAMEBALL_CUSTOMER_SHAPE="flat")
        produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
        service.run_until_idle(60)
        assert fully_committed(broker.bootstrap, group, topic)
        simulator.state.settle()
        latest = dict(simulator.state.latest)
        for customer_id, row in rows.items():
            got = latest[customer_id]
            assert got["custom"] == orjson.loads(row["custom"])  # the latest change
            assert "customerAttributes" not in got
            assert got["name"] == row["name"]
            assert got["email"] == row["email"]
            assert got["mobile"] == row["mobile"]
            assert got["gender"] == row["gender"]
            assert got["country"] == row["country"]
            assert got.get("tags", []) == row["tags"]  # in the item: the tutorial's place
        assert simulator.state.rejected == []


def test_flat_items_to_a_strict_nested_server_fail_loudly(
    broker: KafkaNode, tmp_path: Path
) -> None:
    events = list(generate(12, 10**9, seed=9))  # one change per customer: none coalesced
    assert len({e.customer_id for e in events}) == len(events)
    with RunningSimulator(SimulatorConfig(seed=1)) as simulator:  # nested, strict: the default
        topic, group, service = prepare(broker, simulator, tmp_path, GAMEBALL_CUSTOMER_SHAPE="flat")
        produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
        service.run_until_idle(60)
        assert fully_committed(broker.bootstrap, group, topic)
        letters = read_all(broker.bootstrap, f"{topic}.dlq", len(events), timeout=60)
        assert sorted(letter.key for letter in letters) == sorted(e.key for e in events)
        for letter in letters:
            assert letter.headers["dlq.reason"] == "record_rejected"
            error = letter.headers["dlq.error"]
            assert "name: not a field of the nested customer" in error, error
        simulator.state.settle()
        assert simulator.state.applied == []
        assert simulator.state.jobs_created == 0
        assert simulator.state.requests["create"]["400"] >= len(events)


def test_tags_go_by_their_own_call_and_the_record_settles_after_it(
    broker: KafkaNode, tmp_path: Path
) -> None:
    """The nested default with TAGS_SYNC=changed: no tags in any item; each changed set is
    attached by its call, a tag gone from the row's ``before`` is removed, an update whose
    ``before`` holds the same tags sends none, and every offset is committed."""

    def change(op: str, customer: str, tags: list[str], before: list[str] | None) -> bytes:
        row = {"customer_id": customer, "email": f"{customer}@example.com", "tags": tags}
        previous = None if before is None else {**row, "tags": before}
        return orjson.dumps({"op": op, "before": previous, "after": row})

    values = [
        (b"a", change("c", "a", ["vip", "news"], None)),
        (b"b", change("r", "b", ["gold"], None)),
        (b"c", change("u", "c", ["new"], None)),  # no before: sent, it cannot be told apart
        (b"d", change("u", "d", ["same"], ["same"])),  # unchanged: no call
    ]
    with RunningSimulator(SimulatorConfig(seed=1)) as simulator:
        topic, group, service = start(broker, simulator, tmp_path, TAGS_SYNC="changed")
        try:
            events = [Event(key, value, key.decode(), 0, "deliver") for key, value in values]
            produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "offsets")
            later = [(b"a", change("u", "a", ["vip"], ["vip", "news"]))]
            produce(
                broker.bootstrap,
                topic,
                [Event(k, v, k.decode(), 1, "deliver") for k, v in later],
                partitions=PARTITIONS,
            )
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "offsets")
            simulator.state.settle()
            assert all("tags" not in item for item in simulator.state.latest.values())
            assert simulator.state.profiles.tags == {"a": ["vip"], "b": ["gold"], "c": ["new"]}
            log = simulator.state.profiles.log()["calls"]
            calls = [(call["customerId"], call["tags"]) for call in log]
            assert ("a", ["-news"]) in calls
            assert not [c for c in calls if c[0] == "d"]
            # a: attach, then attach vip and remove news; b and c: attach
            assert service.metric("customer_sync_api_requests_total", operation="tags") == 5
        finally:
            assert service.stop() == 0, service.logs()[-3000:]
