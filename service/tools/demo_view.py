"""The demo's screens: the live view and the closing summary, read from the pipeline's registry.

They show the very numbers ``/metrics`` serves, except lag: the demo knows how
many records the broker acknowledged, so lag is produced - consumed rather
than a number computed from high watermarks (which Tansu under-reports).

Per operation (one route each), the live view and the summary read
``records_consumed_total`` of the route's topics, ``operation_records_total`` (what its jobs
settled) and ``records_already_applied_total``; the summary sets beside them what the API
simulator itself applied, refused as duplicates and applied twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import Group
from rich.table import Table

from service.labels import OUTCOMES
from service.metrics import Metrics


@dataclass(frozen=True, slots=True)
class OperationCounts:
    """One operation's records: read from its topics, and settled by its jobs."""

    consumed: float
    delivered: float  # reported successful by a job, already applied ones included
    dead_lettered: float  # given up after a job: rejected, customer not found, outcome unknown
    already_applied: float  # keyed items the API refused as duplicates of an id it has

    @property
    def without_job(self) -> float:
        """Consumed and not (yet) settled by a job: coalesced, skipped, malformed, or pending."""
        return self.consumed - self.delivered - self.dead_lettered


class Numbers:
    """Reads the pipeline's registry: the very numbers /metrics serves."""

    def __init__(self, metrics: Metrics) -> None:
        self._registry = metrics.registry
        self._history: deque[tuple[float, float]] = deque(maxlen=20)

    def value(self, name: str, **labels: str) -> float:
        return self._registry.get_sample_value("customer_sync_" + name, labels) or 0.0

    def by_label(self, name: str, label: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for family in self._registry.collect():
            for sample in family.samples:
                if sample.name == "customer_sync_" + name and sample.value:
                    found[sample.labels[label]] = found.get(sample.labels[label], 0) + sample.value
        return found

    def consumed(self) -> float:
        return sum(self.by_label("records_consumed_total", "topic").values())

    def outcomes(self) -> dict[str, float]:
        return {o: self.value("records_total", outcome=o) for o in OUTCOMES}

    def operation(self, operation: str, topics: tuple[str, ...]) -> OperationCounts:
        consumed = self.by_label("records_consumed_total", "topic")
        return OperationCounts(
            consumed=sum(consumed.get(topic, 0.0) for topic in topics),
            delivered=self.value(
                "operation_records_total", operation=operation, outcome="succeeded"
            ),
            dead_lettered=self.value(
                "operation_records_total", operation=operation, outcome="dead_lettered"
            ),
            already_applied=self.value("records_already_applied_total", operation=operation),
        )

    def throughput(self) -> float:
        """Records settled per second over the last few seconds."""
        now, settled = time.monotonic(), sum(self.outcomes().values())
        self._history.append((now, settled))
        first_time, first = self._history[0]
        return (settled - first) / (now - first_time) if now > first_time else 0.0


def live_view(
    numbers: Numbers,
    produced: int,
    producing: bool,
    metrics_url: str,
    started: float,
    operations: Mapping[str, tuple[str, ...]] | None = None,
) -> Group:
    """The tables the demo refreshes four times a second; ``operations``: each one's topics,
    for a row per operation (none: the totals only, as ``make demo-cdc`` shows them)."""
    consumed = numbers.consumed()
    outcomes = numbers.outcomes()
    caption = f"metrics: {metrics_url}"
    table = Table(
        title=f"customer-sync demo · {time.monotonic() - started:,.1f} s",
        caption=None if operations else caption,
        show_header=False,
        min_width=56,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    still = "  (producing…)" if producing else ""
    table.add_row("produced (acknowledged)", f"{produced:,}{still}")
    table.add_row("consumed", f"{consumed:,.0f}")
    table.add_row("lag (produced - consumed)", f"{max(0, produced - consumed):,.0f}")
    table.add_row("buffered", f"{numbers.value('buffered_records'):,.0f}")
    table.add_row("jobs in flight", f"{numbers.value('jobs_in_flight'):,.0f}")
    table.add_row("delivered (succeeded)", f"{outcomes['succeeded']:,.0f}")
    table.add_row("coalesced (superseded)", f"{outcomes['coalesced']:,.0f}")
    table.add_row("skipped (tombstones)", f"{outcomes['skipped']:,.0f}")
    table.add_row("dead-lettered", f"{outcomes['dead_lettered']:,.0f}")
    for reason, count in sorted(numbers.by_label("dead_letter_records_total", "reason").items()):
        table.add_row(f"  {reason}", f"{count:,.0f}")
    table.add_row("throughput", f"{numbers.throughput():,.0f} records/s")
    if not operations:
        return Group(table)
    per_operation = Table(caption=caption, min_width=56)
    per_operation.add_column("operation", style="bold")
    for heading in ("consumed", "delivered", "dead-lettered", "already applied"):
        per_operation.add_column(heading, justify="right")
    for operation, topics in operations.items():
        counts = numbers.operation(operation, topics)
        per_operation.add_row(
            operation,
            *(
                f"{n:,.0f}"
                for n in (
                    counts.consumed,
                    counts.delivered,
                    counts.dead_lettered,
                    counts.already_applied,
                )
            ),
        )
    return Group(table, per_operation)


def summary_table(numbers: Numbers, produced: int, seconds: float) -> tuple[Table, bool]:
    """The closing table, and whether every consumed record ended in exactly one outcome."""
    consumed = numbers.consumed()
    outcomes = numbers.outcomes()
    settled = sum(outcomes.values())
    balanced = consumed == settled
    table = Table(title="summary", show_header=True, min_width=56)
    table.add_column("records")
    table.add_column("count", justify="right")
    table.add_row("produced", f"{produced:,}")
    extra = consumed - produced
    note = f"  (+{extra:,.0f} produced by others, e.g. dlq replay)" if extra > 0 else ""
    table.add_row("consumed", f"{consumed:,.0f}{note}", end_section=True)
    table.add_row("  succeeded", f"{outcomes['succeeded']:,.0f}")
    table.add_row("  dead-lettered", f"{outcomes['dead_lettered']:,.0f}")
    for reason, count in sorted(numbers.by_label("dead_letter_records_total", "reason").items()):
        table.add_row(f"    {reason}", f"{count:,.0f}")
    table.add_row("  skipped", f"{outcomes['skipped']:,.0f}")
    table.add_row("  coalesced", f"{outcomes['coalesced']:,.0f}", end_section=True)
    mark = "✓ reconciles" if balanced else "✗ does not reconcile"
    table.add_row("  = sum of outcomes", f"{settled:,.0f}  {mark}", end_section=True)
    jobs = numbers.by_label("jobs_finished_total", "status")
    table.add_row("jobs submitted", f"{numbers.value('jobs_submitted_total'):,.0f}")
    table.add_row(
        "jobs finished", ", ".join(f"{k} {v:,.0f}" for k, v in sorted(jobs.items())) or "0"
    )
    table.add_row("elapsed", f"{seconds:,.1f} s ({settled / max(seconds, 0.001):,.0f} records/s)")
    return table, balanced


def operations_table(
    numbers: Numbers,
    operations: Mapping[str, tuple[str, ...]],
    produced: Mapping[str, int],
    api: Mapping[str, Mapping[str, int]],
) -> tuple[Table, bool]:
    """The closing table per operation, the pipeline's numbers beside the API's own, and
    whether they agree: every record a job reported delivered was applied by the API exactly
    once (a keyed item the API already had counts as delivered, not applied), none twice.

    ``api``: the simulator's counts per operation (``/_sim/stats`` ``operations``; customers
    only ``applied``, for an upsert has no duplicates).
    """
    table = Table(
        title="per operation",
        caption="settled without a job: coalesced, skipped or malformed",
        show_header=True,
        min_width=56,
    )
    table.add_column("records")
    for operation in operations:
        table.add_column(operation, justify="right")
    counts = {op: numbers.operation(op, topics) for op, topics in operations.items()}

    def api_count(operation: str, name: str) -> str:
        value = api.get(operation, {}).get(name)
        return "—" if value is None else f"{value:,}"

    rows: list[tuple[str, list[str], bool]] = [
        ("produced", [f"{produced.get(op, 0):,}" for op in operations], False),
        ("consumed", [f"{c.consumed:,.0f}" for c in counts.values()], True),
        ("  delivered", [f"{c.delivered:,.0f}" for c in counts.values()], False),
        ("    already applied", [f"{c.already_applied:,.0f}" for c in counts.values()], False),
        ("  dead-lettered by a job", [f"{c.dead_lettered:,.0f}" for c in counts.values()], False),
        ("  settled without a job", [f"{c.without_job:,.0f}" for c in counts.values()], True),
        ("API applied", [api_count(op, "applied") for op in operations], False),
        ("API refused as duplicate", [api_count(op, "duplicates") for op in operations], False),
        (
            "API: customer not found",
            [api_count(op, "customer_not_found") for op in operations],
            False,
        ),
        ("API applied twice", [api_count(op, "double_applied") for op in operations], True),
    ]
    for label, cells, section in rows:
        table.add_row(label, *cells, end_section=section)
    agree = {op: _api_agrees(counts[op], api.get(op, {})) for op in operations}
    table.add_row("API agrees", *("✓" if agree[op] else "✗" for op in operations))
    return table, all(agree.values())


def _api_agrees(counts: OperationCounts, api: Mapping[str, int]) -> bool:
    applied = api.get("applied", 0)
    return (
        counts.delivered - counts.already_applied == applied and api.get("double_applied", 0) == 0
    )
