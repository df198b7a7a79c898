"""The mixed run's check of orders, cashback and events, beside the customers' (``checker.py``).

Like that checker it shares no code with the pipeline: its inputs are the manifest's fact
lines (route ``r``, fact id ``f``, expectation ``x``; see ``mixed.py``), each fact topic read
back from the broker, each operation's ``/_sim/applied`` and ``/_sim/rejected`` logs and
``/_sim/stats`` counts, and the dead letters whose ``dlq.source.topic`` is a fact route's
topic.

The topics are read back because a delivery report can acknowledge a record without its
offset (librdkafka's idempotent producer does so for the first records it sends while its
producer id is being acquired): such a line is placed by its bytes, in its partition, at an
offset no other line claims. A line the topic does not hold at all was never there for the
service to read: counted apart, never as lost.

Per operation, what must be 0:

* **lost** — a fact to deliver that was neither applied nor dead-lettered with a reason the
  API gave: ``customer_not_found`` (the simulator answered 7000 for it), ``record_rejected``
  or ``job_failed`` (the simulator refused it in the job ``dlq.job.id`` names),
  ``retries_exhausted``, or, for events only, ``outcome_unknown``;
* **applied twice** — a fact id the applied log holds more than once (orders and cashback:
  the simulator refuses a second ``orderId``/``transactionId``, so this would be its bug;
  events: the service sent one twice), and for events the simulator's own
  ``double_applied``;
* **outcome_unknown applied twice** — an ``outcome_unknown`` dead letter whose event was
  applied more than once; those applied once or never are counted (an operator reconciles
  them: the first by doing nothing, the second by sending it);
* **events dead-lettered as failed, yet applied** — an event the service dead-lettered for a
  refusal although a job applied it: it was sent twice, or its refusal was misread;
* **bad facts not dead-lettered / with the wrong reason**, **skipped facts dead-lettered or
  applied**, **applied facts never produced**, dead letters from no produced record or with
  their key or value changed;
* **acknowledged, not in the topic** and **manifest offsets holding other bytes** — the
  producer's word and the topic disagree: the run's input is not what the manifest says.

Reported: applied, refused as duplicates (a replay after a kill, or an order the source
re-sent), double-applied, "customer not found" answers, dead letters by reason, and keyed
facts dead-lettered although applied (an at-least-once replay that then drew a per-record
failure: the operator's reconciliation finds them applied).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from tests.chaos.checker import DeadLetterEntry, Report
from tests.chaos.workload import DELIVER, SKIP, digest

NATURAL_KEYS = {"orders": "orderId", "cashback": "transactionId"}
"""The keyed operations' id field; events are told apart by the ``seq`` of their metadata."""
CUSTOMER_NOT_FOUND = "Customer not found"
EXPLAINED_BY_THE_API = {"record_rejected", "job_failed"}


def fact_id(operation: str, item: Mapping[str, Any]) -> str | None:
    """The workload's id of an applied or refused item (``None``: not one of ours)."""
    key = NATURAL_KEYS.get(operation)
    if key is not None:
        value = item.get(key)
        return value if isinstance(value, str) else None
    events = item.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        return None
    (metadata,) = events.values()
    seq = metadata.get("seq") if isinstance(metadata, dict) else None
    return str(seq) if isinstance(seq, int) else None


