"""A job's status document, in each published dialect (``shared/GAMEBALL-API.md`` §3)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from service.gameball.models import JobState

if TYPE_CHECKING:
    from service.gameball.simulator.state import Job

OPERATION = "Customer Creation Batch Job"
STOPPED_MESSAGE = "Batch stopped successfully"
BATCHES_STATES = {
    JobState.QUEUED: "pending",
    JobState.RUNNING: "processing",
    JobState.COMPLETED: "completed",
    JobState.FAILED: "failed",
    JobState.STOPPED: "stopped",  # the OpenAPI lists no state for it; the service reads any
}
"""The batches dialect's words for the states (``pending``, ``processing``, ...)."""


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def batch_document(job: Job) -> bytes:
    """The tutorial's (``GET /batch/{jobId}``): counts, and ``response`` once started."""
    results = None
    if job.state is not JobState.QUEUED and (job.started or job.state is JobState.FAILED):
        results = {"successful": job.successful, "failed": job.failed}
    return orjson.dumps(
        {
            "operation": OPERATION if job.book is None else job.book.words.label,
            "errorCount": len(job.failed),
            "totalCount": len(job.successful) + len(job.failed),
            "finishedCount": len(job.successful),
            "startedAt": _iso(job.created_wall + job.queue_seconds) if job.started else None,
            "createdAt": _iso(job.created_wall),
            "status": job.state.value,
            "response": results,
        }
    )


def batches_document(job: Job) -> bytes:
    """The OpenAPI's (``GET /batches/{id}/status``): ``results`` and ``errors`` per record."""
    total, processed = len(job.customers), len(job.successful) + len(job.failed)
    return orjson.dumps(
        {
            "batchId": job.id,
            "status": BATCHES_STATES[job.state],
            "progress": processed * 100 // total if total else 100,
            "totalItems": total,
            "processedItems": processed,
            "failedItems": len(job.failed),
            "results": job.successful,
            "errors": job.failed,
        }
    )
