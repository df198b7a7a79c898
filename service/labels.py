"""The service's vocabularies: values that name outcomes in headers, metrics and logs.

They live here, below everything else, because both ends speak them: the
delivery path decides a flush or a dead letter, and :mod:`service.metrics`
labels its series with the same words. Keeping them out of the modules that
act on them is what lets the Gameball client (which records metrics) import
nothing from the delivery path.
"""

from __future__ import annotations

from enum import StrEnum


class DeadLetterReason(StrEnum):
    """Values of the ``dlq.reason`` header (SPEC §5)."""

    INVALID_JSON = "invalid_json"
    INVALID_EVENT = "invalid_event"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    RECORD_REJECTED = "record_rejected"
    JOB_FAILED = "job_failed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    TAGS_REJECTED = "tags_rejected"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    OUTCOME_UNKNOWN = "outcome_unknown"


class FlushReason(StrEnum):
    """Why a batch left the buffer (the ``reason`` label of ``batches_flushed_total``)."""

    SIZE = "size"
    BYTES = "bytes"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    REBALANCE = "rebalance"


DECODER_FAULT = "decoder_fault"
"""A bug of ours met a record (the decoder raised what bad input never does): the word its
log line, the start of its ``dlq.error`` and the breaker's count use. Its ``dlq.reason`` stays
``invalid_event``: SPEC §5's reasons are a closed set."""


OUTCOMES = ("succeeded", "dead_lettered", "skipped", "coalesced")
"""How a consumed record ends (``records_total{outcome}``): every record ends in exactly one."""

JOB_STATUSES = ("completed", "failed", "stopped", "timed_out")
"""How a job ends (``jobs_finished_total{status}``)."""

JOB_RESOLUTIONS = ("completed", "failed", "stopped", "not_found", "unresolved")
"""How an inherited job (a previous owner's) was resolved (``jobs_inherited_total{resolution}``)."""

JOB_OPERATIONS = ("submit", "status", "stop")
"""The API calls a batch job takes (``api_requests_per_job{operation}``); beside them the
service sends a customer's tags, and ``customer-sync canary`` reads a customer back."""
API_OPERATIONS = (*JOB_OPERATIONS, "tags", "read")
"""The API calls the service makes (``api_requests_total{operation}``)."""
