"""``customer-sync canary``: the go-live check, one throwaway customer through the real API.

No test of ours can reach Gameball's API, and a server that binds another customer shape
than the one it is sent most likely accepts the job and drops the fields it does not know
(``GAMEBALL-API.md`` §2): every job ``completed``, the profile silently lost. The canary
proves with the operator's keys (use a test key: its customers live apart from the live
ones) that what the service sends lands, field by field:

1. it builds one customer with the service's own decoder and mapping, from a sample row
   that gives every column the mapping reads a value, or from a row the operator passes
   (``--row``), under a throwaway id (``customer-sync-canary-<random>``);
2. it submits it as a one-item batch and follows the job to its end, in the job dialect
   and API version configured;
3. with ``TAGS_SYNC`` ``changed`` or ``always`` it sends the tags by their own call;
4. it reads the customer back: ``GET .../customers/{id}/details`` (every attribute, per the
   OpenAPI), or ``GET .../customers/{id}`` where that route is absent (personal data left
   out there, so those fields read "not readable");
5. it reports each field it sent: landed, landed with another value, or missing.

Exit 0 when every readable field landed, 1 when one did not (or the job failed, or the
customer cannot be read back), 2 for a configuration the service would refuse.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from service.config import Settings, load_settings
from service.delivery.decoding import Customer, Decoder
from service.delivery.mapping import FieldMapping, layout, load_field_mapping
from service.errors import ApiError, ConfigError
from service.gameball.client import GameballClient, RetryPolicy
from service.gameball.models import JobState, result_customer, result_text
from service.health import Health
from service.metrics import Metrics
from service.tools.canary_sample import sample_row

CANARY_PREFIX = "customer-sync-canary-"
POLL_SECONDS = 1.0
ANSWER_SECONDS = 30.0
"""Beyond the job's own timeout: for the submission, the tag call and the read-back."""

LANDED, DIFFERENT, MISSING, UNREADABLE = "✓", "≠", "✗", "?"


