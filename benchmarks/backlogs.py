"""Backlogs of customer changes for the quota backlog regime: who changes, and how often.

A backlog is ``changes`` Debezium events over customers drawn from ``customers``, either
uniformly or by a Zipf law of exponent ``zipf_s`` (the customer of rank ``k`` changes with a
probability proportional to ``1 / k**s``). Uniform is a snapshot or a bulk ``UPDATE`` that
touches rows evenly; Zipf is a shop whose busiest customers change far more often than the
rest. With s = 1.1, a million changes over 200,000 customers fall on 88,000 of them, the
busiest holding 13 % of the changes: the regime divides by the customers that changed.

Each customer's changes carry increasing versions (``custom.version``), as every workload of
the benchmark does.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from service.tools.samples import change_event

ZIPF_S = 1.1


@dataclass(frozen=True)
class Backlog:
    """Which customer each change is of, in topic order."""

    name: str
    customers: int  # drawn from
    zipf_s: float | None  # None: uniform
    choices: list[int]  # customer index of each change

    @classmethod
    def draw(
        cls, name: str, changes: int, customers: int, zipf_s: float | None, seed: int
    ) -> Backlog:
        rng = random.Random(seed)
        if zipf_s is None:
            choices = [rng.randrange(customers) for _ in range(changes)]
        else:
            weights = itertools.accumulate(1 / rank**zipf_s for rank in range(1, customers + 1))
            choices = rng.choices(range(customers), cum_weights=list(weights), k=changes)
        return cls(name, customers, zipf_s, choices)

    @property
    def changes(self) -> int:
        return len(self.choices)

    @property
    def distinct_customers(self) -> int:
        return len(set(self.choices))

    @property
    def busiest_changes(self) -> int:
        """How many of the changes are the busiest customer's."""
        return Counter(self.choices).most_common(1)[0][1]

    def events(self, prefix: str, seed: int) -> Iterator[tuple[bytes, bytes]]:
        """Key and value of every change, each customer's versions counting up from 1."""
        rng = random.Random(seed)
        versions: Counter[int] = Counter()
        for customer in self.choices:
            versions[customer] += 1
            key = f"{prefix}{customer}"
            yield key.encode(), change_event(key, versions[customer], rng)
