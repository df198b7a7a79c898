"""What the simulated API books for an operation other than customers, and what it answers
per record: the applied log, the natural keys taken, the content applied, and the counts.

Each record is decided when it is processed (its finish time on the job's clock, in
:meth:`~.state.SimulatorState.settle`), in this order:

1. a failure drawn or found at submission (``record_failure_rate``; a ``transactionTime`` or
   ``orderDate`` more than :data:`CLOCK_SKEW_SECONDS` after the job's submission, or not a
   date-time at all: 9007, "invalid transaction time");
2. **customer not found** (7000) unless a customers job has applied the customer by then
   (``all_customers_known`` skips the check, for tests that send no customers);
3. **a duplicate**: an ``orderId`` or ``transactionId`` applied before, by any earlier job or
   earlier in the same job, is refused (9004 "transaction id already exists"; orders say
   "order id already exists"), never applied twice;
4. otherwise **applied**. Events and balance adjustments carry no id: an item whose content
   (every field, keys sorted) equals one applied before is applied again, as the real API
   would, and counted as a **double application**. Test workloads make each item unique, so
   any double application is one the service sent twice.

Gameball documents no result field but ``customerId`` and the message, so results carry
nothing else, unless ``echo_keys`` adds the natural key, as a server that echoes it would.
The status document's ``operation`` and the success texts are the simulator's own words
in the seeds' style ("Customer Creation Batch Job"): Gameball publishes none for these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from service.gameball.operations import Operation

if TYPE_CHECKING:
    from service.gameball.simulator.state import Job

CLOCK_SKEW_SECONDS = 5.0
"""How far past the submission a transaction time may be before it is "in the future"."""

CUSTOMER_NOT_FOUND = "Customer not found"
TRANSACTION_EXISTS = "Transaction id already exists"
ORDER_EXISTS = "Order id already exists"
FUTURE_TIME = "Invalid transaction time: {field} is in the future"
INVALID_TIME = "Invalid transaction time: {field} is not an ISO 8601 date-time"


@dataclass(frozen=True, slots=True)
class Words:
    """What the API says about an operation's job and records."""

    label: str  # the status document's ``operation``
    applied: str  # a successful record's ``message``
    failed: str  # a record failing at random, or in a failed job
    duplicate: str | None = None  # a record whose natural key was applied before


WORDS: dict[Operation, Words] = {
    Operation.ORDERS: Words(
        "Order Creation Batch Job",
        "Order created successfully",
        "Failed to create order",
        ORDER_EXISTS,
    ),
    Operation.CASHBACK: Words(
        "Cashback Batch Job",
        "Cashback rewarded successfully",
        "Failed to reward cashback",
        TRANSACTION_EXISTS,
    ),
    Operation.REDEEM: Words(
        "Redemption Batch Job",
        "Points redeemed successfully",
        "Failed to redeem points",
        TRANSACTION_EXISTS,
    ),
    Operation.EVENTS: Words("Event Batch Job", "Event sent successfully", "Failed to send event"),
    Operation.BALANCE_ADJUSTMENT: Words(
        "Balance Adjustment Batch Job",
        "Balance adjusted successfully",
        "Failed to adjust balance",
    ),
}


COUNTS = (
    "jobs_created",
    "records_received",
    "applied",
    "failed",  # every record reported failed, whatever the reason
    "duplicates",
    "customer_not_found",
    "invalid_time",
    "double_applied",
)
"""An operation's counts in ``/_sim/stats`` (``operations``)."""


class AppliedItem(NamedTuple):
    """One item the API applied, in the order it applied them (``seq`` from 0).

    ``applications`` counts the applications of this content so far, this one included:
    above 1 only for events and balance adjustments (a double application).
    """

    item: dict[str, Any]
    job_id: str
    seq: int
    at: float
    applications: int


class RefusedItem(NamedTuple):
    """One item the API reported failed: refused, or the record of a failed job."""

    item: dict[str, Any]
    job_id: str
    error: str
    seq: int


