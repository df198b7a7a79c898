"""One line of ``customer-sync check``: a mark, what was checked, and what was found."""

from __future__ import annotations

from dataclasses import dataclass

OK, FAIL, INFO, WARN = "✓", "✗", "·", "!"


@dataclass(frozen=True, slots=True)
class Result:
    mark: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.mark} {self.name}: {self.detail}"