@dataclass(frozen=True, slots=True)
class FieldCheck:
    path: str
    sent: Any
    found: Any
    mark: str

    def line(self) -> str:
        sent = _short(self.sent)
        if self.mark == LANDED:
            return f"  {LANDED} {self.path}: {sent}"
        if self.mark == DIFFERENT:
            return f"  {DIFFERENT} {self.path}: sent {sent}, read back {_short(self.found)}"
        if self.mark == UNREADABLE:
            return f"  {UNREADABLE} {self.path}: sent {sent}; this read-back does not show it"
        return f"  {MISSING} {self.path}: sent {sent}, read back nothing: the API dropped it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--row",
        help="the source row to send, as JSON or @file.json (a Debezium 'after' row); "
        "default: a sample row with a value for every column the mapping reads",
    )
    parser.add_argument(
        "--customer-id", help=f"the customer to create (default: {CANARY_PREFIX}<random>)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the job (default 120)"
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        mapping = (
            load_field_mapping(settings.field_mapping_file)
            if settings.field_mapping_file is not None
            else FieldMapping({})
        )
        customer_id = args.customer_id or CANARY_PREFIX + uuid.uuid4().hex[:12]
        if args.row is None:
            shape = layout(mapping, settings.gameball_customer_shape, settings.tags_sync)
            row = sample_row(shape, mapping, customer_id)
        else:
            row = _row(args.row)
    except ConfigError as exc:
        print(f"configuration: {exc}", flush=True)
        return 2
    return asyncio.run(run_canary(settings, mapping, row, args.timeout, print))


async def run_canary(
    settings: Settings,
    mapping: FieldMapping,
    row: dict[str, Any],
    job_seconds: float,
    say: Any,
) -> int:
    """The canary itself; ``say`` prints a line. Returns the exit code."""
    decoder = Decoder(
        mapping,
        settings.delete_policy,
        shape=settings.gameball_customer_shape,
        tags_sync=settings.tags_sync,
    )
    decoded = decoder.decode(orjson.dumps({"op": "c", "after": row}))
    if not isinstance(decoded, Customer):
        say(f"the row does not make a customer the service would send: {decoded}")
        return 1
    item = orjson.loads(decoded.payload)
    say(f"customer {decoded.customer_id}: {_describe(settings)}")
    say(f"sending {decoded.payload.decode()}")
    client = _client(settings)
    try:
        # The client retries transient failures and rejected keys for ever, as the service
        # must; the canary must answer.
        async with asyncio.timeout(job_seconds + ANSWER_SECONDS):
            return await _deliver_and_read(settings, client, decoded, item, job_seconds, say)
    except TimeoutError:
        say(
            f"no answer from {settings.gameball_base_url} within "
            f"{job_seconds + ANSWER_SECONDS:g} s; "
            "`customer-sync check` says whether the keys are accepted"
        )
        return 1
    except ApiError as exc:
        say(f"the API refused: {exc}")
        return 1
    finally:
        await client.aclose()


async def _deliver_and_read(
    settings: Settings,
    client: GameballClient,
    customer: Customer,
    item: dict[str, Any],
    job_seconds: float,
    say: Any,
) -> int:
    job_id = await client.submit(b'{"body":[' + customer.payload + b"]}")
    say(f"job {job_id} submitted")
    deadline = time.monotonic() + job_seconds
    while True:
        status = await client.status(job_id, entries=True)
        if status.status.terminal or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if not status.status.terminal:
        say(f"job {job_id} still {status.status.value} after {job_seconds:g} s: stopping it")
        await client.stop(job_id)
        return 1
    results = status.response
    failed = {result_customer(e): result_text(e) for e in results.failed} if results else {}
    done = {result_customer(e) for e in results.successful} if results else set()
    if status.status is not JobState.COMPLETED or customer.customer_id not in done:
        why = failed.get(customer.customer_id, "the job did not report the customer successful")
        say(f"job {job_id} ended {status.status.value}: {why}")
        return 1
    say(f"job {job_id} completed ({client.job_api} dialect); the customer was reported successful")
    tags = customer.tags
    if tags is not None:
        await client.set_tags(customer.customer_id, tags)
        say(f"tags sent by their own call: {', '.join(tags)}")
    read, complete = await client.read_customer(customer.customer_id)
    say(
        "read back with GET .../customers/{id}/details"
        if complete
        else "read back with GET .../customers/{id} (personal fields are not shown there)"
    )
    checks = compare(item, read, complete=complete)
    if tags is not None:
        checks.append(_tags_check(tags, read))
    for check in checks:
        say(check.line())
    lost = [c.path for c in checks if c.mark in (MISSING, DIFFERENT)]
    if lost:
        say(f"NOT LANDED: {', '.join(lost)}; see the README's go-live section")
        return 1
    say("every field the API shows landed")
    return 0


# --- comparing ----------------------------------------------------------------------------

PERSONAL = frozenset({"email", "mobile", "displayName", "firstName", "lastName", "dateOfBirth"})
"""Fields the plain read-back leaves out (the OpenAPI: "minimized, excluding PII")."""


def compare(sent: dict[str, Any], read: dict[str, Any], *, complete: bool) -> list[FieldCheck]:
    """Each leaf the item sent, against the customer read back.

    A top-level field is also looked for inside ``customerAttributes`` (the profile's own
    copy of ``email``, ``mobile``; a flat item's fields, which a read-back nests), and a value
    is matched loosely where an API may write it
    otherwise: a date as a date-time, a number as a float, tags in any order.
    """
    checks = []
    for path, value in _leaves(sent):
        if path == ("customerId",):
            continue
        found = _at(read, path)
        if found is None and path[0] != "customerAttributes":
            found = _at(read, ("customerAttributes", *path))
        name = ".".join(path)
        if found is None:
            mark = UNREADABLE if not complete and path[-1] in PERSONAL else MISSING
        else:
            mark = LANDED if _same(value, found) else DIFFERENT
        checks.append(FieldCheck(name, value, found, mark))
    return checks


def _tags_check(tags: list[str], read: dict[str, Any]) -> FieldCheck:
    found = _at(read, ("customerAttributes", "tags"))
    if found is None:
        found = _at(read, ("tags",))
    if found is None:
        return FieldCheck("tags (their own call)", tags, None, MISSING)
    landed = isinstance(found, list) and set(tags) <= {str(t) for t in found}
    return FieldCheck("tags (their own call)", tags, found, LANDED if landed else DIFFERENT)


Leaf = tuple[tuple[str, ...], Any]


def _leaves(item: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[Leaf]:
    leaves: list[Leaf] = []
    for key, value in item.items():
        if isinstance(value, dict) and value:
            leaves += _leaves(value, (*prefix, key))
        else:
            leaves.append(((*prefix, key), value))
    return leaves


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _same(sent: Any, found: Any) -> bool:
    if isinstance(sent, bool) or isinstance(found, bool):
        return sent is found
    if isinstance(sent, int | float) and isinstance(found, int | float | str):
        try:
            return float(found) == float(sent)
        except ValueError:
            return False
    if isinstance(sent, list) and isinstance(found, list):
        return sorted(map(str, sent)) == sorted(map(str, found))
    if isinstance(sent, str) and isinstance(found, str):
        return found == sent or (len(sent) == 10 and found.startswith(sent))  # a date
    equal: bool = sent == found
    return equal


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


# --- set-up -------------------------------------------------------------------------------


def _row(given: str) -> dict[str, Any]:
    try:
        text = Path(given[1:]).read_text(encoding="utf-8") if given.startswith("@") else given
    except OSError as exc:
        raise ConfigError(f"--row {given!r} cannot be read: {exc.strerror}") from None
    try:
        row = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--row is not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise ConfigError("--row must be a JSON object: the source row, column by column")
    return row


def _describe(settings: Settings) -> str:
    return (
        f"API {settings.gameball_base_url}, version {settings.gameball_api_version}, "
        f"job API {settings.gameball_job_api}, {settings.gameball_customer_shape} customer, "
        f"TAGS_SYNC={settings.tags_sync}"
    )


def _client(settings: Settings) -> GameballClient:
    return GameballClient(
        settings.gameball_endpoint,
        settings.gameball_api_key,
        settings.gameball_secret_key,
        metrics=Metrics(),
        health=Health(),
        retry=RetryPolicy(base_seconds=0.5, max_seconds=5.0),
        request_timeout=settings.gameball_request_timeout_seconds,
    )
