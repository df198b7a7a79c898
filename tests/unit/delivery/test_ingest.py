"""Ingest: each consumed record tracked, then buffered, settled at once, or dead-lettered.

The parts come from the pipeline's own factory (``assembly.build``) over fakes of its edges.
"""

from __future__ import annotations

from service.config import load_settings
from service.delivery.assembly import Parts, build
from service.delivery.offsets import Mark
from service.labels import FlushReason
from tests.unit.delivery.fakes import ENV, FakeApi, FakeConsumer, FakeMessage, FakeProducer, change

TP = ("t", 0)


def parts() -> tuple[Parts, FakeProducer]:
    producer = FakeProducer()
    made = build(
        load_settings(ENV), client=FakeApi(), consumer=FakeConsumer({"t": 1}), producer=producer
    )
    made.dead_letters.start(made.settlement.dead_lettered)
    made.offsets.assign(TP, 0)
    return made, producer


def messages(*values: bytes | None) -> list[FakeMessage]:
    return [FakeMessage(*TP, offset, None, value) for offset, value in enumerate(values)]


def test_each_record_is_routed_by_what_it_decodes_to() -> None:
    p, producer = parts()
    fetch = messages(change("a", 0), None, b"{not json", change("b"), change("a", 4))
    p.ingestor.ingest(fetch, p.offsets.newest_generation)

    # Customers are buffered, each customer's latest change only: a@4 absorbed a@0.
    batch = p.batcher.take(FlushReason.SIZE).records
    assert {(r.customer_id, r.offset) for r in batch} == {("a", 4), ("b", 3)}
    window = p.offsets.window(TP)
    assert window is not None
    assert window.offset == 0, "a@0 settles with a@4, once that is delivered"
    # The tombstone settled at once; the undecodable record waits for its dead letter.
    assert window.marks == bytes([Mark.PENDING, Mark.SKIPPED, Mark.PENDING, Mark.PENDING, 0])
    producer.flush(0)
    assert producer.reasons == ["invalid_json"]
    window = p.offsets.window(TP)
    assert window is not None
    assert window.marks[2] == Mark.DEAD_LETTERED
    consumed = p.metrics.registry.get_sample_value(
        "customer_sync_records_consumed_total", {"topic": "t"}
    )
    assert consumed == 5


def test_a_record_of_an_earlier_assignment_is_not_taken() -> None:
    p, _ = parts()
    fetched = p.offsets.newest_generation
    p.offsets.assign(TP, 0)  # assigned again while the fetch waited to be ingested
    p.ingestor.ingest(messages(change("a")), fetched)
    assert len(p.batcher) == 0
    assert p.offsets.position(TP) == 0, "the new assignment re-reads it from its commit"


def test_a_record_seen_again_after_a_seek_is_not_taken_twice() -> None:
    p, _ = parts()
    p.ingestor.ingest(messages(change("a")), p.offsets.newest_generation)
    p.batcher.take(FlushReason.SIZE)
    p.ingestor.ingest(messages(change("a")), p.offsets.newest_generation)
    assert len(p.batcher) == 0