def check_facts(
    report: Report,
    manifest: Iterable[Mapping[str, Any]],
    applied: Mapping[str, list[dict[str, Any]]],
    refused: Mapping[str, list[dict[str, Any]]],
    stats: Mapping[str, Mapping[str, int]],
    dead_letters: Iterable[DeadLetterEntry],
    topics: Mapping[str, str],
    sources: Mapping[str, list[DeadLetterEntry]],
) -> None:
    """Add every fact route's figures and failures to ``report``.

    ``applied``, ``refused`` and ``stats`` by operation (the simulator's logs and
    ``/_sim/stats`` ``operations``); ``topics``: each fact route's topic (the route is named
    after its operation); ``dead_letters``: those from the fact topics; ``sources``: each
    fact route's topic as read back.
    """
    lines: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for line in manifest:
        lines[line["r"]].append(line)
    by_topic = {topic: route for route, topic in topics.items()}
    letters: dict[str, list[DeadLetterEntry]] = defaultdict(list)
    for entry in dead_letters:
        letters[by_topic[entry.headers["dlq.source.topic"]]].append(entry)
    for route in topics:
        placed = _placed(report, route, lines[route], sources.get(route, []))
        _check_operation(
            report,
            route,
            placed,
            applied.get(route, []),
            refused.get(route, []),
            stats.get(route, {}),
            letters[route],
        )


def _placed(
    report: Report, route: str, lines: list[Mapping[str, Any]], records: list[DeadLetterEntry]
) -> list[Mapping[str, Any]]:
    """``lines`` that the topic holds, each at its offset: one the delivery report left out
    is found by its bytes (an offset of its partition no other line claims)."""
    held = {(r.partition, r.offset): digest(r.value) for r in records}
    claimed = {(m["p"], m["o"]) for m in lines if m["o"] is not None}
    free: dict[tuple[int, str | None], list[int]] = defaultdict(list)
    for (partition, offset), value in sorted(held.items()):
        if (partition, offset) not in claimed:
            free[partition, value].append(offset)
    placed, absent, other_bytes, found = [], [], [], 0
    for m in lines:
        if m["o"] is None:
            offsets = free.get((m["p"], m["h"]))
            if not offsets:
                absent.append((m["p"], m["f"]))
                continue
            m = {**m, "o": offsets.pop(0)}
            found += 1
        elif (m["p"], m["o"]) not in held or held[m["p"], m["o"]] != m["h"]:
            other_bytes.append((m["p"], m["o"], m["f"]))
        placed.append(m)
    report.numbers[f"{route}: acknowledged without an offset, found by content"] = found
    report.must_be_zero(f"{route}: acknowledged, not in the topic", len(absent), absent)
    report.must_be_zero(
        f"{route}: manifest offsets holding other bytes", len(other_bytes), other_bytes
    )
    report.numbers[f"{route}: in the topic, not in the manifest"] = len(held) - len(placed)
    return placed


