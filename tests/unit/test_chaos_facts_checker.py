"""The mixed run's fact checker on hand-made evidence: it must see every failure it reports."""

from __future__ import annotations

from typing import Any

from tests.chaos.checker import DeadLetterEntry, Report
from tests.chaos.facts_checker import check_facts
from tests.chaos.workload import digest

TOPICS = {"orders": "src.orders", "events": "src.events"}


def line(route: str, o: int, fact: str | None, expected: str = "deliver") -> dict[str, Any]:
    return {
        "r": route,
        "p": 0,
        "o": o,
        "k": "a",
        "c": "a",
        "f": fact,
        "x": expected,
        "h": digest(b"v"),
    }


def order(fact: str, job: str = "job-1") -> dict[str, Any]:
    return {"item": {"customerId": "a", "orderId": fact}, "jobId": job}


def event(seq: int, job: str = "job-2") -> dict[str, Any]:
    return {"item": {"customerId": "a", "events": {"purchase": {"seq": seq}}}, "jobId": job}


def refusal(entry: dict[str, Any], error: str) -> dict[str, Any]:
    return {**entry, "error": error}


def letter(route: str, o: int, reason: str, job: str | None = None) -> DeadLetterEntry:
    headers = {
        "dlq.reason": reason,
        "dlq.source.topic": TOPICS[route],
        "dlq.source.partition": "0",
        "dlq.source.offset": str(o),
    }
    if job is not None:
        headers["dlq.job.id"] = job
    return DeadLetterEntry(b"a", b"v", headers)


MANIFEST = [
    line("orders", 0, "o0"),
    line("orders", 1, "o0"),  # the source re-sent it: refused as a duplicate
    line("orders", 2, "o2"),  # refused at random, dead-lettered
    line("orders", 3, "o3"),  # its customer never known: customer_not_found
    line("orders", 4, None, "invalid_event"),
    line("events", 0, "0"),
    line("events", 1, "1"),  # outcome_unknown, and applied by the job whose answer was lost
    line("events", 2, "2"),  # outcome_unknown, and never applied
    line("events", 3, "3", "skip"),
]
STATS = {"orders": {"duplicates": 1, "customer_not_found": 3}, "events": {"double_applied": 0}}


def topics_of(manifest: list[dict[str, Any]]) -> dict[str, list[DeadLetterEntry]]:
    """The fact topics as read back: every line's record where its delivery report put it."""
    held: dict[str, list[DeadLetterEntry]] = {route: [] for route in TOPICS}
    for m in manifest:
        held[m["r"]].append(DeadLetterEntry(b"a", b"v", {}, m["p"], m["o"]))
    return held


def run(
    applied: dict[str, list[dict[str, Any]]],
    refused: dict[str, list[dict[str, Any]]],
    letters: list[DeadLetterEntry],
    stats: dict[str, dict[str, int]] = STATS,
    manifest: list[dict[str, Any]] = MANIFEST,
    held: dict[str, list[DeadLetterEntry]] | None = None,
) -> Report:
    report = Report()
    sources = topics_of(manifest) if held is None else held
    check_facts(report, manifest, applied, refused, stats, letters, TOPICS, sources)
    return report


APPLIED = {"orders": [order("o0")], "events": [event(0), event(1)]}
REFUSED = {
    "orders": [
        refusal(order("o0", "job-3"), "Order id already exists"),
        refusal(order("o2", "job-4"), "Failed to create order"),
        refusal(order("o3", "job-5"), "Customer not found"),
    ]
}
LETTERS = [
    letter("orders", 2, "record_rejected", "job-4"),
    letter("orders", 3, "customer_not_found"),
    letter("orders", 4, "invalid_event"),
    letter("events", 1, "outcome_unknown"),
    letter("events", 2, "outcome_unknown"),
]


