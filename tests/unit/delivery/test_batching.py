"""Flush rules, coalescing and the one-job-per-customer rule of the batcher."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from service.delivery.batching import Batcher
from service.delivery.records import PendingRecord, superseded_offsets, superseded_stamps
from service.labels import FlushReason


def pairs(record: PendingRecord) -> list[tuple[int, int]]:
    """The earlier changes ``record`` absorbed, as ``(offset, timestamp_ms)``."""
    return list(zip(superseded_offsets(record), superseded_stamps(record), strict=True))


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


def test_a_later_change_of_a_customer_absorbs_the_earlier_one() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(record("a", 0), now=0)
    batcher.add(record("b", 1), now=0)
    assert batcher.add(record("a", 2), now=5) is None  # nothing settles before the merged change
    batch = batcher.take(FlushReason.TIMEOUT)
    assert [(r.customer_id, r.offset) for r in batch.records] == [("a", 2), ("b", 1)]
    assert pairs(batch.records[0]) == [(0, 0)]  # settles when offset 2 settles
    # the customer keeps its age: it has been waiting since the first change
    assert batch.records[0].enqueued_at == 0


def change(
    customer: str,
    offset: int,
    partition: int = 0,
    unknown: tuple[tuple[str, ...], ...] = (),
    **fields: object,
) -> PendingRecord:
    payload = orjson.dumps({"customerId": customer, **fields})
    return PendingRecord(
        "t", partition, offset, offset, None, b"{}", customer, payload, unknown=unknown
    )


def merged_item(batcher: Batcher) -> object:
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    return orjson.loads(merged.payload)


def test_a_placeholder_in_the_later_change_keeps_the_earlier_value() -> None:
    """An update that leaves a TOASTed column unchanged carries Debezium's placeholder, which
    the decoder leaves out and names unknown: the insert's value must still reach the API."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(change("a", 0, email="a@x.io", custom={"blob": "6 kB", "tier": "gold"}), now=0)
    batcher.add(change("a", 1, unknown=(("custom",),), email="new@x.io"), now=0)
    assert merged_item(batcher) == {
        "customerId": "a",
        "email": "new@x.io",
        "custom": {"blob": "6 kB", "tier": "gold"},
    }


def test_a_null_in_the_later_change_wins() -> None:
    """A NULL is left out too, but it speaks: the row has no value there now."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(change("a", 0, email="a@x.io", gender="female"), now=0)
    batcher.add(change("a", 1, email="a@x.io"), now=0)  # gender set to NULL
    assert merged_item(batcher) == {"customerId": "a", "email": "a@x.io"}


def test_an_unknown_object_is_filled_key_by_key_and_the_later_keys_win() -> None:
    """``custom`` fed by a JSON column (the placeholder) and by attribute columns (changed)."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(change("a", 0, custom={"blob": "big", "tier": "gold"}), now=0)
    batcher.add(change("a", 1, unknown=(("custom",),), custom={"tier": "platinum"}), now=0)
    assert merged_item(batcher) == {
        "customerId": "a",
        "custom": {"blob": "big", "tier": "platinum"},
    }


def test_an_unknown_field_inside_the_profile_is_filled_in_place() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    first = {"displayName": "Ada", "custom": {"blob": "big"}}
    batcher.add(change("a", 0, customerAttributes=first), now=0)
    later = {"displayName": "Ada King"}
    unknown = (("customerAttributes", "custom"),)
    batcher.add(change("a", 1, unknown=unknown, customerAttributes=later), now=0)
    assert merged_item(batcher) == {
        "customerId": "a",
        "customerAttributes": {"displayName": "Ada King", "custom": {"blob": "big"}},
    }


def test_what_neither_change_could_say_stays_unknown() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    batcher.add(change("a", 0, unknown=(("custom",),), name="A"), now=0)
    batcher.add(change("a", 1, unknown=(("custom",), ("tags",)), name="B"), now=0)
    batcher.add(change("a", 2, unknown=(("custom",),), name="C"), now=0)
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert merged.unknown == (("custom",),)  # tags: NULL at offset 0, so known to be absent
    assert orjson.loads(merged.payload) == {"customerId": "a", "name": "C"}


