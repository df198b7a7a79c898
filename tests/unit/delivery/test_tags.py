"""The tags step: which delivered records send their tags, and what a refusal does to them."""

from __future__ import annotations

from typing import Any, cast

from service.delivery.records import PendingRecord
from service.delivery.tags import TagSender
from service.delivery.verdicts import Verdicts
from service.errors import SubmissionWithdrawn, TagsRejected
from service.gameball.client import GameballClient
from service.labels import DeadLetterReason


def record(customer: str, tags: list[str] | None, changed: bool = True) -> PendingRecord:
    payload = b'{"customerId":"' + customer.encode() + b'"}'
    return PendingRecord(
        "t", 0, 0, 0, None, b"{}", customer, payload, tags=tags, tags_changed=changed
    )


class TagsApi:
    """Answers a tag call as scripted per customer: refused, withdrawn, or accepted."""

    def __init__(self, refused: set[str] = frozenset(), gone: set[str] = frozenset()) -> None:
        self.refused, self.gone = refused, gone
        self.sent: list[tuple[str, list[str]]] = []
        self.removed: list[tuple[str, tuple[str, ...]]] = []

    async def set_tags(
        self, customer_id: str, tags: list[str], remove: Any = (), *, wanted: Any
    ) -> None:
        if not wanted():
            raise SubmissionWithdrawn("tags withdrawn")
        if customer_id in self.refused:
            raise TagsRejected("tags rejected (HTTP 422): bad tag", status=422)
        if tags:
            self.sent.append((customer_id, list(tags)))
        if remove:
            self.removed.append((customer_id, tuple(remove)))


def sender(api: TagsApi, gone: set[str] = frozenset()) -> TagSender:
    return TagSender(cast("GameballClient", api), lambda r: r.customer_id not in gone)


async def test_only_delivered_records_with_changed_tags_send_them() -> None:
    api = TagsApi()
    changed, unchanged, untagged = (
        record("a", ["vip"]),
        record("b", ["x"], False),
        record("c", None),
    )
    failed = record("d", ["never"])
    verdicts = Verdicts(succeeded=[changed, unchanged, untagged], resubmit=[failed])
    await sender(api).deliver(verdicts)
    assert api.sent == [("a", ["vip"])]
    assert verdicts.succeeded == [changed, unchanged, untagged]
    assert verdicts.resubmit == [failed]


async def test_refused_tags_dead_letter_the_record_and_it_does_not_settle_as_delivered() -> None:
    api = TagsApi(refused={"b"})
    a, b = record("a", ["vip"]), record("b", ["bad tag"])
    verdicts = Verdicts(succeeded=[a, b])
    await sender(api).deliver(verdicts)
    assert verdicts.succeeded == [a]
    (rejection,) = verdicts.rejected
    assert rejection.record is b
    assert rejection.reason is DeadLetterReason.TAGS_REJECTED
    assert "bad tag" in rejection.error


async def test_a_record_whose_partition_went_neither_settles_nor_comes_back() -> None:
    api = TagsApi()
    a, b = record("a", ["vip"]), record("b", ["x"])
    verdicts = Verdicts(succeeded=[a, b])
    await sender(api, gone={"b"}).deliver(verdicts)
    assert api.sent == [("a", ["vip"])]
    assert verdicts.succeeded == [a]
    assert verdicts.rejected == []
    assert verdicts.resubmit == []


async def test_tags_gone_from_the_row_are_removed_and_the_new_set_attached() -> None:
    api = TagsApi()
    dropped = record("a", ["vip"])
    dropped.tags_removed = ("newsletter",)
    await sender(api).deliver(Verdicts(succeeded=[dropped]))
    assert api.sent == [("a", ["vip"])]
    assert api.removed == [("a", ("newsletter",))]
