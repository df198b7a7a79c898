"""Wire models of the Gameball Batch Customer API (see ``shared/seeds``).

These models are the contract: the service validates every customer against
:class:`ApiCustomer` before it is batched, the simulator validates requests
with :class:`BatchRequest`, and ``schemas/`` is generated from them. Field
names keep the API's own camelCase spelling.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, NotRequired

import msgspec
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
)
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

MAX_BATCH_RECORDS = 1000
"""The API's documented limit of customers per batch request."""

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATE_RE = re.compile(DATE_PATTERN)

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


class ApiCustomer(BaseModel):
    """One customer as the batch endpoint takes it.

    Only ``customerId`` is required. Other documented Gameball customer
    fields (``mobile``, ...) pass through untouched (``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    customerId: NonEmptyStr
    email: str | None = None
    name: str | None = None
    gender: str | None = None
    dateOfBirth: Annotated[str, StringConstraints(pattern=DATE_PATTERN)] | None = None
    joinDate: Annotated[str, StringConstraints(pattern=DATE_PATTERN)] | None = None
    tags: list[str] | None = None
    custom: dict[str, Any] | None = None


class BatchRequest(BaseModel):
    """The body of ``POST /api/v4.0/integrations/batch/customers``."""

    body: Annotated[list[ApiCustomer], Field(min_length=1, max_length=MAX_BATCH_RECORDS)]


class JobCreated(BaseModel):
    """The answer to a batch submission; the id's key varies in case."""

    model_config = ConfigDict(extra="allow")

    job_id: str = Field(validation_alias=AliasChoices("jobId", "JobId", "id", "jobID"))

    @field_validator("job_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.STOPPED)


# A TypedDict rather than a model: a status document carries up to a thousand
# of these, polled many times a second at full speed, and pydantic validates
# typed dicts several times faster than it builds models (about 0.3 ms against
# 1.1 ms per thousand entries, measured).
class RecordResult(TypedDict):
    """One entry of ``response.successful`` or ``response.failed``."""

    customerId: str | int
    message: NotRequired[str | None]
    error: NotRequired[str | None]


def result_customer(entry: RecordResult) -> str:
    """The entry's customer id as the text the service keys records by."""
    return str(entry["customerId"])


def result_text(entry: RecordResult) -> str:
    """The API's explanation, wherever it put it (the seeds use both keys)."""
    return entry.get("error") or entry.get("message") or "no error text given"


class JobResults(BaseModel):
    model_config = ConfigDict(extra="allow")

    successful: list[RecordResult] = Field(default_factory=list)
    failed: list[RecordResult] = Field(default_factory=list)


class JobStatus(BaseModel):
    """The body of ``GET /api/v4.0/integrations/batch/{jobId}``."""

    model_config = ConfigDict(extra="allow")

    operation: str | None = None
    status: JobState
    totalCount: int = 0
    finishedCount: int = 0
    errorCount: int = 0
    createdAt: str | None = None
    startedAt: str | None = None
    response: JobResults | None = None

    # Entries a running document listed, when they were counted rather than read (see read()).
    _counted: int | None = PrivateAttr(default=None)

    @field_validator("status", mode="before")
    @classmethod
    def _status_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def reported(self) -> int:
        """How many records the document reports on (``successful`` + ``failed``)."""
        if self._counted is not None:
            return self._counted
        results = self.response
        return len(results.successful) + len(results.failed) if results is not None else 0

    @classmethod
    def read(cls, content: bytes, *, entries: bool = False) -> JobStatus:
        """Parse a status document; keep a running job's entries only when ``entries`` is set.

        Parsed and checked in one pass by msgspec against :class:`_StatusDocument`, the
        fields the service reads, typed as this model types them; the model is then built
        without validating again (a 1,000-entry document: 0.43 ms with pydantic, 0.14 ms).
        A running job is polled several times and only its progress is used
        (:attr:`reported`), so its entries are counted and dropped; a terminal document
        keeps them: it settles records.

        Raises ``ValueError`` (msgspec's ``DecodeError``, or an unknown state) when the
        content is not a status document.
        """
        document = _read_status(content)
        state = JobState(document.status.lower())
        results = document.response
        response = (
            None
            if results is None
            else JobResults.model_construct(successful=results.successful, failed=results.failed)
        )
        if not entries and not state.terminal:
            status = cls.model_construct(status=state, response=None)
            status._counted = len(results.successful) + len(results.failed) if results else 0
            return status
        return cls.model_construct(status=state, response=response)


class _StatusResults(msgspec.Struct):
    successful: list[RecordResult] = msgspec.field(default_factory=list)
    failed: list[RecordResult] = msgspec.field(default_factory=list)


class _StatusDocument(msgspec.Struct):
    """What :meth:`JobStatus.read` reads of a status document; other keys are skipped."""

    status: str
    response: _StatusResults | None = None


_read_status = msgspec.json.Decoder(_StatusDocument, strict=False).decode
"""Lax like the pydantic model it stands in for: an id written 42.0 is customer 42."""


def is_api_date(value: str) -> bool:
    return bool(_DATE_RE.match(value))
