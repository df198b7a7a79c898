"""Rendered manifests, built once per session with the real ``kubectl kustomize``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.tools import KUBERNETES, OVERLAYS, load_all, run, tool


class Rendered:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.docs = load_all(text)

    def one(self, kind: str) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] == kind]
        assert len(found) == 1, f"{self.name}: expected one {kind}, found {len(found)}"
        return found[0]


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    kubectl = tool("kubectl")
    built: dict[str, Rendered] = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", KUBERNETES / overlay])
        assert result.returncode == 0, f"kubectl kustomize {overlay} failed:\n{result.stderr}"
        built[overlay] = Rendered(overlay, result.stdout)
    return built
