"""The key's request budget follows the partitions an instance owns (no broker needed).

Partitions arrive and leave through the fake consumer's rebalance callbacks;
the share is read where an operator reads it, the published request rate.
"""

from __future__ import annotations

import pytest

from service.gameball.budget import IDLE_SHARE
from tests.helpers import eventually
from tests.unit.delivery.fakes import rig, running

QUOTA = 12 * 0.96  # requests per second the test key's limits allow the whole group


async def test_each_instance_spends_the_share_of_the_key_its_partitions_are() -> None:
    r = rig({"orders": 4, "customers": 2})
    r.consumer.assign_on_start = False
    async with running(r):
        # Before any assignment: enough for the readiness credential check, no more.
        await eventually(lambda: r.consumer.consumes > 2)
        idle_rate = r.budget_rate
        assert idle_rate == pytest.approx(QUOTA * IDLE_SHARE)  # 1 % of the key

        r.consumer.rebalance("assign", [("orders", 0), ("orders", 1), ("customers", 0)])
        await eventually(lambda: r.budget_rate == pytest.approx(QUOTA / 2, rel=0.02))

        r.consumer.rebalance("revoke", [("orders", 1)])
        await eventually(lambda: r.budget_rate == pytest.approx(QUOTA * 2 / 6, rel=0.02))
        r.consumer.rebalance("lose", [("orders", 0), ("customers", 0)])
        await eventually(lambda: r.budget_rate == pytest.approx(idle_rate))


async def test_the_partitions_are_counted_by_the_fetch_loop_not_in_the_callback() -> None:
    # A metadata request inside the assignment callback aborted the process (confluent-kafka's
    # per-thread call state); the count is asked for between two consume calls instead.
    r = rig({"orders": 6})
    r.consumer.assign_on_start = False
    async with running(r):
        r.consumer.rebalance("assign", [("orders", 0), ("orders", 1), ("orders", 2)])
        await eventually(lambda: r.budget_rate == pytest.approx(QUOTA / 2, rel=0.02))
    assert r.consumer.counts_asked >= 1
    assert r.consumer.counts_asked_in_callback == 0


async def test_an_instance_that_cannot_count_the_partitions_keeps_to_the_idle_share() -> None:
    # The lookup is a metadata request on the Kafka thread (up to 2 s when the brokers are
    # away): asked again at the lag read's pace, not on every turn of the fetch loop.
    r = rig({"orders": 6})
    r.consumer.counts_known = False
    async with running(r):
        await eventually(lambda: r.consumer.counts_asked >= 1)
        turns = r.consumer.consumes
        await eventually(lambda: r.consumer.consumes > turns + 20)
        # The safe side while the total is unknown.
        assert r.budget_rate == pytest.approx(QUOTA * IDLE_SHARE)
        # After the assignment, then once more after the first lag read.
        assert r.consumer.counts_asked == 2


async def test_a_key_shared_with_another_application_is_split_within_this_groups_part() -> None:
    rates = []
    for env in ({}, {"GAMEBALL_KEY_SHARE": "0.5"}):
        r = rig({"t": 2}, env=env)
        async with running(r):
            await eventually(lambda r=r: r.budget_rate > QUOTA / 4)  # type: ignore[misc]
            rates.append(r.budget_rate)
    whole, part = rates
    assert part == pytest.approx(whole / 2, rel=0.02)
