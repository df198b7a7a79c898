"""What a non-2xx answer means: Gameball's error envelope, read, and the verdict it gives.

A non-2xx answer may carry ``{code, type, message, documentationUrl, requestId}``
(``shared/GAMEBALL-API.md`` §5). :func:`read_error` reads it, or whatever text the
answer has; :func:`verdict` turns an answer into the exception the client raises:

* 2001 ("another request for the same customer") is transient, whatever the status;
* 1000-1002 (keys), 6000 (Gameball disabled) and 8000 (not on the plan), and a
  merchant's minimum-version refusal (:func:`minimum_version_refusal`), are
  :class:`AccountRefused`; a plain 401/403 is :class:`CredentialsRejected`:
  never the records' fault, the service is not ready and keeps its data;
* 400/413/422, or 3011 ("exceeds allowed limits"), on a submission is
  :class:`BatchRejected` (the caller splits the batch);
* 404 on a job is :class:`JobNotFound`, or :class:`RouteAbsent` while the
  dialect is being found (with 405 too); a 405 on a dialect set by
  ``GAMEBALL_JOB_API`` is :class:`AccountRefused` (that dialect is not served);
* anything else (408, 429, 5xx, unexpected) is :class:`TransientApiError`.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import orjson
import structlog

from service.errors import (
    AccountRefused,
    ApiError,
    BatchRejected,
    CredentialsRejected,
    JobNotFound,
    TagsRejected,
    TransientApiError,
)
from service.gameball.dialects import NEWEST_VERSION

log = structlog.get_logger(__name__)

_TEXT_LIMIT = 1000
_REJECTED = frozenset({400, 413, 422})
ABSENT = frozenset({404, 405})


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What a non-2xx answer said: the envelope's fields when it had them, else its text."""

    text: str
    code: int | None = None
    type: str | None = None
    request_id: str | None = None
    json: bool = False
    """The body was a JSON object (a server's answer, not a gateway's bare page)."""

    @property
    def enveloped(self) -> bool:
        """It carried Gameball's envelope (a ``code`` or a ``requestId``)."""
        return self.code is not None or self.request_id is not None


def read_error(content: bytes, status: int) -> ErrorBody:
    """The envelope ``{code, type, message, requestId}``, or the API's own words anyway."""
    try:
        body: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        text = content.decode("utf-8", "replace").strip() or f"HTTP {status}"
        return ErrorBody(text[:_TEXT_LIMIT])
    text = ""
    for key in ("message", "error", "errors", "detail", "title"):
        if body.get(key):
            value = body[key]
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            break
    if not text:
        text = orjson.dumps(body).decode() if body else f"HTTP {status}"
    code = body.get("code")
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    request_id = body.get("requestId")
    kind = body.get("type")
    return ErrorBody(
        text[:_TEXT_LIMIT],
        json=True,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        type=kind if isinstance(kind, str) else None,
        request_id=str(request_id)[:200] if request_id not in (None, "") else None,
    )


class CodeMeaning(Enum):
    TRANSIENT = "transient"
    CONFIGURATION = "configuration"
    SPLIT = "split"


CONFIGURATION_CODES: dict[int, str] = {
    1000: "check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY",
    1001: "check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY",
    1002: "check GAMEBALL_SECRET_KEY (batch calls need both keys)",
    6000: "Gameball is disabled for this account: enable it in the dashboard",
    8000: "the account's plan does not include this feature (batch APIs): ask Gameball",
}
"""Codes that are never the records' fault: the service is not ready and keeps its data."""


def classify_code(code: int | None) -> CodeMeaning | None:
    """What an envelope's code means to a batch sink, or ``None``: go by the HTTP status."""
    if code == 2001:  # another request for the same customer is being processed
        return CodeMeaning.TRANSIENT
    if code in CONFIGURATION_CODES:
        return CodeMeaning.CONFIGURATION
    if code == 3011:  # the operation exceeds allowed limits
        return CodeMeaning.SPLIT
    return None


_MINIMUM_VERSION = re.compile(
    r"min(imum)?[\s_-]*(api[\s_-]*)?version|version[^.]{0,40}(no longer|not)\s+"
    r"(supported|allowed|accepted)|\bv4\.1\b",
    re.IGNORECASE,
)


