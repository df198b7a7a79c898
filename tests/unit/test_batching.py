"""Flush rules, coalescing and the one-job-per-customer rule of the batcher."""

from __future__ import annotations

import orjson
import pytest

from service.batching import Batcher, FlushReason
from service.records import PendingRecord


def record(customer: str, offset: int, partition: int = 0, size: int = 0) -> PendingRecord:
    payload = orjson.dumps({"customerId": customer, "pad": "x" * size})
    return PendingRecord("t", partition, offset, 0, customer.encode(), b"{}", customer, payload)


def test_flushes_at_the_record_limit() -> None:
    batcher = Batcher(max_records=3, max_bytes=10**6, max_wait_seconds=60)
    for i in range(2):
        batcher.add(record(f"c{i}", i), now=0)
    assert batcher.due(now=0) is None
    batcher.add(record("c2", 2), now=0)
    assert batcher.due(now=0) is FlushReason.SIZE
    batch = batcher.take(FlushReason.SIZE)
    assert [r.offset for r in batch.records] == [0, 1, 2]
    assert orjson.loads(batch.body())["body"][2]["customerId"] == "c2"
    assert len(batcher) == 0


def test_flushes_before_the_body_outgrows_max_bytes() -> None:
    batcher = Batcher(max_records=1000, max_bytes=2000, max_wait_seconds=60)
    for i in range(5):
        batcher.add(record(f"c{i}", i, size=500), now=0)
    assert batcher.due(now=0) is FlushReason.BYTES
    batch = batcher.take(FlushReason.BYTES)
    assert len(batch.body()) <= 2000
    assert len(batch.records) == 3
    assert batcher.ready_count == 2


def test_flushes_after_the_wait_since_the_first_record() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=2.0)
    batcher.add(record("a", 0), now=10.0)
    batcher.add(record("b", 1), now=11.5)
    assert batcher.due(now=11.9) is None
    assert batcher.next_deadline() == pytest.approx(12.0)
    assert batcher.due(now=12.0) is FlushReason.TIMEOUT


def test_later_change_of_a_customer_replaces_the_earlier_one() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    first = record("a", 0)
    batcher.add(first, now=0)
    batcher.add(record("b", 1), now=0)
    assert batcher.add(record("a", 2), now=5) is first
    batch = batcher.take(FlushReason.TIMEOUT)
    assert [(r.customer_id, r.offset) for r in batch.records] == [("a", 2), ("b", 1)]
    # the customer keeps its age: it has been waiting since the first change
    assert batch.records[0].enqueued_at == 0


def test_a_customer_in_flight_waits_for_its_job() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(record("a", 0), now=0)
    batcher.take(FlushReason.TIMEOUT)
    batcher.add(record("a", 1), now=1)
    batcher.add(record("b", 2), now=1)
    second = batcher.take(FlushReason.TIMEOUT)
    assert [r.customer_id for r in second.records] == ["b"]
    assert len(batcher) == 1
    batcher.release(["a"], now=2)
    third = batcher.take(FlushReason.TIMEOUT)
    assert [(r.customer_id, r.offset) for r in third.records] == [("a", 1)]


def test_a_returned_record_loses_to_a_newer_buffered_change() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    old = record("a", 0)
    batcher.add(old, now=0)
    batcher.take(FlushReason.TIMEOUT)
    batcher.add(record("a", 5), now=1)
    assert batcher.give_back(old, now=2) is old
    batcher.release(["a"], now=2)
    assert [r.offset for r in batcher.take(FlushReason.TIMEOUT).records] == [5]


def test_a_returned_record_without_a_newer_change_is_resubmitted() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    old = record("a", 0)
    batcher.add(old, now=0)
    batcher.take(FlushReason.TIMEOUT)
    assert batcher.give_back(old, now=2) is None
    assert batcher.ready_count == 0  # still checked out until its job is released
    batcher.release(["a"], now=2)
    assert batcher.take(FlushReason.TIMEOUT).records == [old]


def test_revoked_partitions_are_dropped_from_the_buffer() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(record("a", 0, partition=0), now=0)
    batcher.add(record("b", 0, partition=1), now=0)
    dropped = batcher.drop_partitions({("t", 1)})
    assert [r.customer_id for r in dropped] == ["b"]
    assert [r.customer_id for r in batcher.take(FlushReason.TIMEOUT).records] == ["a"]
