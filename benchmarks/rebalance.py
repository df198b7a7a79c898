"""How long a running member stops delivering when a second member joins, and when it leaves.

One instance consumes a steady stream (distinct customers, short jobs, short batches) and
is watched through its own ``/metrics``: its ``records_total{outcome="succeeded"}`` moves
every few tenths of a second. A second instance joins the group, runs, then leaves with
SIGTERM. The *pause* is the longest stretch in which the first instance's counter did not
move, within ``Sizes.rebalance_window`` seconds of each event; the same measure over a quiet
stretch before
the join is the baseline (batch linger plus job time: the resolution of the measure).

Run per rebalance protocol: classic (cooperative-sticky) and KIP-848. Apache Kafka only;
Tansu's group coordinator is not what users run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Producer

from service.tools.samples import change_event
from tests.helpers import wait_for
from tests.integration.harness import GroupProtocol

BASELINE = 5.0
RATE = 1500  # events per second
SAMPLE = 0.05  # seconds between two scrapes of the watched instance


class SteadyFeed:
    """Distinct customers at a steady rate, on a thread, until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: int) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic, self._rate = topic, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self.sent = 0

    def start(self) -> SteadyFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._producer.flush(10)

    def _run(self) -> None:
        rng = random.Random(11)
        start = time.perf_counter()
        while not self._stop.is_set():
            due = int((time.perf_counter() - start) * self._rate)
            while self.sent < due:
                customer = f"r{self.sent}"
                envelope = orjson.loads(change_event(customer, 1, rng))
                self._producer.produce(
                    self._topic, key=customer.encode(), value=orjson.dumps(envelope)
                )
                self.sent += 1
            self._producer.poll(0)
            time.sleep(0.01)


def longest_pause(samples: list[tuple[float, float]], since: float, until: float) -> float:
    """The longest interval in ``[since, until]`` over which the sampled counter did not move."""
    longest, moved_at = 0.0, since
    previous: float | None = None
    for at, value in samples:
        if at < since:
            previous = value
            continue
        if at > until:
            break
        if previous is not None and value > previous:
            longest = max(longest, at - moved_at)
            moved_at = at
        previous = value
    return round(max(longest, min(until, samples[-1][0]) - moved_at), 2)


class Watch:
    """Scrapes one value of the watched instance every ``SAMPLE`` seconds, on a thread."""

    def __init__(self, read: Callable[[], float]) -> None:
        self.samples: list[tuple[float, float]] = []
        self._read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            self.samples.append((time.monotonic(), self._read()))


def measure(bench: Any, protocol: GroupProtocol) -> dict[str, Any]:
    """The pauses of the first member when a second joins and leaves (``bench`` is a Bench)."""
    bench.configure(job_duration_seconds=0.05)
    window = bench.sizes.rebalance_window
    baseline = min(BASELINE, window)
    tag = random.getrandbits(32)
    topic, group = f"rebalance-{tag}", f"rebalance-{protocol}-{tag}"
    bench.broker.create_topics({topic: 6})
    settings = {"BATCH_MAX_WAIT_SECONDS": "0.05", "BATCH_MAX_RECORDS": "200"}
    succeeded = 'customer_sync_records_total{outcome="succeeded"}'
    feed = SteadyFeed(bench.broker.bootstrap, topic, RATE).start()
    try:
        with bench.service(topic, group, protocol=protocol, name="first", **settings) as first:
            wait_for(lambda: first.samples().get(succeeded, 0) > 0, 60, "the first member")
            with Watch(lambda: first.samples().get(succeeded, 0.0)) as watch:
                time.sleep(baseline)
                joined = time.monotonic()
                second = bench.service(topic, group, protocol=protocol, name="second", **settings)
                with second:
                    wait_for(lambda: second.samples().get(succeeded, 0) > 0, 60, "the second")
                    time.sleep(max(0.0, joined + window - time.monotonic()))
                    left = time.monotonic()
                time.sleep(window)  # the second member left (SIGTERM) when its block ended
            samples = watch.samples
    finally:
        feed.stop()
    return {
        "protocol": protocol,
        "baseline_pause_s": longest_pause(samples, joined - baseline, joined),
        "join_pause_s": longest_pause(samples, joined, joined + window),
        "leave_pause_s": longest_pause(samples, left, left + window),
        "events_per_s": RATE,
    }
