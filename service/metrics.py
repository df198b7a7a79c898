"""Prometheus metrics (SPEC §8): exactly these names and labels.

Everything is registered on a registry of its own so several pipelines can
live in one process (tests) without colliding. Label children that the hot
path touches are resolved once here: the per-record path does an attribute
load and an ``inc``, never a label lookup.

The one per-record metric, ``end_to_end_latency_seconds``, is a
:class:`BatchHistogram`: records settle a batch at a time, and
``Histogram.observe`` takes a lock and walks the buckets for every value (5%
of the service's time at full speed, profiled).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import Histogram as _Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service import __version__
from service.labels import (
    API_OPERATIONS,
    JOB_OPERATIONS,
    JOB_RESOLUTIONS,
    JOB_STATUSES,
    OUTCOMES,
    DeadLetterReason,
    FlushReason,
)

PREFIX = "customer_sync_"


_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 750, 1000)
_METADATA_BUCKETS = (64, 128, 256, 512, 1024, 2048, 3072, 4096, 8192, 16384)
_BUDGET_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PER_JOB_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 20, 50)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records_consumed = Counter(
            PREFIX + "records_consumed_total", "Records read from Kafka", ["topic"], registry=r
        )
        self.records = Counter(
            PREFIX + "records_total",
            "Consumed records by how they ended; every record ends in exactly one outcome",
            ["outcome"],
            registry=r,
        )
        self.batches_flushed = Counter(
            PREFIX + "batches_flushed_total",
            "Batches taken from the buffer",
            ["reason"],
            registry=r,
        )
        self.batch_records = Histogram(
            PREFIX + "batch_records",
            "Records per flushed batch",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.jobs_submitted = Counter(
            PREFIX + "jobs_submitted_total", "Batch jobs the API accepted", registry=r
        )
        self.jobs_finished = Counter(
            PREFIX + "jobs_finished_total", "Jobs by how they ended", ["status"], registry=r
        )
        self.jobs_in_flight = Gauge(
            PREFIX + "jobs_in_flight", "Jobs submitted and not yet terminal", registry=r
        )
        self.job_duration = Histogram(
            PREFIX + "job_duration_seconds",
            "From submission to terminal status",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            PREFIX + "api_requests_total",
            "Requests to the Gameball API by operation and HTTP status ('error' for no answer)",
            ["operation", "code"],
            registry=r,
        )
        self.api_request_duration = Histogram(
            PREFIX + "api_request_duration_seconds",
            "Gameball API request duration",
            ["operation"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.api_budget_wait = Histogram(
            PREFIX + "api_budget_wait_seconds",
            "Time a request waited for the API key's request budget before it was sent",
            ["operation"],
            buckets=_BUDGET_BUCKETS,
            registry=r,
        )
        self.api_budget_rate = Gauge(
            PREFIX + "api_budget_requests_per_second",
            "Requests per second this instance may send: its share of the key's limits",
            registry=r,
        )
        self.api_requests_per_job = Histogram(
            PREFIX + "api_requests_per_job",
            "Requests a finished job cost, by operation (retries included)",
            ["operation"],
            buckets=_PER_JOB_BUCKETS,
            registry=r,
        )
        self.dead_letter_records = Counter(
            PREFIX + "dead_letter_records_total",
            "Records written to the dead-letter topic (acknowledged)",
            ["reason"],
            registry=r,
        )
        self.route_info = Gauge(
            PREFIX + "route_info",
            "Always 1; a route this instance serves (ROUTES_FILE) and its operation",
            ["route", "operation"],
            registry=r,
        )
        self.operation_records = Counter(
            PREFIX + "operation_records_total",
            "Records each operation's jobs settled, as their job ended: succeeded (already "
            "applied ones included) or given up to the dead-letter topic",
            ["operation", "outcome"],
            registry=r,
        )
        self.operation_jobs = Counter(
            PREFIX + "operation_jobs_total",
            "Jobs submitted, by operation",
            ["operation"],
            registry=r,
        )
        self.records_already_applied = Counter(
            PREFIX + "records_already_applied_total",
            "Orders, cashback and redemptions the API refused as duplicates of an id it "
            "already has: delivered before (counted as succeeded too)",
            ["operation"],
            registry=r,
        )
        for keyed in ("orders", "cashback", "redeem"):  # a series from the start, at 0
            self.records_already_applied.labels(operation=keyed)
        self.decoder_faults = Counter(
            PREFIX + "decoder_faults_total",
            "Records the decoder failed on with an internal fault (a bug, not bad input): "
            "dead-lettered as invalid_event with a dlq.error starting decoder_fault, each logged",
            registry=r,
        )
        self.dead_letter_breaker_open = Gauge(
            PREFIX + "dead_letter_breaker_open",
            "1 while the dead-letter breaker holds the consumer: more than DLQ_BREAKER_RATIO of "
            "the last DLQ_BREAKER_WINDOW records were dead-lettered",
            registry=r,
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag_records",
            "High watermark minus committed offset",
            ["topic", "partition"],
            registry=r,
        )
        self.buffered_records = Gauge(
            PREFIX + "buffered_records", "Records consumed and not yet submitted", registry=r
        )
        self.consumer_paused = Gauge(
            PREFIX + "consumer_paused", "1 while backpressure pauses the consumer", registry=r
        )
        self.buffered_bytes = Gauge(
            PREFIX + "buffered_bytes",
            "Estimated memory held by buffered records (the bound COMPACTION_MAX_BYTES keeps)",
            registry=r,
        )
        self.compaction_active = Gauge(
            PREFIX + "compaction_active",
            "1 while a backlog is read ahead and compacted (quota-bound)",
            registry=r,
        )
        self.end_to_end_latency = BatchHistogram(
            PREFIX + "end_to_end_latency_seconds",
            "From the record's Kafka timestamp to its settlement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.records_inherited = Counter(
            PREFIX + "records_inherited_total",
            "Records re-read after a change of owner that the previous owner's commit showed "
            "settled: counted under their outcome (also in records_total), not redone",
            ["outcome"],
            registry=r,
        )
        self.jobs_inherited = Counter(
            PREFIX + "jobs_inherited_total",
            "Jobs of a previous owner resolved before their partitions' records were redone, "
            "by how they ended (unresolved: not terminal in time)",
            ["resolution"],
            registry=r,
        )
        self.commit_metadata_bytes = Histogram(
            PREFIX + "commit_metadata_bytes",
            "Size of each partition's commit metadata (the ledger of its window)",
            buckets=_METADATA_BUCKETS,
            registry=r,
        )
        self.commit_metadata_degraded = Counter(
            PREFIX + "commit_metadata_degraded_total",
            "Partition commits whose ledger did not fit COMMIT_METADATA_MAX_BYTES: "
            "jobs (marks left out) or none (nothing carried)",
            ["level"],
            registry=r,
        )
        self.build_info = Gauge(
            PREFIX + "build_info", "Always 1; the version is the label", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)
        self.api_info = Gauge(
            PREFIX + "api_info",
            "Always 1; how the service speaks to the Gameball API: the job dialect in use "
            "(`undecided` under GAMEBALL_JOB_API=auto until a job route answered) and the "
            "API version",
            ["job_api", "api_version"],
            registry=r,
        )
        self.customer_info = Gauge(
            PREFIX + "customer_info",
            "Always 1; the customer item the service sends (GAMEBALL_CUSTOMER_SHAPE) and how "
            "tags travel (TAGS_SYNC)",
            ["customer_shape", "tags_sync"],
            registry=r,
        )

        # Resolved once; the hot path uses these.
        self.succeeded = self.records.labels(outcome="succeeded")
        self.dead_lettered = self.records.labels(outcome="dead_lettered")
        self.skipped = self.records.labels(outcome="skipped")
        self.coalesced = self.records.labels(outcome="coalesced")
        self.flushed = {
            reason: self.batches_flushed.labels(reason=reason) for reason in FlushReason
        }
        self.finished = {
            status: self.jobs_finished.labels(status=status) for status in JOB_STATUSES
        }
        self.dead_letter_by_reason = {
            reason: self.dead_letter_records.labels(reason=reason) for reason in DeadLetterReason
        }
        self.api_duration: dict[str, _Histogram] = {
            op: self.api_request_duration.labels(operation=op) for op in API_OPERATIONS
        }
        self.budget_wait: dict[str, _Histogram] = {
            op: self.api_budget_wait.labels(operation=op) for op in API_OPERATIONS
        }
        self.requests_per_job: dict[str, _Histogram] = {
            op: self.api_requests_per_job.labels(operation=op) for op in JOB_OPERATIONS
        }
        self.consumer_paused.set(0)
        self.compaction_active.set(0)
        self.inherited = {
            outcome: self.records_inherited.labels(outcome=outcome) for outcome in OUTCOMES
        }
        self.outcome = {outcome: self.records.labels(outcome=outcome) for outcome in OUTCOMES}
        for resolution in JOB_RESOLUTIONS:
            self.jobs_inherited.labels(resolution=resolution)
        for level in ("jobs", "none"):
            self.commit_metadata_degraded.labels(level=level)


class BatchHistogram(Collector):
    """An unlabelled histogram observed many values at a time; exposed like any other.

    Only the pipeline's event loop observes, and the metrics endpoint is
    served on that same loop, so the counts need no lock.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = [*sorted(float(b) for b in buckets), math.inf]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        """Count each value in the first bucket whose bound is at or above it (negatives as 0)."""
        bounds, counts, total = self._bounds, self._counts, 0.0
        for value in values:
            if value < 0.0:
                value = 0.0
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sum += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=[])
        cumulative, buckets = 0, []
        for bound, count in zip(self._bounds, self._counts, strict=True):
            cumulative += count
            le = "+Inf" if math.isinf(bound) else repr(bound)  # as prometheus_client spells it
            buckets.append((le, float(cumulative)))
        family.add_metric([], buckets, self._sum)
        yield family
