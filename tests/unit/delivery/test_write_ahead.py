"""Write-ahead: no POST goes out before a commit names its records, and a next owner that
finds an intent without a job id holds those customers until such a job must be over.

The pipeline runs between fakes (``fakes.py``): the consumer's group holds the commits, and
the API records, with each submission, what the group had committed when it went out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from service.delivery.ledger import Ledger, decode, encode
from service.delivery.offsets import Mark
from service.delivery.takeover import unknown_until
from service.gameball.client import TIMEOUT_SECONDS, Spent
from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeApi, Rig, change, rig, running

TP = ("t", 0)
JOB_TIMEOUT = 5.0


@dataclass(frozen=True)
class Submission:
    at: float  # time.time() when it went out
    versions: dict[str, int]  # customer -> the custom.v it carried
    committed: int  # the offset the group had committed for TP then
    ledger: Ledger | None  # and its ledger


class RecordingApi(FakeApi):
    """Completes every job at once, and records each POST and the commit it went out after."""

    def __init__(self) -> None:
        super().__init__()
        self.rig: Rig | None = None
        self.submissions: list[Submission] = []

    async def submit(
        self,
        body: bytes,
        *,
        spent: Spent | None = None,
        wanted: Callable[[], bool] | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        operation: object = None,
    ) -> str:
        async def then_record() -> None:
            if prepare is not None:
                await prepare()
            assert self.rig is not None
            items = orjson.loads(body)["body"]
            offset, metadata = self.rig.consumer.group.get(TP, (-1, ""))
            self.submissions.append(
                Submission(
                    time.time(),
                    {str(i["customerId"]): version_in(i) for i in items},
                    offset,
                    decode(metadata),
                )
            )

        return await super().submit(body, spent=spent, wanted=wanted, prepare=then_record)

    def versions(self, customer: str) -> list[int]:
        return [s.versions[customer] for s in self.submissions if customer in s.versions]


def version_in(item: dict[str, Any]) -> int:
    """The ``custom.v`` a change carried (the nested shape keeps it in its attributes)."""
    return int(item["customerAttributes"]["custom"]["v"])


def recording_rig(**env: str) -> tuple[Rig, RecordingApi]:
    api = RecordingApi()
    r = rig(env={"JOB_TIMEOUT_SECONDS": str(JOB_TIMEOUT), **env}, api=api)
    api.rig = r
    return r, api


async def test_every_post_goes_out_after_a_commit_that_names_its_records() -> None:
    r, api = recording_rig(BATCH_MAX_RECORDS="3")
    for offset in range(12):
        r.consumer.append(TP, change(f"c{offset}", offset))

    await r.run()

    assert len(api.submissions) == 4
    for submission in api.submissions:
        ledger = submission.ledger
        assert ledger is not None
        assert ledger.marks is not None
        # The intent: the batch's records, and no other, marked with one slot, dated before
        # the POST, with no job id.
        window = range(submission.committed, submission.committed + ledger.length)
        offsets = [int(customer[1:]) for customer in submission.versions]
        assert all(offset in window for offset in offsets)
        (slot,) = {ledger.marks[offset - submission.committed] - Mark.JOB for offset in offsets}
        assert sum(mark == Mark.JOB + slot for mark in ledger.marks) == len(offsets)
        assert slot not in ledger.jobs
        assert ledger.intents[slot] <= submission.at
    assert r.consumer.committed_offsets() == {TP: 12}


@pytest.mark.parametrize("request_timeout", [None, 2.0], ids=["default", "set"])
async def test_a_next_owner_holds_the_customers_of_an_intent_without_job_until_it_is_over(
    request_timeout: float | None,
) -> None:
    # The previous owner wrote ahead a batch carrying x@0 and died before its POST answered:
    # a job may exist that applies x@0 until unknown_until: the POST's request timeout
    # (GAMEBALL_REQUEST_TIMEOUT_SECONDS, 30 s unless set) and JOB_TIMEOUT_SECONDS after the
    # intent. y@1 was buffered, x@2 read later.
    if request_timeout is None:
        r, api = recording_rig()
        request_timeout = TIMEOUT_SECONDS
    else:
        r, api = recording_rig(GAMEBALL_REQUEST_TIMEOUT_SECONDS=str(request_timeout))
    hold = 1.5
    since = time.time() - request_timeout - JOB_TIMEOUT + hold  # the hold has 1.5 s left
    marks = bytes([Mark.JOB + 4, Mark.PENDING])
    metadata, level = encode(len(marks), {}, marks, 4096, {4: since})
    assert level == "full"
    r.consumer.append(TP, change("x", 0))
    r.consumer.append(TP, change("y", 1))
    r.consumer.append(TP, change("x", 2))
    r.consumer.group[TP] = (0, metadata)
    started = time.time()

    await r.run(within=20)

    # y went out at once; x only once the unknown job must be over, once, with its newest.
    assert api.versions("y") == [1]
    assert api.versions("x") == [2]
    (x_post,) = [s for s in api.submissions if "x" in s.versions]
    (y_post,) = [s for s in api.submissions if "y" in s.versions]
    assert y_post.at - started < hold / 2
    assert x_post.at >= unknown_until(since, JOB_TIMEOUT, request_timeout)
    assert x_post.at - started < hold + 2, "held past the moment the settings make it over"
    # Meanwhile this instance's own commits named the intent, with its date: a third owner
    # would hold x just as long.
    carried = [
        ledger.intents
        for commit in r.consumer.commits
        if TP in commit and (ledger := decode(commit[TP][1])) is not None
    ]
    dated = [at for intents in carried for at in intents.values()]
    assert any(abs(at - since) < 0.001 for at in dated), "no commit named the inherited intent"
    assert r.consumer.committed_offsets() == {TP: 3}


async def test_a_takeover_coalesces_up_to_the_end_as_of_its_assignment() -> None:
    # The previous owner had read x@0 only; x changed twice more before the assignment.
    # Read one record a fetch, the window alone would have gone out first: x@0, then x@2.
    r, api = recording_rig(BATCH_MAX_RECORDS="1")
    r.consumer.partition_fetch_max = 1
    for version in range(3):
        r.consumer.append(TP, change("x", version))
    metadata, _ = encode(1, {}, bytes([Mark.PENDING]), 4096)
    r.consumer.group[TP] = (0, metadata)

    await r.run()

    assert api.versions("x") == [2]
    assert r.consumer.committed_offsets() == {TP: 3}


async def test_a_takeover_whose_end_is_a_transaction_marker_still_finishes() -> None:
    # The end as of the assignment is one past a marker, which no fetch returns: the
    # re-read records never reach it, and the consumer's position, read with the lag, must.
    r, api = recording_rig()
    r.consumer.append(TP, change("x", 0))
    r.consumer.append(TP, change("x", 1))
    r.consumer.append_marker(TP)
    metadata, _ = encode(0, {}, b"", 4096)
    r.consumer.group[TP] = (0, metadata)

    await r.run(within=20)

    assert api.versions("x") == [1]
    assert r.consumer.committed_offsets() == {TP: 2}


async def test_a_shutdown_flushes_the_buffer_through_the_write_ahead() -> None:
    # Nothing is due until the stop: the batches the shutdown flushes are written ahead after
    # the fetch loop is over, and their commits' results still come back (in consume).
    r, api = recording_rig(BATCH_MAX_WAIT_SECONDS="120")
    for offset in range(5):
        r.consumer.append(TP, change(f"c{offset}", offset))
    async with running(r) as stop:
        await eventually(lambda: r.count("customer_sync_records_consumed_total", topic="t") == 5)
        assert api.submissions == []
        stop.set()
        await eventually(lambda: r.consumer.closed)
    assert sorted(api.versions(f"c{o}") for o in range(5)) == [[o] for o in range(5)]
    assert r.consumer.committed_offsets() == {TP: 5}


async def test_a_partition_assigned_back_knows_its_own_intents() -> None:
    # A broker outage outlasts the session: the partition is lost with its last commit
    # naming an intent whose job's id never made it to the broker, and assigned back to the
    # same instance, which heard that id. It resolves that job; it holds nobody.
    api = RecordingApi()
    r = rig(api=api)  # JOB_TIMEOUT_SECONDS as shipped: a hold would outlast the test
    api.rig = r
    posted = asyncio.Event()
    original = api.submit

    async def then_the_broker_goes(body: bytes, **kwargs: Any) -> str:
        job_id = await original(body, **kwargs)
        r.consumer.async_commits_fail = True  # the id's commit, and every one after, fail
        posted.set()
        return job_id

    api.submit = then_the_broker_goes  # type: ignore[method-assign]
    r.consumer.append(TP, change("x", 0))
    with capture_logs() as logs:
        async with running(r):
            await posted.wait()
            await eventually(
                lambda: r.count("customer_sync_records_total", outcome="succeeded") == 1
            )
            assert decode(r.consumer.group[TP][1]).intents  # type: ignore[union-attr]
            r.consumer.rebalance("lose", [TP])
            await eventually(lambda: TP not in r.consumer.assignment())
            r.consumer.async_commits_fail = False
            r.consumer.rebalance("assign", [TP])
            await eventually(lambda: r.consumer.committed_offsets() == {TP: 1})
    assert api.versions("x") == [0], "what its own job delivered was sent again"
    assert not [e for e in logs if e["event"] == "customers_held_for_unknown_job"]
    assert r.count("customer_sync_jobs_inherited_total", resolution="completed") == 1
