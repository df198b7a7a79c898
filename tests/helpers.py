"""Small helpers shared by the unit and integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

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
