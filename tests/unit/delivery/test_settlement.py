"""Settlement: verdicts become settled offsets, only for the current assignment (pure logic)."""

from __future__ import annotations

import orjson

from service.delivery.batching import Batcher
from service.delivery.deadletter import DeadLetterWriter
from service.delivery.offsets import Mark, OffsetTracker
from service.delivery.records import PendingRecord
from service.delivery.settlement import Settlement
from service.delivery.verdicts import Rejection, Verdicts
from service.labels import DeadLetterReason, FlushReason
from service.metrics import Metrics
from tests.unit.delivery.fakes import FakeProducer

TP = ("t", 0)


class Books:
    """A partition's offsets, the buffer and the dead-letter topic, settled by a Settlement."""

    def __init__(self) -> None:
        self.offsets = OffsetTracker()
        self.batcher = Batcher(100, 1 << 20, 0.0)
        self.producer = FakeProducer()
        self.metrics = Metrics()
        self.dead_letters = DeadLetterWriter(
            {}, "t.dlq", metrics=self.metrics, producer=self.producer
        )
        self.settlement = Settlement(self.offsets, self.batcher, self.dead_letters, self.metrics)
        self.dead_letters.start(self.settlement.dead_lettered)
        self.offsets.assign(TP, 0)

    def consume(self, *customers: str) -> list[PendingRecord]:
        """Track and buffer changes at the next offsets; return what the buffer holds."""
        for customer in customers:
            offset = self.offsets.position(TP) or 0
            generation = self.offsets.track(TP, offset)
            payload = orjson.dumps({"customerId": customer})
            record = PendingRecord(
                *TP, offset, 0, None, payload, customer, payload, generation=generation
            )
            loser = self.batcher.add(record, 0.0)
            self.settlement.settle([loser] if loser else [], "coalesced")
        return self.batcher.take(FlushReason.SIZE).records

    def watermark(self) -> int:
        return self.offsets.commit_candidates()[TP].offset

    def marks(self) -> bytes:
        window = self.offsets.window(TP)
        assert window is not None
        return window.marks

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "customer_sync_records_total", {"outcome": outcome}
        )
        return value or 0.0


def test_delivered_records_settle_with_the_changes_they_absorbed() -> None:
    books = Books()
    a, b = books.consume("a", "b", "a")  # a@2 absorbed a@0: a@0 settles with it
    assert (a.offset, b.offset) == (2, 1)
    assert books.watermark() == 0, "a@0 holds the commit until a@2 is delivered"
    books.settlement.apply(Verdicts(succeeded=[a]))
    assert books.watermark() == 1, "a@0 settled with a@2"
    assert books.marks() == bytes([Mark.PENDING, Mark.SUCCEEDED])  # b@1 is still out
    books.settlement.apply(Verdicts(succeeded=[b]))
    assert books.watermark() == 3
    assert (books.count("succeeded"), books.count("coalesced")) == (2, 1)


def test_a_rejected_record_settles_on_its_dead_letters_acknowledgement_only() -> None:
    books = Books()
    books.producer.hold = True
    [a] = books.consume("a")
    books.settlement.apply(
        Verdicts(rejected=[Rejection(a, DeadLetterReason.RECORD_REJECTED, "no", "job-1")])
    )
    assert books.watermark() == 0, "not settled before the broker has the copy"
    books.producer.hold = False
    books.dead_letters.poll()
    assert books.watermark() == 1
    assert books.producer.reasons == ["record_rejected"]


def test_records_given_back_are_buffered_again_not_settled() -> None:
    books = Books()
    [a] = books.consume("a")
    books.batcher.release(["a"], 0.0)
    books.settlement.apply(Verdicts(resubmit=[a]))
    assert len(books.batcher) == 1
    assert books.watermark() == 0


def test_a_job_from_a_previous_assignment_cannot_settle_the_new_owners_records() -> None:
    books = Books()
    old_a, old_b = books.consume("a", "b")  # a@0 and b@1 go out in one job
    # The partition goes away while that job runs (lost, or revoked after REVOKE_WAIT) ...
    books.offsets.revoke(TP)
    books.batcher.drop_partitions({TP})
    # ... and comes back: the consumer re-reads from the committed offset (0).
    books.offsets.assign(TP, 0)
    books.batcher.release(["a", "b"], 0.0)
    books.consume("a", "b")  # the new copies, taken into a job of their own
    # The old job ends: a succeeded, b was not settled by it (stopped) and is given back.
    books.settlement.apply(Verdicts(succeeded=[old_a], resubmit=[old_b]))
    # Nothing of the new assignment has settled: only the current generation may
    # settle its records, so the watermark stays at 0. (The old b used to be settled
    # as "coalesced" against the new copy of itself, and the pipeline committed 2: a
    # crash then lost b; an old job settling the new a@0 would commit 1.)
    assert books.watermark() == 0
    assert len(books.batcher) == 0, "the old b is not buffered beside the new one"


def test_skipped_and_inherited_records_settle_at_once() -> None:
    books = Books()
    for _ in range(3):
        books.offsets.track(TP, books.offsets.position(TP) or 0)
    books.settlement.skipped([(TP, 0, 0)])
    books.settlement.inherited([(TP, 1, Mark.SUCCEEDED), (TP, 2, Mark.COALESCED)])
    assert books.watermark() == 3
    assert (books.count("skipped"), books.count("succeeded"), books.count("coalesced")) == (1, 1, 1)
