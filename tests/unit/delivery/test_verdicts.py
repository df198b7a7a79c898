"""What a job's end says about each record: the one judgement jobs and takeovers share."""

from __future__ import annotations

from typing import Any

import orjson

from service.delivery.records import PendingRecord
from service.delivery.verdicts import judge, judge_facts
from service.gameball.models import JobStatus
from service.gameball.operations import Operation
from service.labels import DeadLetterReason


def record(customer: str, offset: int) -> PendingRecord:
    payload = orjson.dumps({"customerId": customer})
    return PendingRecord("t", 0, offset, 0, None, payload, customer, payload)


def status(
    state: str,
    successful: list[str],
    failed: list[str],
    error: str = "Invalid email address",
    **job: Any,
) -> JobStatus:
    """A status document as the client reads it off the wire."""
    return JobStatus.read(
        orjson.dumps(
            {
                "status": state,
                "response": {
                    "successful": [{"customerId": c} for c in successful],
                    "failed": [{"customerId": c, "error": error} for c in failed],
                },
                **job,
            }
        ),
        entries=True,
    )


def test_an_uncounted_job_settles_rejects_or_gives_back_each_record() -> None:
    """An inherited job, or one this instance stopped on purpose: nothing is counted."""
    a, b, c = record("a", 1), record("b", 2), record("c", 3)
    done = judge("job-1", status("completed", ["a"], ["b"]), [a, b, c], max_failed_jobs=None)
    assert (done.succeeded, [r.record for r in done.rejected], done.resubmit) == ([a], [b], [c])
    assert done.rejected[0].reason is DeadLetterReason.RECORD_REJECTED
    assert done.rejected[0].error == "Invalid email address"
    assert done.rejected[0].job_id == "job-1"
    # A stopped or failed job's "failed" entries say nothing about the records: redone.
    stopped = judge("job-1", status("stopped", ["a"], ["b"]), [a, b, c], max_failed_jobs=None)
    assert (stopped.succeeded, stopped.rejected, stopped.resubmit) == ([a], [], [b, c])
    # Vanished, or not terminal in time: everything is redone.
    assert judge("job-1", None, [a, b], max_failed_jobs=None).resubmit == [a, b]
    assert [r.failed_jobs for r in (a, b, c)] == [0, 0, 0]


def test_a_counted_job_level_failure_dead_letters_a_record_at_the_limit() -> None:
    a, b, c = record("a", 1), record("b", 2), record("c", 3)
    failed = status("failed", ["a"], ["b"], message="Internal error")
    first = judge("job-1", failed, [a, b, c], max_failed_jobs=2)
    # A failed job's "failed" entries are job-level failures too: counted, not final.
    assert (first.succeeded, first.rejected, first.resubmit) == ([a], [], [b, c])
    assert [r.failed_jobs for r in (a, b, c)] == [0, 1, 1]

    second = judge("job-2", failed, [b, c], max_failed_jobs=2)
    assert second.resubmit == []
    assert [(r.record, r.reason, r.job_id) for r in second.rejected] == [
        (b, DeadLetterReason.JOB_FAILED, "job-2"),
        (c, DeadLetterReason.JOB_FAILED, "job-2"),
    ]
    # The API's last words on the record, else on the job.
    assert second.rejected[0].error == "Invalid email address"
    assert second.rejected[1].error == (
        "job ended failed (Internal error) without settling the record, 2 times"
    )


def test_a_job_that_ended_otherwise_without_settling_a_record_exhausts_its_retries() -> None:
    unmentioned = judge("job-1", status("completed", [], []), [record("a", 1)], max_failed_jobs=1)
    [rejection] = unmentioned.rejected
    assert rejection.reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert rejection.error == "job ended completed without settling the record, 1 times"
    timed_out = judge("job-1", None, [record("a", 1)], max_failed_jobs=1, timed_out=True)
    assert timed_out.rejected[0].reason is DeadLetterReason.RETRIES_EXHAUSTED
    assert timed_out.rejected[0].error == "job timed out without settling the record, 1 times"
    lost = judge("job-1", None, [record("a", 1)], max_failed_jobs=1)
    assert lost.rejected[0].error == "job ended lost without settling the record, 1 times"


def test_an_id_the_api_already_has_is_delivered_however_the_job_ended() -> None:
    """A keyed fact refused as a duplicate: delivered, by a completed job or by a failed one
    whose entry it met in every attempt; never dead-lettered."""
    a, b = record("a", 1), record("b", 2)
    refused = status("completed", [], ["a"], error="Order id already exists")
    done = judge("job-1", refused, [a], max_failed_jobs=1)
    assert judge_facts(done, "job-1", refused, Operation.ORDERS, customer_wait=600, now=0) == 1
    assert (done.succeeded, done.rejected) == ([a], [])
    failed = status("failed", [], ["b"], error="Transaction id already exists")
    done = judge("job-2", failed, [b], max_failed_jobs=1)  # its last attempt
    assert judge_facts(done, "job-2", failed, Operation.ORDERS, customer_wait=600, now=0) == 1
    assert (done.succeeded, done.rejected) == ([b], [])


def test_an_idless_item_is_resent_only_where_its_job_said_it_failed() -> None:
    a, b = record("a", 1), record("b", 2)
    stopped = status("stopped", [], ["a"], error="Failed to send event")
    done = judge("job-3", stopped, [a, b], max_failed_jobs=5)
    judge_facts(done, "job-3", stopped, Operation.EVENTS, customer_wait=600, now=0)
    assert done.resubmit == [a], "listed failed: not applied, sent again"
    assert [(r.record, r.reason) for r in done.rejected] == [
        (b, DeadLetterReason.OUTCOME_UNKNOWN)
    ], "not mentioned: it may have been applied"
