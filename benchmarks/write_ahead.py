"""What the write-ahead costs per job: the wait before each POST, and commits per job.

``python -m benchmarks.write_ahead``: the pipeline runs in this process against a real
Apache Kafka node (``tests/brokers``, as the integration tests start it) and the simulator
(instant jobs, so the write-ahead is all there is to wait for), in three settings:

* ``grouped``: as shipped, write-aheads due together share one commit;
* ``one at a time``: ``commits.GROUP_COMMIT`` off, each write-ahead waits for its own;
* ``none``: no write-ahead (the POST goes out at once), the commits it would cost anyway.

and two loads: a *backlog* (every batch due at once, ``MAX_JOBS_IN_FLIGHT`` of them) and a
*trickle* (a batch due now and then). Reported per setting: jobs, commits sent per job, the
write-ahead's wait (median, 95th percentile, max) and the run's duration.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

from service.config import load_settings
from service.delivery import commits
from service.delivery.offsets import Intent
from service.delivery.pipeline import Pipeline, Until
from service.delivery.records import PendingRecord
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.metrics import Metrics
from service.tools.samples import generate
from tests.brokers.apache import KafkaNode
from tests.integration.harness import WIDE_BUDGET, produce, unique


def settings_for(bootstrap: str, base_url: str, topic: str, **extra: str) -> Any:
    return load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SOURCE_TOPICS": topic,
            "KAFKA_GROUP_ID": unique("wal-bench"),
            "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
            "GAMEBALL_BASE_URL": base_url,
            "GAMEBALL_API_KEY": "demo-api-key",
            "GAMEBALL_SECRET_KEY": "demo-secret-key",
            "TAGS_SYNC": "item",
            "LOG_LEVEL": "WARNING",
            **WIDE_BUDGET,
            **extra,
        }
    )


async def run(
    node: KafkaNode, simulator: RunningSimulator, setting: str, load: str
) -> dict[str, float]:
    topic = unique("wal-bench")
    node.create_topics({topic: 3, f"{topic}.dlq": 1})
    backlog = load == "backlog"
    extra = {"BATCH_MAX_RECORDS": "100", "MAX_JOBS_IN_FLIGHT": "8"}
    extra["BATCH_MAX_WAIT_SECONDS"] = "0.2" if backlog else "0.05"
    if backlog:
        produce(node.bootstrap, topic, generate(20_000, 20_000, seed=1), partitions=3)
    pipeline = Pipeline.from_settings(
        settings_for(node.bootstrap, simulator.base_url, topic, **extra), metrics=Metrics()
    )
    commits.GROUP_COMMIT = setting != "one at a time"
    waits: list[float] = []
    sent = [0]
    committer, consumer, tracker = pipeline._committer, pipeline._consumer, pipeline._tracker
    write_ahead = committer.write_ahead

    async def timed(records: list[PendingRecord], again: Intent | None) -> Intent | None:
        started = time.perf_counter()
        intent = await write_ahead(records, again)
        waits.append(time.perf_counter() - started)
        return intent

    async def at_once(_records: list[PendingRecord], _again: Intent | None) -> Intent:
        return Intent(time.time())

    tracker._write_ahead = at_once if setting == "none" else timed
    commit_async: Callable[..., Any] = consumer.commit_async

    def counted(offsets: Any) -> Any:
        sent[0] += 1
        return commit_async(offsets)

    consumer.commit_async = counted  # type: ignore[method-assign]
    trickling: threading.Thread | None = None
    if not backlog:
        # 2,000 records at ~200 a second: a batch of about 10 is due every 50 ms.
        events = list(generate(2000, 2000, seed=2))

        def trickle() -> None:
            producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 1})
            for start in range(0, len(events), 10):
                for event in events[start : start + 10]:
                    producer.produce(topic, key=event.key, value=event.value)
                producer.flush(10)
                time.sleep(0.05)

        trickling = threading.Thread(target=trickle, daemon=True)
        trickling.start()
    started = time.perf_counter()
    async with asyncio.timeout(600):
        await pipeline.run(until=Until(idle=True, quiet=2.0))
    if trickling is not None:
        trickling.join()
    jobs = pipeline.metrics.registry.get_sample_value("customer_sync_jobs_submitted_total") or 0
    quantiles = statistics.quantiles(waits, n=20) if len(waits) > 1 else [0.0] * 19
    return {
        "jobs": jobs,
        "commits/job": sent[0] / jobs if jobs else 0.0,
        "wait p50 ms": 1000 * statistics.median(waits) if waits else 0.0,
        "wait p95 ms": 1000 * quantiles[18],
        "wait max ms": 1000 * max(waits, default=0.0),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    """``python -m benchmarks.write_ahead [grouped|one|none ...]``: all three by default."""
    chosen = sys.argv[1:] or ["grouped", "one", "none"]
    settings = [s for s in ("grouped", "one at a time", "none") if s.split()[0] in chosen]
    rows: list[tuple[str, str, dict[str, float]]] = []
    with KafkaNode() as node, RunningSimulator(SimulatorConfig(seed=1)) as simulator:
        for load in ("backlog", "trickle"):
            for setting in settings:
                rows.append((load, setting, asyncio.run(run(node, simulator, setting, load))))
    columns = ["jobs", "commits/job", "wait p50 ms", "wait p95 ms", "wait max ms", "seconds"]
    print(f"{'load':8} {'write-ahead':14} " + " ".join(f"{c:>12}" for c in columns))
    for load, setting, figures in rows:
        print(f"{load:8} {setting:14} " + " ".join(f"{figures[c]:12.2f}" for c in columns))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
