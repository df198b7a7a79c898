"""Dead-lettering through the pipeline: rejected and undecodable records, settled on the ack."""

from __future__ import annotations

from tests.helpers import eventually
from tests.unit.delivery.fakes import FakeApi, change, rig, running

TP = ("t", 0)


async def test_a_record_the_api_rejects_is_dead_lettered_then_committed_past() -> None:
    r = rig(api=FakeApi(reject={"bad"}))
    for customer in ("a", "bad", "b"):
        r.consumer.append(TP, change(customer))

    await r.run()

    assert r.api.delivered == ["a", "b"]
    assert r.producer.reasons == ["record_rejected"]
    value, headers = r.producer.written[0]
    assert value == change("bad"), "the dead letter carries the original bytes"
    assert headers["dlq.source.offset"] == b"1"
    assert r.consumer.committed_offsets() == {TP: 3}
    assert r.count("customer_sync_records_total", outcome="dead_lettered") == 1


async def test_an_undecodable_record_is_dead_lettered_without_a_job() -> None:
    r = rig()
    r.consumer.append(TP, b"{not json")
    r.consumer.append(TP, change("a"))

    await r.run()

    assert r.producer.reasons == ["invalid_json"]
    assert r.api.delivered == ["a"]
    assert r.consumer.committed_offsets() == {TP: 2}


async def test_the_commit_waits_for_the_dead_letters_acknowledgement() -> None:
    r = rig()
    r.producer.hold = True  # the broker has not acknowledged the copy yet
    r.consumer.append(TP, b"{not json")
    r.consumer.append(TP, change("a"))
    async with running(r):
        await eventually(lambda: r.api.delivered == ["a"])
        await eventually(lambda: bool(r.consumer.commits))
        # "a" is delivered, but offset 0 is not settled until its copy is acknowledged.
        assert r.consumer.committed_offsets() == {TP: 0}
        assert r.producer.written == []
        r.producer.hold = False
        await eventually(lambda: r.consumer.committed_offsets() == {TP: 2})
    assert r.producer.reasons == ["invalid_json"]
