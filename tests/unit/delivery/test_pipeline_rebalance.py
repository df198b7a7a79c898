"""Partitions leaving and coming back, through the consumer's rebalance callbacks.

The fake consumer runs the callbacks inside ``consume`` on the Kafka thread,
as librdkafka does; the pipeline's handlers hand them to the loop and wait.
"""

from __future__ import annotations

import asyncio

from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeApi, change, rig, running

TP = ("t", 0)


async def test_a_revoked_partition_commits_what_is_settled_in_the_callback() -> None:
    api = FakeApi()
    api.status_gate = asyncio.Event()  # the jobs run on until the commits fail
    r = rig(api=api)
    r.consumer.append(TP, change("a"))
    r.consumer.append(TP, change("b"))
    async with running(r):
        await eventually(lambda: r.api.delivered == ["a", "b"])  # written ahead, submitted
        r.consumer.async_commits_fail = True  # from now on only the revoke's commit can land
        api.status_gate.set()
        await eventually(lambda: r.count("customer_sync_records_total", outcome="succeeded") == 2)
        assert r.consumer.committed_offsets() == {TP: 0}
        r.consumer.rebalance("revoke", [TP])
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 2})
        # Assigned back (or to the next owner): it reads on from the commit, redoing nothing.
        r.consumer.async_commits_fail = False
        r.consumer.append(TP, change("c"))
        r.consumer.rebalance("assign", [TP])
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 3})
    assert r.api.delivered == ["a", "b", "c"]


async def test_a_lost_partitions_jobs_are_stopped_and_nothing_of_it_is_committed() -> None:
    api = FakeApi()
    api.status_gate = asyncio.Event()  # the job runs on: its status is not known yet
    r = rig(api=api)
    r.consumer.append(TP, change("a"))
    async with running(r):
        await eventually(lambda: bool(api.jobs))
        r.consumer.rebalance("lose", [TP])
        # Someone else owns it now and redoes "a": our job must not go on applying it.
        await eventually(lambda: api.stopped == ["job-1"])
        api.status_gate.set()
        await eventually(lambda: r.count("customer_sync_records_total", outcome="succeeded") == 1)
        turns = r.consumer.consumes
        await eventually(lambda: r.consumer.consumes > turns + 5)
    # Ownership was already gone: nothing past what was committed before is committed.
    assert all(commit[TP][0] == 0 for commit in r.consumer.commits if TP in commit)
