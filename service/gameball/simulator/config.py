"""What the simulator does: faults, latency, job durations, credentials and rate limits.

Every field can be changed at run time through ``POST /_sim/config``
(:func:`changed` checks the change first).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from service.gameball.customer import SHAPES, CustomerShape

JOB_APIS = ("batch", "batches", "both")
API_VERSIONS = ("v4.0", "v4.1")

_RATES = ("record_failure_rate", "job_failure_rate", "stuck_job_rate", "stopped_job_rate")
_SECONDS = (
    "latency_seconds",
    "job_duration_seconds",
    "retry_after_seconds",
    "created_answer_delay_seconds",
)
_SWITCHES = ("limit_retry_after", "error_envelope", "strict", "all_customers_known", "echo_keys")

DOCUMENTED_LIMITS = {"limit_per_second": 30, "limit_per_window": 360, "limit_window_seconds": 30.0}
"""Gameball's "Rate Limiting" page, for the resources not listed otherwise (the batch endpoints)."""


@dataclass
class SimulatorConfig:
    """What the simulator does; every field can be changed at runtime via ``POST /_sim/config``.

    ``limit_*`` enforce the API key's rate limits (0: none), see ``limits.py``;
    ``limit_retry_after`` says whether their 429s carry ``Retry-After`` (the
    real API documents none).

    ``customer_shape`` is the customer item the server binds (``nested``: Gameball's
    reference; ``flat``: the tutorial's). ``strict`` refuses an item field that shape does
    not define with a 400 naming it; lenient (``strict=False``) accepts the item, drops and
    counts such fields (``/_sim/stats`` ``ignored_fields``) and stores the rest, which is
    what the live API probably does.
    """

    api_key: str = "demo-api-key"
    secret_key: str = "demo-secret-key"  # noqa: S105 - the demo's published fake
    latency_seconds: float = 0.0
    job_duration_seconds: float = 0.0
    created_answer_delay_seconds: float = 0.0
    """A job is created at once, its POST answered this much later (a crash test kills then)."""
    record_failure_rate: float = 0.0
    job_failure_rate: float = 0.0
    stuck_job_rate: float = 0.0
    stopped_job_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_seconds: float = 0.2
    server_error_rate: float = 0.0
    limit_per_second: int = 0
    limit_per_window: int = 0
    limit_window_seconds: float = 30.0
    limit_retry_after: bool = True
    seed: int | None = None
    job_api: str = "both"
    """The job dialect(s) served: ``batch``, ``batches`` or ``both``; the other's routes 404."""
    error_envelope: bool = False
    """Errors as Gameball's ``{code, type, message, requestId}`` rather than ``{message}``."""
    min_api_version: str = ""
    """A merchant's minimum version (``v4.1``): older paths are refused with 403."""
    customer_shape: CustomerShape = "nested"
    strict: bool = True
    all_customers_known: bool = False
    """Every customer counts as known to the other operations: no "customer not found" (7000)
    for a customer no customers job applied (for tests that send orders only)."""
    echo_keys: bool = False
    """Result entries of orders, cashback and redeem carry the item's natural key (``orderId``,
    ``transactionId``) beside ``customerId`` and the message; Gameball documents none."""

    def __post_init__(self) -> None:
        if self.customer_shape not in SHAPES:
            raise ValueError(f"customer_shape must be one of {', '.join(SHAPES)}")
        for name in (*_RATES, "rate_limit_rate", "server_error_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate_limit_rate + self.server_error_rate > 1.0:
            raise ValueError("rate_limit_rate + server_error_rate must not exceed 1")
        for name in _SECONDS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.limit_per_second < 0 or self.limit_per_window < 0:
            raise ValueError("limit_per_second and limit_per_window must not be negative")
        if self.limit_window_seconds <= 0:
            raise ValueError("limit_window_seconds must be positive")
        if self.job_api not in JOB_APIS:
            raise ValueError(f"job_api must be one of {', '.join(JOB_APIS)}")
        if self.min_api_version not in ("", *API_VERSIONS):
            raise ValueError(f"min_api_version must be empty or one of {', '.join(API_VERSIONS)}")

    def serves(self, dialect: str) -> bool:
        return self.job_api in (dialect, "both")

    @property
    def limited(self) -> bool:
        return bool(self.limit_per_second or self.limit_per_window)


def changed(config: SimulatorConfig, changes: dict[str, Any]) -> SimulatorConfig:
    """``config`` with ``changes`` (field -> JSON value); ``ValueError`` names what is wrong."""
    names = {f.name for f in dataclasses.fields(SimulatorConfig)}
    for name, value in changes.items():
        if name not in names:
            raise ValueError(f"unknown setting {name!r}")
        if name in ("api_key", "secret_key", "job_api", "min_api_version", "customer_shape"):
            ok = isinstance(value, str)
        elif name == "seed":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        elif name in _SWITCHES:
            ok = isinstance(value, bool)
        elif name in ("limit_per_second", "limit_per_window"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise ValueError(f"{name}: wrong type {type(value).__name__}")
    return dataclasses.replace(config, **changes)
