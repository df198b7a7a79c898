"""A kill between a job's creation and the next commit costs no customer its order (issue 26).

The simulator creates the job and holds its POST's answer back; the test kills the service
while it waits, so the dead instance never learns the job's id and no commit of it can name
the job. The job runs on at the API. The next owner, and a newer change of the job's
customer read after it took over, must not be applied before that job is over: the
simulator's applied log is asked for every customer applied older-after-newer.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator
from service.tools.samples import Event, change_event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    GroupProtocol,
    ServiceProcess,
    fully_committed,
    produce,
    service_env,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DEAD_JOB_SECONDS = 20.0
"""How long the dead instance's job runs at the API: past the next owner's takeover."""
JOB_TIMEOUT = 22.0
"""The service's JOB_TIMEOUT_SECONDS: a job running longer would be stopped as hung."""
REQUEST_TIMEOUT = 5.0
"""The service's GAMEBALL_REQUEST_TIMEOUT_SECONDS (30 by default): the next owner holds x
until REQUEST_TIMEOUT + JOB_TIMEOUT after the intent. Shorter than the held answer (15 s),
longer than the kill takes to land."""


def applied_versions(simulator: RunningSimulator) -> dict[str, list[int]]:
    """Each customer's versions, in the order the API applied them."""
    simulator.state.settle()
    versions: dict[str, list[int]] = defaultdict(list)
    for entry in simulator.state.applied:
        custom = entry.customer["customerAttributes"]["custom"]
        versions[entry.customer_id].append(int(custom["version"]))
    return versions


def older_after_newer(versions: dict[str, list[int]]) -> dict[str, list[int]]:
    """The customers some older version of which was applied after a newer one."""
    return {
        customer: history
        for customer, history in versions.items()
        if any(later < max(history[:i]) for i, later in enumerate(history) if i)
    }


def test_a_kill_between_a_jobs_creation_and_the_next_commit_applies_nothing_older_after_newer(
    broker: KafkaNode, simulator: RunningSimulator, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = unique("write-ahead"), unique("write-ahead-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    rng = random.Random(11)

    def x(version: int) -> Event:
        return Event(b"x", change_event("x", version, rng), "x", version, "deliver")

    env = service_env(
        broker,
        simulator.base_url,
        topic,
        group,
        protocol=group_protocol,
        BATCH_MAX_WAIT_SECONDS="0.1",
        JOB_TIMEOUT_SECONDS=str(JOB_TIMEOUT),
        GAMEBALL_REQUEST_TIMEOUT_SECONDS=str(REQUEST_TIMEOUT),
    )
    first = ServiceProcess(env, tmp_path / "a.log").start()
    second: ServiceProcess | None = None
    try:
        # x and a few others, delivered and committed.
        produce(broker.bootstrap, topic, [x(1), *generate(20, 10, seed=12)], partitions=1)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "the first wave")
        # x's next change: its job is created, runs for DEAD_JOB_SECONDS, and its POST is
        # answered only after the kill.
        simulator.state.update_config(
            {"created_answer_delay_seconds": 15.0, "job_duration_seconds": DEAD_JOB_SECONDS}
        )
        jobs_before = simulator.state.jobs_created
        produce(broker.bootstrap, topic, [x(2)], partitions=1)
        wait_for(lambda: simulator.state.jobs_created > jobs_before, 30, "x@2's job")
        first.signal(signal.SIGKILL)
        first.wait(10)
        killed = time.time()
        dead_job = max(simulator.state.jobs.values(), key=lambda job: job.order)
        assert [c["customerId"] for c in dead_job.customers] == ["x"]
        simulator.state.update_config(
            {"created_answer_delay_seconds": 0.0, "job_duration_seconds": 0.0}
        )
        second = ServiceProcess(env, tmp_path / "b.log").start()
        wait_for(lambda: '"partitions_assigned"' in second.logs(), 60, "the takeover")
        # Read after the takeover: x's newest change, and a customer nobody held.
        produce(broker.bootstrap, topic, [x(3), *generate(1, 1, seed=13, prefix="y")], partitions=1)
        wait_for(lambda: "y0" in applied_versions(simulator), 30, "y0, held by nothing")
        y_applied = time.time()
        wait_for(
            lambda: 3 in applied_versions(simulator)["x"] and dead_job.state.terminal,
            JOB_TIMEOUT + 60,
            "x@3 applied, and the dead job over",
        )
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "all committed")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    versions = applied_versions(simulator)
    print(
        f"x applied {versions['x']}; the dead job ended {dead_job.state.value}; "
        f"y0 applied {y_applied - killed:.1f} s after the kill"
    )
    assert dead_job.state.value == "completed", "the dead job never applied x@2"
    takeover = [
        line
        for line in (tmp_path / "b.log").read_text().splitlines()
        if any(word in line for word in ("takeover", "held_for", "committed_offsets", "assigned"))
    ]
    assert older_after_newer(versions) == {}, f"a customer went back in time: {takeover}"
    assert versions["x"][-1] == 3
    assert y_applied < killed + DEAD_JOB_SECONDS, "a customer the dead job did not carry waited"
    (held,) = [
        json.loads(line)
        for line in (tmp_path / "b.log").read_text().splitlines()
        if '"customers_held_for_unknown_job"' in line
    ]
    assert held["customers"] == 1
    assert held["seconds"] <= REQUEST_TIMEOUT + JOB_TIMEOUT, "held past what the settings say"
