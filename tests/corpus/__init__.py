"""Real-world-shaped bad input and its expected outcome (``manifest.json``).

Each case is a file under ``cases/`` or, when too large for git, built by
:mod:`tests.corpus.generate`. ``expect`` is ``customer`` (with the id the
API must receive), ``skip``, or ``dead_letter`` with its ``dlq.reason``.
A case with ``known_bug`` describes a defect not fixed yet: its test is a
strict xfail, so the fix makes the suite say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.corpus.generate import GENERATORS

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    name: str
    expect: dict[str, str]
    why: str
    known_bug: str | None
    source: str

    def value(self) -> bytes:
        if self.source in GENERATORS:
            return GENERATORS[self.source]()
        return (HERE / self.source).read_bytes()


def load() -> list[Case]:
    raw: dict[str, Any] = json.loads((HERE / "manifest.json").read_text())
    return [
        Case(c["case"], c["expect"], c["why"], c.get("known_bug"), c.get("file") or c["generate"])
        for c in raw["cases"]
    ]
