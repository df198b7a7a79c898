"""A bounded run: everything read is delivered, settled and committed, then the run ends.

The pipeline runs for real between fakes of its edges (``fakes.py``): a
consumer that serves rebalances and commit results inside ``consume`` as
librdkafka does, an API whose jobs complete at once, a dead-letter producer.
"""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from service.delivery.bounded import Until
from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeApi, change, rig, running


async def test_a_run_until_idle_delivers_commits_everything_read_and_leaves() -> None:
    r = rig({"t": 2})
    for i in range(10):
        r.consumer.append(("t", i % 2), change(f"c{i}"))
    r.consumer.append(("t", 0), change("c0", version=2))  # c0 again: only the newer goes out
    r.consumer.append(("t", 1), None)  # a tombstone: skipped

    await r.run()

    assert sorted(r.api.delivered) == sorted(f"c{i}" for i in range(10))
    assert r.consumer.committed_offsets() == {("t", 0): 6, ("t", 1): 6}
    assert r.consumer.closed, "the run leaves the group once it is done"
    assert r.count("customer_sync_records_total", outcome="succeeded") == 10
    assert r.count("customer_sync_records_total", outcome="coalesced") == 1
    assert r.count("customer_sync_records_total", outcome="skipped") == 1


async def test_a_bounded_run_ends_with_one_line_saying_what_became_of_what_it_read() -> None:
    r = rig()
    r.consumer.append(("t", 0), change("a"))
    r.consumer.append(("t", 0), b"{not json")
    with capture_logs() as logs:
        await r.run()
    (line,) = [entry for entry in logs if entry["event"] == "run_finished"]
    assert line["reason"] == "idle"
    assert line["consumed"] == line["records_read"] == 2
    assert line["outcomes"] == {"succeeded": 1, "dead_lettered": 1, "skipped": 0, "coalesced": 0}


async def test_an_empty_topic_is_idle_at_once() -> None:
    r = rig({"t": 3})
    await r.run(within=5.0)
    assert r.consumer.group == {}
    assert r.consumer.closed
    assert r.api.jobs == {}


async def test_records_that_arrive_while_running_are_waited_for() -> None:
    # Idle means read to the end *and* quiet: records produced during the run are in it.
    r = rig({"t": 1})
    r.consumer.append(("t", 0), change("first"))

    async def produce_more() -> None:
        await eventually(lambda: "first" in r.api.delivered)
        r.consumer.append(("t", 0), change("second"))

    more = asyncio.create_task(produce_more())
    await r.run(Until(idle=True, quiet=0.5))
    await more
    assert r.api.delivered == ["first", "second"]
    assert r.consumer.committed_offsets() == {("t", 0): 2}


async def test_a_topic_written_transactionally_is_idle_at_its_last_marker() -> None:
    # The last offset is a transaction marker: no record settles it, so the commit stops one
    # short of the high watermark, while the consumer's position reaches it.
    r = rig()
    r.consumer.append(("t", 0), change("a"))
    r.consumer.append_marker(("t", 0))
    await r.run(within=5.0)
    assert r.api.delivered == ["a"]
    assert r.consumer.committed_offsets() == {("t", 0): 1}


async def test_a_run_of_n_records_reads_n_and_commits_exactly_them() -> None:
    r = rig({"t": 1})
    for i in range(10):
        r.consumer.append(("t", 0), change(f"c{i}"))

    await r.run(Until(records=4))

    assert r.pipeline.records_read == 4
    assert r.api.delivered == ["c0", "c1", "c2", "c3"]
    assert r.consumer.committed_offsets() == {("t", 0): 4}, "the next run starts at c4"


async def test_a_run_of_n_records_waits_for_them_to_settle_past_the_shutdown_budget() -> None:
    # The shutdown drain is bounded; a bounded run must not lean on it to deliver.
    api = FakeApi()
    api.submit_seconds = 1.5  # a slow API: longer than the whole shutdown budget
    r = rig({"t": 1}, env={"SHUTDOWN_TIMEOUT_SECONDS": "1"}, api=api)
    for i in range(3):
        r.consumer.append(("t", 0), change(f"c{i}"))

    await r.run(Until(records=3))

    assert r.consumer.committed_offsets() == {("t", 0): 3}


async def test_idle_is_not_declared_while_a_partition_has_records_not_yet_fetched() -> None:
    r = rig({"t": 2})
    r.consumer.append(("t", 0), change("a"))
    r.consumer.append(("t", 1), change("b"))
    r.consumer.withheld.add(("t", 1))  # its fetches are slow: quiet, but not at the end
    run = asyncio.create_task(r.run(Until(idle=True, quiet=0.1)))
    await eventually(lambda: r.consumer.committed_offsets().get(("t", 0)) == 1)
    turns = r.consumer.consumes
    await eventually(lambda: r.consumer.consumes > turns + 20)  # well past the quiet time
    assert not run.done(), "idle before t[1] was read to its end"
    r.consumer.withheld.clear()
    await run
    assert r.consumer.committed_offsets() == {("t", 0): 1, ("t", 1): 1}


async def test_a_run_without_until_goes_on_until_stopped() -> None:
    r = rig({"t": 1})
    r.consumer.append(("t", 0), change("a"))
    async with running(r):
        await eventually(lambda: r.consumer.committed_offsets() == {("t", 0): 1})
        assert not r.consumer.closed
    assert r.consumer.closed
