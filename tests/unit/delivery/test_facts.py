"""The fact buffer's rules (``facts.py``), on its own: one fact per customer per batch, in
read order, a customer's next fact only once its job ended, and a fact that waits for the
customers route waits only as long as there is something ahead of it there."""

from __future__ import annotations

from service.delivery.batching import Batcher
from service.delivery.buffers import Buffers
from service.delivery.records import PendingRecord
from service.gameball.operations import Operation
from service.labels import FlushReason


def fact(customer: str, offset: int, topic: str = "orders") -> PendingRecord:
    return PendingRecord(
        topic,
        0,
        offset,
        0,
        None,
        b"",
        customer,
        b'{"customerId":"%s"}' % customer.encode(),
        operation=Operation.ORDERS,
    )


def change(customer: str, offset: int) -> PendingRecord:
    return PendingRecord("members", 0, offset, 0, None, b"", customer, b"{}")


def buffers() -> Buffers:
    return Buffers(Batcher(1000, 4_000_000, 0.0), [Operation.CUSTOMERS, Operation.ORDERS])


def taken(b: Buffers) -> list[tuple[str, int]]:
    assert b.due(1.0) is not None
    return [(r.customer_id, r.offset) for r in b.take(FlushReason.TIMEOUT).records]


def test_one_fact_per_customer_per_batch_the_next_once_its_job_ended() -> None:
    b = buffers()
    for offset, customer in enumerate(["a", "a", "b", "a"]):
        b.add(fact(customer, offset), 0.0)
    assert taken(b) == [("a", 0), ("b", 2)]
    assert b.due(1.0) is None, "a's next fact waits for the job carrying its first"
    b.release(["a"], 1.0, Operation.ORDERS)
    assert taken(b) == [("a", 1)]
    b.release(["a", "b"], 1.0, Operation.ORDERS)
    assert taken(b) == [("a", 3)]
    assert len(b) == 0


def test_a_fact_waits_for_the_customers_jobs_ahead_of_it_and_no_longer() -> None:
    b = buffers()
    b.add(change("a", 0), 0.0)
    assert [r.customer_id for r in b.take(FlushReason.TIMEOUT).records] == ["a"]  # in flight
    b.add(change("a", 1), 0.0)  # and one more buffered behind it
    b.add(fact("a", 0), 0.0)  # read after both: waits for two customers jobs
    b.add(fact("b", 1), 0.0)  # nothing ahead of b
    assert taken(b) == [("b", 1)]
    b.release(["a"], 1.0, Operation.CUSTOMERS)  # the first customers job ended
    assert b.due(1.0) is FlushReason.TIMEOUT  # the customers change, not the fact
    assert [r.operation for r in b.take(FlushReason.TIMEOUT).records] == [Operation.CUSTOMERS]
    assert b.due(1.0) is None
    b.release(["a"], 1.0, Operation.CUSTOMERS)
    assert taken(b) == [("a", 0)]


def test_a_revoked_customers_change_no_longer_holds_the_facts_behind_it() -> None:
    b = buffers()
    b.add(change("a", 0), 0.0)
    b.add(fact("a", 0), 0.0)
    assert [r.operation for r in b.take(FlushReason.TIMEOUT).records] == [Operation.CUSTOMERS]
    b.add(change("a", 1), 0.0)
    b.add(fact("a", 1), 0.0)  # waits for two: the job in flight and the change behind it
    assert [r.offset for r in b.drop_partitions({("members", 0)})] == [1]
    b.release(["a"], 1.0, Operation.CUSTOMERS)  # the job in flight ends; nothing else ahead
    assert taken(b) == [("a", 0)]


def test_a_revoked_partitions_facts_are_dropped_and_the_rest_kept_in_order() -> None:
    b = buffers()
    b.add(fact("a", 0, topic="orders"), 0.0)
    b.add(fact("a", 1, topic="other"), 0.0)
    b.add(fact("a", 2, topic="orders"), 0.0)
    assert [r.offset for r in b.drop_partitions({("orders", 0)})] == [0, 2]
    assert taken(b) == [("a", 1)]
    assert len(b) == 0


def test_a_fact_given_back_goes_first_in_its_customers_line() -> None:
    b = buffers()
    b.add(fact("a", 0), 0.0)
    b.add(fact("a", 1), 0.0)
    first = b.take(FlushReason.TIMEOUT).records[0]
    b.give_back(first, 1.0)
    b.release(["a"], 1.0, Operation.ORDERS)
    assert taken(b) == [("a", 0)]


def test_a_fact_whose_customer_was_not_found_waits_for_that_customers_change() -> None:
    b = buffers()
    b.add(fact("a", 0), 0.0)  # read before a's change (another topic, read ahead)
    first = b.take(FlushReason.TIMEOUT).records[0]
    b.add(change("a", 5), 0.0)  # the change that creates a, read meanwhile
    first.customer_unknown_since = 1.0  # its job said "customer not found"
    b.give_back(first, 1.0)
    b.release(["a"], 1.0, Operation.ORDERS)
    assert b.due(1.0) is FlushReason.TIMEOUT
    assert [r.operation for r in b.take(FlushReason.TIMEOUT).records] == [Operation.CUSTOMERS]
    assert b.due(1.0) is None, "not sent again before a exists"
    b.release(["a"], 2.0, Operation.CUSTOMERS)
    assert taken(b) == [("a", 0)]
