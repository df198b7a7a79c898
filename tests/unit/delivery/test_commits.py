"""The committer: settled watermarks and their ledgers, sent once, only for owned partitions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from service.delivery.commits import Committer
from service.delivery.consumer import KafkaThread
from service.delivery.ledger import decode
from service.delivery.offsets import Mark, OffsetTracker
from service.metrics import Metrics
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
