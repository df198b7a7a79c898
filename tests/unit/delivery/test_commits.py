"""The committer: settled watermarks and their ledgers, sent once, only for owned partitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from service.delivery.commits import Committer
from service.delivery.consumer import KafkaThread
from service.delivery.ledger import Ledger, decode
from service.delivery.offsets import Mark, OffsetTracker
from service.delivery.records import PendingRecord
from service.metrics import Metrics
from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeConsumer

TP, OTHER = ("t", 0), ("t", 1)


class Books:
    def __init__(self) -> None:
        self.offsets = OffsetTracker()
        self.consumer = FakeConsumer({"t": 2})
        self.kafka = KafkaThread()
        self.committer = Committer(
            self.offsets, self.consumer, self.kafka, Metrics(), metadata_limit=4096
        )
        self.consumer.start(
            on_assign=lambda _: None,
            on_revoke=lambda _: None,
            on_lost=lambda _: None,
            on_committed=self.committer.acknowledged,
            on_broker_state=lambda _: None,
        )
        self.offsets.assign(TP, 0)

    async def results(self) -> None:
        """One ``consume``: the assignment, then commit results, come back in it."""
        await self.kafka.call(self.consumer.consume, 0, 0.0)
        await asyncio.sleep(0)  # the results are handed to the loop


@pytest.fixture
async def books() -> AsyncIterator[Books]:
    made = Books()
    await made.results()  # both partitions assigned
    yield made
    made.kafka.shutdown()


async def test_the_commit_carries_the_watermark_and_what_is_settled_above_it(books: Books) -> None:
    for offset in range(3):
        books.offsets.track(TP, offset)
    books.offsets.settle(TP, [0, 2], Mark.SUCCEEDED)
    await books.committer.commit()
    offset, metadata = books.consumer.group[TP]
    assert offset == 1
    ledger = decode(metadata)
    assert ledger is not None
    assert ledger.marks == bytes([Mark.PENDING, Mark.SUCCEEDED])


async def test_a_window_is_sent_once_until_it_changes(books: Books) -> None:
    books.offsets.track(TP, 0)
    books.offsets.settle(TP, 0, Mark.SUCCEEDED)
    await books.committer.commit()
    await books.committer.commit()  # its result has not come back: not sent again
    await books.results()
    await books.committer.commit()  # acknowledged, unchanged: nothing to send
    assert books.consumer.commits == [{TP: books.consumer.group[TP]}]
    books.offsets.track(TP, 1)
    books.offsets.settle(TP, 1, Mark.SUCCEEDED)
    await books.committer.commit()
    assert books.consumer.committed_offsets()[TP] == 2


async def test_a_failed_commit_is_sent_again(books: Books) -> None:
    books.offsets.track(TP, 0)
    books.offsets.settle(TP, 0, Mark.SUCCEEDED)
    books.consumer.async_commits_fail = True
    await books.committer.commit()
    await books.results()
    books.consumer.async_commits_fail = False
    await books.committer.commit()
    assert books.consumer.committed_offsets() == {TP: 1}


async def test_a_result_that_comes_back_before_the_sender_resumes_is_not_lost(
    books: Books,
) -> None:
    # The commit is sent on the Kafka thread, and the next consume there (already queued)
    # serves its result at once: its acknowledgement can reach the loop before the
    # coroutine that sent it resumes. Lost, the window would count as on the way forever:
    # never sent again, never known committed (a bounded run would never end).
    books.offsets.track(TP, 0)
    books.offsets.settle(TP, 0, Mark.SUCCEEDED)
    for _ in range(20):  # the interleaving is the threads' to choose: try it many times
        await asyncio.gather(books.committer.commit(), books.results())
        await books.results()
    assert books.offsets.committed_offset(TP) == 1
    assert books.committer.in_flight == 0
    books.offsets.track(TP, 1)
    books.offsets.settle(TP, 1, Mark.SUCCEEDED)
    await books.committer.commit()
    await books.results()
    assert books.consumer.committed_offsets() == {TP: 2}
    assert books.offsets.committed_offset(TP) == 2


async def test_a_failed_commit_says_which_partitions_and_why(books: Books) -> None:
    # A commit whose partitions failed one by one has no error of its own: the line must say
    # which partition, up to which offset, and the broker's answer for it.
    books.offsets.track(TP, 0)
    books.offsets.settle(TP, 0, Mark.SUCCEEDED)
    books.consumer.async_commits_fail = True
    with capture_logs() as logs:
        await books.committer.commit()
        await books.results()
    [failed] = [entry for entry in logs if entry["event"] == "commit_failed"]
    assert failed["not_committed"] == {"t[0]@1": "NOT_COORDINATOR"}


async def test_a_partition_no_longer_assigned_is_not_committed(books: Books) -> None:
    # A commit queued behind a consume that revoked the partition would write its older
    # watermark over what the revoke callback committed.
    books.offsets.assign(OTHER, 0)
    for tp in (TP, OTHER):
        books.offsets.track(tp, 0)
        books.offsets.settle(tp, 0, Mark.SUCCEEDED)
    books.consumer.rebalance("revoke", [OTHER])
    await books.results()
    await books.committer.commit()
    assert books.consumer.committed_offsets() == {TP: 1}


async def test_a_partition_being_taken_over_commits_nothing(books: Books) -> None:
    # Its inherited ledger must stay in place until this instance has resolved it.
    books.offsets.assign(TP, 0, holding=True)
    books.offsets.track(TP, 0)
    books.offsets.settle(TP, 0, Mark.SUCCEEDED)
    await books.committer.commit()
    assert books.consumer.commits == []
    books.offsets.release(TP)
    await books.committer.commit()
    assert books.consumer.committed_offsets() == {TP: 1}


def committed_ledger(books: Books) -> Ledger:
    ledger = decode(books.consumer.group[TP][1])
    assert ledger is not None
    return ledger


def pending(books: Books, *offsets: int) -> list[PendingRecord]:
    """Records consumed at ``offsets`` of TP, not settled, as a batch would carry them."""
    generation = books.offsets.generation(TP)
    records = []
    for offset in offsets:
        books.offsets.track(TP, offset)
        records.append(
            PendingRecord(*TP, offset, 0, None, b"{}", f"c{offset}", b"{}", generation=generation)
        )
    return records


@pytest.fixture
async def committing(books: Books) -> AsyncIterator[Books]:
    """The committer's own loop runs, as in the pipeline; results come back when asked."""
    task = asyncio.create_task(books.committer.run())
    yield books
    task.cancel()


