"""The independent checker: what was produced vs. what the API applied and the DLQ holds.

It shares no code with the pipeline (no decoder, no offsets, no batcher):
its only inputs are the manifest of acknowledged produced records (written
from delivery reports), the simulator's ``/_sim/applied`` and
``/_sim/rejected`` logs over HTTP, the whole dead-letter topic read from the
broker, and the driver's timeline of faults. Expectations come from how the
events were built (``workload.py``), never from running service code.

What each number means:

* **lost** — a customer whose latest good change was neither applied nor
  dead-lettered. Must be 0.
* **stale** — a customer whose *last* applied version is not its latest
  (the final state the API holds is old). Must be 0.
* **bad not dead-lettered** / **wrong reason** — a record built to be
  rejected that is missing from the DLQ or carries another reason. Must be 0.
* **skips dead-lettered** — a tombstone or delete in the DLQ. Must be 0.
* **ordering regressions** — the applied versions of a customer went down:
  the API applied an older change after a newer one. Must be 0, right after
  a fault too: a new owner skips what the commit metadata shows settled,
  resolves the dead owner's jobs before it submits anything, and coalesces
  what it redoes (``service/delivery/takeover.py``). Those *after a fault* (a
  kill, stop, restart or outage at most ``horizon`` seconds earlier) are
  also counted apart, to tell a takeover bug from an ordering bug.
* **good dead-lettered** — must all be records the simulator reported
  failed in the job named by ``dlq.job.id`` (or built with a bad email);
  anything else is *unexplained* and must be 0.
* **duplicates** — extra applications of the same (customer, version) and
  extra DLQ copies of the same source record: at-least-once, reported.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from tests.chaos.workload import API_REJECT, DELIVER, SKIP, digest, read_manifest

REQUIRED_HEADERS = (
    "dlq.reason",
    "dlq.error",
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
    "dlq.source.timestamp",
    "dlq.attempts",
)
GOOD_DLQ_REASONS = {"record_rejected", "job_failed"}


@dataclass
class DeadLetterEntry:
    """A record read back from a topic (the dead letters, or a mixed run's fact topics)."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    partition: int = -1
    offset: int = -1


@dataclass
class Report:
    numbers: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    examples: dict[str, list[Any]] = field(default_factory=dict)
    duplicates: int = 0  # extra applications of one (customer, version)

    def must_be_zero(self, name: str, value: int, examples: list[Any] | None = None) -> None:
        self.numbers[name] = value
        if value:
            self.failures.append(f"{name} = {value}")
            if examples:
                self.examples[name] = examples[:5]

    def render(self) -> str:
        lines = ["chaos checker report", "--------------------"]
        width = max(len(k) for k in self.numbers) if self.numbers else 0
        for name, value in self.numbers.items():
            lines.append(f"{name:<{width}}  {value}")
        for name, examples in self.examples.items():
            lines.append(f"examples of {name}: {examples}")
        lines.append(
            "RESULT: " + ("PASS" if not self.failures else "FAIL: " + "; ".join(self.failures))
        )
        return "\n".join(lines)


def read_log(
    base_url: str, name: str, page: int = 20_000, operation: str = "customers"
) -> list[dict[str, Any]]:
    """The simulator's ``applied`` or ``rejected`` log of ``operation``, whole."""
    entries: list[dict[str, Any]] = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        while True:
            params = {"since": len(entries), "limit": page, "operation": operation}
            body = http.get(f"/_sim/{name}", params=params).json()
            entries.extend(body[name])
            if len(body[name]) < page:
                return entries


def read_topic(bootstrap: str, topic: str, timeout: float = 120.0) -> list[DeadLetterEntry]:
    """All of ``topic``, up to the end offsets the broker reports when the read begins."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-checker-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    records: list[DeadLetterEntry] = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: partitions {sorted(pending)} not read to {ends}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                error = msg.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    continue
                if error is None:
                    headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
                    records.append(
                        DeadLetterEntry(
                            msg.key(), msg.value(), headers, msg.partition(), msg.offset()
                        )
                    )
                if msg.offset() + (error is None) >= ends[msg.partition()]:
                    pending.discard(msg.partition())
    finally:
        consumer.close()
    return records


def check(
    manifest: list[dict[str, Any]],
    applied: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    dead_letters: list[DeadLetterEntry],
    *,
    topic: str,
    faults: list[float],
    horizon: float = 120.0,
    quiet_since: float | None = None,
) -> Report:
    report = Report()
    by_source = {(m["p"], m["o"]): m for m in manifest}
    expected = Counter(m["x"] for m in manifest)
    report.numbers["produced"] = len(manifest)
    report.numbers["produced by expectation"] = dict(sorted(expected.items()))
    report.numbers["applied log entries"] = len(applied)
    report.numbers["rejected log entries"] = len(rejected)
    report.numbers["dead-letter records"] = len(dead_letters)

    # --- the dead-letter topic ------------------------------------------------------------
    dlq: dict[tuple[int, int], list[DeadLetterEntry]] = defaultdict(list)
    unknown, incomplete, altered = [], [], []
    for entry in dead_letters:
        h = entry.headers
        if any(name not in h for name in REQUIRED_HEADERS):
            incomplete.append(h)
            continue
        if h["dlq.source.topic"] != topic:
            unknown.append(h)
            continue
        source = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        produced = by_source.get(source)
        if produced is None:
            unknown.append(h)
            continue
        if digest(entry.value) != produced["h"] or (entry.key or b"").decode() != (
            produced["k"] or ""
        ):
            altered.append(source)
        dlq[source].append(entry)
    report.must_be_zero("dlq records without the required headers", len(incomplete), incomplete)
    report.must_be_zero("dlq records from no produced record", len(unknown), unknown)
    report.must_be_zero("dlq records whose key or value changed", len(altered), altered)
    report.numbers["dlq duplicates (extra copies)"] = sum(len(v) - 1 for v in dlq.values())
    report.numbers["dlq by reason"] = dict(
        sorted(Counter(e.headers.get("dlq.reason", "?") for e in dead_letters).items())
    )

    missing, wrong_reason, skips_dlq = [], [], []
    for m in manifest:
        source = (m["p"], m["o"])
        letters = dlq.get(source, [])
        if m["x"] == SKIP:
            if letters:
                skips_dlq.append(source)
        elif m["x"] not in (DELIVER, API_REJECT):
            if not letters:
                missing.append((source, m["x"]))
            elif any(e.headers["dlq.reason"] != m["x"] for e in letters):
                wrong_reason.append((source, m["x"], [e.headers["dlq.reason"] for e in letters]))
    report.must_be_zero("bad records not dead-lettered", len(missing), missing)
    report.must_be_zero("bad records with the wrong reason", len(wrong_reason), wrong_reason)
    report.must_be_zero("skipped records dead-lettered", len(skips_dlq), skips_dlq)

    # --- good records in the dead-letter topic --------------------------------------------
    sim_rejected = {(r["customerId"], r["jobId"]) for r in rejected}
    good_dlq: Counter[str] = Counter()
    unexplained = []
    for source, letters in dlq.items():
        m = by_source[source]
        if m["x"] not in (DELIVER, API_REJECT):
            continue
        for e in letters:
            reason = e.headers["dlq.reason"]
            job = e.headers.get("dlq.job.id")
            if reason in GOOD_DLQ_REASONS and (m["c"], job) in sim_rejected:
                good_dlq["rejected by the API (simulator log agrees)"] += 1
            elif reason == "retries_exhausted":
                good_dlq["retries_exhausted (job-level failures every attempt)"] += 1
            else:
                unexplained.append((source, m["c"], m["v"], reason, job))
    report.numbers["good records dead-lettered"] = dict(good_dlq)
    report.must_be_zero("good records dead-lettered, unexplained", len(unexplained), unexplained)

    # --- the applied log: lost, stale, order, duplicates ----------------------------------
    versions_of: dict[str, list[tuple[int, float]]] = defaultdict(list)
    strangers = []
    produced_versions = {(m["c"], m["v"]) for m in manifest if m["x"] in (DELIVER, API_REJECT)}
    for entry in applied:
        item = entry["customer"]  # nested (the default) or flat (the tutorial's)
        custom = (item.get("customerAttributes") or item).get("custom") or {}
        version = custom.get("version") if isinstance(custom, dict) else None
        if (entry["customerId"], version) not in produced_versions:
            strangers.append((entry["customerId"], version))
            continue
        versions_of[entry["customerId"]].append((version, entry.get("at", 0.0)))
    report.must_be_zero("applied records never produced", len(strangers), strangers)

    latest: dict[str, dict[str, Any]] = {}
    for m in manifest:
        if m["x"] in (DELIVER, API_REJECT) and m["v"] > latest.get(m["c"], {"v": 0})["v"]:
            latest[m["c"]] = m
    lost, stale = [], []
    for customer, m in latest.items():
        applied_versions = [v for v, _ in versions_of.get(customer, [])]
        dead = (m["p"], m["o"]) in dlq
        if m["v"] not in applied_versions and not dead:
            lost.append((customer, m["v"], m["x"]))
        elif applied_versions and applied_versions[-1] != (
            max(applied_versions) if dead else m["v"]
        ):
            stale.append((customer, m["v"], applied_versions[-5:]))
    report.numbers["customers"] = len(latest)
    report.must_be_zero("lost (latest change neither applied nor dead-lettered)", len(lost), lost)
    report.must_be_zero("stale (last applied version is not the latest)", len(stale), stale)

    fault_times = sorted(faults)
    regressions, unexplained_order, quiet_order = 0, [], []
    duplicates = 0
    for customer, seen in versions_of.items():
        top, top_at = 0, 0.0
        counts = Counter(v for v, _ in seen)
        duplicates += sum(c - 1 for c in counts.values())
        for version, at in seen:
            if version < top:
                regressions += 1
                if not any(top_at - horizon <= t <= at for t in fault_times) and not any(
                    at - horizon <= t <= at for t in fault_times
                ):
                    unexplained_order.append((customer, version, top))
                if quiet_since is not None and at >= quiet_since:
                    quiet_order.append((customer, version, top))
            elif version > top:
                top, top_at = version, at
    report.must_be_zero("ordering regressions (older after newer, faults included)", regressions)
    report.must_be_zero(
        "ordering regressions not after a fault", len(unexplained_order), unexplained_order
    )
    if quiet_since is not None:
        report.must_be_zero("ordering regressions in the quiet tail", len(quiet_order), quiet_order)
    report.numbers["duplicate applications (same customer and version)"] = duplicates
    report.duplicates = duplicates
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--simulator", required=True, help="the simulator's base URL")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--dlq", required=True)
    parser.add_argument("--timeline", type=Path, help="JSON list of fault times (time.time())")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    faults = orjson.loads(args.timeline.read_bytes()) if args.timeline else []
    report = check(
        manifest,
        read_log(args.simulator, "applied"),
        read_log(args.simulator, "rejected"),
        read_topic(args.bootstrap, args.dlq),
        topic=args.topic,
        faults=faults,
    )
    print(report.render())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
