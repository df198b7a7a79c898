"""Ingest under the dead-letter breaker: it stops at the record that opened it, holds the rest
in order, and loses nothing when it lets them through (no broker needed: the dead-letter
producer only queues)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.config import load_settings
from service.delivery.breaker import DeadLetterBreaker
from service.delivery.decoding import Decoder
from service.delivery.ingest import Ingestor
from service.delivery.pipeline import Pipeline
from tests.unit.delivery.test_pipeline_rebalance import ENV, TP, Msg


class Bad(Msg):
    def value(self) -> bytes:
        return b"{nope"  # invalid_json


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts() -> Iterator[tuple[Pipeline, Ingestor, Clock]]:
    pipeline = Pipeline(load_settings(ENV))
    pipeline._dead_letters.start()
    clock = Clock()
    breaker = DeadLetterBreaker(0.5, 10, 60.0, clock=clock)
    ingestor = Ingestor(
        pipeline._offsets,
        Decoder(),
        pipeline._batcher,
        pipeline._dead_letters,
        pipeline._settlement,
        pipeline.metrics,
        pipeline._takeovers,
        breaker,
    )
    yield pipeline, ingestor, clock
    pipeline._dead_letters.close(0)


def records(bad: set[int], start: int, end: int) -> list[Msg]:
    return [Bad(o, f"c{o}") if o in bad else Msg(o, f"c{o}") for o in range(start, end)]


def held_offsets(ingestor: Ingestor) -> list[int]:
    return [m.offset() or 0 for messages, _ in ingestor.held for m in messages]


async def test_the_breaker_stops_ingest_at_the_record_that_opened_it_and_holds_the_rest(
    parts: tuple[Pipeline, Ingestor, Clock],
) -> None:
    pipeline, ingestor, clock = parts
    await pipeline._rebalancer.assigned([TP])
    generation = pipeline._offsets.newest_generation
    bad = set(range(5, 11)) | {12}
    ingestor.ingest(records(bad, 0, 20), generation)
    # Offsets 5..10 dead-lettered: the sixth of the last ten opened it at 10.
    assert pipeline._dead_letters.in_flight == 6
    assert len(pipeline._batcher) == 5
    assert pipeline._offsets.position(TP) == 11  # nothing after it is tracked ...
    ingestor.ingest(records(bad, 20, 30), generation)
    assert held_offsets(ingestor) == list(range(11, 30))  # ... it waits, in order
    assert ingestor.unhold() is None  # not before the cooldown

    clock.now = 61.0
    resumed = ingestor.unhold()
    assert resumed is not None
    ingestor.ingest(resumed[0], resumed[1], resumed=True)
    # 11 went through; 12 is a dead letter and the window still holds more than half:
    # open again at once. The rest of that slice goes back in front of the newer records.
    assert pipeline._dead_letters.in_flight == 7
    assert held_offsets(ingestor) == list(range(13, 30))

    clock.now = 200.0
    while (resumed := ingestor.unhold()) is not None:
        ingestor.ingest(resumed[0], resumed[1], resumed=True)
    assert not ingestor.held
    assert pipeline._offsets.position(TP) == 30
    assert len(pipeline._batcher) == 30 - 7  # every good record buffered, none lost
    assert pipeline._dead_letters.in_flight == 7


async def test_records_fetched_while_it_lets_records_through_again_wait_behind_the_held(
    parts: tuple[Pipeline, Ingestor, Clock],
) -> None:
    pipeline, ingestor, clock = parts
    await pipeline._rebalancer.assigned([TP])
    generation = pipeline._offsets.newest_generation
    ingestor.ingest(records(set(range(6)), 0, 10), generation)
    assert held_offsets(ingestor) == list(range(6, 10))
    clock.now = 61.0
    ingestor.ingest(records(set(), 10, 15), generation)  # a fresh fetch: behind the held
    assert held_offsets(ingestor) == list(range(6, 15))
    assert pipeline._offsets.position(TP) == 6
