"""Compaction through the pipeline: a backlog beyond the buffer, read ahead while quota-bound,
reaches the API one change per customer, in order, and nothing is lost or dead-lettered bare."""

from __future__ import annotations

import orjson

from tests.unit.delivery.fakes import FakeApi, change, rig

TP = ("t", 0)
CUSTOMERS, VERSIONS = 100, 30
TAIL = 2000  # then one change each of as many other customers: the fill ends with a fetch left
RECORDS = CUSTOMERS * VERSIONS + TAIL
# A buffer of 200 records and a key allowing one request a second: at two requests a job of 100
# records, 1,440 records in the 30 s horizon; the backlog (5,000) is well beyond it.
QUOTA_BOUND = {
    "MAX_BUFFERED_RECORDS": "200",
    "BATCH_MAX_RECORDS": "100",
    "MAX_JOBS_IN_FLIGHT": "2",
    "GAMEBALL_RATE_LIMIT_PER_SECOND": "30",
    "GAMEBALL_QUOTA_REQUESTS": "30",
}


def backlog(r: object) -> None:
    consumer = r.consumer  # type: ignore[attr-defined]
    consumer.fetch_max = 50  # a backlog is read a fetch at a time
    for version in range(1, VERSIONS + 1):
        for c in range(CUSTOMERS):
            consumer.append(TP, change(f"c{c}", version), key=f"c{c}".encode())
    # The fill ends with less than a fetch's worth unread (compaction.CAUGHT_UP): these are read
    # while the jobs go out, and change no customer above.
    for t in range(TAIL):
        consumer.append(TP, change(f"t{t}", VERSIONS), key=f"t{t}".encode())


EVERYONE = sorted([f"c{c}" for c in range(CUSTOMERS)] + [f"t{t}" for t in range(TAIL)])


def last_versions(api: FakeApi) -> dict[str, int]:
    """The version of each customer the API applied last."""
    return {c: v for c, v in api.applied}


class VersionedApi(FakeApi):
    """A FakeApi that also records each applied item's version, in order."""

    def __init__(self, reject: set[str] | None = None) -> None:
        super().__init__(reject or set())
        self.applied: list[tuple[str, int]] = []

    async def submit(self, body: bytes, **kwargs: object) -> str:  # type: ignore[override]
        job_id = await super().submit(body, **kwargs)  # type: ignore[arg-type]
        self.applied += [
            (item["customerId"], item["customerAttributes"]["custom"]["v"])
            for item in orjson.loads(body)["body"]
            if item["customerId"] not in self.reject
        ]
        return job_id


async def test_a_quota_bound_backlog_reaches_the_api_once_per_customer_with_its_latest_change() -> (
    None
):
    api = VersionedApi()
    r = rig(env=QUOTA_BOUND, api=api)
    backlog(r)
    await r.run(within=20)
    assert r.consumer.committed_offsets() == {TP: RECORDS}
    assert sorted(api.delivered) == EVERYONE, "once each"
    assert set(last_versions(api).values()) == {VERSIONS}
    assert r.count("customer_sync_records_total", outcome="coalesced") == CUSTOMERS * (VERSIONS - 1)
    assert r.count("customer_sync_compaction_active") == 1


async def test_without_compaction_the_same_backlog_costs_a_submission_per_buffer() -> None:
    api = VersionedApi()
    r = rig(env={**QUOTA_BOUND, "COMPACTION_MAX_BYTES": "0"}, api=api)
    backlog(r)
    await r.run(within=20)
    assert r.consumer.committed_offsets() == {TP: RECORDS}
    assert len(api.delivered) > len(EVERYONE)  # the buffer of 200 sends customers again
    assert set(last_versions(api).values()) == {VERSIONS}  # still in order


async def test_below_the_quota_a_backlog_is_delivered_as_without_compaction() -> None:
    api = VersionedApi()
    lifted = {
        **QUOTA_BOUND,
        "GAMEBALL_RATE_LIMIT_PER_SECOND": "1000",
        "GAMEBALL_QUOTA_REQUESTS": "30000",
    }
    r = rig(env=lifted, api=api)
    backlog(r)
    await r.run(within=20)
    assert r.count("customer_sync_compaction_active") == 0
    assert len(api.delivered) > len(EVERYONE)


async def test_a_rejected_compacted_change_is_dead_lettered_with_its_source_bytes() -> None:
    api = VersionedApi(reject={"c7"})
    r = rig(env=QUOTA_BOUND, api=api)
    backlog(r)
    await r.run(within=20)
    assert r.consumer.committed_offsets() == {TP: RECORDS}
    (letter,) = [(v, h) for v, h in r.producer.written]
    value, headers = letter
    offset = int(headers["dlq.source.offset"])
    assert offset == (VERSIONS - 1) * CUSTOMERS + 7  # the latest change of c7
    assert value == change("c7", VERSIONS), "the source value, read again from its offset"
    assert r.consumer.read_backs == [(TP, offset)]
    assert headers["dlq.reason"] == b"record_rejected"
