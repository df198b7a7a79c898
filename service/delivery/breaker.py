"""The dead-letter breaker: stop, rather than empty a topic into the dead-letter topic.

A record that cannot be decoded is dead-lettered and the partition moves on (SPEC §3). That is
right for the odd bad record and wrong for a systematic cause: a bug of ours
(``decoder_fault``), a mapping that fits no record, an upstream producer writing garbage. Then
every record goes to the dead-letter topic, the lag stays low and the service looks healthy.

So the decode outcome of every consumed record is counted over a sliding window of the last
``DLQ_BREAKER_WINDOW`` records. When more than ``DLQ_BREAKER_RATIO`` of that window were
dead-lettered (counted against the full window, so the first few records of a run cannot trip
it) the breaker *opens*: the records after the one that tripped it are held, not decoded; the
consumer's partitions are paused (membership is kept); nothing more is committed; readiness
fails; and one log line names the most frequent reason (``decoder_fault`` for a bug of ours)
with an example. At most ``RATIO x WINDOW + 1`` records are dead-lettered before it opens.

After ``DLQ_BREAKER_COOLDOWN_SECONDS`` it lets records through again, keeping its window: the
next dead letter re-checks it and, if the window is still more than ``RATIO`` dead letters,
opens it again at once (one record per cooldown while the cause persists); good records slide
the old dead letters out. A restart starts with an empty window. ``DLQ_BREAKER_RATIO=1.0``
switches it off.

This module is the pure decision, on a clock it is given; ``ingest.py`` feeds it and holds the
records, ``pipeline.py`` pauses, fails readiness and stops committing while it is open.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from service.config import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Example:
    """Where a dead-lettered record came from, and why."""

    topic: str
    partition: int
    offset: int
    error: str

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.error[:300]}"


class DeadLetterBreaker:
    def __init__(
        self,
        ratio: float,
        window: int,
        cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ratio = ratio
        self.window = window
        self.cooldown = cooldown
        self.enabled = ratio < 1.0
        """``False`` at ratio 1.0: no window can hold more dead letters than records."""
        self._clock = clock
        self._limit = ratio * window
        self._seen = 0  # records counted since the start
        self._dead: deque[tuple[int, str]] = deque()  # (position, cause), in window
        self._reasons: Counter[str] = Counter()  # causes of the dead letters in the window
        self._examples: dict[str, Example] = {}  # the latest of each cause
        self._open_until: float | None = None
        self.trips = 0

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> DeadLetterBreaker:
        return cls(
            settings.dlq_breaker_ratio,
            settings.dlq_breaker_window,
            settings.dlq_breaker_cooldown_seconds,
            clock=clock,
        )

    def passed(self, count: int) -> None:
        """``count`` records were decoded into something other than a dead letter."""
        self._seen += count

    def dead_lettered(self, passed: int, reason: str, example: Example) -> bool:
        """``passed`` records went through, then this one was dead-lettered: whether it trips.

        Call it only while closed (:meth:`is_open`): when it returns ``True`` the breaker is
        open and the records after this one must be held.
        """
        if not self.enabled:
            return False
        self._seen += passed + 1
        dead, reasons = self._dead, self._reasons
        dead.append((self._seen, reason))
        reasons[reason] += 1
        self._examples[reason] = example
        oldest = self._seen - self.window
        while dead[0][0] <= oldest:
            reasons[dead.popleft()[1]] -= 1
        if len(dead) <= self._limit:
            return False
        self._trip()
        return True

    def is_open(self) -> bool:
        """Whether records are held now; once the cooldown is over it lets them through."""
        until = self._open_until
        if until is None:
            return False
        if self._clock() < until:
            return True
        self._open_until = None
        log.warning(
            "dead_letter_breaker_retrying",
            dead_lettered=len(self._dead),
            window=self.window,
            hint="records flow again; the next dead letter opens the breaker again while "
            "the window still holds more than DLQ_BREAKER_RATIO of them",
        )
        return False

    def _trip(self) -> None:
        self._open_until = self._clock() + self.cooldown
        self.trips += 1
        reason, count = self._reasons.most_common(1)[0]
        example = self._examples[reason]
        log.error(
            "dead_letter_breaker_open",
            message=f"{len(self._dead)} of the last {min(self._seen, self.window)} records "
            f"were dead-lettered (more than DLQ_BREAKER_RATIO={self.ratio} of "
            f"DLQ_BREAKER_WINDOW={self.window}), most of them {reason} ({count}), e.g. "
            f"{example}: the partitions are paused and nothing more is committed; records "
            f"flow again in {self.cooldown:g} s or on a restart (DLQ_BREAKER_RATIO=1.0 "
            "switches the breaker off)",
            top_reason=reason,
            example_topic=example.topic,
            example_partition=example.partition,
            example_offset=example.offset,
            example_error=example.error[:1000],
            reasons={r: n for r, n in self._reasons.items() if n},
        )
