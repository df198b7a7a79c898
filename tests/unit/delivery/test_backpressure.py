"""Backpressure: pause at the limit, resume at half, and pause what arrives while paused."""

from __future__ import annotations

from service.delivery.backpressure import Backpressure
from service.metrics import Metrics
from tests.unit.delivery.fakes import FakeConsumer

OWNED = [("t", 0), ("t", 1)]


def decide(bp: Backpressure, consumer: FakeConsumer, buffered: int, unacked: int = 0) -> bool:
    """One decision, applied; returns whether it asked the consumer for anything."""
    change = bp.decide(buffered, unacked, OWNED)
    if change is not None:
        change()
    return change is not None


def test_the_consumer_pauses_at_the_limit_and_resumes_at_half_not_before() -> None:
    consumer, metrics = FakeConsumer({"t": 2}), Metrics()
    bp = Backpressure(consumer, metrics, limit=100)
    assert not decide(bp, consumer, 99)
    assert decide(bp, consumer, 60, unacked=40), "dead letters in flight count too"
    assert consumer.paused == set(OWNED)
    assert bp.paused
    assert metrics.registry.get_sample_value("customer_sync_consumer_paused") == 1
    assert not decide(bp, consumer, 51), "no flapping just below the limit"
    assert decide(bp, consumer, 50)
    assert consumer.paused == set()
    assert not bp.paused


def test_partitions_assigned_while_paused_are_paused_too() -> None:
    # librdkafka assigns them unpaused after the callback returns.
    consumer = FakeConsumer({"t": 2})
    bp = Backpressure(consumer, Metrics(), limit=10)
    decide(bp, consumer, 10)
    consumer.paused.clear()  # what a new assignment does
    bp.assigned()
    assert decide(bp, consumer, 10)
    assert consumer.paused == set(OWNED)
    assert not decide(bp, consumer, 10), "once is enough"


def test_while_compacting_memory_bounds_the_buffer_not_its_records() -> None:
    consumer, metrics = FakeConsumer({"t": 1}), Metrics()
    bp = Backpressure(consumer, metrics, limit=100, max_bytes=10_000)
    owned = [("t", 0)]
    assert bp.decide(5_000, 0, owned, compacting=(9_999, 0)) is None, "records do not count"
    assert bp.decide(5_000, 0, owned, compacting=(10_000, 0)) is not None
    assert bp.paused
    assert bp.decide(5_000, 0, owned, compacting=(5_001, 0)) is None, "resumes at half"
    assert bp.decide(5_000, 0, owned, compacting=(5_000, 0)) is not None
    assert not bp.paused
    assert bp.decide(0, 60, owned, compacting=(0, 40)) is not None, "a takeover's records do"
