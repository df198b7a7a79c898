"""A taken-over partition: inherited jobs resolved first, settled records skipped, no history.

The pipeline runs without a broker (its consumer is never started); the API
is the simulator over HTTP, where the previous owner's job really runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from service.config import load_settings
from service.delivery.ledger import encode
from service.delivery.offsets import Mark
from service.delivery.pipeline import Pipeline
from service.gameball.models import JobState
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from tests.helpers import eventually
from tests.unit.delivery.test_pipeline_rebalance import ENV, TP, Msg


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(stuck_job_rate=1.0, seed=3)  # the previous owner's job never ends


@pytest.fixture
async def pipeline(simulator: RunningSimulator) -> AsyncIterator[Pipeline]:
    api = {
        "GAMEBALL_BASE_URL": simulator.base_url,
        "GAMEBALL_API_KEY": "demo-api-key",
        "GAMEBALL_SECRET_KEY": "demo-secret-key",
        "KAFKA_SOURCE_TOPICS": TP[0],
    }
    running = Pipeline(load_settings({**ENV, **api}))
    running._consumer.partition_counts = {"t": 1}  # the whole key's budget is this instance's
    running._rebalancer.reshare()
    yield running
    running._takeovers.cancel()
    await running._client.aclose()


async def test_a_takeover_stops_the_dead_owners_job_and_redoes_each_customer_once(
    pipeline: Pipeline, simulator: RunningSimulator
) -> None:
    # The previous owner had read 100..104: "a" at 100 was in its job, still running;
    # "b" at 101 was delivered; "c" at 102 and a newer "a" at 104 were buffered; 103,
    # an "a" between the two, was coalesced away.
    job = simulator.state.create_job([{"customerId": "a"}])
    simulator.state.update_config({"stuck_job_rate": 0.0})
    marks = bytes([Mark.JOB + 0, Mark.SUCCEEDED, Mark.PENDING, Mark.COALESCED, Mark.PENDING])
    metadata, level = encode(len(marks), {0: job.id}, marks, 4096)
    assert level == "full"
    await pipeline._rebalancer.assigned([TP], {TP: (100, metadata)})

    pipeline._ingestor.ingest(
        [Msg(100, "a"), Msg(101, "b"), Msg(102, "c"), Msg(103, "a")],
        pipeline._offsets.newest_generation,
    )
    pipeline._takeovers.advance_all(room=1000)
    assert len(pipeline._batcher) == 0, "nothing is buffered before the window is re-read"
    assert pipeline._offsets.commit_candidates() == {}, "the inherited ledger must stay"

    pipeline._ingestor.ingest([Msg(104, "a")], pipeline._offsets.newest_generation)
    pipeline._takeovers.advance_all(room=1000)
    await eventually(lambda: TP not in pipeline._takeovers)
    # The inherited job was stopped before anything of this partition was buffered.
    assert simulator.state.jobs[job.id].state is JobState.STOPPED
    # Each customer once, with its latest change: c@102 and a@104.
    ready = {r.customer_id: r.offset for r in pipeline._batcher._ready.values()}
    assert ready == {"c": 102, "a": 104}
    # b@101 and a@103 were the previous owner's: counted, not redone. a@100 was absorbed
    # by a@104 and settles with it: until then it holds the commit, so a crash re-reads both.
    assert [offset for offset, _ in pipeline._batcher._ready["a"].superseded or ()] == [100]
    metrics = pipeline.metrics.registry.get_sample_value
    assert metrics("customer_sync_records_inherited_total", {"outcome": "succeeded"}) == 1
    assert metrics("customer_sync_records_inherited_total", {"outcome": "coalesced"}) == 1
    assert metrics("customer_sync_records_total", {"outcome": "coalesced"}) == 1
    assert metrics("customer_sync_jobs_inherited_total", {"resolution": "stopped"}) == 1
    window = pipeline._offsets.commit_candidates()[TP]
    assert window.offset == 100
    assert window.marks == bytes(
        [Mark.PENDING, Mark.SUCCEEDED, Mark.PENDING, Mark.COALESCED, Mark.PENDING]
    )


async def test_what_an_inherited_job_delivered_is_settled_not_redone(
    pipeline: Pipeline, simulator: RunningSimulator
) -> None:
    simulator.state.update_config({"stuck_job_rate": 0.0})
    job = simulator.state.create_job([{"customerId": "a"}, {"customerId": "b"}])  # completes
    marks = bytes([Mark.JOB + 7, Mark.JOB + 7])
    metadata, _ = encode(len(marks), {7: job.id}, marks, 4096)
    await pipeline._rebalancer.assigned([TP], {TP: (0, metadata)})
    pipeline._ingestor.ingest([Msg(0, "a"), Msg(1, "b")], pipeline._offsets.newest_generation)
    pipeline._takeovers.advance_all(room=1000)
    await eventually(lambda: TP not in pipeline._takeovers)
    assert len(pipeline._batcher) == 0
    assert pipeline._offsets.commit_candidates()[TP].offset == 2
    metrics = pipeline.metrics.registry.get_sample_value
    assert metrics("customer_sync_jobs_inherited_total", {"resolution": "completed"}) == 1
    assert metrics("customer_sync_records_total", {"outcome": "succeeded"}) == 2


class TaggedMsg(Msg):
    def value(self) -> bytes:
        return orjson.dumps({"customerId": self.customer, "tags": ["vip"]})


async def test_what_an_inherited_job_delivered_gets_its_tags_then_settles_not_redone(
    pipeline: Pipeline, simulator: RunningSimulator
) -> None:
    """The previous owner died between its job and the tags call: the takeover sends the
    tags of what the job delivered, and settles it, without submitting it again."""
    simulator.state.update_config({"stuck_job_rate": 0.0})
    job = simulator.state.create_job([{"customerId": "a"}, {"customerId": "b"}])  # completes
    marks = bytes([Mark.JOB + 7, Mark.JOB + 7])
    metadata, _ = encode(len(marks), {7: job.id}, marks, 4096)
    await pipeline._rebalancer.assigned([TP], {TP: (0, metadata)})
    pipeline._ingestor.ingest(
        [TaggedMsg(0, "a"), TaggedMsg(1, "b")], pipeline._offsets.newest_generation
    )
    pipeline._takeovers.advance_all(room=1000)
    await eventually(lambda: pipeline._offsets.commit_candidates().get(TP) is not None)
    await eventually(lambda: pipeline._offsets.commit_candidates()[TP].offset == 2)
    assert simulator.state.profiles.tags == {"a": ["vip"], "b": ["vip"]}
    assert simulator.state.jobs_created == 1, "a delivered record was submitted again"
    assert len(pipeline._batcher) == 0
