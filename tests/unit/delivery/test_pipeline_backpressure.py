"""Bounded memory through the pipeline: a full buffer pauses the consumer, half of it resumes."""

from __future__ import annotations

import asyncio

from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeApi, change, rig, running

TP = ("t", 0)
SMALL = {"MAX_BUFFERED_RECORDS": "10", "MAX_JOBS_IN_FLIGHT": "1", "BATCH_MAX_RECORDS": "4"}


async def test_a_full_buffer_pauses_the_consumer_and_a_drained_one_resumes_it() -> None:
    api = FakeApi()
    api.gate = asyncio.Event()  # the API takes nothing yet: the buffer fills
    r = rig(env=SMALL, api=api)
    r.consumer.fetch_max = 4
    for i in range(40):
        r.consumer.append(TP, change(f"c{i}"))
    async with running(r):
        await eventually(lambda: TP in r.consumer.paused)
        assert r.count("customer_sync_consumer_paused") == 1
        read, turns = r.pipeline.records_read, r.consumer.consumes
        await eventually(lambda: r.consumer.consumes > turns + 5)  # the fetch loop turns on
        assert r.pipeline.records_read == read < 40, "paused: nothing more is read"
        api.gate.set()
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 40})
        assert TP not in r.consumer.paused
    assert sorted(api.delivered) == sorted(f"c{i}" for i in range(40))