def test_a_merge_copies_numbers_exactly() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    earlier = b'{"customerId":"a","custom":{"balance":12345678901234567890.123456789}}'
    batcher.add(PendingRecord("t", 0, 0, 0, None, None, "a", earlier), now=0)
    batcher.add(change("a", 1, unknown=(("custom",),), email="e@x.io"), now=0)
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert b'"balance":12345678901234567890.123456789' in merged.payload


def test_a_change_of_another_partition_is_merged_but_settles_at_once() -> None:
    """Two topics feeding one customer: the other partition's ledger cannot wait on this one."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    first = change("a", 0, partition=1, city="Giza")
    batcher.add(first, now=0)
    later = change("a", 7, partition=0, unknown=(("city",),), email="e@x.io")
    assert batcher.add(later, now=0) is first
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert pairs(merged) == []
    assert orjson.loads(merged.payload) == {"customerId": "a", "email": "e@x.io", "city": "Giza"}


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


def test_a_returned_record_is_absorbed_by_a_newer_buffered_change() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    old = change("a", 0, email="a@x.io", city="Cairo")
    batcher.add(old, now=0)
    batcher.take(FlushReason.TIMEOUT)
    batcher.add(change("a", 5, unknown=(("city",),), email="new@x.io"), now=1)
    assert batcher.give_back(old, now=2) is None
    batcher.release(["a"], now=2)
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert (merged.offset, pairs(merged)) == (5, [(0, 0)])
    assert orjson.loads(merged.payload) == {"customerId": "a", "email": "new@x.io", "city": "Cairo"}


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


class BatcherModel(RuleBasedStateMachine):
    """Any interleaving of add / take / finish (with resubmissions) / revoke / time passing.

    Checked after every step: no customer twice in a batch, no customer in two
    checked-out batches, every taken change is the customer's newest known
    one, the limits hold, ``due`` says what the rules say, and nothing is
    lost: every added record is exactly one of buffered, in a batch in
    flight, delivered, dropped by a revocation, or absorbed by one of those
    (in its ``superseded``) — and then every field it said and its successors
    could not is in that one's payload.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batcher = Batcher(max_records=4, max_bytes=260, max_wait_seconds=2.0)
        self.now = 0.0
        self.offsets = {0: 0, 1: 0}
        self.added: list[PendingRecord] = []
        self.dropped: list[PendingRecord] = []
        self.delivered: list[PendingRecord] = []
        self.in_flight: list[list[PendingRecord]] = []
        self.orphans: set[int] = set()  # ids of records in flight whose partition was revoked
        self.newest: dict[str, int] = {}  # customer -> offset of its newest added change
        self.taken: dict[str, int] = {}  # customer -> offset of its newest taken change
        self.offsets_of: dict[str, list[int]] = {}  # customer -> offsets of its changes

    @staticmethod
    def partition_of(customer: str) -> int:
        return ord(customer[-1]) % 2  # keyed: a customer lives in one partition

    @rule(customer=st.sampled_from("abcdefg"), size=st.integers(min_value=0, max_value=60))
    def add(self, customer: str, size: int) -> None:
        partition = self.partition_of(customer)
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        # Each change says a field of its own and cannot say its predecessors' (as if each
        # were a TOASTed column it left unchanged): the merge must keep them all.
        payload = {"customerId": customer, f"f{offset}": 1, "pad": "x" * size}
        unknown = tuple((f"f{o}",) for o in self.offsets_of.setdefault(customer, []))
        self.offsets_of[customer].append(offset)
        new = PendingRecord(
            "t", partition, offset, 0, None, b"{}", customer, orjson.dumps(payload), unknown=unknown
        )
        self.added.append(new)
        self.newest[customer] = offset
        assert self.batcher.add(new, self.now) is None  # one partition per customer here

    @rule(seconds=st.floats(min_value=0, max_value=3))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def take(self) -> None:
        if not self.batcher.ready_count:
            return
        batch = self.batcher.take(FlushReason.TIMEOUT)
        customers = [r.customer_id for r in batch.records]
        assert batch.records
        assert len(customers) == len(set(customers)), "a customer twice in one batch"
        busy = {r.customer_id for b in self.in_flight for r in b}
        assert not busy & set(customers), "a customer in two batches in flight"
        assert len(batch.records) <= self.batcher.max_records
        assert len(batch.records) == 1 or len(batch.body()) <= self.batcher.max_bytes
        for r in batch.records:
            # order per customer: never older than what was taken before
            assert r.offset >= self.taken.get(r.customer_id, -1)
            self.taken[r.customer_id] = r.offset
        self.in_flight.append(batch.records)

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """A job ends: some records delivered, the others given back for resubmission.

        Like the pipeline, verdicts for records of a partition revoked meanwhile
        are ignored (neither settled nor given back).
        """
        if not self.in_flight:
            return
        index = data.draw(st.integers(0, len(self.in_flight) - 1), label="batch")
        records = self.in_flight.pop(index)
        back = data.draw(st.lists(st.sampled_from(records), unique=True), label="resubmit")
        for r in records:
            if id(r) in self.orphans:
                # The pipeline ignores verdicts for a partition it no longer owns:
                # the next owner re-reads the record.
                self.orphans.discard(id(r))
                self.dropped.append(r)
            elif r in back:
                assert self.batcher.give_back(r, self.now) is None
            else:
                self.delivered.append(r)
        self.batcher.release([r.customer_id for r in records], self.now)

    @rule(partition=st.sampled_from([0, 1]))
    def revoke(self, partition: int) -> None:
        dropped = self.batcher.drop_partitions({("t", partition)})
        assert all(r.partition == partition for r in dropped)
        self.dropped.extend(dropped)
        self.orphans.update(id(r) for b in self.in_flight for r in b if r.partition == partition)

    def buffered(self) -> list[PendingRecord]:
        return [*self.batcher._ready.values(), *self.batcher._held.values()]

    @invariant()
    def nothing_is_lost_or_counted_twice(self) -> None:
        places = [
            *self.buffered(),
            *(r for b in self.in_flight for r in b),
            *self.delivered,
            *self.dropped,
        ]
        found = [(r.partition, r.offset) for r in places]
        found += [(r.partition, offset) for r in places for offset, _ in pairs(r)]
        assert sorted(found) == sorted((r.partition, r.offset) for r in self.added)

    @invariant()
    def an_absorbed_change_keeps_every_field_it_said(self) -> None:
        for r in self.buffered():
            said = {f"f{offset}" for offset, _ in pairs(r)} | {f"f{r.offset}"}
            assert said <= set(orjson.loads(r.payload))

    @invariant()
    def the_buffer_holds_only_the_newest_change(self) -> None:
        for r in self.buffered():
            assert r.offset == self.newest[r.customer_id]
        assert len(self.batcher) == len(self.buffered())

    @invariant()
    def due_follows_the_flush_rules(self) -> None:
        ready = list(self.batcher._ready.values())
        reason = self.batcher.due(self.now)
        if not ready:
            assert reason is None
            return
        body = len(b'{"body":[]}') + sum(len(r.payload) + 1 for r in ready)
        if len(ready) >= self.batcher.max_records:
            assert reason is FlushReason.SIZE
        elif body >= self.batcher.max_bytes:
            assert reason is FlushReason.BYTES
        elif self.now - ready[0].enqueued_at >= self.batcher.max_wait_seconds:
            assert reason is FlushReason.TIMEOUT
        else:
            assert reason is None


