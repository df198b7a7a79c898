"""Small helpers shared by the unit and integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Await a condition that some other task makes true; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        # The condition is state another task (or process) changes: nothing to await on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
