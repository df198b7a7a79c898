"""The bad-input corpus through the real broker and a running service.

Every case is produced, in manifest order, to one partition, followed by good
changes. The service must stay up, dead-letter each bad case with its reason
and its original bytes, skip the skips, deliver the good ones (the corpus's
and those after it), and commit to the end of the partition.

Sizes: librdkafka's producer refuses values above ``message.max.bytes``
(1,000,000 by default) on the client side, so the test's producer raises it
to 10 MB to get the 5 MB cases onto the topic; Tansu stores and serves them
(the consumer fetches oversized records whatever ``max.partition.fetch.bytes``
says). The service's dead-letter producer keeps librdkafka's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from service.gameball.simulator import RunningSimulator
from service.tools.samples import generate
from tests.brokers.apache import KafkaNode
from tests.corpus import load
from tests.integration.harness import ServiceProcess, committed, read_all, service_env, unique

pytestmark = pytest.mark.integration

SOURCE_MAX_BYTES = 10_485_760
DLQ_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes, below the broker's default


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes | None]]) -> int:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000, "linger.ms": 5}
    )
    errors: list[Any] = []
    for key, value in records:
        producer.produce(
            topic,
            key=key,
            value=value,
            partition=0,
            on_delivery=lambda err, _msg: errors.append(err) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return len(records)


def test_the_service_survives_the_corpus_and_delivers_what_follows(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("corpus"), unique("corpus-group")
    # The source takes the corpus's 5 MB values, as a topic that carries them must; the
    # dead-letter topic keeps the broker's default limit (about 1 MB), so those values
    # cannot be copied there and must be dead-lettered without them.
    broker.create_topics({topic: 1}, config={"max.message.bytes": str(SOURCE_MAX_BYTES)})
    broker.create_topics({f"{topic}.dlq": 1})
    cases = load()
    after = list(generate(40, 10, seed=11, prefix="after-"))
    total = _produce(
        broker.bootstrap,
        topic,
        [(case.name.encode(), case.value()) for case in cases]
        + [(e.key or b"", e.value) for e in after],
    )
    service = ServiceProcess(
        service_env(broker, simulator.base_url, topic, group), tmp_path / "service.log"
    )
    # It survives: it reads the whole partition, settles and commits it, and exits cleanly.
    summary = service.run_until_idle(90)
    assert committed(broker.bootstrap, group, topic, 1).get(0, -1) >= total
    assert summary.ready
    assert summary.consumed == summary.settled == total

    bad = [c for c in cases if c.expect["outcome"] == "dead_letter" and not c.known_bug]
    letters = {r.key: r for r in read_all(broker.bootstrap, f"{topic}.dlq", len(bad))}
    for case in bad:
        letter = letters.get(case.name.encode())
        assert letter is not None, f"{case.name} was not dead-lettered"
        assert letter.headers["dlq.reason"] == case.expect["reason"], case.name
        if len(case.value() or b"") > DLQ_MAX_BYTES:  # too large for the DLQ's size limit
            assert letter.value is None, case.name
            assert int(letter.headers["dlq.value.omitted"]) == len(case.value()), case.name
        else:
            assert letter.value == case.value(), case.name
    for case in cases:
        if case.expect["outcome"] == "skip":
            assert case.name.encode() not in letters, case.name
    applied = simulator.state
    applied.settle()
    for case in cases:
        if case.expect["outcome"] == "customer":
            assert case.expect["customer_id"] in applied.latest, case.name
    latest = {e.customer_id: e.version for e in after if e.customer_id}
    for customer, version in latest.items():
        assert applied.latest[customer]["customerAttributes"]["custom"]["version"] == version
