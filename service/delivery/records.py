"""The unit of work: one Kafka record on its way to being settled."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from service.gameball.operations import Operation


@dataclass(slots=True, eq=False)
class PendingRecord:
    """A decoded change waiting to be delivered: a customer's, or an item of another operation.

    ``payload`` is the customer already serialised as the API wants it, so a
    request body is a join of payloads and nothing is encoded twice. ``key``
    and ``value`` are the original bytes, kept for the dead-letter topic.

    ``unknown`` names the fields the change could not say (Debezium's placeholder for an
    unchanged TOASTed value), as paths into the item: a coalesced earlier change fills them.
    ``superseded`` holds the earlier changes of the same customer, partition and
    assignment that this one absorbed (``batching.py``), as ``offset, timestamp_ms`` pairs
    laid out flat in an ``array('q')`` (16 bytes a change, where a tuple of two ints cost
    about 120: a backlog compacted in memory holds several per customer; see
    :func:`superseded_offsets`):
    their fields are merged into ``payload``, so they settle as ``coalesced`` only when
    this record settles, and travel with it in the ledger (a crash re-reads them all).

    ``tags`` travel beside the payload in the nested shape under ``TAGS_SYNC=changed`` or
    ``always``, for the per-customer tags call (``None``: none to send, including every
    other setting); ``tags_changed`` says whether that call is due (see
    :class:`~service.delivery.decoding.Customer`). Shared with the decoder's memo: never
    mutate the list.

    ``operation``: the route's operation; every other operation's item is a fact, never
    coalesced (``facts.py``).
    ``customer_unknown_since``: when the API first said its customer was not found (7000,
    wall clock); the record is retried until ``CUSTOMER_WAIT_SECONDS`` after it.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    customer_id: str
    payload: bytes
    attempts: int = 0  # submissions this record went through (the dlq.attempts header)
    failed_jobs: int = 0  # job-level failures, bounded by MAX_SUBMIT_ATTEMPTS
    enqueued_at: float = field(default=0.0)
    generation: int = 0  # the partition assignment it was consumed under (see offsets.py)
    unknown: tuple[tuple[str, ...], ...] = ()
    tags: list[str] | None = None  # sent by a call of their own (tags.py); None: none to send
    tags_changed: bool = False
    tags_removed: tuple[str, ...] = ()  # in the row's ``before``, not in its ``after``
    superseded: array[int] | None = None
    operation: Operation = Operation.CUSTOMERS
    customer_unknown_since: float | None = None


def superseded_offsets(record: PendingRecord) -> array[int]:
    """The offsets of the earlier changes ``record`` absorbed (empty: none)."""
    chain = record.superseded
    return chain[0::2] if chain else _NONE


def superseded_stamps(record: PendingRecord) -> array[int]:
    """The Kafka timestamps (ms) of the earlier changes ``record`` absorbed."""
    chain = record.superseded
    return chain[1::2] if chain else _NONE


_NONE: array[int] = array("q")
