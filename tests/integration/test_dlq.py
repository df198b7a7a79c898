"""``customer-sync dlq inspect`` / ``dlq replay`` as subprocesses against Apache Kafka.

The dead letters are written by the service's own :class:`DeadLetterWriter`
(lingering 20 ms, so producer batches hold several records). The same reader
on the demo's broker, whose high watermarks are wrong for such batches, is
tested in ``test_tansu.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from jsonschema import Draft202012Validator

from service.config import load_settings
from service.delivery.deadletter import DeadLetter, DeadLetterWriter
from service.labels import DeadLetterReason
from service.metrics import Metrics
from service.tools.embedded_broker import free_port
from tests.brokers.apache import KafkaNode
from tests.integration.commands import customer_sync, tool_env
from tests.integration.harness import Broker, unique

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
REJECTED, BAD_JSON, JOB_FAILED = (
    DeadLetterReason.RECORD_REJECTED,
    DeadLetterReason.INVALID_JSON,
    DeadLetterReason.JOB_FAILED,
)


def letters(topic: str) -> list[DeadLetter]:
    made = []
    for i in range(30):
        reason = (REJECTED, BAD_JSON, JOB_FAILED)[i % 3]
        made.append(
            DeadLetter(
                topic=topic,
                partition=i % 3,
                offset=100 + i,
                timestamp_ms=1_700_000_000_000 + i,
                key=f"c{i}".encode(),
                value=b"{not json" if reason is BAD_JSON else f'{{"customerId":"c{i}"}}'.encode(),
                reason=reason,
                error=f"error text {i} ✓",
                attempts=1,
                job_id=f"job-{i}" if reason is not BAD_JSON else None,
            )
        )
    return made


def dead_letter(broker: Broker, topic: str, items: list[DeadLetter]) -> None:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "GAMEBALL_API_KEY": "k",
            "GAMEBALL_SECRET_KEY": "s",
        }
    )
    written: list[DeadLetter] = []
    writer = DeadLetterWriter(settings.producer_config(), f"{topic}.dlq", metrics=Metrics())
    writer.start(written.append)
    for item in items:
        writer.send(item)
    assert writer.flush(10) == 0
    assert len(written) == len(items)


@pytest.fixture
def topic(broker: KafkaNode) -> str:
    name = unique("replay")
    broker.create_topics({name: 3, f"{name}.dlq": 1})
    dead_letter(broker, name, letters(name))
    return name


def env(broker: KafkaNode, topic: str) -> dict[str, str]:
    return tool_env(broker, "http://127.0.0.1:9", topic)


def source_records(broker: KafkaNode, topic: str, expected: int) -> list[tuple[int, bytes, bytes]]:
    """Exactly ``expected`` records on the source topic: read them, then make sure no more come."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    found: list[tuple[int, bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 20
        while len(found) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.3):
                if not msg.error():
                    found.append((msg.partition(), msg.key(), msg.value()))
        extra_until = time.monotonic() + 1.0  # assigned and fetching: more would arrive now
        while time.monotonic() < extra_until:
            for msg in consumer.consume(100, 0.2):
                if not msg.error():
                    found.append((msg.partition(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return found


def test_inspect_prints_records_with_decoded_headers(broker: KafkaNode, topic: str) -> None:
    out = customer_sync(
        "dlq", "inspect", "--limit", "2", "--reason", "job_failed", env=env(broker, topic)
    )
    out.assert_no_traceback()
    assert out.code == 0, out
    blocks = out.stdout.split("── ")[1:]
    assert len(blocks) == 2
    first = blocks[0]
    assert "reason    job_failed" in first
    assert "error     error text 2 ✓" in first
    assert f"source    {topic}[2]@102, 2023-11-14T22:13:20.002+00:00" in first
    assert "attempts  1   job job-2" in first
    assert "key       c2" in first
    assert "2 record(s) shown" in out.stdout


def test_dry_run_counts_by_reason_and_produces_nothing_then_execute_replays_once(
    broker: KafkaNode, topic: str
) -> None:
    dry = customer_sync("dlq", "replay", "--reason", "record_rejected", env=env(broker, topic))
    dry.assert_no_traceback()
    assert dry.code == 0, dry
    assert "30 record(s) read" in dry.stdout  # all of them, past Tansu's low watermark
    assert "10 selected for replay" in dry.stdout
    assert "record_rejected                 10" in dry.stdout
    assert "(not selected)" in dry.stdout
    assert "dry run: nothing was produced" in dry.stdout
    assert "customer-sync dlq replay --execute --reason record_rejected" in dry.stdout

    first = customer_sync(
        "dlq", "replay", "--execute", "--reason", "record_rejected", env=env(broker, topic)
    )
    first.assert_no_traceback()
    assert first.code == 0, first
    assert "replayed 10 record(s), acknowledged by the broker" in first.stdout

    replayed = source_records(broker, topic, 10)
    wanted = {(d.partition, d.key, d.value) for d in letters(topic) if d.reason is REJECTED}
    assert sorted(replayed) == sorted(wanted)  # same bytes, same partition, nothing else

    again = customer_sync(
        "dlq", "replay", "--execute", "--reason", "record_rejected", env=env(broker, topic)
    )
    assert again.code == 0, again
    assert "replayed 0 record(s)" in again.stdout
    # A different selection has its own position: the job failures are still there.
    other = customer_sync("dlq", "replay", "--reason", "job_failed", env=env(broker, topic))
    assert "10 selected for replay" in other.stdout


def test_time_filters_use_the_dead_letter_timestamp(broker: KafkaNode, topic: str) -> None:
    # The letters' source timestamps are from 2023; they were dead-lettered just now.
    now = int(time.time() * 1000)
    window = ("--since", str(now - 600_000), "--until", "2999-01-01T00:00:00Z")
    out = customer_sync("dlq", "replay", *window, env=env(broker, topic))
    assert out.code == 0, out
    assert "30 selected for replay" in out.stdout
    # ... and --until before that selects none of them: the options reach the filter.
    before = customer_sync("dlq", "replay", "--until", str(now - 600_000), env=env(broker, topic))
    assert before.code == 0, before
    assert "0 selected for replay" in before.stdout


def test_dead_letter_headers_match_their_schema(broker: KafkaNode, topic: str) -> None:
    schema = json.loads((SCHEMAS / "dead-letter-headers.schema.json").read_text())
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("h")})
    consumer.assign([TopicPartition(f"{topic}.dlq", 0, OFFSET_BEGINNING)])
    headers: list[dict[str, str]] = []
    deadline = time.monotonic() + 20
    try:
        while len(headers) < 30 and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.3):
                headers.append({k: v.decode() for k, v in msg.headers() or []})
    finally:
        consumer.close()
    validator = Draft202012Validator(schema)
    for found in headers:
        errors = list(validator.iter_errors(found))
        assert not errors, (found, errors)
    assert len(headers) == 30
    assert {h["dlq.reason"] for h in headers} == {"record_rejected", "invalid_json", "job_failed"}
    assert not validator.is_valid({**headers[0], "dlq.reason": "bad_luck"})
    assert not validator.is_valid({k: v for k, v in headers[0].items() if k != "dlq.source.topic"})


