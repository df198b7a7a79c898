"""``wait_event``: a worker waiting on an event must die when it is cancelled."""

from __future__ import annotations

import asyncio

from service.waiting import wait_event


async def _worker(event: asyncio.Event, rounds: list[int]) -> None:
    while True:  # the shape of the pipeline's commit and dispatch loops
        await wait_event(event, 1.0)
        event.clear()
        rounds.append(1)


async def test_a_cancel_arriving_with_the_event_still_ends_the_worker() -> None:
    # On Python 3.11, asyncio.wait_for returns normally here and the worker runs
    # forever: the shutdown hang the chaos suite found (see service/waiting.py).
    event = asyncio.Event()
    rounds: list[int] = []
    worker = asyncio.create_task(_worker(event, rounds))
    await asyncio.sleep(0)  # the worker is now waiting
    event.set()
    worker.cancel()
    done, _ = await asyncio.wait([worker], timeout=2.0)
    assert worker in done
    assert worker.cancelled()
    assert rounds == []


async def test_returns_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    assert await wait_event(event, None) is True
