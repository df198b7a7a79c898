"""The buffer between consuming and submitting: coalescing, flush rules, customer checkout.

Two rules of the contract live here:

* **Coalescing.** A batch carries at most one change per ``customerId``: a
  later change of a buffered customer absorbs the earlier one
  (:func:`absorb`). The later change wins wherever it speaks, a NULL included
  (the field is left out: the row has no value there now); what it could not
  say, a column Debezium sent as its placeholder for an unchanged TOASTed
  value, is taken from the earlier change. So an insert's 6 kB ``jsonb`` is
  not lost to the update right after it. The earlier change settles as
  ``coalesced`` when the merged one settles (it rides in its ``superseded``,
  and in the ledger with it), so a crash re-reads both.
* **No customer in two jobs at once.** When a batch is taken, its customers are
  *checked out* until the pipeline releases them (their job ended, one way or
  another). Changes of a checked-out customer wait in ``held`` and only become
  eligible on release, so a later change can never overtake an earlier one
  that is still in flight — the API gives no ordering between jobs.

Order: a batch takes the eligible customers in the order they became eligible, each at the
place of its oldest pending change (a later change keeps that place). A customer whose job
ends rejoins at the back with what arrived meanwhile, so a hot customer cannot starve the
others, however far ahead a compacted backlog is read (``compaction.py``).

A record given back for resubmission (its job was stopped, timed out, or did
not report it) is older than anything buffered for the same customer, so if
the buffer already holds a change of that customer, that change absorbs the
returned record, which then settles with it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from service.delivery.records import PendingRecord
from service.gameball.operations import Operation
from service.labels import FlushReason

BODY_OVERHEAD = len(b'{"body":[]}')
_read_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
"""An item's fields, each value kept as its JSON bytes: a merge never re-reads a number."""

Path = tuple[str, ...]


def merge_items(earlier: bytes, later: bytes, unknown: Iterable[Path]) -> bytes:
    """Two serialised changes of one customer as one: the later, with what it could not say
    taken from the earlier.

    ``unknown`` names the later change's fields that Debezium could not read (an unchanged
    TOASTed value's placeholder): each is filled from ``earlier`` where the later change has
    nothing there, and where both hold an object (``custom``, fed by a JSON column and by
    attribute columns at once), key by key, the later's keys winning. Every other field is the
    later change's, a field it leaves out included: that column was NULL, and the later change
    says so. Values are copied as their bytes (``msgspec.Raw``), so a decimal or a large
    integer is never rounded through a float.
    """
    fields = _read_fields(later)
    source = _read_fields(earlier)
    for path in unknown:
        _fill(fields, source, path)
    return msgspec.json.encode(fields)


def _fill(fields: dict[str, msgspec.Raw], source: dict[str, msgspec.Raw], path: Path) -> None:
    name = path[0]
    given = source.get(name)
    if given is None:
        return
    have = fields.get(name)
    if len(path) > 1:  # a key inside an object: descend on both sides
        if not bytes(given).startswith(b"{") or (
            have is not None and not bytes(have).startswith(b"{")
        ):
            return
        inner = _read_fields(bytes(have)) if have is not None else {}
        _fill(inner, _read_fields(bytes(given)), path[1:])
        fields[name] = msgspec.Raw(msgspec.json.encode(inner))
    elif have is None:
        fields[name] = given
    elif bytes(have).startswith(b"{") and bytes(given).startswith(b"{"):
        inner = _read_fields(bytes(given))
        inner.update(_read_fields(bytes(have)))
        fields[name] = msgspec.Raw(msgspec.json.encode(inner))


def _same_partition(one: PendingRecord, other: PendingRecord) -> bool:
    return (
        one.partition == other.partition
        and one.topic == other.topic
        and one.generation == other.generation
    )


def absorb(later: PendingRecord, earlier: PendingRecord) -> PendingRecord | None:
    """``later`` takes what it could not say from ``earlier``; return ``earlier`` if it settles now.

    An earlier change of the same partition and assignment rides in ``later.superseded``
    and settles with it. One of another partition (two topics feeding one customer) settles
    as ``coalesced`` at once: its partition's ledger cannot point at this record, so waiting
    would only hold that partition's commit back.
    """
    if later.unknown:
        later.payload = merge_items(earlier.payload, later.payload, later.unknown)
        # Still unknown: what the earlier change could not say either.
        later.unknown = tuple(path for path in later.unknown if path in earlier.unknown)
    if later.tags is None:  # the tags call (tags.py): the later change did not say them
        later.tags, later.tags_changed = earlier.tags, earlier.tags_changed
    elif earlier.tags_changed:  # still the set to send, whatever the later compared it with
        later.tags_changed = True
    if earlier.tags_removed:  # still to remove, unless the later change has them again
        kept = set(later.tags or ())
        removed = dict.fromkeys((*earlier.tags_removed, *later.tags_removed))
        later.tags_removed = tuple(tag for tag in removed if tag not in kept)
    if not _same_partition(earlier, later):
        return earlier
    chain = later.superseded
    if chain is None:
        chain = later.superseded = array("q")
    chain.append(earlier.offset)
    chain.append(earlier.timestamp_ms)
    if earlier.superseded:
        chain.extend(earlier.superseded)
        earlier.superseded = None
    return None