class OperationBook:
    """One operation's applied and refused logs, natural keys taken, and counts."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.words = WORDS[operation]
        self.key = operation.facts.natural_key
        self.times = operation.facts.times
        self.time_errors = frozenset(
            text.format(field=name) for name in self.times for text in (FUTURE_TIME, INVALID_TIME)
        )
        self.applied: list[AppliedItem] = []
        self.refused: list[RefusedItem] = []
        self.keys: set[str] = set()
        self.contents: Counter[bytes] = Counter()  # events, adjustments: applications per content
        self.counts: Counter[str] = Counter()

    def screen(self, item: dict[str, Any], submitted: float) -> str | None:
        """A refusal the item earns at submission (a transaction time), else ``None``."""
        for name in self.times:
            try:
                moment = datetime.fromisoformat(item[name])
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=UTC)
                seconds = moment.timestamp()
            except (ValueError, OverflowError):
                return INVALID_TIME.format(field=name)
            if seconds > submitted + CLOCK_SKEW_SECONDS:
                return FUTURE_TIME.format(field=name)
        return None

    def received(self, count: int) -> None:
        self.counts["jobs_created"] += 1
        self.counts["records_received"] += count

    def process(self, job: Job, index: int, at: float, known: Container[str] | None) -> None:
        """Record ``index`` of ``job`` is processed at ``at`` (wall clock): refuse or apply it,
        and leave the verdict in ``job.errors`` for its status document. ``known``: the
        customers the API has (``None``: every customer)."""
        item, counts = job.customers[index], self.counts
        error = job.errors[index]
        if error is None and known is not None and item["customerId"] not in known:
            error = CUSTOMER_NOT_FOUND
            counts["customer_not_found"] += 1
        if error is None and self.key is not None:
            key = item[self.key]
            if key in self.keys:
                error = self.words.duplicate
                counts["duplicates"] += 1
            else:
                self.keys.add(key)
        if error is not None:
            if error in self.time_errors:
                counts["invalid_time"] += 1
            job.errors[index] = error
            counts["failed"] += 1
            self.refused.append(RefusedItem(item, job.id, error, len(self.refused)))
            return
        applications = 1  # a keyed item applied once: its key is taken from now on
        if self.key is None:
            content = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
            self.contents[content] += 1
            applications = self.contents[content]
            if applications > 1:
                counts["double_applied"] += 1
        counts["applied"] += 1
        self.applied.append(AppliedItem(item, job.id, len(self.applied), at, applications))

    def results(
        self, job: Job, start: int, stop: int, *, echo_keys: bool
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The status document's entries for records ``start:stop``: successful, failed."""
        successful, failed = [], []
        key = self.key if echo_keys else None
        for item, error in zip(job.customers[start:stop], job.errors[start:stop], strict=True):
            if error is None:
                entry = {"customerId": item["customerId"], "message": self.words.applied}
                successful.append(entry)
            else:
                entry = {"customerId": item["customerId"], "error": error}
                failed.append(entry)
            if key is not None:
                entry[key] = item[key]
        return successful, failed

    def fail(self, job: Job, *, echo_keys: bool) -> list[dict[str, Any]]:
        """A failed job: every record reported failed under ``message``, none applied."""
        text, key = self.words.failed, self.key if echo_keys else None
        entries = []
        for item in job.customers:
            entry = {"customerId": item["customerId"], "message": text}
            if key is not None:
                entry[key] = item[key]
            entries.append(entry)
            self.refused.append(RefusedItem(item, job.id, text, len(self.refused)))
        self.counts["failed"] += len(job.customers)
        return entries

    def stats(self) -> dict[str, int]:
        return {name: self.counts[name] for name in COUNTS}

    def applied_since(
        self, since: int, limit: int | None, jobs: Mapping[str, Job]
    ) -> list[dict[str, Any]]:
        """``/_sim/applied?operation=...``; ``jobs`` by id, for when each was submitted."""
        entries = self.applied[since : None if limit is None else since + limit]
        return [
            {
                "seq": e.seq,
                "customerId": e.item["customerId"],
                "item": e.item,
                "jobId": e.job_id,
                "submittedAt": jobs[e.job_id].created_wall,
                "at": e.at,
                "applications": e.applications,
            }
            for e in entries
        ]

    def refused_since(self, since: int, limit: int | None) -> list[dict[str, Any]]:
        entries = self.refused[since : None if limit is None else since + limit]
        return [
            {
                "seq": e.seq,
                "customerId": e.item["customerId"],
                "item": e.item,
                "jobId": e.job_id,
                "error": e.error,
            }
            for e in entries
        ]


def books() -> dict[Operation, OperationBook]:
    """A fresh book for every operation besides customers."""
    return {operation: OperationBook(operation) for operation in WORDS}