BatcherModel.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_batcher_keeps_its_promises_under_any_interleaving = BatcherModel.TestCase


def test_tags_to_send_survive_coalescing() -> None:
    """A change whose tags changed must still send them when a later one absorbs it."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    first = change("a", 0)
    first.tags, first.tags_changed = ["vip"], True
    batcher.add(first, now=0)
    batcher.add(change("a", 1), now=0)  # says nothing of tags (none mapped, or unreadable)
    second = change("a", 2)
    second.tags, second.tags_changed = ["vip", "new"], False  # compared with a set never sent
    batcher.add(second, now=0)
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert (merged.tags, merged.tags_changed) == (["vip", "new"], True)


def test_tags_to_remove_survive_coalescing_unless_the_later_change_has_them_again() -> None:
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    first = change("a", 0)
    first.tags, first.tags_changed, first.tags_removed = ["vip"], True, ("old", "promo")
    batcher.add(first, now=0)
    second = change("a", 1)
    second.tags, second.tags_changed, second.tags_removed = ["vip", "promo"], True, ("vip2",)
    batcher.add(second, now=0)
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert merged.tags_removed == ("old", "vip2")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_changes_given_back_by_one_job_keep_the_later_whatever_the_order(
    order: tuple[int, int],
) -> None:
    """An inherited job carried a change and the earlier one it had absorbed (the ledger
    marks both with its slot); unresolved, it hands both back: the later offset must win."""
    batcher = Batcher(max_records=1000, max_bytes=10**6, max_wait_seconds=1)
    changes = [change("a", 3, email="old@x.io", city="Giza"), change("a", 7, email="new@x.io")]
    changes[1].unknown = (("city",),)
    for index in order:
        assert batcher.give_back(changes[index], now=0) is None
    (merged,) = batcher.take(FlushReason.TIMEOUT).records
    assert merged.offset == 7
    assert pairs(merged) == [(3, 3)]
    assert orjson.loads(merged.payload) == {"customerId": "a", "email": "new@x.io", "city": "Giza"}


def test_footprint_estimates_the_memory_a_buffered_change_holds() -> None:
    """COMPACTION_MAX_BYTES bounds what footprint() counts: it must be the memory, within 15 %.

    Sample Debezium changes, decoded and buffered as ingest does while compacting (values left
    in Kafka), measured with tracemalloc: 4,000 changes of 4,000 customers, and of 800.
    """
    import gc
    import tracemalloc

    from service.delivery.decoding import Customer, Decoder
    from service.tools.samples import generate

    for customers in (4000, 800):
        events = list(generate(4000, customers, seed=3))
        keys = [bytes(e.key or b"") for e in events]
        decoder = Decoder()
        for event in events[:100]:  # its plans and caches are not the buffer's
            decoder.decode(event.value)
        gc.collect()
        tracemalloc.start()
        try:
            batcher = Batcher(max_records=1000, max_bytes=4 << 20, max_wait_seconds=1)
            for offset, event in enumerate(events):
                result = decoder.decode(event.value)
                assert type(result) is Customer
                change = PendingRecord(
                    "t",
                    0,
                    10**9 + offset,
                    1_700_000_000_000,
                    keys[offset],
                    None,
                    result.customer_id,
                    result.payload,
                    unknown=result.unknown,
                    tags=result.tags,
                    tags_changed=result.tags_changed,
                )
                batcher.add(change, now=0)
            # Not the decoder's memos (fields.py: bounded caches it keeps whatever is buffered).
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, "*/service/delivery/fields.py")]
            )
            held = sum(stat.size for stat in snapshot.statistics("filename"))
        finally:
            tracemalloc.stop()
        assert 0.85 <= batcher.memory / held <= 1.15, (customers, batcher.memory, held)


def test_memory_follows_changes_in_and_out_of_the_buffer() -> None:
    batcher = Batcher(max_records=2, max_bytes=10**6, max_wait_seconds=1)
    assert batcher.memory == 0
    batcher.add(record("a", 0), now=0)
    one = batcher.memory
    assert one > 0
    batcher.add(record("a", 1), now=0)  # absorbed: one change, one superseded pair more
    assert one < batcher.memory < 2 * one
    batcher.add(record("b", 2), now=0)
    batch = batcher.take(FlushReason.SIZE)
    assert batcher.memory == 0
    batcher.add(record("a", 3), now=0)  # held: a is checked out
    assert batcher.memory > 0
    batcher.release([r.customer_id for r in batch.records], now=1)
    batcher.drop_partitions({("t", 0)})
    assert batcher.memory == 0
