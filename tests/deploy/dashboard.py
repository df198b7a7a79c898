"""The Grafana dashboard's queries, and how to turn them into plain PromQL."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.deploy.tools import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "customer-sync.json"

# Grafana's built-in variables, replaced by concrete values when a query is evaluated outside
# Grafana (the scrape interval in the tests is 1 s, so one minute holds plenty of samples).
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1m"}


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str

    def promql(self, job: str = ".+") -> str:
        expr = self.expr
        for name, value in BUILTINS.items():
            expr = expr.replace(name, value)
        expr = expr.replace('job=~"$job"', f'job=~"{job}"')
        assert "$" not in expr, f"unreplaced variable in {self}"
        return expr


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p["type"] != "row"]


def queries() -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels(load())
        for target in panel.get("targets", [])
    ]


def variables(expr: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", expr))