def test_a_missing_dead_letter_topic_is_one_sentence(broker: KafkaNode) -> None:
    name = unique("nodlq")
    out = customer_sync("dlq", "inspect", env=env(broker, name))
    assert out.code == 1
    assert out.stderr.strip() == (
        f"customer-sync dlq: the dead-letter topic '{name}.dlq' does not exist (KAFKA_DLQ_TOPIC); "
        "check the setting, or `customer-sync check` for the command that creates it"
    )
    out.assert_no_traceback()


def test_an_unreachable_broker_is_one_sentence() -> None:
    out = customer_sync(
        "dlq",
        "replay",
        "--timeout",
        "1",
        env={
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "GAMEBALL_API_KEY": "k",
            "GAMEBALL_SECRET_KEY": "s",
        },
    )
    out.assert_no_traceback()
    assert out.code == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("customer-sync dlq: no answer from 127.0.0.1:")
    assert "run `customer-sync check`" in line


def test_a_record_whose_source_topic_is_gone_stops_the_replay_and_waits_for_it(
    broker: KafkaNode,
) -> None:
    home, gone = unique("home"), unique("gone")
    broker.create_topics({home: 3, f"{home}.dlq": 1})
    items = [*letters(home)[:2], *letters(gone)[:2]]  # two that can go home, then two that cannot
    dead_letter(broker, home, items)

    dry = customer_sync("dlq", "replay", env=env(broker, home))
    assert dry.code == 1, dry
    assert f"✗ 2 cannot be replayed: its source topic '{gone}' does not exist" in dry.stdout

    stopped = customer_sync("dlq", "replay", "--execute", env=env(broker, home))
    stopped.assert_no_traceback()
    assert stopped.code == 1, stopped
    (line,) = stopped.stderr.strip().splitlines()
    assert line.startswith("customer-sync dlq: record 0@2 cannot be replayed because its source")
    assert "2 record(s) before it were replayed" in line

    broker.create_topics({gone: 3})
    resumed = customer_sync("dlq", "replay", "--execute", env=env(broker, home))
    assert resumed.code == 0, resumed
    assert "2 record(s) read" in resumed.stdout  # starts at the record it stopped on
    assert "replayed 2 record(s)" in resumed.stdout
    assert sorted(source_records(broker, gone, 2)) == sorted(
        (d.partition, d.key, d.value) for d in letters(gone)[:2]
    )
