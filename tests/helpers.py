"""Small helpers shared by the unit and integration tests."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TypeVar

from service.delivery.ledger import encode
from service.delivery.offsets import Mark

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy and return it; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Await a condition that some other task makes true; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        # The condition is state another task (or process) changes: nothing to await on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def marks_whose_full_ledger_is(length: int) -> bytes:
    """Settled marks whose full ledger (no jobs) is exactly ``length`` characters long."""
    rng = random.Random(4)
    outcomes = (Mark.SUCCEEDED, Mark.COALESCED, Mark.SKIPPED, Mark.DEAD_LETTERED)
    marks = bytearray()
    while True:
        marks.extend(rng.choices(outcomes, k=8))
        text, _ = encode(len(marks), {}, bytes(marks), limit=1 << 20)
        if len(text) == length:
            return bytes(marks)
        assert len(text) < length, "stepped over the length; change the seed"
