"""Status documents in both published dialects: states and synonyms, results, counts, ids."""

from __future__ import annotations

import orjson
import pytest

from service.gameball.models import JobCreated, JobState, JobStatus, result_customer, result_text


def read(document: dict[str, object], *, entries: bool = False) -> JobStatus:
    return JobStatus.read(orjson.dumps(document), entries=entries)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("queued", JobState.QUEUED),
        ("Pending", JobState.QUEUED),
        ("RUNNING", JobState.RUNNING),
        ("processing", JobState.RUNNING),
        ("inProgress", JobState.RUNNING),
        ("in progress", JobState.RUNNING),
        ("IN_PROGRESS", JobState.RUNNING),
        ("Completed", JobState.COMPLETED),
        ("finished", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("Stopped", JobState.STOPPED),
    ],
)
def test_every_published_state_is_read_in_any_case(text: str, state: JobState) -> None:
    status = read({"status": text})
    assert status.status is state
    assert status.unknown_state is None


def test_an_unknown_state_reads_as_running_and_keeps_its_text() -> None:
    status = read({"status": "Cancelling", "response": None})
    assert status.status is JobState.RUNNING  # polled on, until the job's timeout
    assert not status.status.terminal
    assert status.unknown_state == "Cancelling"


TUTORIAL = {
    "operation": "Customer Creation Batch Job",
    "status": "completed",
    "totalCount": 3,
    "finishedCount": 2,
    "errorCount": 1,
    "response": {
        "successful": [{"customerId": "a", "message": "ok"}, {"customerId": 7}],
        "failed": [{"customerId": "b", "error": "Invalid email address"}],
    },
}
OPENAPI = {
    "batchId": 99,
    "status": "completed",
    "progress": 100,
    "totalItems": 3,
    "processedItems": 3,
    "failedItems": 1,
    "results": [{"customerId": "a", "message": "ok"}, {"customerId": 7}],
    "errors": [{"customerId": "b", "message": "Invalid email address"}],
}


@pytest.mark.parametrize("document", [TUTORIAL, OPENAPI], ids=["batch", "batches"])
def test_both_bodies_settle_the_same_records(document: dict[str, object]) -> None:
    status = read(document)
    assert status.status is JobState.COMPLETED
    assert status.response is not None
    assert [result_customer(e) for e in status.response.successful] == ["a", "7"]
    assert [(result_customer(e), result_text(e)) for e in status.response.failed] == [
        ("b", "Invalid email address")
    ]
    assert status.reported == 3


def test_a_running_openapi_document_reports_progress_from_its_entries_or_its_counts() -> None:
    listed = read({**OPENAPI, "status": "processing"})
    assert listed.status is JobState.RUNNING
    assert listed.response is None  # counted, not kept, while running
    assert listed.reported == 3
    counted = read({"status": "processing", "processedItems": 40, "totalItems": 100})
    assert counted.reported == 40
    tutorial = read({"status": "running", "finishedCount": 5, "errorCount": 2, "totalCount": 50})
    assert tutorial.reported == 7  # totalCount may be the job's size: never read as progress


def test_a_failed_job_keeps_its_own_words_and_odd_errors_do_not_break_the_document() -> None:
    status = read(
        {"status": "failed", "message": "Batch aborted", "errors": ["internal", {"customerId": 1}]}
    )
    assert status.status is JobState.FAILED
    assert status.error == "Batch aborted"
    assert status.response is not None
    assert [result_customer(e) for e in status.response.failed] == ["1"]
    assert read({"status": "failed", "error": {"reason": "x"}}).error == '{"reason":"x"}'


def test_counts_of_any_json_type_never_make_the_document_unreadable() -> None:
    status = read({"status": "processing", "processedItems": "12", "progress": "50%"})
    assert status.reported == 12
    assert read({"status": "processing", "processedItems": None}).reported == 0


@pytest.mark.parametrize(
    ("answer", "job_id"),
    [
        (b'{"jobId": 123456}', "123456"),
        (b'{"jobId": 123456.0}', "123456"),
        (b'{"JobId": "abc"}', "abc"),
        (b'{"batchId": 77}', "77"),
    ],
)
def test_a_numeric_job_id_is_its_decimal_integer(answer: bytes, job_id: str) -> None:
    assert JobCreated.model_validate_json(answer).job_id == job_id
