"""A crash costs nothing: what the commit metadata says is settled is not redone (issue 14).

Each test kills an instance at a chosen moment and lets another take its partitions over,
then asks the simulator what the API saw: which jobs ran when, and what was applied, in
what order, how many times.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from service.delivery.ledger import decode
from service.delivery.offsets import Mark
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.gameball.simulator.state import Job
from service.tools.samples import BAD_EVENTS, Event, change_event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    GroupProtocol,
    ServiceProcess,
    committed_metadata,
    fully_committed,
    produce,
    read_all,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration


def start(
    broker: KafkaNode,
    simulator: RunningSimulator,
    topic: str,
    group: str,
    log: Path,
    protocol: GroupProtocol = "classic",
    **extra: str,
) -> ServiceProcess:
    env = service_env(broker, simulator.base_url, topic, group, protocol=protocol, **extra)
    return ServiceProcess(env, log).start()


def ledger_jobs(broker: KafkaNode, group: str, topic: str) -> set[str]:
    committed = committed_metadata(broker.bootstrap, group, topic, 1)
    ledger = decode(committed[0][1]) if 0 in committed else None
    return set(ledger.jobs.values()) if ledger is not None else set()


def ledger_settled(broker: KafkaNode, group: str, topic: str) -> int:
    """How many records the committed ledger shows settled above the committed offset."""
    committed = committed_metadata(broker.bootstrap, group, topic, 1)
    ledger = decode(committed[0][1]) if 0 in committed else None
    if ledger is None or ledger.marks is None:
        return 0
    return sum(1 for mark in ledger.marks if Mark.SUCCEEDED <= mark <= Mark.COALESCED)


def customers(job: Job) -> set[str]:
    return {str(c["customerId"]) for c in job.customers}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(stuck_job_rate=1.0, seed=2)  # the first job hangs (half applied)


def test_a_dead_instances_running_job_is_stopped_before_its_customers_go_out_again(
    broker: KafkaNode, simulator: RunningSimulator, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = unique("takeover-a"), unique("takeover-a-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    events = list(generate(40, 40, seed=4))
    produce(broker.bootstrap, topic, events, partitions=1)
    first = start(broker, simulator, topic, group, tmp_path / "a.log", group_protocol)
    second: ServiceProcess | None = None
    try:
        wait_for(lambda: simulator.state.jobs_created >= 1, 30, "the first job")
        simulator.state.update_config({"stuck_job_rate": 0.0})
        hung = next(iter(simulator.state.jobs.values()))
        wait_for(lambda: hung.id in ledger_jobs(broker, group, topic), 10, "the job in a commit")
        first.signal(signal.SIGKILL)
        first.wait(10)
        second = start(broker, simulator, topic, group, tmp_path / "b.log", group_protocol)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "all committed")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    assert hung.stopped_at is not None, "the dead instance's job was never stopped"
    later = [job for job in simulator.state.jobs.values() if job is not hung]
    again = [job for job in later if customers(job) & customers(hung)]
    assert again, "the hung job's unapplied customers were never submitted again"
    assert all(job.created_wall > hung.stopped_at for job in again)
    simulator.state.settle()
    applied = Counter(entry.customer_id for entry in simulator.state.applied)
    assert set(applied) == {e.customer_id for e in events}
    assert max(applied.values()) == 1, "what the dead job applied was applied again"


def test_the_api_never_sees_an_older_change_after_a_newer_one_across_a_sigkill(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("takeover-b"), unique("takeover-b-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    rng = random.Random(5)

    def x(version: int) -> Event:
        return Event(b"x", change_event("x", version, rng), "x", version, "deliver")

    # The kill lands right after x's newest job, whose id may not be committed yet: the next
    # owner then holds x until such a job must be over (docs/guarantees.md, write-ahead):
    # GAMEBALL_REQUEST_TIMEOUT_SECONDS plus JOB_TIMEOUT_SECONDS after its intent.
    small = {
        "BATCH_MAX_RECORDS": "50",
        "BATCH_MAX_WAIT_SECONDS": "0.1",
        "JOB_TIMEOUT_SECONDS": "5",
        "GAMEBALL_REQUEST_TIMEOUT_SECONDS": "5",
    }
    first = start(broker, simulator, topic, group, tmp_path / "a.log", **small)
    second: ServiceProcess | None = None
    try:
        # A hung job holds the committed offset, so x's whole history stays above it.
        produce(broker.bootstrap, topic, list(generate(20, 20, seed=6, prefix="h")), partitions=1)
        wait_for(lambda: simulator.state.jobs_created >= 1, 30, "the job that hangs")
        simulator.state.update_config({"stuck_job_rate": 0.0})
        filler = iter(generate(600, 600, seed=7, prefix="f"))
        # x changes five times, in three waves, each change batches apart from the next.
        for versions in ((1, 2), (3, 4), (5,)):
            events: list[Event] = []
            for version in versions:
                events += [x(version), *(next(filler) for _ in range(100))]
            produce(broker.bootstrap, topic, events, partitions=1)
            newest = versions[-1]
            wait_for(lambda v=newest: x_history(simulator)[-1:] == [v], 30, f"x v{newest}")
        # x's newest change is applied: kill at once, before the job's end is seen.
        first.signal(signal.SIGKILL)
        first.wait(10)
        second = start(broker, simulator, topic, group, tmp_path / "b.log", **small)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 90, "committed")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    history = x_history(simulator)
    after_newest = history[history.index(5) :]
    assert after_newest == [5] * len(after_newest), f"x went back in time: {history}"
    print(f"x applied {history}: its newest change {len(after_newest)} time(s)")


def x_history(simulator: RunningSimulator) -> list[int]:
    simulator.state.settle()
    return [
        int(entry.customer["customerAttributes"]["custom"]["version"])
        for entry in simulator.state.applied
        if entry.customer_id == "x"
    ]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_hung_job_costs_the_new_owner_only_its_own_records(
    broker: KafkaNode, simulator: RunningSimulator, stop: signal.Signals, tmp_path: Path
) -> None:
    topic, group = unique("takeover-c"), unique("takeover-c-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    extra = {"SHUTDOWN_TIMEOUT_SECONDS": "4", "MAX_BUFFERED_RECORDS": "20000"}
    first = start(broker, simulator, topic, group, tmp_path / "a.log", **extra)
    second: ServiceProcess | None = None
    try:
        early = list(generate(50, 50, seed=8, prefix="h"))
        produce(broker.bootstrap, topic, early, partitions=1)
        wait_for(lambda: simulator.state.jobs_created >= 1, 30, "the job that hangs")
        simulator.state.update_config({"stuck_job_rate": 0.0})
        hung = next(iter(simulator.state.jobs.values()))
        # 5,000 later records settle behind it, 20 of them as dead letters.
        bad = [Event(None, BAD_EVENTS["not json"][0], None, 0, "invalid_json")] * 20
        later = list(generate(5000, 5000, seed=9, prefix="l"))
        produce(broker.bootstrap, topic, later[:2500] + bad + later[2500:], partitions=1)
        wait_for(
            lambda: first.metric("customer_sync_records_total") >= 5020, 60, "the rest settled"
        )
        held_at = committed_metadata(broker.bootstrap, group, topic, 1).get(0, (0, ""))[0]
        assert held_at < 50, "the hung job no longer holds the committed offset"
        # The hung job holds every change of its customers: the ones its items absorbed ride
        # with it (batching.py), and one read after it was created waits behind it.
        carried = sum(1 for event in early if event.customer_id in customers(hung))
        settled = 50 + 20 + 5000 - held_at - carried
        wait_for(lambda: hung.id in ledger_jobs(broker, group, topic), 10, "a ledger with the job")
        # The kill comes once the ledger says everything else is settled: what settled
        # after the last commit is the one thing a crash may still cost (docs/guarantees.md).
        wait_for(lambda: ledger_settled(broker, group, topic) == settled, 10, "the whole ledger")
        jobs_before = set(simulator.state.jobs)
        first.signal(stop)
        first.wait(30)
        second = start(broker, simulator, topic, group, tmp_path / "b.log", **extra)
        wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "all committed")
        inherited = second.metric("customer_sync_records_inherited_total")
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
    redone = [job for job_id, job in simulator.state.jobs.items() if job_id not in jobs_before]
    assert redone, "the hung job's records were never redone"
    assert set().union(*(customers(job) for job in redone)) <= customers(hung)
    # Everything above the committed offset but the hung job's records: counted, not redone.
    assert inherited == settled
    letters = read_all(broker.bootstrap, f"{topic}.dlq", 20)
    assert len(letters) == 20, "a record dead-lettered before the crash was dead-lettered again"
