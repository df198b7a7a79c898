"""The key's request budget follows the partitions an instance owns (no broker needed)."""

from __future__ import annotations

import pytest

from service.config import load_settings
from service.delivery.pipeline import Pipeline
from service.gameball.budget import IDLE_SHARE
from tests.unit.delivery.test_pipeline_rebalance import ENV


def pipeline_over(counts: dict[str, int]) -> Pipeline:
    pipeline = Pipeline(load_settings({**ENV, "KAFKA_SOURCE_TOPICS": ",".join(counts)}))
    # What the consumer learns from the brokers in its assignment callback.
    pipeline._consumer.partition_counts = counts
    return pipeline


def published_rate(pipeline: Pipeline) -> float:
    value = pipeline.metrics.registry.get_sample_value(
        "customer_sync_api_budget_requests_per_second"
    )
    assert value is not None
    return value


async def test_each_instance_spends_the_share_of_the_key_its_partitions_are() -> None:
    pipeline = pipeline_over({"orders": 4, "customers": 2})
    rebalancer = pipeline._rebalancer
    # Before any assignment: enough for the readiness credential check, no more.
    assert pipeline._budget.share == IDLE_SHARE
    idle_rate = published_rate(pipeline)

    await rebalancer.assigned([("orders", 0), ("orders", 1), ("customers", 0)])
    assert pipeline._budget.share == pytest.approx(3 / 6)
    half_rate = published_rate(pipeline)
    assert half_rate == pytest.approx(12 * 0.96 / 2, rel=0.02)  # half the key's 12/s quota

    # Partitions leave: the share shrinks once their jobs' stops are sent (in _revoking,
    # before the partitions are forgotten), not before.
    await rebalancer._revoking([("orders", 1)])
    assert pipeline._budget.share == pytest.approx(2 / 6)
    await rebalancer.lost([("orders", 0), ("customers", 0)])
    assert pipeline._budget.share == IDLE_SHARE
    assert published_rate(pipeline) == pytest.approx(idle_rate)
    assert idle_rate == pytest.approx(half_rate / 50)  # 1 % of the key, against 50 %


async def test_an_instance_that_cannot_count_the_partitions_keeps_to_the_idle_share() -> None:
    pipeline = pipeline_over({"orders": 6})
    pipeline._consumer.partition_counts = {}  # the metadata lookup failed
    await pipeline._rebalancer.assigned([("orders", 0), ("orders", 1), ("orders", 2)])
    assert pipeline._budget.share == IDLE_SHARE
    assert pipeline._rebalancer.partitions_total() == 0  # so the fetch loop asks again
    pipeline._consumer.partition_counts = {"orders": 6}
    pipeline._rebalancer.reshare()
    assert pipeline._budget.share == pytest.approx(0.5)


def test_a_key_shared_with_another_application_is_split_within_this_groups_part() -> None:
    whole = Pipeline(load_settings(ENV))
    part = Pipeline(load_settings({**ENV, "GAMEBALL_KEY_SHARE": "0.5"}))
    for pipeline in (whole, part):
        pipeline._consumer.partition_counts = {"customer-changes": 2}
        pipeline._rebalancer.assignment = {("customer-changes", 0), ("customer-changes", 1)}
        pipeline._rebalancer.reshare()
    assert published_rate(part) == pytest.approx(published_rate(whole) / 2, rel=0.02)


class _Brokers:
    """The consumer as the fetch loop sees it: nothing to fetch; metadata on request."""

    def __init__(self, pipeline: Pipeline, counts: dict[str, int]) -> None:
        self._pipeline, self._counts = pipeline, counts
        self.partition_counts: dict[str, int] = {}
        self.asked = 0

    def consume(self, _count: int, _timeout: float) -> list[object]:
        self._pipeline._fetching = False  # one turn of the fetch loop
        return []

    def high_watermark(self, _tp: object) -> None:
        return None

    def refresh_partition_counts(self) -> bool:
        self.asked += 1
        self.partition_counts = dict(self._counts)
        return True


async def test_the_fetch_loop_counts_the_partitions_after_an_assignment_not_the_callback() -> None:
    # A metadata request inside the assignment callback aborted the process (confluent-kafka's
    # per-thread call state); the count is asked for between two consume calls instead.
    pipeline = Pipeline(load_settings({**ENV, "KAFKA_SOURCE_TOPICS": "orders"}))
    brokers = _Brokers(pipeline, {"orders": 6})
    pipeline._consumer = brokers  # type: ignore[assignment]
    await pipeline._rebalancer.assigned([("orders", 0), ("orders", 1), ("orders", 2)])
    assert brokers.asked == 0, "not from the callback"
    assert pipeline._budget.share == IDLE_SHARE  # nothing known yet: the safe side
    await pipeline._fetch()
    assert brokers.asked == 1
    assert pipeline._budget.share == pytest.approx(0.5)


class _MetadataDown(_Brokers):
    """Nothing to fetch for a few turns, and every partition count lookup fails."""

    def __init__(self, pipeline: Pipeline, turns: int) -> None:
        super().__init__(pipeline, {})
        self._turns = turns

    def consume(self, _count: int, _timeout: float) -> list[object]:
        self._turns -= 1
        if self._turns <= 0:
            self._pipeline._fetching = False
        return []

    def refresh_partition_counts(self) -> bool:
        self.asked += 1
        return False


async def test_a_failed_partition_count_is_asked_again_at_the_lag_reads_pace_not_every_turn() -> (
    None
):
    # The lookup is a metadata request on the Kafka thread (up to 2 s when the brokers are
    # away): asked on every turn of the fetch loop it would crowd out consume().
    pipeline = Pipeline(load_settings({**ENV, "KAFKA_SOURCE_TOPICS": "orders"}))
    brokers = _MetadataDown(pipeline, turns=5)
    pipeline._consumer = brokers  # type: ignore[assignment]
    await pipeline._rebalancer.assigned([("orders", 0)])
    await pipeline._fetch()
    assert brokers.asked == 2  # after the assignment, then once more after the first lag read
