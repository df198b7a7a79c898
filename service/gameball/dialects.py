"""How the API is spoken: the version in paths and the two job dialects.

Gameball publishes job status and stop in two dialects (``shared/GAMEBALL-API.md`` §3):

* ``batch``, the tutorial's: ``GET`` and ``DELETE /api/{v}/integrations/batch/{jobId}``;
* ``batches``, the OpenAPI's: ``GET /api/{v}/integrations/batches/{id}/status`` and
  ``POST /api/{v}/integrations/batches/{id}/stop``.

Submissions are the same in both: ``POST /api/{v}/integrations/batch/customers``.

What a non-2xx answer means is :mod:`service.gameball.answers`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

JobApi = Literal["batch", "batches"]
JOB_APIS: tuple[JobApi, ...] = ("batch", "batches")
API_VERSIONS = ("v4.0", "v4.1")
NEWEST_VERSION = "v4.1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how the API is spoken: its root, ``GAMEBALL_JOB_API`` and the version."""

    base_url: str
    job_api: str = "auto"
    version: str = "v4.0"


@dataclass(frozen=True, slots=True)
class JobDialect:
    """Where a job's status is read and how it is stopped, in one published dialect."""

    name: JobApi
    status_route: str
    stop_method: str
    stop_route: str

    def status_path(self, version: str, job_id: str) -> str:
        return integrations(version) + self.status_route.format(job_id=quote(job_id, safe=""))

    def stop_path(self, version: str, job_id: str) -> str:
        return integrations(version) + self.stop_route.format(job_id=quote(job_id, safe=""))


DIALECTS: dict[JobApi, JobDialect] = {
    "batch": JobDialect("batch", "/batch/{job_id}", "DELETE", "/batch/{job_id}"),
    "batches": JobDialect("batches", "/batches/{job_id}/status", "POST", "/batches/{job_id}/stop"),
}


def integrations(version: str) -> str:
    return f"/api/{version}/integrations"


def customer_path(version: str, customer_id: str, tail: str = "") -> str:
    """A customer's own resource (``tail``: ``/tags``, ``/details``), its id quoted."""
    return f"{integrations(version)}/customers/{quote(customer_id, safe='')}{tail}"


def submit_path(version: str) -> str:
    """``POST`` here creates a batch job of customers."""
    return f"{integrations(version)}/batch/customers"
