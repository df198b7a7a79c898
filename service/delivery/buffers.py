"""Every route's buffer behind one face: the customers' (``batching.py``) and each fact
route's (``facts.py``).

The pipeline, the settlement, the takeovers and the rebalancer hold this one object and speak
to it as to a single buffer; a record goes to its operation's buffer, a batch comes from one.
Batches are taken in route order, customers first: of two batches due at once, the customers
one goes first, so a customer's profile is on its way before facts that name it
(``facts.py`` holds those facts until it has been applied).

A takeover's holds (:meth:`check_out` / :meth:`release` without an operation) hold a customer
on every route: the inherited job that carried them may be of any of the partition's routes.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.delivery.batching import Batch, Batcher
from service.delivery.facts import FactBuffer
from service.delivery.records import PendingRecord
from service.gameball.operations import Operation
from service.labels import FlushReason


class Buffers:
    """The customers buffer and the fact buffers of the routes ``run`` serves."""

    def __init__(
        self,
        customers: Batcher,
        operations: Iterable[Operation] = (),
    ) -> None:
        self.customers = customers
        self.facts: dict[Operation, FactBuffer] = {
            operation: FactBuffer(
                operation,
                customers.max_records,
                customers.max_bytes,
                customers.max_wait_seconds,
                customers.ahead,
            )
            for operation in operations
            if operation is not Operation.CUSTOMERS
        }
        self._all: tuple[Batcher | FactBuffer, ...] = (customers, *self.facts.values())
        self._due: Batcher | FactBuffer | None = None  # the buffer due() found due

    def __len__(self) -> int:
        return sum(len(buffer) for buffer in self._all)

    @property
    def ready_count(self) -> int:
        return sum(buffer.ready_count for buffer in self._all)

    @property
    def memory(self) -> int:
        """Estimated bytes every buffered record holds (``batching.footprint``)."""
        return sum(buffer.memory for buffer in self._all)

    def add(self, record: PendingRecord, now: float) -> PendingRecord | None:
        """Buffer a record read now; return a customers change it absorbed that settles now."""
        if record.operation is Operation.CUSTOMERS:
            return self.customers.add(record, now)
        self.facts[record.operation].add(record, now)
        return None

    def give_back(self, record: PendingRecord, now: float) -> PendingRecord | None:
        if record.operation is Operation.CUSTOMERS:
            return self.customers.give_back(record, now)
        self.facts[record.operation].give_back(record, now)
        return None

    def check_out(self, customer_ids: Iterable[str]) -> None:
        """Hold these customers on every route (a takeover's inherited or unknown job)."""
        customers = list(customer_ids)
        for buffer in self._all:
            buffer.check_out(customers)

    def release(
        self, customer_ids: Iterable[str], now: float, operation: Operation | None = None
    ) -> None:
        """A job of ``operation`` carrying these customers ended (``None``: a takeover's hold,
        on every route): their waiting records become eligible."""
        customers = list(customer_ids)
        if operation is not None and operation is not Operation.CUSTOMERS:
            self.facts[operation].release(customers, now)
            return
        self.customers.release(customers, now)
        for buffer in self.facts.values():
            if operation is None:
                buffer.release(customers, now)
            buffer.customers_released(customers)

    def due(self, now: float) -> FlushReason | None:
        """Why a batch should go now, from the first route that has one due."""
        for buffer in self._all:
            reason = buffer.due(now)
            if reason is not None:
                self._due = buffer
                return reason
        return None

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (buffer.next_deadline() for buffer in self._all) if d is not None]
        return min(deadlines, default=None)

    def take(self, reason: FlushReason) -> Batch:
        """A batch from the buffer :meth:`due` found due, else from the first with records
        ready (a shutdown's or a revocation's flush)."""
        buffer = self._due
        self._due = None
        if buffer is None or not buffer.ready_count:
            buffer = next((b for b in self._all if b.ready_count), self.customers)
        return buffer.take(reason)

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> list[PendingRecord]:
        """Remove the buffered records of revoked partitions; the next owner re-reads them."""
        dropped = self.customers.drop_partitions(partitions)
        for buffer in self.facts.values():
            dropped += buffer.drop_partitions(partitions)
            buffer.recount()
        return dropped