def minimum_version_refusal(status: int, error: ErrorBody, version: str) -> bool:
    """A merchant's minimum-version refusal, as best it can be told (nothing documents it).

    A 4xx other than 404, 405 and 429 whose message or type mentions a minimum
    version ("minimum version", "min API version"), says the version is not
    supported, allowed or accepted, or names v4.1, while the service speaks an
    older version.
    """
    if not 400 <= status < 500 or status in (404, 405, 429) or version == NEWEST_VERSION:
        return False
    return bool(_MINIMUM_VERSION.search(f"{error.text} {error.type or ''}"))


class RouteAbsent(ApiError):
    """A job route answered 404 or 405 while the dialect was being found: try the other."""


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def refusal(status: int, error: ErrorBody, version: str) -> str | None:
    """The hint when an answer refuses the configuration, not the data; else ``None``."""
    if minimum_version_refusal(status, error, version):
        return (
            f"the account refuses API {version} (a minimum version is set): "
            f"set GAMEBALL_API_VERSION={NEWEST_VERSION}; the data is kept"
        )
    if error.code in CONFIGURATION_CODES:
        return CONFIGURATION_CODES[error.code] + "; the data is kept"
    if status in (401, 403):
        return "check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY; the data is kept"
    return None


def absent_dialect_hint(job_api: str | None) -> str:
    return (
        f"the API has no {job_api!r} job routes (HTTP 405): set GAMEBALL_JOB_API=auto "
        "(or the other dialect); the data is kept"
    )


def verdict(
    operation: str,
    response: httpx.Response,
    *,
    version: str,
    job_api: str | None,
    probing: bool = False,
) -> ApiError:
    """The exception a non-2xx answer to ``operation`` (submit, status, stop, tags, read)
    stands for."""
    code = response.status_code
    error = read_error(response.content, code)
    text, number, request_id = error.text, error.code, error.request_id
    said = f"HTTP {code}" + (f", code {number}" if number is not None else "")
    details: dict[str, Any] = {
        "status": code,
        "body": text,
        "code": number,
        "request_id": request_id,
    }
    meaning = classify_code(number)
    hint = refusal(code, error, version)
    if hint is not None:
        if (
            meaning is None
            and code in (401, 403)
            and not minimum_version_refusal(code, error, version)
        ):
            message = f"the Gameball API rejected the credentials ({said}): {text}"
            return CredentialsRejected(message, **details)
        message = f"the Gameball API refused the configuration ({said}): {text}"
        return AccountRefused(message, hint=hint, **details)
    job = operation in ("status", "stop")
    if meaning is not CodeMeaning.TRANSIENT:
        if operation == "tags" and (code in _REJECTED or code == 404 or meaning is not None):
            _logged(operation, error, code)
            return TagsRejected(f"tags rejected ({said}): {text}", **details)
        if operation == "submit" and (code in _REJECTED or meaning is CodeMeaning.SPLIT):
            _logged(operation, error, code)
            return BatchRejected(f"batch rejected ({said}): {text}", **details)
        if job and probing and code in ABSENT:
            return RouteAbsent(f"{operation} route absent ({said})", **details)
        if job and code == 404:
            _logged(operation, error, code)
            return JobNotFound(f"job not found ({said}): {text}", **details)
        if job and code == 405:
            message = f"{operation} answered {said}: {text}"
            return AccountRefused(message, hint=absent_dialect_hint(job_api), **details)
    message = f"{operation} answered {said}: {text}"
    return TransientApiError(message, retry_after=retry_after(response), **details)


def _logged(operation: str, error: ErrorBody, status: int) -> None:
    """An answer not retried, when it carries the envelope: its code and request id."""
    if error.enveloped:
        log.info(
            "api_error",
            operation=operation,
            status=status,
            code=error.code,
            request_id=error.request_id,
            type=error.type,
        )


def log_fields(answer: ErrorBody | ApiError) -> dict[str, object]:
    """The envelope's code and request id, for a log line (absent when the API sent none)."""
    fields = (("code", answer.code), ("request_id", answer.request_id))
    return {k: v for k, v in fields if v is not None}
