"""The fetch loop shares the event loop fairly with the jobs (no broker needed)."""

from __future__ import annotations

import asyncio

from tests.helpers import eventually
from tests.unit.delivery.fakes import change, rig, running

TP = ("t", 0)


async def test_a_big_fetch_does_not_hold_the_loop_while_it_is_decoded() -> None:
    # Jobs' HTTP answers are served by the same loop: a whole fetch decoded in
    # one go starved them (status requests took 150-220 ms under a backlog).
    r = rig()
    for offset in range(2000):
        r.consumer.append(TP, change(f"c{offset}"))
    seen: list[float] = []

    def consumed() -> float:
        return r.count("customer_sync_records_consumed_total", topic="t")

    async def other_task() -> None:
        while consumed() < 2000:
            seen.append(consumed())
            await asyncio.sleep(0)

    async with running(r):
        watcher = asyncio.create_task(other_task())
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 2000})
        await watcher
    assert r.pipeline.records_read == 2000
    assert any(0 < count < 2000 for count in seen), "nothing ran mid-fetch"
