"""Where the deployment checkers live, and how a test gets hold of one.

``make tools`` (a dependency of ``make test``) installs them: hadolint and
kubernetes-validate into the project's virtualenv, checkov into
``.venv-tools`` (its own virtualenv), promtool and prometheus from Debian's
``prometheus`` package; kubectl (with kustomize) is expected on the machine.
A missing tool FAILS the test that needs it: a check that silently does not
run is worse than none. Set ``CUSTOMER_SYNC_ALLOW_MISSING_TOOLS=1`` to skip
instead (for a quick run on a laptop without them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("base", "production")

_VENV_BIN = Path(sys.executable).parent
_CANDIDATES: dict[str, tuple[Path, ...]] = {
    "hadolint": (_VENV_BIN / "hadolint",),
    "kubernetes-validate": (_VENV_BIN / "kubernetes-validate",),
    "checkov": (ROOT / ".venv-tools" / "bin" / "checkov",),
    "promtool": (Path("/usr/bin/promtool"),),
    "prometheus": (Path("/usr/bin/prometheus"),),
    "kubectl": (Path("/usr/bin/kubectl"),),
}


def tool(name: str) -> Path:
    """The path of a checker, or a failed (or, if allowed, skipped) test saying how to get it."""
    for candidate in _CANDIDATES.get(name, ()):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    message = f"{name} is not installed: run `make tools`"
    if os.environ.get("CUSTOMER_SYNC_ALLOW_MISSING_TOOLS") == "1":
        pytest.skip(message)
    pytest.fail(message)


def run(
    args: Iterable[str | Path], *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def version(name: str, *flag: str) -> str:
    """First line of ``tool --version`` (reported in the test output, for the record)."""
    result = run([tool(name), *(flag or ("--version",))])
    return (result.stdout or result.stderr).strip().splitlines()[0]


_METRIC = re.compile(r"\bcustomer_sync_[a-z_]+")


def metric_names(promql: str) -> set[str]:
    return set(_METRIC.findall(promql))


def exposed_metric_names() -> set[str]:
    """Every sample name the service can expose (SPEC §8), from its own registry."""
    from service.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
