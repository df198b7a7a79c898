"""The Grafana dashboard, statically: well formed, every query on the service's own metrics.

Whether each query parses and returns data is proven against a real
Prometheus in ``tests/integration/test_observability.py``.
"""

from __future__ import annotations

from tests.deploy.dashboard import load, panels, queries, variables
from tests.deploy.tools import exposed_metric_names, metric_names

# What the issue asks the dashboard to show, as the metrics that show it.
REQUIRED = {
    "throughput in": "customer_sync_records_consumed_total",
    "outcomes": "customer_sync_records_total",
    "flush reasons": "customer_sync_batches_flushed_total",
    "batch sizes": "customer_sync_batch_records_bucket",
    "jobs in flight": "customer_sync_jobs_in_flight",
    "jobs by status": "customer_sync_jobs_finished_total",
    "jobs submitted": "customer_sync_jobs_submitted_total",
    "job duration": "customer_sync_job_duration_seconds_bucket",
    "end-to-end latency": "customer_sync_end_to_end_latency_seconds_bucket",
    "API requests and codes": "customer_sync_api_requests_total",
    "API latency": "customer_sync_api_request_duration_seconds_bucket",
    "dead letters by reason": "customer_sync_dead_letter_records_total",
    "lag by partition": "customer_sync_consumer_lag_records",
    "buffered records": "customer_sync_buffered_records",
    "paused state": "customer_sync_consumer_paused",
    "build info": "customer_sync_build_info",
}


def test_dashboard_is_well_formed() -> None:
    dashboard = load()
    assert dashboard["uid"] == "customer-sync"
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_query_uses_only_the_service_metrics_and_defined_variables() -> None:
    exposed = exposed_metric_names()
    defined = {v["name"] for v in load()["templating"]["list"]}
    for query in queries():
        used = metric_names(query.expr)
        assert used, f"{query} uses no customer_sync metric"
        assert used <= exposed, (query.panel, used - exposed)
        for variable in variables(query.expr):
            assert variable in defined or variable.startswith("__"), (query.panel, variable)
        assert 'job=~"$job"' in query.expr, f"{query.panel}: every query follows the job picker"


def test_dashboard_shows_everything_operators_need() -> None:
    used = set().union(*(metric_names(q.expr) for q in queries()))
    missing = {what: metric for what, metric in REQUIRED.items() if metric not in used}
    assert not missing
    # Every metric family of SPEC §8 appears somewhere.
    families = {
        name.removesuffix("_total")
        .removesuffix("_bucket")
        .removesuffix("_sum")
        .removesuffix("_count")
        for name in exposed_metric_names()
    }
    shown = {
        name.removesuffix("_total")
        .removesuffix("_bucket")
        .removesuffix("_sum")
        .removesuffix("_count")
        for name in used
    }
    assert families <= shown, families - shown
