"""Prometheus metrics (SPEC §8): exactly these names and labels.

Everything is registered on a registry of its own so several pipelines can
live in one process (tests) without colliding. Label children that the hot
path touches are resolved once here: the per-record path does an attribute
load and an ``inc``, never a label lookup.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import Histogram as _Histogram

from service import __version__
from service.batching import FlushReason
from service.records import DeadLetterReason

PREFIX = "customer_sync_"

OUTCOMES = ("succeeded", "dead_lettered", "skipped", "coalesced")
JOB_STATUSES = ("completed", "failed", "stopped", "timed_out")
API_OPERATIONS = ("submit", "status", "stop")

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300, 900)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 750, 1000)


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
        self.dead_letter_records = Counter(
            PREFIX + "dead_letter_records_total",
            "Records written to the dead-letter topic (acknowledged)",
            ["reason"],
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
        self.end_to_end_latency = Histogram(
            PREFIX + "end_to_end_latency_seconds",
            "From the record's Kafka timestamp to its settlement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            PREFIX + "build_info", "Always 1; the version is the label", ["version"], registry=r
        )
        self.build_info.labels(version=__version__).set(1)

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
        self.consumer_paused.set(0)
