"""``schemas/``: JSON Schema (2020-12) documents generated from the code's pydantic models.

``make schemas`` (``python -m service.contracts.schemas``) writes them; ``--check``
exits 1 when the committed files differ from what the code generates, and a
test does the same, so the documents cannot drift from the code.

Three things pydantic cannot say on its own are added here, from the models'
own declarations: a job id accepted under several keys (``AliasChoices``:
``jobId``, ``JobId``, ``id``), a job status accepted in any letter case, and a
redemption's one way to redeem (``amount``, ``points`` or ``holdReference``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel

from service.contracts.events import DeadLetterHeaders, InputEvent
from service.gameball.customer import FlatBatchRequest, NestedBatchRequest
from service.gameball.models import STATE_SYNONYMS, JobCreated, JobStatus
from service.gameball.operations import Operation
from service.gameball.simulator.requests import REQUESTS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DIRECTORY = Path(__file__).resolve().parents[2] / "schemas"


def _schema(model: type[BaseModel], name: str, title: str, description: str) -> dict[str, Any]:
    generated = model.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": DRAFT,
        "$id": f"urn:customer-sync:schema:{name}",
        "title": title,
        "description": description,
        **{k: v for k, v in generated.items() if k not in ("title", "description")},
    }


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def input_event() -> dict[str, Any]:
    return _schema(
        InputEvent,
        "input-event",
        "customer-sync input event",
        " ".join(inspect.cleandoc(InputEvent.__doc__ or "").split()),
    )


def batch_request() -> dict[str, Any]:
    return _schema(
        NestedBatchRequest,
        "api-batch-request",
        "Gameball batch customer request",
        "The body of POST /api/v4.0/integrations/batch/customers: at most 1,000 customers, "
        "in the nested shape of Gameball's reference and OpenAPI (GAMEBALL_CUSTOMER_SHAPE="
        "nested, the default): the profile inside customerAttributes.",
    )


def flat_batch_request() -> dict[str, Any]:
    return _schema(
        FlatBatchRequest,
        "api-batch-request-flat",
        "Gameball batch customer request, the tutorial's flat shape",
        "The body of POST /api/v4.0/integrations/batch/customers: at most 1,000 customers, "
        "every field at the top level as the tutorial shows (GAMEBALL_CUSTOMER_SHAPE=flat).",
    )


def operation_request(operation: Operation) -> Callable[[], dict[str, Any]]:
    """The body of ``POST .../batch/<operation>`` for an operation besides customers."""
    facts = operation.facts

    def build() -> dict[str, Any]:
        key = f"; natural key {facts.natural_key}" if facts.natural_key else "; no natural key"
        schema = _schema(
            REQUESTS[operation],
            f"api-batch-request-{operation}",
            f"Gameball batch {operation} request",
            f"The body of POST /api/v4.0/integrations/batch/{operation}: at most 1,000 items, "
            f"required fields as Gameball's OpenAPI lists them ({', '.join(facts.required)})"
            f"{key}; every other field passes through.",
        )
        if operation is Operation.REDEEM:
            # RedeemItem's validator, which pydantic cannot render: one way to redeem is given.
            ways = ("amount", "points", "holdReference")
            schema["$defs"]["RedeemItem"]["anyOf"] = [
                {"required": [way], "properties": {way: {"not": {"type": "null"}}}} for way in ways
            ]
        return schema

    return build


def job_created() -> dict[str, Any]:
    schema = _schema(
        JobCreated,
        "api-job-created",
        "Gameball batch job created",
        "The answer to a batch submission: the job id, under one of several keys.",
    )
    field = JobCreated.model_fields["job_id"]
    alias = field.validation_alias
    assert isinstance(alias, AliasChoices)
    keys = [str(choice) for choice in alias.choices]
    schema["properties"] = {key: {"type": ["string", "integer"]} for key in keys}
    schema.pop("required", None)
    schema["anyOf"] = [{"required": [key]} for key in keys]
    return schema


def job_status() -> dict[str, Any]:
    schema = _schema(
        JobStatus,
        "api-job-status",
        "Gameball batch job status",
        "The body of GET /api/v4.0/integrations/batch/{jobId}.",
    )
    words = [_any_case(word) for word in STATE_SYNONYMS if word != "inprogress"]
    pattern = "^(" + "|".join([*words, _any_case("in") + "[ _-]?" + _any_case("progress")]) + ")$"
    schema["properties"]["status"] = {
        "type": "string",
        "pattern": pattern,
        "description": "queued, running, completed, failed or stopped, or a synonym (pending, "
        "processing, inProgress, in progress, finished), in any letter case",
    }
    schema.get("$defs", {}).pop("JobState", None)
    return schema


def dead_letter_headers() -> dict[str, Any]:
    return _schema(
        DeadLetterHeaders,
        "dead-letter-headers",
        "customer-sync dead-letter headers",
        "The headers of a record on the dead-letter topic, as a JSON object of UTF-8 strings; "
        "the key and value are the source record's bytes, unchanged.",
    )


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "input-event.schema.json": input_event,
    "api-batch-request.schema.json": batch_request,
    "api-batch-request-flat.schema.json": flat_batch_request,
    "api-job-created.schema.json": job_created,
    "api-job-status.schema.json": job_status,
    "dead-letter-headers.schema.json": dead_letter_headers,
    **{
        f"api-batch-request-{operation}.schema.json": operation_request(operation)
        for operation in REQUESTS
    },
}


def render() -> dict[str, str]:
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in SCHEMAS.items()
    }


def drift(directory: Path = DIRECTORY) -> list[str]:
    """Names of the files that are missing or differ from the code."""
    stale = []
    for name, text in render().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.contracts.schemas", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if schemas/ is stale")
    parser.add_argument("--directory", type=Path, default=DIRECTORY)
    args = parser.parse_args(argv)
    if args.check:
        stale = drift(args.directory)
        for name in stale:
            print(f"{args.directory / name} is stale: run `make schemas`", file=sys.stderr)
        return 1 if stale else 0
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.directory / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.directory / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
