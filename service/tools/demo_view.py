"""The demo's screens: the live view and the closing summary, read from the pipeline's registry.

They show the very numbers ``/metrics`` serves, except lag: the demo knows how
many records the broker acknowledged, so lag is produced - consumed rather
than a number computed from high watermarks (which Tansu under-reports).
"""

from __future__ import annotations

import time
from collections import deque

from rich.table import Table

from service.labels import OUTCOMES
from service.metrics import Metrics


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

    def throughput(self) -> float:
        """Records settled per second over the last few seconds."""
        now, settled = time.monotonic(), sum(self.outcomes().values())
        self._history.append((now, settled))
        first_time, first = self._history[0]
        return (settled - first) / (now - first_time) if now > first_time else 0.0


def live_view(
    numbers: Numbers, produced: int, producing: bool, metrics_url: str, started: float
) -> Table:
    """The table the demo refreshes four times a second."""
    consumed = numbers.consumed()
    outcomes = numbers.outcomes()
    table = Table(
        title=f"customer-sync demo · {time.monotonic() - started:,.1f} s",
        caption=f"metrics: {metrics_url}",
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
    return table


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
