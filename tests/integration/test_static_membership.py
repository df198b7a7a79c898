"""Static membership: a member killed and restarted in time takes its partitions back quietly.

With ``KAFKA_CLIENT_GROUP_INSTANCE_ID`` (``group.instance.id``) the group coordinator keeps
a member's assignment through a restart shorter than the session timeout: the restarted
process gets the same partitions, and the other members are not rebalanced at all (KIP-345
for the classic protocol; KIP-848 keeps static members too). The other member's own log
is the witness: it never revokes, loses or gains a partition meanwhile.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import generate
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

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(job_duration_seconds=0.05, seed=3)


def rebalance_events(service: ServiceProcess) -> list[tuple[str, tuple[str, ...]]]:
    """``partitions_assigned``/``revoked``/``lost`` log events, in order, with partitions."""
    events = []
    for line in service.logs().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("event", "").startswith("partitions_"):
            events.append((entry["event"], tuple(entry["partitions"])))
    return events


def owned(service: ServiceProcess) -> set[str]:
    """The partitions a member holds now, by its own log."""
    held: set[str] = set()
    for event, partitions in rebalance_events(service):
        if event == "partitions_assigned":
            held |= set(partitions)
        else:
            held -= set(partitions)
    return held


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_static_member_restarted_in_time_gets_its_partitions_back_without_a_rebalance(
    broker: KafkaNode,
    simulator: RunningSimulator,
    group_protocol: GroupProtocol,
    stop: signal.Signals,
    tmp_path: Path,
) -> None:
    topic, group = unique("static"), unique("static-group")
    broker.create_topics({topic: PARTITIONS, f"{topic}.dlq": 1})
    # Classic: a 20 s session, longer than a process restart. KIP-848: the broker's setting.
    session = {"KAFKA_CLIENT_SESSION_TIMEOUT_MS": "20000"} if group_protocol == "classic" else {}

    def member(name: str, log: str) -> ServiceProcess:
        env = service_env(
            broker,
            simulator.base_url,
            topic,
            group,
            protocol=group_protocol,
            KAFKA_CLIENT_GROUP_INSTANCE_ID=name,
            **session,
        )
        return ServiceProcess(env, tmp_path / log).start()

    first = member("member-a", "a.log")
    wait_for(lambda: len(owned(first)) == PARTITIONS, 30, "member a holding every partition")
    second = member("member-b", "b.log")
    restarted: ServiceProcess | None = None
    try:
        wait_for(
            lambda: owned(second) and len(owned(first) | owned(second)) == PARTITIONS,
            30,
            "the partitions shared between a and b",
        )
        b_before, a_before = rebalance_events(second), owned(first)
        produce(broker.bootstrap, topic, generate(400, 400, seed=1), partitions=PARTITIONS)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "first wave")

        first.signal(stop)
        first.wait(30)
        restarted = member("member-a", "a-restarted.log")
        if group_protocol == "consumer" and stop == signal.SIGKILL:
            # KIP-848 keeps a crashed static member's instance id until its session times out
            # on the broker, and refuses it meanwhile (UNRELEASED_INSTANCE_ID, fatal for the
            # client). The service must say so and exit, never linger holding nothing.
            assert restarted.wait(30) == 1
            assert "KAFKA_CLIENT_GROUP_INSTANCE_ID" in restarted.logs()
            return
        wait_for(lambda: owned(restarted), 30, "member a back in the group")
        produce(broker.bootstrap, topic, generate(400, 400, seed=2), partitions=PARTITIONS)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "second wave")

        assert rebalance_events(second) == b_before, "member b was rebalanced meanwhile"
        assert owned(restarted) == a_before, "member a came back to other partitions"
    finally:
        for process in (first, second, restarted):
            if process is not None:
                process.stop()