def test_a_clean_mixed_run_passes_and_accounts_for_every_outcome_unknown() -> None:
    report = run(APPLIED, REFUSED, LETTERS)
    assert report.failures == []
    events, orders = report.numbers["events"], report.numbers["orders"]
    assert events["outcome_unknown: applied once"] == 1
    assert events["outcome_unknown: not applied"] == 1
    assert orders["refused as duplicates"] == 1
    assert orders["dead-lettered by reason"] == {
        "customer_not_found": 1,
        "invalid_event": 1,
        "record_rejected": 1,
    }


def test_every_failure_is_seen() -> None:
    report = run(
        applied={
            # o0 applied twice; o2 never produced; o3 never applied and not dead-lettered;
            # event 1 applied twice (and its outcome_unknown letter), skipped event 3 applied
            "orders": [order("o0"), order("o0", "job-9"), order("o9")],
            "events": [event(0), event(1), event(1, "job-8"), event(3)],
        },
        refused={"orders": [], "events": [refusal(event(2, "job-7"), "Failed to send event")]},
        letters=[
            letter("orders", 2, "record_rejected", "job-4"),  # no refusal on record
            letter("orders", 4, "job_failed", "job-6"),  # a bad order with another reason
            letter("orders", 7, "invalid_event"),  # from no produced record
            letter("events", 0, "customer_not_found"),  # failed, yet applied
            letter("events", 1, "outcome_unknown"),
            letter("events", 2, "outcome_unknown"),
            letter("events", 3, "invalid_event"),  # a skipped event dead-lettered
            DeadLetterEntry(b"a", b"not the bytes", letter("events", 2, "outcome_unknown").headers),
        ],
        stats={"orders": {}, "events": {"double_applied": 1}},
    )
    assert {f.split(" = ")[0] for f in report.failures} == {
        "orders: applied records never produced",
        "orders: applied twice",
        "orders: lost (neither applied nor dead-lettered for a reason the API gave)",
        "orders: bad facts with the wrong reason",
        "orders: dlq records from no produced record",
        "events: applied twice",
        "events: double_applied (simulator)",
        "events: outcome_unknown applied twice",
        "events: dead-lettered as failed, yet applied",
        "events: skipped facts dead-lettered",
        "events: skipped facts applied",
        "events: dlq records whose key or value changed",
    }


def test_a_bad_fact_not_dead_lettered_and_an_order_dead_lettered_outcome_unknown_fail() -> None:
    letters = [e for e in LETTERS if e.headers["dlq.source.offset"] != "4"]
    # An order has its id: a lost answer is retried, never dead-lettered outcome_unknown.
    letters.append(letter("orders", 3, "outcome_unknown"))
    report = run(APPLIED, {"orders": REFUSED["orders"][:2]}, letters)
    assert {f.split(" = ")[0] for f in report.failures} == {
        "orders: bad facts not dead-lettered",
        "orders: lost (neither applied nor dead-lettered for a reason the API gave)",
    }


def test_a_line_acknowledged_without_its_offset_is_found_in_the_topic_by_its_bytes() -> None:
    held = topics_of(MANIFEST)
    # The delivery report left out where event 2 went; the topic holds it at offset 2.
    manifest = [{**m, "o": None} if (m["r"], m["f"]) == ("events", "2") else m for m in MANIFEST]
    report = run(APPLIED, REFUSED, LETTERS, manifest=manifest, held=held)
    assert report.failures == []
    assert report.numbers["events: acknowledged without an offset, found by content"] == 1
    assert report.numbers["events"]["outcome_unknown: not applied"] == 1


def test_a_line_the_topic_does_not_hold_or_holds_other_bytes_at_fails_the_run() -> None:
    held = topics_of(MANIFEST)
    held["events"] = [r for r in held["events"] if r.offset != 0]  # event 0: never written
    held["orders"][2].value = b"other bytes"  # order o2's offset holds something else
    manifest = [{**m, "o": None} if (m["r"], m["f"]) == ("events", "0") else m for m in MANIFEST]
    report = run(APPLIED, REFUSED, LETTERS, manifest=manifest, held=held)
    assert {f.split(" = ")[0] for f in report.failures} == {
        "events: acknowledged, not in the topic",
        "orders: manifest offsets holding other bytes",
        "events: applied records never produced",  # event 0 was applied: it came from nowhere
    }
