"""``customer-sync check``'s API lines: the credentials, the version and the job dialect.

One status read of a job that cannot exist (:data:`CHECK_JOB_ID`), in each job
dialect, tells all three (docs/api.md: "What check concludes"):

* the credentials: refused by 401/403 or a configuration code (1000-1002, 6000,
  8000); accepted when a job route answered as present;
* the version: refused when an answer reads as a merchant's minimum-version
  refusal (``minimum_version_refusal``);
* the dialect: :func:`route_answers` reads each answer as "the route exists", "it
  is absent", or "cannot tell".
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from service.config import Settings
from service.gameball.answers import (
    CONFIGURATION_CODES,
    ErrorBody,
    minimum_version_refusal,
    read_error,
)
from service.gameball.dialects import DIALECTS, NEWEST_VERSION, JobApi
from service.tools.check_results import FAIL, OK, WARN, Result

CHECK_JOB_ID = "0"
"""A job id that cannot exist: numeric, like the API's own, so a route that exists finds no
job rather than refusing the id's form (which would answer 400, see :func:`route_answers`)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """One dialect's status route asked for :data:`CHECK_JOB_ID`."""

    dialect: JobApi
    status: int
    error: ErrorBody

    def describe(self) -> str:
        """``batches: HTTP 404, JSON (the route exists)``: what was seen and concluded."""
        body = "JSON" if self.error.json else "no JSON"
        verdict = {True: "the route exists", False: "absent", None: "cannot tell"}[self.present]
        return f"{self.dialect}: HTTP {self.status}{_code(self.error)}, {body} ({verdict})"

    @property
    def present(self) -> bool | None:
        """Whether the route exists: ``True``, ``False``, or ``None`` (this answer cannot tell)."""
        return route_answers(self.status, self.error)


def route_answers(status: int, error: ErrorBody) -> bool | None:
    """What one status read of a job that cannot exist says of its route.

    * 2xx, 400 (the id was read and refused) or 422: the route exists;
    * 404 with a JSON body (Gameball's envelope, or any JSON such as ``{"message": "Job
      not found"}``): the route exists and looked for the job;
    * 404 without one (a server's or gateway's bare "Not Found") or 405 (no such method
      on that path): the route is absent;
    * anything else (401/403, 429, 5xx): it cannot tell.
    """
    if 200 <= status < 300 or status in (400, 422):
        return True
    if status == 404:
        return error.json
    if status == 405:
        return False
    return None


def probe_job_routes(settings: Settings, timeout: float) -> list[Probe] | str:
    """One status read per dialect; or why the API did not answer."""
    headers = {
        "APIKey": settings.gameball_api_key.get_secret_value(),
        "SecretKey": settings.gameball_secret_key.get_secret_value(),
        "Accept": "application/json",
    }
    probes = []
    with httpx.Client(
        base_url=settings.gameball_base_url, headers=headers, timeout=timeout
    ) as http:
        for dialect in DIALECTS.values():
            path = dialect.status_path(settings.gameball_api_version, CHECK_JOB_ID)
            try:
                response = http.get(path)
            except httpx.HTTPError as exc:
                return (
                    f"{settings.gameball_base_url} did not answer within {timeout:g} s "
                    f"({type(exc).__name__}); check GAMEBALL_BASE_URL and the network path"
                )
            code = response.status_code
            probes.append(Probe(dialect.name, code, read_error(response.content, code)))
    return probes


def check_api(settings: Settings, timeout: float) -> list[Result]:
    """The credentials, the API version and the job dialect, from one read per dialect.

    A single attempt each with a short timeout: the service itself retries forever,
    the preflight must answer.
    """
    base, version = settings.gameball_base_url, settings.gameball_api_version
    probes = probe_job_routes(settings, timeout)
    if isinstance(probes, str):
        return [Result(FAIL, "API credentials", probes)]
    seen = "; ".join(p.describe() for p in probes)
    results = []
    refused_version = next(
        (p for p in probes if minimum_version_refusal(p.status, p.error, version)), None
    )
    configuration = next((p for p in probes if p.error.code in CONFIGURATION_CODES), None)
    keys = next((p for p in probes if p.status in (401, 403)), None)
    present = [p for p in probes if p.present]
    if refused_version is None and configuration is not None:
        assert configuration.error.code is not None
        results.append(
            Result(
                FAIL,
                "API credentials",
                f"{base} refused the account (HTTP {configuration.status}"
                f"{_code(configuration.error)}: {configuration.error.text}); "
                f"{CONFIGURATION_CODES[configuration.error.code]}",
            )
        )
    elif refused_version is None and keys is not None:
        results.append(
            Result(
                FAIL,
                "API credentials",
                f"rejected by {base} (HTTP {keys.status}{_code(keys.error)}); "
                "check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY",
            )
        )
    elif present or refused_version is not None:
        results.append(Result(OK, "API credentials", f"accepted by {base}"))
    elif all(p.present is False for p in probes):
        results.append(
            Result(
                WARN,
                "API credentials",
                f"not confirmed: no job route answered at {base} ({seen})",
            )
        )
    else:
        results.append(
            Result(
                FAIL,
                "API credentials",
                f"{base} answered {seen}; is GAMEBALL_BASE_URL the API root?",
            )
        )
    if refused_version is not None:
        results.append(
            Result(
                FAIL,
                "API version",
                f"{version} refused (HTTP {refused_version.status}"
                f"{_code(refused_version.error)}: {refused_version.error.text}); "
                f"set GAMEBALL_API_VERSION={NEWEST_VERSION}",
            )
        )
    else:
        results.append(Result(OK, "API version", f"{version} (GAMEBALL_API_VERSION), not refused"))
    results.append(_dialect_result(settings.gameball_job_api, probes, seen))
    return results


def _code(error: ErrorBody) -> str:
    return "".join(
        [
            f", code {error.code}" if error.code is not None else "",
            f", requestId {error.request_id}" if error.request_id else "",
        ]
    )


def _dialect_result(setting: str, probes: list[Probe], seen: str) -> Result:
    name = "job API"
    answering = [p.dialect for p in probes if p.present]
    absent = [p.dialect for p in probes if p.present is False]
    routes = {"batch": "GET /batch/{jobId}", "batches": "GET /batches/{id}/status"}
    if setting == "auto":
        if answering:
            also = f" (also answers: {', '.join(answering[1:])})" if len(answering) > 1 else ""
            return Result(
                OK,
                name,
                f"{answering[0]} answers ({routes[answering[0]]}){also}; GAMEBALL_JOB_API=auto "
                f"will choose it at the first job ({seen})",
            )
        return Result(
            WARN,
            name,
            f"no job route could be told apart ({seen}); GAMEBALL_JOB_API=auto decides at the "
            "first job",
        )
    if setting in answering:
        return Result(OK, name, f"{setting} answers ({routes[setting]}), as configured ({seen})")
    if setting in absent and answering:
        return Result(
            FAIL,
            name,
            f"{setting} is configured but its route is absent, and {answering[0]} answers "
            f"({seen}); set GAMEBALL_JOB_API={answering[0]} or auto",
        )
    return Result(WARN, name, f"{setting} is configured; its route could not be confirmed ({seen})")
