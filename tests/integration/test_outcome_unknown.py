"""An id-less item whose fate is unknown is dead-lettered ``outcome_unknown``, never sent twice
(issue 26): a balance adjustment's second delivery would pay its points out again.

The simulator creates the job and holds its POST's answer back; the test kills the service
while it waits, so the dead instance never learns the job's id. Its write-ahead intent, in the
committed ledger, names the adjustment. The next owner must not send it again: it
dead-letters it ``outcome_unknown`` for an operator to reconcile, while the dead instance's
job applies it once.
"""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

from service.gameball.operations import Operation
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import Event
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    GroupProtocol,
    ServiceProcess,
    fully_committed,
    produce,
    read_all,
    service_env,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(seed=1, all_customers_known=True)


def adjustment(customer: str, points: int, note: str) -> Event:
    row = {"customer_id": customer, "points": points, "note": note}
    return Event(customer.encode(), orjson.dumps({"op": "c", "after": row}), customer, 0, "x")


def applied_notes(simulator: RunningSimulator) -> list[str]:
    entries = simulator.state.items_applied_since(Operation.BALANCE_ADJUSTMENT, 0)
    return [str(entry["item"]["reason"]) for entry in entries]


def test_a_kill_while_an_adjustments_post_is_unanswered_dead_letters_it_and_sends_it_once(
    broker: KafkaNode, simulator: RunningSimulator, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = unique("adjustments"), unique("adjustments-group")
    dlq = f"{topic}.dlq"
    broker.create_topics({topic: 1, dlq: 1})
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"""\
routes:
  - name: adjustments
    operation: balance-adjustment
    topics: [{topic}]
    unsafe_without_ids: true
    mapping: {{customerId: customer_id, amount: points, reason: note}}
"""
    )
    env = service_env(
        broker,
        simulator.base_url,
        topic,
        group,
        protocol=group_protocol,
        ROUTES_FILE=str(routes),
        BATCH_MAX_WAIT_SECONDS="0.1",
    )
    del env["KAFKA_SOURCE_TOPICS"]
    first = ServiceProcess(env, tmp_path / "a.log").start()
    second: ServiceProcess | None = None
    try:
        produce(broker.bootstrap, topic, [adjustment("x", 10, "first")], partitions=1)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "the first")
        # The second adjustment's job is created, and its POST answered only after the kill.
        simulator.state.update_config({"created_answer_delay_seconds": 15.0})
        jobs_before = simulator.state.jobs_created
        produce(broker.bootstrap, topic, [adjustment("x", 20, "second")], partitions=1)
        wait_for(lambda: simulator.state.jobs_created > jobs_before, 30, "the second's job")
        first.signal(signal.SIGKILL)
        first.wait(10)
        simulator.state.update_config({"created_answer_delay_seconds": 0.0})
        second = ServiceProcess(env, tmp_path / "b.log").start()
        # A third, read by the next owner: delivered as usual.
        produce(broker.bootstrap, topic, [adjustment("x", 30, "third")], partitions=1)
        wait_for(lambda: "third" in applied_notes(simulator), 60, "the third applied")
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "all committed")
        letters = read_all(broker.bootstrap, dlq, 1)
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    assert sorted(applied_notes(simulator)) == ["first", "second", "third"], "each applied once"
    stats = simulator.state.stats()["operations"]["balance-adjustment"]
    assert stats["double_applied"] == 0
    assert [(d.headers["dlq.reason"], d.headers["dlq.source.offset"]) for d in letters] == [
        ("outcome_unknown", "1")
    ], "the second, whose fate the next owner could not know, for an operator to reconcile"
    assert orjson.loads(letters[0].value or b"")["after"]["note"] == "second"
