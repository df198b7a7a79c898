"""The package's layout is its architecture: imports run one way, and modules stay small.

tools, contracts → delivery → config → gameball → shared, and the entry points
(cli, app) above them all. A module may import its own layer and the
layers below it, never above: the Gameball client must not pull the delivery
path in, and the delivery path must not reach for an operator's tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

LAYERS = {
    "shared": 0,
    "gameball": 1,
    "config": 2,
    "delivery": 3,
    "tools": 4,
    "contracts": 4,
    "entry": 5,
}
SHARED = {"errors", "waiting", "logs", "health", "metrics", "labels", "http"}
ENTRY = {"cli", "app"}

MAX_LINES = 600
"""A generous guard, not a rule to cut modules to: one idea per module is the rule (issue 25)."""
LONGER_FOR_A_REASON: dict[str, str] = {}


def _layer(module: str) -> str:
    """``service.delivery.jobs`` → ``delivery``; ``service.metrics`` → ``shared``."""
    parts = module.split(".")
    if parts == ["service"]:
        return "shared"
    top = parts[1]
    if top in SHARED:
        return "shared"
    if top in ENTRY:
        return "entry"
    if top == "config":
        return "config"
    return top


def _modules() -> dict[str, Path]:
    found = {}
    for path in SERVICE.rglob("*.py"):
        parts = path.relative_to(SERVICE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "service" or name.startswith("service.")}


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module an imported name is in (``service.labels.FlushReason`` → ``service.labels``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module: str) -> None:
    own = _layer(module)
    wrong = []
    for name in _imports(MODULES[module]):
        target = _resolve(name)
        if target is None or target == module:
            continue
        layer = _layer(target)
        if layer != own and LAYERS[layer] >= LAYERS[own]:
            wrong.append(f"{target} ({layer})")
    assert not wrong, f"{module} ({own}) imports upwards or sideways: {sorted(set(wrong))}"


def test_every_module_is_in_a_known_layer() -> None:
    assert {_layer(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_hold_one_idea(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    if module in LONGER_FOR_A_REASON:
        return
    assert lines <= MAX_LINES, f"{module} has {lines} lines: it probably holds two ideas"


def test_the_gameball_client_does_not_load_the_delivery_path() -> None:
    """Checked on the real import closure, not only on the source text."""
    import subprocess
    import sys

    code = (
        "import sys, service.gameball.client; "
        "print(sorted(m for m in sys.modules if m.startswith('service.delivery')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
