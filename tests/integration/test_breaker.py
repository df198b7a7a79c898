"""The dead-letter breaker against Apache Kafka and the simulator over HTTP.

A bug is planted in a normaliser (``faulty_service.py``): every record that meets it is an
internal fault. The breaker must open after ``RATIO x WINDOW + 1`` dead letters: no more good
data dead-lettered, the instance not ready, the committed offset where it was. A restart on
fixed code then delivers everything the breaker held back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from service.gameball.simulator import RunningSimulator
from service.tools.samples import Event
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.faulty_service import FAULTY_DOMAIN
from tests.integration.harness import (
    ServiceProcess,
    committed,
    end_offsets,
    produce,
    read_all,
    service_env,
    unique,
)
from tests.integration.test_delivery import applied

pytestmark = pytest.mark.integration

WINDOW = 100
TRIP_AFTER = WINDOW // 2 + 1  # more than half of the window: the 51st dead letter opens it


class FaultyService(ServiceProcess):
    """The service with the planted bug, run as a real process like any other."""

    def start(self) -> FaultyService:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.faulty_service"],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        return self


def events(start: int, end: int, domain: str = "@example.com") -> Iterator[Event]:
    for i in range(start, end):
        value = orjson.dumps({"customerId": f"c{i}", "email": f"c{i}{domain}"})
        yield Event(f"c{i}".encode(), value, f"c{i}", 1, "deliver")


def log_lines(service: ServiceProcess, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in service.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_a_decoder_fault_on_every_record_opens_the_breaker_and_loses_nothing(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("breaker"), unique("group")
    dlq = f"{topic}.dlq"
    broker.create_topics({topic: 1, dlq: 1})
    env = service_env(
        broker,
        simulator.base_url,
        topic,
        group,
        DLQ_BREAKER_WINDOW=str(WINDOW),
        DLQ_BREAKER_RATIO="0.5",
        DLQ_BREAKER_COOLDOWN_SECONDS="3600",
    )
    produce(broker.bootstrap, topic, events(0, 200), partitions=1)
    service = FaultyService(env, tmp_path / "faulty.jsonl").start()
    try:
        # Good records go through the faulty build untouched, and are committed.
        wait_for(lambda: committed(broker.bootstrap, group, topic, 1).get(0) == 200, 60, "200")
        wait_for(service.ready, 10, "readiness")

        # Then every record meets the bug: 300 of them, and 100 good ones after.
        produce(broker.bootstrap, topic, events(200, 500, FAULTY_DOMAIN), partitions=1)
        produce(broker.bootstrap, topic, events(500, 600), partitions=1)

        def breaker_open() -> bool:
            response = service.get("/readyz")
            return response is not None and response.json().get("dead_letter_breaker_open")

        wait_for(breaker_open, 30, "the breaker to open")
        response = service.get("/readyz")
        assert response is not None
        assert response.status_code == 503
        wait_for(
            lambda: service.metric("customer_sync_dead_letter_records_total") >= TRIP_AFTER,
            30,
            "the dead letters written before it opened",
        )
        assert service.metric("customer_sync_decoder_faults_total") == TRIP_AFTER
        assert service.metric("customer_sync_dead_letter_breaker_open") == 1
        # Its partitions are paused: what it holds in memory is what it had fetched.
        wait_for(lambda: service.metric("customer_sync_consumer_paused") == 1, 10, "paused")

        # Nothing committed since: the last dead letters were acknowledged after it opened,
        # and commits go out every second at most; watch a few of them.
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            assert committed(broker.bootstrap, group, topic, 1) == {0: 200}
            time.sleep(0.5)

        # Exactly the window's worth in the dead-letter topic, each a decoder fault: reason
        # invalid_event (SPEC §5's closed set), an error that says it is our bug.
        assert end_offsets(broker.bootstrap, dlq) == {0: TRIP_AFTER}
        letters = read_all(broker.bootstrap, dlq, TRIP_AFTER)
        assert {letter.headers["dlq.reason"] for letter in letters} == {"invalid_event"}
        assert all(letter.headers["dlq.error"].startswith("decoder_fault: ") for letter in letters)
        offsets = sorted(int(letter.headers["dlq.source.offset"]) for letter in letters)
        assert offsets == list(range(200, 200 + TRIP_AFTER))
        assert "KeyError" in letters[0].headers["dlq.error"]

        # The operator's log: the fault with its stack, and one sentence naming the cause.
        fault = log_lines(service, "decoder_fault")[0]
        assert "_buggy_text" in str(fault["exception"])
        (opened,) = log_lines(service, "dead_letter_breaker_open")
        assert opened["top_reason"] == "decoder_fault"
        assert opened["example_offset"] == 200 + TRIP_AFTER - 1
        assert f"{topic}[0]@{200 + TRIP_AFTER - 1}" in str(opened["message"])

        # Nothing after the record that opened it reached the API, good or not.
        delivered = {str(entry["customerId"]) for entry in applied(simulator)}
        assert delivered == {f"c{i}" for i in range(200)}

        # Shutting down commits nothing either.
        assert service.stop() == 0
        assert committed(broker.bootstrap, group, topic, 1) == {0: 200}
        assert log_lines(service, "revoke_commit_withheld")
    finally:
        service.stop()

    # Fixed code, restarted: everything held back is delivered, nothing is dead-lettered again.
    fixed = ServiceProcess(env, tmp_path / "fixed.jsonl").start()
    try:
        wait_for(lambda: committed(broker.bootstrap, group, topic, 1).get(0) == 600, 60, "600")
        delivered = {str(entry["customerId"]) for entry in applied(simulator)}
        assert delivered == {f"c{i}" for i in range(600)}
        assert end_offsets(broker.bootstrap, dlq) == {0: TRIP_AFTER}
        assert fixed.ready()
    finally:
        fixed.stop()