async def test_a_write_ahead_returns_only_once_the_broker_acknowledged_its_intent(
    committing: Books,
) -> None:
    books = committing
    ahead = asyncio.create_task(books.committer.write_ahead(pending(books, 0, 1)))
    await eventually(lambda: bool(books.consumer.commits))
    ledger = decode(books.consumer.group[TP][1])
    assert ledger is not None
    assert ledger.marks is not None
    slot = ledger.marks[0] - Mark.JOB
    assert ledger.marks == bytes([Mark.JOB + slot] * 2)
    assert (ledger.jobs, list(ledger.intents)) == ({}, [slot])
    assert not ahead.done(), "the POST could go out before the broker acknowledged its intent"
    await books.results()
    async with asyncio.timeout(5):
        intent = await ahead
    assert intent is not None
    assert ledger.intents[slot] == pytest.approx(intent.at, abs=0.001)
    books.committer.job_created(intent, "job-1")
    await eventually(lambda: committed_ledger(books).jobs == {slot: "job-1"})


async def test_write_aheads_due_together_share_one_commit(committing: Books) -> None:
    books = committing
    batches = [pending(books, 2 * n, 2 * n + 1) for n in range(4)]
    aheads = [asyncio.create_task(books.committer.write_ahead(batch)) for batch in batches]
    await eventually(lambda: bool(books.consumer.commits))
    await books.results()
    async with asyncio.timeout(5):
        intents = await asyncio.gather(*aheads)
    assert all(intent is not None for intent in intents)
    assert len(books.consumer.commits) == 1
    ledger = decode(books.consumer.group[TP][1])
    assert ledger is not None
    assert len(ledger.intents) == 4


async def test_a_write_ahead_waits_out_failing_commits(committing: Books) -> None:
    # A classic group rebalancing refuses every commit until it is over.
    books = committing
    books.consumer.async_commits_fail = True
    ahead = asyncio.create_task(books.committer.write_ahead(pending(books, 0)))
    await eventually(lambda: books.consumer.results_waiting > 0)
    await books.results()
    assert not ahead.done()
    books.consumer.async_commits_fail = False

    async def served() -> bool:
        await books.results()
        return ahead.done()

    async with asyncio.timeout(5):
        while not await served():  # each result sends the commit again, after the gap
            pass
    assert await ahead is not None
    assert committed_ledger(books).intents


async def test_a_write_ahead_whose_partition_is_revoked_gives_up(committing: Books) -> None:
    books = committing
    books.consumer.async_commits_fail = True
    records = pending(books, 0, 1)
    ahead = asyncio.create_task(books.committer.write_ahead(records))
    await eventually(lambda: books.consumer.results_waiting > 0)
    books.offsets.close([TP])  # the revoke callback starts
    books.committer.abandon_unwritable()
    async with asyncio.timeout(5):
        assert await ahead is None
    window = books.offsets.window(TP)
    assert window is not None
    assert window.marks == bytes([Mark.PENDING] * 2)
