"""The unit of work: one Kafka record on its way to being settled."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class PendingRecord:
    """A decoded customer change waiting to be delivered.

    ``payload`` is the customer already serialised as the API wants it, so a
    request body is a join of payloads and nothing is encoded twice. ``key``
    and ``value`` are the original bytes, kept for the dead-letter topic.

    ``tags`` travel beside the payload in the nested shape under ``TAGS_SYNC=changed`` or
    ``always``, for the per-customer tags call (``None``: none to send, including every
    other setting); ``tags_changed`` says whether that call is due (see
    :class:`~service.delivery.decoding.Customer`). Shared with the decoder's memo: never
    mutate the list.
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
    tags: list[str] | None = None
    tags_changed: bool = False
