"""The fetch loop shares the event loop fairly with the jobs (no broker needed)."""

from __future__ import annotations

import asyncio

from service.config import load_settings
from service.delivery.pipeline import Pipeline
from tests.unit.delivery.test_pipeline_rebalance import ENV, TP, Msg


class _FetchOnce:
    """A consumer that returns one big fetch, then nothing."""

    def __init__(self, pipeline: Pipeline, messages: list[Msg]) -> None:
        self._pipeline, self._messages = pipeline, messages
        self.partition_counts = dict.fromkeys(pipeline.settings.kafka_source_topics, 1)

    def consume(self, _count: int, _timeout: float) -> list[Msg]:
        messages, self._messages = self._messages, []
        if not messages:
            self._pipeline._fetching = False
        return messages

    def high_watermark(self, _tp: object) -> None:
        return None

    def refresh_partition_counts(self) -> bool:
        return True


async def test_a_big_fetch_does_not_hold_the_loop_while_it_is_decoded() -> None:
    # Jobs' HTTP answers are served by the same loop: a whole fetch decoded in
    # one go starved them (status requests took 150-220 ms under a backlog).
    pipeline = Pipeline(load_settings(ENV))
    await pipeline._rebalancer.assigned([TP])
    fetch = [Msg(offset, f"c{offset}") for offset in range(2000)]
    pipeline._consumer = _FetchOnce(pipeline, fetch)  # type: ignore[assignment]
    seen: list[int] = []

    async def other_task() -> None:
        while pipeline._fetching:
            seen.append(len(pipeline._batcher))
            await asyncio.sleep(0)

    await asyncio.gather(pipeline._fetch(), other_task())
    assert len(pipeline._batcher) == 2000
    assert any(0 < buffered < 2000 for buffered in seen), "nothing ran mid-fetch"
