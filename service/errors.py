"""The exception hierarchy: one root, a subclass per area.

Each carries what an operator needs (the variable, the HTTP status, the Kafka
error) and is raised ``from`` the underlying exception so the cause survives.
None of them ever carries a secret: API errors keep the status and the
response text, never the request headers.
"""

from __future__ import annotations


class CustomerSyncError(Exception):
    """Root of every error this service raises on purpose."""


class ConfigError(CustomerSyncError):
    """A setting is missing or invalid; the message names the variable."""


class KafkaError(CustomerSyncError):
    """The broker refused or failed an operation we cannot simply retry."""


class ApiError(CustomerSyncError):
    """The Gameball API answered something other than success."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.code = code  # the Gameball error envelope's ``code``, when it sent one
        self.request_id = request_id  # ... and its ``requestId``, for Gameball's support


class TransientApiError(ApiError):
    """Worth retrying: network errors, timeouts, 408, 429 and 5xx.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body, code=code, request_id=request_id)
        self.retry_after = retry_after


class CredentialsRejected(ApiError):
    """401/403: the data is fine, the keys are not. Never a dead-letter reason."""


class AccountRefused(CredentialsRejected):
    """The account or the configuration, not the data: treated like rejected credentials.

    Gameball's codes 1000-1002 (keys), 6000 (Gameball disabled), 8000 (not on the
    plan), or a merchant's minimum API version. ``hint`` says what to change.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str,
        status: int | None = None,
        body: str = "",
        code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body, code=code, request_id=request_id)
        self.hint = hint


class BatchRejected(ApiError):
    """400/413/422 on a whole batch: at least one record in it is unacceptable.

    The caller bisects the batch to find which; a single rejected record is
    dead-lettered with ``body`` as the error text.
    """


class TagsRejected(ApiError):
    """400/404/413/422 on a customer's tag call: the record is dead-lettered (``tags_rejected``)."""


class JobNotFound(ApiError):
    """404 on a job we created: the API lost it, so its records are resubmitted."""


class OutcomeUnknown(ApiError):
    """A submission whose answer was lost after it may have reached the API (a read timeout,
    a connection dropped mid-exchange, any 5xx or a 408, a 2xx without a job id): a job
    may exist. Raised instead of retrying for an operation whose items carry no id (events,
    balance adjustments), where a second submission would apply them twice."""


class SubmissionWithdrawn(CustomerSyncError):
    """A submission's records stopped being ours while it waited to be (re)sent.

    Raised before the request goes out, never after: the records' partitions
    were revoked or lost, and the next owner may already have sent newer
    changes of the same customers.
    """


class RegistryUnavailable(CustomerSyncError):
    """The schema registry could not be asked for a record's schema (down, unreachable,
    refusing our credentials, answering 5xx).

    Not the record's fault, so never a dead letter: the record waits, unread, and is retried
    with backoff while the service reports not ready.
    """
