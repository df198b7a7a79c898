"""The buffer of one fact route (orders, cashback, redeem, events, balance adjustments).

A fact is an item sent once, never merged with another: unlike a customer's changes, two
orders of one customer are two orders. What this buffer keeps of ``batching.py``'s rules, and
what it changes:

* **Never coalesced.** Every record is sent as it was read.
* **One item per customer per job, and no customer in two jobs of the route at once.**
  Gameball documents no result field but ``customerId`` and the message, so two items of one
  customer in a job could not be told apart in its results; a customer's facts therefore go
  out one per job, oldest first, the next when the job carrying the last one has ended. Two
  orders of one customer are never in flight at once, so they reach the API in the order they
  were read. The cost: a customer with *n* facts waiting needs *n* jobs in a row (jobs of
  other customers go beside them).
* **Customers first.** A fact of a customer whose customers change is still on its way (in
  the customers buffer, or in a job not yet ended) waits for that job (``_waiting``):
  a fact sent first would fail "customer not found" (7000) until the customer exists. It
  waits for as many customers jobs as the customers route had ahead of it when it was read
  (one in flight, one more buffered), so a customer whose profile changes all the time cannot
  hold its orders back for longer than that.

Order: a batch takes one fact of each eligible customer, in the order the customers became
eligible; a customer whose job ends rejoins at the back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from service.delivery.batching import BODY_OVERHEAD, Batch, footprint
from service.delivery.records import PendingRecord
from service.gameball.operations import Operation
from service.labels import FlushReason

Queue = deque[PendingRecord]


class FactBuffer:
    """One fact route's records, per customer, and when a batch of them is due.

    ``ahead``: how many customers jobs of a customer must end before a fact of theirs read
    now may go (``Batcher.ahead``: one in flight, one buffered).
    """

    def __init__(
        self,
        operation: Operation,
        max_records: int,
        max_bytes: int,
        max_wait_seconds: float,
        ahead: Callable[[str], int],
    ) -> None:
        self.operation = operation
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_wait_seconds = max_wait_seconds
        self._ahead = ahead
        self._ready: dict[str, Queue] = {}  # eligible customers, the longest eligible first
        self._held: dict[str, Queue] = {}  # checked out, or waiting for the customers route
        self._checked_out: set[str] = set()
        self._waiting: dict[str, int] = {}  # customers jobs still to end, by customer
        self._count = 0
        self._footprint = 0

    def __len__(self) -> int:
        return self._count

    @property
    def ready_count(self) -> int:
        """Customers with a fact that may go now (a batch takes one fact of each)."""
        return len(self._ready)

    @property
    def memory(self) -> int:
        return self._footprint

    def add(self, record: PendingRecord, now: float) -> None:
        """Buffer a fact read now: after the customer's other facts, and after the customers
        jobs the customers route has ahead of it."""
        record.enqueued_at = now
        customer = record.customer_id
        self._wait_for(customer, self._ahead(customer))
        self._queue(customer).append(record)
        self._count += 1
        self._footprint += footprint(record)

    def give_back(self, record: PendingRecord, now: float) -> None:
        """A fact its job did not settle: first in its customer's line again.

        One the API did not know the customer of (7000) waits, like a fact read now, for the
        customers jobs the customers route has ahead of it: its customer's change was read
        after it (a topic read ahead of another), and sent again before that change, it
        would only meet 7000 again.
        """
        record.enqueued_at = now
        customer = record.customer_id
        if record.customer_unknown_since is not None:
            self._wait_for(customer, self._ahead(customer))
        self._queue(customer).appendleft(record)
        self._count += 1
        self._footprint += footprint(record)

    def check_out(self, customers: Iterable[str]) -> None:
        """Hold these customers' facts until :meth:`release` (a takeover's inherited job)."""
        for customer in customers:
            self._checked_out.add(customer)
            queue = self._ready.pop(customer, None)
            if queue is not None:
                self._held[customer] = queue

    def release(self, customers: Iterable[str], now: float) -> None:
        """The job carrying these customers' facts ended: their next facts may go."""
        for customer in customers:
            self._checked_out.discard(customer)
            self._unhold(customer)

    def customers_released(self, customers: Iterable[str]) -> None:
        """A customers job of these customers ended: facts waiting for it may go."""
        waiting = self._waiting
        for customer in customers:
            left = waiting.get(customer)
            if left is None:
                continue
            if left > 1:
                waiting[customer] = left - 1
                continue
            del waiting[customer]
            self._unhold(customer)

    def recount(self) -> None:
        """The customers route dropped records (a revocation): wait only for what is left."""
        for customer, left in list(self._waiting.items()):
            ahead = self._ahead(customer)
            if ahead < left:
                if ahead:
                    self._waiting[customer] = ahead
                else:
                    del self._waiting[customer]
                    self._unhold(customer)

    def due(self, now: float) -> FlushReason | None:
        if not self._ready:
            return None
        if len(self._ready) >= self.max_records:
            return FlushReason.SIZE
        if now - self._oldest() >= self.max_wait_seconds:
            return FlushReason.TIMEOUT
        return None

    def next_deadline(self) -> float | None:
        if not self._ready:
            return None
        return self._oldest() + self.max_wait_seconds

    def take(self, reason: FlushReason) -> Batch:
        """One fact of each of the longest-eligible customers, within the limits; their
        customers are checked out until :meth:`release`."""
        records: list[PendingRecord] = []
        size = BODY_OVERHEAD
        for queue in self._ready.values():
            record = queue[0]
            cost = len(record.payload) + 1
            if records and (len(records) >= self.max_records or size + cost > self.max_bytes):
                break
            records.append(record)
            size += cost
        for record in records:
            customer = record.customer_id
            queue = self._ready.pop(customer)
            queue.popleft()
            self._checked_out.add(customer)
            if queue:
                self._held[customer] = queue
            self._count -= 1
            self._footprint -= footprint(record)
        return Batch(records, reason, self.operation)

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> list[PendingRecord]:
        """Remove the facts of revoked partitions; the next owner re-reads them."""
        dropped: list[PendingRecord] = []
        for queues in (self._ready, self._held):
            for customer, queue in list(queues.items()):
                kept: Queue = deque()
                for record in queue:
                    if (record.topic, record.partition) in partitions:
                        dropped.append(record)
                        self._footprint -= footprint(record)
                    else:
                        kept.append(record)
                if len(kept) == len(queue):
                    continue
                if kept or customer in self._checked_out or customer in self._waiting:
                    queues[customer] = kept
                else:
                    del queues[customer]
        self._count -= len(dropped)
        return dropped

    def _wait_for(self, customer: str, ahead: int) -> None:
        """The customer's facts wait for ``ahead`` customers jobs, if that is longer."""
        if ahead > self._waiting.get(customer, 0):
            self._waiting[customer] = ahead
            queue = self._ready.pop(customer, None)
            if queue is not None:
                self._held[customer] = queue

    def _queue(self, customer: str) -> Queue:
        """The customer's line of facts, made (ready, or held) if it has none."""
        queue = self._ready.get(customer)
        if queue is None:
            queue = self._held.get(customer)
        if queue is None:
            queue = deque()
            (self._ready if self._eligible(customer) else self._held)[customer] = queue
        return queue

    def _eligible(self, customer: str) -> bool:
        return customer not in self._checked_out and customer not in self._waiting

    def _unhold(self, customer: str) -> None:
        if not self._eligible(customer):
            return
        queue = self._held.pop(customer, None)
        if queue:
            self._ready[customer] = queue

    def _oldest(self) -> float:
        return next(iter(self._ready.values()))[0].enqueued_at
