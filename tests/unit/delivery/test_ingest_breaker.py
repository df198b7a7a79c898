"""Ingest under the dead-letter breaker: it stops at the record that opened it, holds the rest
in order, and loses nothing when it lets them through (the parts of a real pipeline, between
the fakes of ``fakes.py``)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from service.config import load_settings
from service.delivery.assembly import Parts, build
from service.delivery.breaker import DeadLetterBreaker
from service.delivery.decoding import Decoder
from service.delivery.ingest import Ingestor
from service.delivery.rebalance import Rebalancer
from tests.helpers import eventually
from tests.unit.delivery.fakes import (
    ENV,
    FakeApi,
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    change,
    rig,
    running,
)

TP = ("t", 0)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def parts_and_ingestor(clock: Clock) -> tuple[Parts, Ingestor]:
    parts = build(
        load_settings(ENV),
        client=FakeApi(),
        consumer=FakeConsumer({"t": 1}),
        producer=FakeProducer(),
    )
    parts.dead_letters.start(parts.settlement.dead_lettered)
    parts.offsets.assign(TP)
    ingestor = Ingestor(
        parts.offsets,
        Decoder(),
        parts.batcher,
        parts.dead_letters,
        parts.settlement,
        parts.metrics,
        parts.takeovers,
        DeadLetterBreaker(0.5, 10, 60.0, clock=clock),
    )
    return parts, ingestor


def records(bad: set[int], start: int, end: int) -> list[FakeMessage]:
    return [
        FakeMessage("t", 0, o, f"c{o}".encode(), b"{nope" if o in bad else change(f"c{o}"))
        for o in range(start, end)
    ]


def held_offsets(ingestor: Ingestor) -> list[int]:
    return [m.offset() or 0 for messages, _ in ingestor.held for m in messages]


def test_it_stops_ingest_at_the_record_that_opened_it_and_holds_the_rest_in_order() -> None:
    clock = Clock()
    parts, ingestor = parts_and_ingestor(clock)
    generation = parts.offsets.newest_generation
    bad = set(range(5, 11)) | {12}
    ingestor.ingest(records(bad, 0, 20), generation)
    # Offsets 5..10 dead-lettered: the sixth of the last ten opened it at 10.
    assert parts.dead_letters.in_flight == 6
    assert len(parts.batcher) == 5
    assert parts.offsets.position(TP) == 11  # nothing after it is tracked ...
    ingestor.ingest(records(bad, 20, 30), generation)
    assert held_offsets(ingestor) == list(range(11, 30))  # ... it waits, in order
    assert ingestor.unhold() is None  # not before the cooldown

    clock.now = 61.0
    resumed = ingestor.unhold()
    assert resumed is not None
    ingestor.ingest(resumed[0], resumed[1], resumed=True)
    # 11 went through; 12 is a dead letter and the window still holds more than half:
    # open again at once. The rest of that slice goes back in front of the newer records.
    assert parts.dead_letters.in_flight == 7
    assert held_offsets(ingestor) == list(range(13, 30))

    clock.now = 200.0
    while (resumed := ingestor.unhold()) is not None:
        ingestor.ingest(resumed[0], resumed[1], resumed=True)
    assert not ingestor.held
    assert parts.offsets.position(TP) == 30
    assert len(parts.batcher) == 30 - 7  # every good record buffered, none lost
    assert parts.dead_letters.in_flight == 7


def test_records_fetched_as_it_lets_records_through_again_wait_behind_the_held() -> None:
    clock = Clock()
    parts, ingestor = parts_and_ingestor(clock)
    generation = parts.offsets.newest_generation
    ingestor.ingest(records(set(range(6)), 0, 10), generation)
    assert held_offsets(ingestor) == list(range(6, 10))
    clock.now = 61.0
    ingestor.ingest(records(set(), 10, 15), generation)  # a fresh fetch: behind the held
    assert held_offsets(ingestor) == list(range(6, 15))
    assert parts.offsets.position(TP) == 6


async def test_an_open_breaker_pauses_fails_readiness_and_commits_nothing() -> None:
    r = rig(env={"DLQ_BREAKER_WINDOW": "10", "DLQ_BREAKER_COOLDOWN_SECONDS": "3600"})
    for i in range(5):
        r.consumer.append(TP, change(f"c{i}"))
    async with running(r):
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 5})
        assert r.pipeline.health.ready()[1]["dead_letter_breaker_open"] is False
        for _ in range(6):
            r.consumer.append(TP, b"{nope")
        for i in range(11, 20):
            r.consumer.append(TP, change(f"c{i}"))
        await eventually(lambda: r.pipeline.health.ready()[1]["dead_letter_breaker_open"])
        assert not r.pipeline.health.ready()[0]
        await eventually(lambda: len(r.producer.written) == 6)
        await eventually(lambda: r.consumer.paused == {TP})
        assert r.count("customer_sync_dead_letter_breaker_open") == 1
        # Their acknowledgements settled the six dead letters, yet nothing is committed:
        # absence cannot be awaited, so watch for two commit intervals.
        await asyncio.sleep(2.0)
        assert r.consumer.committed_offsets() == {TP: 5}
        assert r.producer.reasons == ["invalid_json"] * 6
        assert r.api.delivered == [f"c{i}" for i in range(5)]  # nothing after it
    assert r.consumer.committed_offsets() == {TP: 5}  # nor on shutdown


async def test_a_failed_revocation_says_which_partitions_got_no_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(_self: Rebalancer, _partitions: object) -> None:
        raise RuntimeError("a bug in the revocation")

    monkeypatch.setattr(Rebalancer, "_revoking", broken)
    r = rig()
    with capture_logs() as logs:
        async with running(r):
            await eventually(lambda: r.pipeline.health.in_group)
            r.consumer.rebalance("revoke", [TP])
            await eventually(lambda: any(e["event"] == "rebalance_handler_failed" for e in logs))
    [line] = [entry for entry in logs if entry["event"] == "rebalance_handler_failed"]
    assert line["partitions"] == ["t[0]"]
    assert "no revoke commit" in line["not_done"]
