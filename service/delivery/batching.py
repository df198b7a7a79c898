"""The buffer between consuming and submitting: coalescing, flush rules, customer checkout.

Two rules of the contract live here:

* **Coalescing.** A batch carries at most one change per ``customerId``: a
  later change of a buffered customer replaces the earlier one (which is then
  settled as ``coalesced``; the later change carries everything it said).
* **No customer in two jobs at once.** When a batch is taken, its customers are
  *checked out* until the pipeline releases them (their job ended, one way or
  another). Changes of a checked-out customer wait in ``held`` and only become
  eligible on release, so a later change can never overtake an earlier one
  that is still in flight — the API gives no ordering between jobs.

A record given back for resubmission (its job was stopped, timed out, or did
not report it) is older than anything buffered for the same customer, so if
the buffer already holds a change of that customer, the returned record is the
one coalesced away.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.delivery.records import PendingRecord
from service.labels import FlushReason

_BODY_OVERHEAD = len(b'{"body":[]}')


@dataclass(frozen=True, slots=True)
class Batch:
    records: list[PendingRecord]
    reason: FlushReason

    def body(self) -> bytes:
        return request_body(self.records)


def request_body(records: list[PendingRecord]) -> bytes:
    """The batch request body, built once by joining the pre-serialised customers.

    ``_BODY_OVERHEAD`` and the per-record ``+ 1`` (the comma) in :class:`Batcher`
    count exactly these bytes, which is what keeps bodies under ``max_bytes``.
    """
    return b'{"body":[' + b",".join(r.payload for r in records) + b"]}"


class Batcher:
    """A customer-keyed buffer that knows when a batch is due."""

    def __init__(self, max_records: int, max_bytes: int, max_wait_seconds: float) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_wait_seconds = max_wait_seconds
        # Insertion-ordered: the oldest eligible change is first.
        self._ready: dict[str, PendingRecord] = {}
        self._held: dict[str, PendingRecord] = {}
        self._checked_out: set[str] = set()
        self._ready_bytes = 0

    def __len__(self) -> int:
        return len(self._ready) + len(self._held)

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def add(self, record: PendingRecord, now: float) -> PendingRecord | None:
        """Buffer a newly consumed change; return the change it superseded, if any."""
        record.enqueued_at = now
        customer = record.customer_id
        if customer in self._checked_out:
            previous = self._held.get(customer)
            self._held[customer] = record
            return previous
        previous = self._ready.get(customer)
        if previous is not None:
            # Keep the customer's place (and its age) in the queue: it has been
            # waiting since the earlier change.
            record.enqueued_at = previous.enqueued_at
            self._ready_bytes += len(record.payload) - len(previous.payload)
        else:
            self._ready_bytes += len(record.payload) + 1
        self._ready[customer] = record
        return previous

    def give_back(self, record: PendingRecord, now: float) -> PendingRecord | None:
        """Return a record for resubmission; return whichever of it and a buffered change loses.

        Anything buffered for the customer arrived after the returned record was
        taken, so it is newer and wins.
        """
        customer = record.customer_id
        if customer in self._ready or customer in self._held:
            return record
        record.enqueued_at = now
        if customer in self._checked_out:
            self._held[customer] = record
        else:
            self._ready[customer] = record
            self._ready_bytes += len(record.payload) + 1
        return None

    def release(self, customer_ids: Iterable[str], now: float) -> None:
        """The job carrying these customers has ended: their waiting changes become eligible."""
        for customer in customer_ids:
            self._checked_out.discard(customer)
            record = self._held.pop(customer, None)
            if record is not None:
                self._ready[customer] = record
                self._ready_bytes += len(record.payload) + 1

    def due(self, now: float) -> FlushReason | None:
        """Why a batch should be flushed now, or ``None`` if it can wait."""
        if not self._ready:
            return None
        if len(self._ready) >= self.max_records:
            return FlushReason.SIZE
        if self._ready_bytes + _BODY_OVERHEAD >= self.max_bytes:
            return FlushReason.BYTES
        if now - next(iter(self._ready.values())).enqueued_at >= self.max_wait_seconds:
            return FlushReason.TIMEOUT
        return None

    def next_deadline(self) -> float | None:
        """When the oldest eligible change times out (monotonic seconds)."""
        if not self._ready:
            return None
        return next(iter(self._ready.values())).enqueued_at + self.max_wait_seconds

    def take(self, reason: FlushReason) -> Batch:
        """Take the oldest eligible changes, within the limits, and check them out."""
        records: list[PendingRecord] = []
        size = _BODY_OVERHEAD
        for record in self._ready.values():
            cost = len(record.payload) + 1
            if records and (len(records) >= self.max_records or size + cost > self.max_bytes):
                break
            records.append(record)
            size += cost
        for record in records:
            del self._ready[record.customer_id]
            self._checked_out.add(record.customer_id)
        self._ready_bytes -= size - _BODY_OVERHEAD
        return Batch(records, reason)

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> list[PendingRecord]:
        """Remove buffered changes of revoked partitions; the next owner re-reads them."""
        dropped: list[PendingRecord] = []
        for queue in (self._ready, self._held):
            for customer, record in list(queue.items()):
                if (record.topic, record.partition) in partitions:
                    dropped.append(queue.pop(customer))
                    if queue is self._ready:
                        self._ready_bytes -= len(record.payload) + 1
        return dropped