RECORD_OVERHEAD = 620
"""Bytes a buffered change costs beyond its own bytes: the record object, its place in the
buffer's dict, the headers of its strings, bytes and array (CPython 3.11, 64-bit; checked
against tracemalloc by ``test_footprint_estimates_the_memory_a_buffered_change_holds``)."""


def footprint(record: PendingRecord) -> int:
    """An estimate of the memory one buffered change holds, in bytes: the bound compaction
    keeps (``COMPACTION_MAX_BYTES``)."""
    return (
        RECORD_OVERHEAD
        + len(record.payload)
        + len(record.customer_id)
        + len(record.key or b"")
        + len(record.value or b"")
        + (64 + 8 * len(record.superseded) if record.superseded else 0)
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """Records for one job: of one operation, one per customer."""

    records: list[PendingRecord]
    reason: FlushReason
    operation: Operation = Operation.CUSTOMERS

    def body(self) -> bytes:
        return request_body(self.records)


def request_body(records: list[PendingRecord]) -> bytes:
    """The batch request body, built once by joining the pre-serialised customers.

    ``BODY_OVERHEAD`` and the per-record ``+ 1`` (the comma) in :class:`Batcher`
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
        self._footprint = 0  # footprint() of every change buffered, ready or held

    def __len__(self) -> int:
        return len(self._ready) + len(self._held)

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    @property
    def memory(self) -> int:
        """The estimated bytes the buffered changes hold (:func:`footprint`)."""
        return self._footprint

    def add(self, record: PendingRecord, now: float) -> PendingRecord | None:
        """Buffer a newly consumed change; return an absorbed change that settles now, if any."""
        record.enqueued_at = now
        customer = record.customer_id
        if customer in self._checked_out:
            previous = self._held.get(customer)
            self._held[customer] = record
            settled = None
            if previous is not None:
                self._footprint -= footprint(previous)
                settled = absorb(record, previous)
            self._footprint += footprint(record)
            return settled
        previous = self._ready.get(customer)
        settled = None
        if previous is not None:
            # Keep the customer's place (and its age) in the queue: it has been
            # waiting since the earlier change.
            record.enqueued_at = previous.enqueued_at
            self._footprint -= footprint(previous)
            settled = absorb(record, previous)
            self._ready_bytes += len(record.payload) - len(previous.payload)
        else:
            self._ready_bytes += len(record.payload) + 1
        self._footprint += footprint(record)
        self._ready[customer] = record
        return settled

    def give_back(self, record: PendingRecord, now: float) -> PendingRecord | None:
        """Return a record for resubmission; return an absorbed change that settles now, if any.

        Anything buffered for the customer is normally newer (it arrived after the returned
        record was taken) and absorbs it. Not when both come back from one job: an inherited
        job that carried a change and the earlier one it had absorbed hands back both, in
        offset order, so within one partition the higher offset decides which is newer.
        """
        customer = record.customer_id
        for queue in (self._ready, self._held):
            buffered = queue.get(customer)
            if buffered is None:
                continue
            newer, older = buffered, record
            if _same_partition(buffered, record) and record.offset > buffered.offset:
                newer, older = record, buffered
                newer.enqueued_at = buffered.enqueued_at
            before = len(buffered.payload)
            self._footprint -= footprint(buffered)
            settled = absorb(newer, older)
            self._footprint += footprint(newer)
            queue[customer] = newer
            if queue is self._ready:
                self._ready_bytes += len(newer.payload) - before
            return settled
        record.enqueued_at = now
        self._footprint += footprint(record)
        if customer in self._checked_out:
            self._held[customer] = record
        else:
            self._ready[customer] = record
            self._ready_bytes += len(record.payload) + 1
        return None

    def ahead(self, customer: str) -> int:
        """How many jobs of ``customer`` must end before a change read now has been applied:
        one in flight (checked out), one more for a change still buffered."""
        if customer in self._checked_out:
            return 2 if customer in self._held else 1
        return 1 if customer in self._ready else 0

    def check_out(self, customer_ids: Iterable[str]) -> None:
        """Hold these customers' changes until :meth:`release`, as if a job carried them."""
        for customer in customer_ids:
            self._checked_out.add(customer)
            record = self._ready.pop(customer, None)
            if record is not None:
                self._ready_bytes -= len(record.payload) + 1
                self._held[customer] = record

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
        if self._ready_bytes + BODY_OVERHEAD >= self.max_bytes:
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
        size = BODY_OVERHEAD
        for record in self._ready.values():
            cost = len(record.payload) + 1
            if records and (len(records) >= self.max_records or size + cost > self.max_bytes):
                break
            records.append(record)
            size += cost
        for record in records:
            del self._ready[record.customer_id]
            self._checked_out.add(record.customer_id)
            self._footprint -= footprint(record)
        self._ready_bytes -= size - BODY_OVERHEAD
        return Batch(records, reason)

    def drop_partitions(self, partitions: set[tuple[str, int]]) -> list[PendingRecord]:
        """Remove buffered changes of revoked partitions; the next owner re-reads them."""
        dropped: list[PendingRecord] = []
        for queue in (self._ready, self._held):
            for customer, record in list(queue.items()):
                if (record.topic, record.partition) in partitions:
                    dropped.append(queue.pop(customer))
                    self._footprint -= footprint(record)
                    if queue is self._ready:
                        self._ready_bytes -= len(record.payload) + 1
        return dropped
