"""Summarise py-spy folded stacks: where the time goes, by own time and by our functions.

``python -m benchmarks.profile_top results/logs/backlog.profile.txt``
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 20) -> str:
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if "(service/" in f}:
            ours[frame] += count
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive, service/ only:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``consume (delivery/consumer.py)`` from py-spy's ``consume (/x/delivery/consumer.py:82)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = file.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else file
    return f"{name} ({tail})"


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(f"== {argument}")
        print(summarise(Path(argument)))
