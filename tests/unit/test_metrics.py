"""Metrics exposition: a batch-observed histogram reads exactly like prometheus-client's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.metrics import BatchHistogram

BUCKETS = (0.05, 0.1, 1, 5)
VALUES = [0.01, 0.05, 0.07, 0.1, 0.5, 1.0, 4.99, 5.0, 7.5, 300.0]


def test_a_batch_histogram_exposes_what_a_histogram_observed_one_by_one_would() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batched = BatchHistogram("latency_seconds", "doc", BUCKETS, ours)
    single = Histogram("latency_seconds", "doc", buckets=BUCKETS, registry=theirs)
    batched.observe_many(VALUES[:4])
    batched.observe_many(VALUES[4:])
    for value in VALUES:
        single.observe(value)

    def samples(registry: CollectorRegistry) -> list[str]:
        return [
            line
            for line in generate_latest(registry).decode().splitlines()
            if line.startswith("latency_seconds") and "_created" not in line
        ]

    assert samples(ours) == samples(theirs)
    assert ours.get_sample_value("latency_seconds_count") == len(VALUES)


def test_clock_skew_counts_as_zero_latency_not_negative() -> None:
    registry = CollectorRegistry()
    histogram = BatchHistogram("skew_seconds", "doc", BUCKETS, registry)
    histogram.observe_many([-3.0])
    assert registry.get_sample_value("skew_seconds_bucket", {"le": "0.05"}) == 1
    assert registry.get_sample_value("skew_seconds_sum") == 0.0
