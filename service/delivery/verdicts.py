"""What a job's end says about each record it carried: the one reading of job results.

Every record a job carried leaves it with one verdict:

* ``succeeded`` — listed in ``response.successful``;
* ``dead letter`` as ``record_rejected`` — listed in ``response.failed`` of a job
  that *completed*: the API looked at the record and said no;
* otherwise the job did not settle the record: it ended ``failed`` or ``stopped``
  (its ``failed`` entries are then evidence about the job, not about each record),
  timed out, vanished, could not be resolved, or did not mention the record.

The one real difference between the callers is what such a job-level failure costs
the record, and :func:`judge` takes it as ``max_failed_jobs``:

* a job this instance submitted and let run its course (:class:`~.jobs.JobTracker`)
  counts one failure against each record it did not settle; at ``max_failed_jobs``
  the record is dead-lettered (``job_failed`` when the job ended ``failed``,
  ``retries_exhausted`` otherwise) with the API's last words on it, else resubmitted;
* a job this instance stopped on purpose (its partitions were given up) or inherited
  from a previous owner (``takeover.py``) says nothing about its records: ``None``,
  and they are resubmitted with nothing counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from service.delivery.records import PendingRecord
from service.gameball.models import JobState, JobStatus, result_customer, result_text
from service.gameball.operations import Delivery, Operation
from service.labels import DeadLetterReason


@dataclass(frozen=True, slots=True)
class Rejection:
    record: PendingRecord
    reason: DeadLetterReason
    error: str
    job_id: str | None
    on_settled: Callable[[], None] | None = None
    """Called once its dead letter is acknowledged (an ``outcome_unknown``'s intent ends)."""


@dataclass(slots=True)
class Verdicts:
    succeeded: list[PendingRecord] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    resubmit: list[PendingRecord] = field(default_factory=list)

    def merge(self, other: Verdicts) -> None:
        self.succeeded.extend(other.succeeded)
        self.rejected.extend(other.rejected)
        self.resubmit.extend(other.resubmit)


def judge(
    job_id: str,
    status: JobStatus | None,
    records: Iterable[PendingRecord],
    *,
    max_failed_jobs: int | None,
    timed_out: bool = False,
) -> Verdicts:
    """The verdict on each of ``records`` from its job's final ``status`` (``None``: lost).

    ``max_failed_jobs``: how many job-level failures a record may meet before it is
    dead-lettered, each counted on ``record.failed_jobs``; ``None`` counts nothing and
    resubmits (see the module's docstring). ``timed_out`` only words the dead letter.
    """
    verdicts = Verdicts()
    state = status.status if status is not None else None
    successful: set[str] = set()
    failed: dict[str, str] = {}
    if status is not None and status.response is not None:
        successful = {result_customer(e) for e in status.response.successful}
        failed = {result_customer(e): result_text(e) for e in status.response.failed}
    ended_failed = state is JobState.FAILED
    reason = DeadLetterReason.JOB_FAILED if ended_failed else DeadLetterReason.RETRIES_EXHAUSTED
    why = "timed out" if timed_out else f"ended {state.value if state else 'lost'}"
    if status is not None and status.error is not None:
        why += f" ({status.error})"  # the API's words on the job as a whole
    for record in records:
        customer = record.customer_id
        if customer in successful:
            verdicts.succeeded.append(record)
        elif state is JobState.COMPLETED and customer in failed:
            verdicts.rejected.append(
                Rejection(record, DeadLetterReason.RECORD_REJECTED, failed[customer], job_id)
            )
        elif max_failed_jobs is None:
            verdicts.resubmit.append(record)
        else:
            record.failed_jobs += 1
            if record.failed_jobs < max_failed_jobs:
                verdicts.resubmit.append(record)
                continue
            error = failed.get(
                customer, f"job {why} without settling the record, {record.failed_jobs} times"
            )
            verdicts.rejected.append(Rejection(record, reason, error, job_id))
    return verdicts


ALREADY_APPLIED = re.compile(r"already exists", re.IGNORECASE)
"""A keyed item's id the API has already applied (orders: "Order id already exists"; cashback
and redeem: 9004 "Transaction id already exists")."""
CUSTOMER_NOT_FOUND = re.compile(r"customer not found", re.IGNORECASE)
"""7000: the item's customer does not exist yet (its customers job may not have run)."""


def judge_facts(
    verdicts: Verdicts,
    job_id: str | None,
    status: JobStatus | None,
    operation: Operation,
    *,
    customer_wait: float,
    now: float,
) -> int:
    """Adjust a job's verdicts to what a second delivery of ``operation`` does; return how
    many were already applied. Customers' verdicts are left as they are (0).

    * A keyed item refused because its id exists was delivered before (a redelivery after a
      crash): it succeeded.
    * "Customer not found" is retried while the customer may still be on its way, up to
      ``customer_wait`` seconds after it was first said of the record, then dead-lettered
      ``customer_not_found``.
    * An id-less item the job may have applied is never sent again. A record is
      resubmitted only where the job's results list it failed (it was not applied); any
      other record the job did not settle (not mentioned, the job vanished, timed out or was
      stopped) is dead-lettered ``outcome_unknown``.
    """
    if operation is Operation.CUSTOMERS:
        return 0
    idless = operation.facts.delivery is Delivery.IDLESS
    already = 0
    rejected: list[Rejection] = []
    for rejection in verdicts.rejected:
        record = rejection.record
        if not idless and ALREADY_APPLIED.search(rejection.error):
            # Whatever the job's end: its id is the API's already (a failed job's entries too,
            # once its record ran out of attempts).
            verdicts.succeeded.append(record)
            already += 1
            continue
        if rejection.reason is DeadLetterReason.RECORD_REJECTED and CUSTOMER_NOT_FOUND.search(
            rejection.error
        ):
            since = record.customer_unknown_since
            if since is None:
                since = record.customer_unknown_since = now
            if now - since < customer_wait:
                verdicts.resubmit.append(record)
                continue
            rejection = Rejection(
                record,
                DeadLetterReason.CUSTOMER_NOT_FOUND,
                f"{rejection.error} for {int(now - since)} s (CUSTOMER_WAIT_SECONDS)",
                rejection.job_id,
            )
        rejected.append(rejection)
    verdicts.rejected = rejected
    if idless:
        failed: set[str] = set()
        if status is not None and status.response is not None:
            failed = {result_customer(e) for e in status.response.failed}
        resubmit = []
        for record in verdicts.resubmit:
            if record.customer_id in failed:
                resubmit.append(record)
            else:
                verdicts.rejected.append(
                    Rejection(
                        record,
                        DeadLetterReason.OUTCOME_UNKNOWN,
                        "the job did not say whether it applied this item; an item without "
                        "an id is never sent twice",
                        job_id,
                    )
                )
        verdicts.resubmit = resubmit
    return already
