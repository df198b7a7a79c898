"""Render the PrometheusRule manifest from ``deploy/prometheus/alerts.yml``.

The plain rules file is the single source of truth (promtool reads it, its
unit tests exercise it); the Prometheus Operator needs the same groups wrapped
in a ``PrometheusRule``. ``python -m tests.deploy.rules`` rewrites the manifest;
``test_alerts.py`` fails when the committed manifest is not exactly this output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
MANIFEST = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by `python -m tests.deploy.rules`: edit that file,
# then regenerate. A test fails when the two differ.
"""


class _Literal(str):
    """A string dumped as a YAML block scalar, so multi-line PromQL stays readable."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def _blocks(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _blocks(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_blocks(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return _Literal(node)
    return node


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return groups


def render() -> str:
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "customer-sync"},
        "spec": {"groups": rule_groups()},
    }
    body = yaml.dump(_blocks(manifest), Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + body


if __name__ == "__main__":
    MANIFEST.write_text(render())
    print(f"wrote {MANIFEST.relative_to(ROOT)}")
