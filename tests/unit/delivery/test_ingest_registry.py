"""Ingest while the schema registry cannot be reached: the Avro record waits, unread and
untracked, with everything after it, and is decoded once the registry answers; nothing is
dead-lettered (the parts of a real pipeline, a registry stand-in at the network's edge)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from structlog.testing import capture_logs

from service.config import load_settings
from service.delivery import ingest as ingest_module
from service.delivery.assembly import Parts, build
from service.delivery.avro import AvroReader
from service.delivery.decoding import Decoder
from service.delivery.ingest import Ingestor
from service.health import Health
from service.labels import FlushReason
from service.tools.embedded_broker import free_port
from tests.helpers import eventually
from tests.unit.delivery.fakes import (
    ENV,
    FakeApi,
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    change,
    running,
)
from tests.unit.delivery.fakes import rig as pipeline_rig
from tests.unit.delivery.test_avro import Registry, wire

TP = ("t", 0)
ROW = {
    "type": "record",
    "name": "Value",
    "fields": [{"name": "customer_id", "type": "string"}, {"name": "email", "type": "string"}],
}


def rig(registry: Registry) -> tuple[Parts, Ingestor]:
    parts = build(
        load_settings(ENV),
        client=FakeApi(),
        consumer=FakeConsumer({"t": 1}),
        producer=FakeProducer(),
    )
    parts.dead_letters.start(parts.settlement.dead_lettered)
    parts.offsets.assign(TP)
    decoder = Decoder(avro=AvroReader(registry))
    ingestor = Ingestor(
        parts.offsets,
        decoder,
        parts.batcher,
        parts.dead_letters,
        parts.settlement,
        parts.metrics,
        parts.takeovers,
    )
    return parts, ingestor


def test_an_avro_record_waits_for_the_registry_and_is_delivered_once_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_module, "REGISTRY_RETRY_FIRST", 0.2)
    registry = Registry()
    avro = wire(registry, ROW, {"customer_id": "c1", "email": "c1@example.com"})
    parts, ingestor = rig(registry)
    generation = parts.offsets.newest_generation
    messages = [
        FakeMessage("t", 0, 0, b"c0", change("c0")),
        FakeMessage("t", 0, 1, b"c1", avro),
        FakeMessage("t", 0, 2, b"c2", change("c2")),
    ]
    registry.down = True
    ingestor.ingest(messages, generation)
    assert len(parts.batcher) == 1  # c0, before the Avro record
    assert parts.dead_letters.in_flight == 0  # the registry being down is not the record's fault
    assert parts.offsets.position(TP) == 1  # c1 untracked: nothing at or past it is committed
    assert [m.offset() for held, _ in ingestor.held for m in held] == [1, 2]
    assert ingestor.registry_waiting
    assert ingestor.unhold() is None  # backing off
    ingestor.ingest([FakeMessage("t", 0, 3, b"c3", change("c3"))], generation)
    assert len(parts.batcher) == 1  # newer records wait behind the held ones

    time.sleep(0.25)
    resumed = ingestor.unhold()  # tried again, still down: held again, waiting longer
    assert resumed is not None
    ingestor.ingest(*resumed, resumed=True)
    assert ingestor.registry_waiting
    assert [m.offset() for held, _ in ingestor.held for m in held] == [1, 2, 3]

    registry.down = False
    time.sleep(0.45)  # the second wait: twice the first, at most
    while (resumed := ingestor.unhold()) is not None:
        ingestor.ingest(*resumed, resumed=True)
    assert not ingestor.registry_waiting
    assert parts.dead_letters.in_flight == 0
    assert parts.offsets.position(TP) == 4
    batch = parts.batcher.take(FlushReason.TIMEOUT)
    delivered = [r.customer_id for r in batch.records]
    assert sorted(delivered) == ["c0", "c1", "c2", "c3"]


@pytest.mark.parametrize("rebalance", ["assigned_again", "revoked"])
def test_held_records_no_longer_ours_are_dropped_loudly_and_leave_nothing_waiting(
    monkeypatch: pytest.MonkeyPatch, rebalance: str
) -> None:
    """A rebalance while records wait for the registry: whoever owns the partition now reads
    them again from the committed offset. The held copies are dropped, saying so, and the
    wait ends with them: a consumer paused for it would otherwise stay paused for good."""
    monkeypatch.setattr(ingest_module, "REGISTRY_RETRY_FIRST", 0.05)
    registry = Registry()
    avro = wire(registry, ROW, {"customer_id": "c0", "email": "c0@example.com"})
    messages = [FakeMessage("t", 0, 0, b"c0", avro), FakeMessage("t", 0, 1, b"c1", change("c1"))]
    parts, ingestor = rig(registry)
    registry.down = True
    ingestor.ingest(messages, parts.offsets.newest_generation)
    assert ingestor.registry_waiting
    if rebalance == "revoked":
        parts.offsets.revoke(TP)
    else:
        parts.offsets.assign(TP)  # lost and assigned back: a new generation, from the commit
    time.sleep(0.06)

    with capture_logs() as logs:
        while (resumed := ingestor.unhold()) is not None:
            ingestor.ingest(*resumed, resumed=True)

    assert not ingestor.held
    assert not ingestor.registry_waiting, "the consumer stays paused for records not ours"
    (dropped,) = [line for line in logs if line["event"] == "held_records_not_ours"]
    assert dropped["log_level"] == "warning"
    assert (dropped["partition"], dropped["first_offset"], dropped["last_offset"]) == ("t[0]", 0, 1)
    assert ("assigned again" if rebalance == "assigned_again" else "revoked") in dropped["reason"]
    if rebalance == "assigned_again":  # the new assignment's copies, read from the commit
        registry.down = False
        ingestor.ingest(messages, parts.offsets.newest_generation)
        assert sorted(r.customer_id for r in parts.batcher.take(FlushReason.TIMEOUT).records) == [
            "c0",
            "c1",
        ]


def test_the_service_is_not_ready_while_a_record_waits_for_the_registry() -> None:
    health = Health()
    health.in_group, health.credentials_ok = True, True
    assert health.ready()[0]
    health.schema_registry_unavailable = True
    ready, detail = health.ready()
    assert not ready
    assert detail["schema_registry_unavailable"] is True


async def test_the_pipeline_pauses_unready_and_commits_nothing_past_a_record_that_waits() -> None:
    """The real registry client, pointed at a loopback port nothing listens on."""
    r = pipeline_rig(env={"SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"})
    for i in range(5):
        r.consumer.append(TP, change(f"c{i}"))
    r.consumer.append(TP, wire(Registry(), ROW, {"customer_id": "c5", "email": "c5@example.com"}))
    r.consumer.append(TP, change("c6"))
    async with running(r):
        await eventually(lambda: r.pipeline.health.ready()[1]["schema_registry_unavailable"])
        assert not r.pipeline.health.ready()[0]
        await eventually(lambda: r.consumer.paused == {TP})
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 5})
        await asyncio.sleep(2.0)  # two commit intervals: nothing at or past the waiting record
        assert r.consumer.committed_offsets() == {TP: 5}
        assert r.producer.written == []
        assert r.api.delivered == [f"c{i}" for i in range(5)]


async def test_the_schemas_of_a_fetch_are_fetched_off_the_loop_and_failures_not_asked_again() -> (
    None
):
    # A schema fetch blocks for as long as the registry takes; on the loop it would hold
    # every job's HTTP exchange. The pipeline asks before it ingests a fetch, in a thread.
    registry = Registry()
    good = wire(registry, ROW, {"customer_id": "c1", "email": "c1@example.com"})
    unknown = bytes([0, 0, 0, 0, 99]) + good[5:]  # schema id 99: not in the registry
    parts, ingestor = rig(registry)
    messages = [
        FakeMessage("t", 0, 0, b"c1", good),
        FakeMessage("t", 0, 1, b"x", unknown),
        FakeMessage("t", 0, 2, b"c2", change("c2")),
    ]

    await ingestor.fetch_schemas(messages)
    loop_thread = threading.current_thread().name
    assert registry.asked == 2
    assert loop_thread not in registry.threads

    ingestor.ingest(messages, parts.offsets.newest_generation)
    assert registry.asked == 2, "the registry was asked again on the loop"
    assert len(parts.batcher) == 2  # c1 (Avro) and c2 (JSON)
    parts.dead_letters.poll(0)  # the producer acknowledges the dead letter
    assert (
        parts.metrics.registry.get_sample_value(
            "customer_sync_records_total", {"outcome": "dead_lettered"}
        )
        == 1
    ), "the unknown schema id is dead-lettered, as when asked on the loop"

    await ingestor.fetch_schemas(messages[:1])  # schema 1 is cached: nothing to ask
    assert registry.asked == 2
