"""Waiting for an :class:`asyncio.Event` with a timeout, without Python 3.11's ``wait_for`` trap.

On Python 3.11, ``asyncio.wait_for(event.wait(), timeout)`` swallows a
cancellation that arrives in the same loop iteration as the event is set
(CPython gh-86296, fixed in 3.12 by rebuilding ``wait_for`` on
``asyncio.timeout``). A worker loop built on it then survives ``cancel()``
and whoever awaits it waits forever. The chaos suite caught exactly that: the
commit loop went back to waiting on the pipeline's *drained* event, already
set by a job that ended while a commit waited for the Kafka thread, in the
very loop turn the shutdown cancelled it; the loop went on, the shutdown
waited for it, and ``consumer.close()`` was never reached. ``asyncio.timeout``
has no inner task to race with.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:  # noqa: ASYNC109
    """Wait until ``event`` is set (``True``) or ``timeout`` seconds pass (``False``)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
