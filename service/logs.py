"""structlog set-up: JSON lines to stdout (or pretty on a terminal), context from contextvars.

Per the structlog guide: one rich line per unit of work (a job, a commit),
context bound once (``job_id``, ``topic``, ``partition``, ``records``), no
per-record lines on the hot path.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Literal

import structlog


def configure_logging(level: str = "INFO", fmt: Literal["json", "console"] = "json") -> None:
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


_DIGITS = re.compile(r"\d+")


class FoldedLog:
    """Log lines that repeat, each distinct one at most once per ``every`` seconds.

    While a broker is down, librdkafka reports every failed connection attempt of every
    client, several times a second: hundreds of identical lines a minute that bury the
    one an operator needs. A line's identity ignores its digits ("after 0ms" and "after
    12ms" are one line); the next time it is let through it says how many repeats were
    folded into it. Memory is bounded: past ``MAX_DISTINCT`` lines the memory starts over.
    """

    MAX_DISTINCT = 1000

    def __init__(
        self,
        logger: structlog.typing.FilteringBoundLogger,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every = every
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}

    def __call__(self, severity: str, event: str, text: str, **fields: object) -> None:
        key = f"{event}\0{_DIGITS.sub('#', text)}"
        now = self._clock()
        last, folded = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._every:
            self._seen[key] = (last, folded + 1)
            return
        if len(self._seen) >= self.MAX_DISTINCT:
            self._seen.clear()
        self._seen[key] = (now, 0)
        if folded:
            fields["repeats_folded"] = folded
        getattr(self._logger, severity)(event, error=text, **fields)


class LibrdkafkaLog:
    """confluent-kafka's ``logger``: librdkafka's own lines as folded structlog events.

    Without it librdkafka writes ``%3|...`` lines straight to stderr, outside the JSON
    log. confluent-kafka calls ``log(level, format, *args)`` with :mod:`logging` levels,
    from whichever thread serves the client (``consume``, ``poll``).
    """

    def __init__(self, folded: FoldedLog) -> None:
        self._folded = folded

    def log(self, level: int, fmt: str, *args: object) -> None:
        text = fmt % args if args else fmt
        if level >= logging.ERROR:
            name = "error"
        elif level >= logging.WARNING:
            name = "warning"
        elif level >= logging.INFO:
            name = "info"
        else:
            name = "debug"
        self._folded(name, "librdkafka", text)
