"""Settlement across a revoke and a re-assignment of the same partition (no broker needed).

The pipeline's rebalance handlers and settlement are plain methods on the
loop; the consumer is never started here, so commits fail quietly and only
the offset tracker's commit candidates are observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from service.config import load_settings
from service.delivery.pipeline import Pipeline
from service.delivery.verdicts import Verdicts
from service.labels import FlushReason

TP = ("t", 0)
ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
    "GAMEBALL_BASE_URL": "http://127.0.0.1:1",
}


@dataclass
class Msg:
    _offset: int
    customer: str

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TP[0]

    def partition(self) -> int:
        return TP[1]

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def key(self) -> bytes:
        return self.customer.encode()

    def value(self) -> bytes:
        return orjson.dumps({"customerId": self.customer, "custom": {"v": self._offset}})


async def test_a_job_from_a_previous_assignment_cannot_settle_the_new_owners_records() -> None:
    pipeline = Pipeline(load_settings(ENV))
    await pipeline._rebalancer.assigned([TP])
    pipeline._ingestor.ingest([Msg(0, "a"), Msg(1, "b")], pipeline._offsets.newest_generation)
    old_job = pipeline._batcher.take(FlushReason.TIMEOUT)  # a@0 and b@1 go out in one job
    # The partition goes away while that job runs (lost, or revoked after REVOKE_WAIT) ...
    await pipeline._rebalancer.lost([TP])
    # ... and comes back: the consumer re-reads from the committed offset (0).
    await pipeline._rebalancer.assigned([TP])
    pipeline._ingestor.ingest(
        [Msg(0, "a"), Msg(1, "b")], pipeline._offsets.newest_generation
    )  # the new copies wait behind the old job
    # The old job ends: a succeeded, b was not settled by it (stopped) and is given back.
    a, b = old_job.records
    pipeline._settlement.apply(Verdicts(succeeded=[a], resubmit=[b]))
    pipeline._batcher.release(["a", "b"], 0.0)
    # Nothing of the new assignment has settled: only the current generation may
    # settle its records, so the watermark stays at 0. (The old b used to be settled
    # as "coalesced" against the new copy of itself, and the pipeline committed 2: a
    # crash then lost b; an old job settling the new a@0 would commit 1.)
    assert pipeline._offsets.commit_candidates()[TP].offset == 0