def _check_operation(
    report: Report,
    operation: str,
    lines: list[Mapping[str, Any]],
    applied: list[dict[str, Any]],
    refused: list[dict[str, Any]],
    stats: Mapping[str, int],
    letters: list[DeadLetterEntry],
) -> None:
    idless = operation not in NATURAL_KEYS
    figures: dict[str, Any] = {}
    report.numbers[operation] = figures
    figures["produced by expectation"] = dict(sorted(Counter(m["x"] for m in lines).items()))

    def must_be_zero(name: str, found: list[Any]) -> None:
        report.must_be_zero(f"{operation}: {name}", len(found), found)

    # --- the dead letters, tied to the records they came from -----------------------------
    by_source = {(m["p"], m["o"]): m for m in lines}
    dlq: dict[tuple[int, int], list[DeadLetterEntry]] = defaultdict(list)
    unknown, altered = [], []
    for entry in letters:
        h = entry.headers
        source = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        produced = by_source.get(source)
        if produced is None:
            unknown.append(source)
            continue
        if digest(entry.value) != produced["h"] or (entry.key or b"").decode() != (
            produced["k"] or ""
        ):
            altered.append(source)
        dlq[source].append(entry)
    must_be_zero("dlq records from no produced record", unknown)
    must_be_zero("dlq records whose key or value changed", altered)
    figures["dead-lettered by reason"] = dict(
        sorted(Counter(e.headers["dlq.reason"] for e in letters).items())
    )
    figures["dlq duplicates (extra copies)"] = sum(len(v) - 1 for v in dlq.values())

    # --- the applied log ------------------------------------------------------------------
    applications: Counter[str] = Counter()
    strangers = []
    produced_ids = {m["f"] for m in lines if m["f"] is not None}
    for application in applied:
        fact = fact_id(operation, application["item"])
        if fact is None or fact not in produced_ids:
            strangers.append(application["item"])
            continue
        applications[fact] += 1
    must_be_zero("applied records never produced", strangers)
    twice = sorted(f for f, n in applications.items() if n > 1)
    must_be_zero("applied twice", twice)
    if idless:
        report.must_be_zero(
            f"{operation}: double_applied (simulator)", stats.get("double_applied", 0)
        )
    figures["applied"] = len(applied)
    figures["refused as duplicates"] = stats.get("duplicates", 0)
    figures["double-applied"] = stats.get("double_applied", 0)
    figures['"customer not found" answers'] = stats.get("customer_not_found", 0)

    # --- every produced fact's fate -------------------------------------------------------
    refusals = defaultdict(set)  # fact id -> (error, job id) the simulator answered
    for refusal in refused:
        fact = fact_id(operation, refusal["item"])
        if fact is not None:
            refusals[fact].add((refusal["error"], refusal["jobId"]))
    lost, bad_missing, bad_wrong, skips_letters, skips_applied = [], [], [], [], []
    failed_yet_applied, keyed_replayed_then_failed = [], Counter[str]()
    unknown_fates: Counter[str] = Counter()
    for m in lines:
        source, fact, expected = (m["p"], m["o"]), m["f"], m["x"]
        reasons = [e.headers["dlq.reason"] for e in dlq.get(source, [])]
        times = applications[fact] if fact is not None else 0
        if expected == SKIP:
            if reasons:
                skips_letters.append(source)
            if times:
                skips_applied.append(fact)
            continue
        if expected != DELIVER:
            if not reasons:
                bad_missing.append((source, expected))
            elif any(r != expected for r in reasons):
                bad_wrong.append((source, expected, reasons))
            continue
        for entry in dlq.get(source, []):
            reason = entry.headers["dlq.reason"]
            if reason == "outcome_unknown":
                unknown_fates[_fate(times)] += 1
            elif times and idless:
                failed_yet_applied.append((fact, reason))
            elif times:
                keyed_replayed_then_failed[reason] += 1
        if times or any(
            _explained(entry, refusals[fact], idless=idless) for entry in dlq.get(source, [])
        ):
            continue
        lost.append((source, fact, reasons))
    must_be_zero("lost (neither applied nor dead-lettered for a reason the API gave)", lost)
    must_be_zero("bad facts not dead-lettered", bad_missing)
    must_be_zero("bad facts with the wrong reason", bad_wrong)
    must_be_zero("skipped facts dead-lettered", skips_letters)
    must_be_zero("skipped facts applied", skips_applied)
    if idless:
        report.must_be_zero(
            f"{operation}: outcome_unknown applied twice", unknown_fates["applied twice"]
        )
        figures["outcome_unknown: applied once"] = unknown_fates["applied once"]
        figures["outcome_unknown: not applied"] = unknown_fates["not applied"]
        must_be_zero("dead-lettered as failed, yet applied", failed_yet_applied)
    else:
        figures["dead-lettered although applied (a replay refused at random)"] = dict(
            keyed_replayed_then_failed
        )


def _fate(times: int) -> str:
    return "not applied" if times == 0 else "applied once" if times == 1 else "applied twice"


def _explained(entry: DeadLetterEntry, refusals: set[tuple[str, str]], *, idless: bool) -> bool:
    """Whether a fact's dead letter has a reason the API gave for it (or, for events, an
    outcome the service could not know)."""
    reason = entry.headers["dlq.reason"]
    if reason == "customer_not_found":
        return any(error == CUSTOMER_NOT_FOUND for error, _ in refusals)
    if reason in EXPLAINED_BY_THE_API:
        job = entry.headers.get("dlq.job.id")
        return any(job_id == job for _, job_id in refusals)
    return reason == "retries_exhausted" or (idless and reason == "outcome_unknown")
