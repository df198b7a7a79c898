"""End to end against the real broker and the simulator over HTTP: nothing lost, order kept."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import httpx
import orjson
import pytest

from service.delivery.debezium import UNAVAILABLE_VALUE
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.samples import BAD_EVENTS, Event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    GroupProtocol,
    Produced,
    ServiceProcess,
    fully_committed,
    produce,
    read_all,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration

PARTITIONS = 6


def latest_versions(produced: Produced) -> dict[str, int]:
    latest: dict[str, int] = {}
    for event, _partition, _offset in produced.events:
        if event.expected == "deliver" and event.customer_id is not None:
            latest[event.customer_id] = max(latest.get(event.customer_id, 0), event.version)
    return latest


def applied(simulator: RunningSimulator) -> list[dict[str, object]]:
    response = httpx.get(f"{simulator.base_url}/_sim/applied", params={"since": 0}, timeout=10)
    response.raise_for_status()
    body = response.json()
    entries: list[dict[str, object]] = body["applied"] if isinstance(body, dict) else body
    return entries


def applied_versions(simulator: RunningSimulator) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = defaultdict(list)
    for entry in applied(simulator):
        customer = entry["customer"]
        assert isinstance(customer, dict)
        versions[str(entry["customerId"])].append(
            int(customer["customerAttributes"]["custom"]["version"])
        )
    return versions


def everything_applied(simulator: RunningSimulator, expected: dict[str, int]) -> bool:
    latest = {c: v[-1] for c, v in applied_versions(simulator).items()}
    return all(latest.get(c) == v for c, v in expected.items())


def service_for(
    broker: KafkaNode,
    simulator: RunningSimulator,
    topic: str,
    group: str,
    tmp_path: Path,
    **extra: str,
) -> ServiceProcess:
    """The service, not started: for a bounded run (``run_until_idle``)."""
    env = service_env(broker, simulator.base_url, topic, group, **extra)
    return ServiceProcess(env, tmp_path / f"service-{unique('log')}.jsonl")


def start_service(
    broker: KafkaNode,
    simulator: RunningSimulator,
    topic: str,
    group: str,
    tmp_path: Path,
    protocol: GroupProtocol = "classic",
    **extra: str,
) -> ServiceProcess:
    env = service_env(broker, simulator.base_url, topic, group, protocol=protocol, **extra)
    return ServiceProcess(env, tmp_path / f"service-{unique('log')}.jsonl").start()


def setup_topic(broker: KafkaNode) -> tuple[str, str]:
    topic, group = unique("customers"), unique("group")
    broker.create_topics({topic: PARTITIONS, f"{topic}.dlq": 1})
    return topic, group


def test_5000_events_over_6_partitions_are_delivered_and_committed(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    produced = produce(
        broker.bootstrap, topic, generate(5000, 1500, seed=11), partitions=PARTITIONS
    )
    assert produced.total == 5000
    summary = service_for(broker, simulator, topic, group, tmp_path).run_until_idle(120)
    assert everything_applied(simulator, latest_versions(produced))
    assert fully_committed(broker.bootstrap, group, topic)
    assert summary.ready
    assert summary.consumed == summary.settled == 5000
    assert summary.outcomes["dead_lettered"] == 0


def test_bad_events_are_dead_lettered_with_reason_bytes_and_source(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    good = list(generate(300, 100, seed=3))
    bad = [Event(None, value, None, 0, reason) for value, reason in BAD_EVENTS.values()]
    rejected = Event(
        b"reject-me",
        b'{"customerId":"reject-me","email":"no-at-sign"}',
        "reject-me",
        1,
        "record_rejected",
    )
    tombstone = Event(b"c1", None, "c1", 0, "skip")
    deleted = Event(
        b"c2", b'{"op":"d","before":{"customer_id":"c2"},"after":null}', "c2", 0, "skip"
    )
    events = good[:150] + bad + [rejected, tombstone, deleted] + good[150:]
    produced = produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
    summary = service_for(broker, simulator, topic, group, tmp_path).run_until_idle(120)
    expected_letters = len(bad) + 1
    letters = read_all(broker.bootstrap, f"{topic}.dlq", expected_letters, timeout=60)
    assert len(letters) == expected_letters
    by_value = {letter.value: letter for letter in letters}
    where = {(e.value, e.key): (p, o) for e, p, o in produced.events}
    for event in [*bad, rejected]:
        letter = by_value[event.value]  # original bytes, unchanged
        assert letter.key == event.key
        assert letter.headers["dlq.reason"] == event.expected
        assert letter.headers["dlq.error"]
        partition, offset = where[(event.value, event.key)]
        assert letter.headers["dlq.source.topic"] == topic
        assert letter.headers["dlq.source.partition"] == str(partition)
        assert letter.headers["dlq.source.offset"] == str(offset)
        assert int(letter.headers["dlq.source.timestamp"]) > 0
    api_letter = by_value[rejected.value]
    assert api_letter.headers["dlq.error"] == "Invalid email address"
    assert api_letter.headers["dlq.job.id"]
    assert api_letter.headers["dlq.attempts"] == "1"
    assert everything_applied(simulator, latest_versions(produced))
    assert fully_committed(broker.bootstrap, group, topic)
    assert summary.outcomes["skipped"] == 2
    assert summary.outcomes["dead_lettered"] == expected_letters


def test_sigkill_mid_stream_loses_nothing(
    broker: KafkaNode, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    config = SimulatorConfig(job_duration_seconds=0.2, seed=5)
    with RunningSimulator(config) as simulator:
        produced = produce(
            broker.bootstrap, topic, generate(4000, 2000, seed=21), partitions=PARTITIONS
        )
        # The kill lands among jobs whose POST may be unanswered: the next owner holds their
        # customers until such a job must be over, GAMEBALL_REQUEST_TIMEOUT_SECONDS plus
        # JOB_TIMEOUT_SECONDS after it was written (the simulator answers in milliseconds).
        small = {
            "BATCH_MAX_RECORDS": "200",
            "JOB_TIMEOUT_SECONDS": "5",
            "GAMEBALL_REQUEST_TIMEOUT_SECONDS": "5",
        }
        first = start_service(broker, simulator, topic, group, tmp_path, group_protocol, **small)
        wait_for(lambda: len(applied(simulator)) >= 500, 60, "some deliveries before the kill")
        first.signal(signal.SIGKILL)
        first.wait(10)
        assert len(applied(simulator)) < 4000, "the kill came too late to prove anything"
        second = start_service(broker, simulator, topic, group, tmp_path, group_protocol, **small)
        try:
            expected = latest_versions(produced)
            wait_for(lambda: everything_applied(simulator, expected), 90, "delivery after restart")
            # The held customers' newest versions may be applied already (by the first
            # instance): their offsets settle when the hold ends, up to 5 s (the request
            # timeout) + 5 s (JOB_TIMEOUT_SECONDS) after their intent.
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 60, "offsets")
        finally:
            assert second.stop() == 0, second.logs()[-3000:]


def test_two_instances_share_partitions_across_a_rebalance(
    broker: KafkaNode, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    config = SimulatorConfig(job_duration_seconds=0.5, seed=9)
    # Slow enough (~30 s for one instance) that the second joins mid-stream.
    slow = {"BATCH_MAX_RECORDS": "50", "MAX_JOBS_IN_FLIGHT": "2"}
    with RunningSimulator(config) as simulator:
        produced = produce(
            broker.bootstrap, topic, generate(6000, 5000, seed=31), partitions=PARTITIONS
        )
        one = start_service(broker, simulator, topic, group, tmp_path, group_protocol, **slow)
        wait_for(lambda: len(applied(simulator)) >= 100, 60, "first instance delivering")
        two = start_service(broker, simulator, topic, group, tmp_path, group_protocol, **slow)
        try:
            wait_for(
                lambda: two.metric("customer_sync_records_consumed_total") > 0,
                60,
                "the second instance to get partitions",
            )
            expected = latest_versions(produced)
            wait_for(lambda: everything_applied(simulator, expected), 120, "delivery by both")
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "offsets")
            assert one.metric("customer_sync_records_total", outcome="dead_lettered") == 0
            assert two.metric("customer_sync_records_total", outcome="dead_lettered") == 0
        finally:
            assert two.stop() == 0, two.logs()[-3000:]
            assert one.stop() == 0, one.logs()[-3000:]


def test_429_and_5xx_bursts_delay_but_lose_and_dead_letter_nothing(
    broker: KafkaNode, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    config = SimulatorConfig(
        rate_limit_rate=0.3, server_error_rate=0.3, retry_after_seconds=0.1, seed=13
    )
    with RunningSimulator(config) as simulator:
        produced = produce(
            broker.bootstrap, topic, generate(2000, 800, seed=41), partitions=PARTITIONS
        )
        service = start_service(broker, simulator, topic, group, tmp_path, BATCH_MAX_RECORDS="100")
        try:
            expected = latest_versions(produced)
            wait_for(
                lambda: everything_applied(simulator, expected), 120, "delivery through faults"
            )
            # At 60 % failed requests a job's status can need 7-8 attempts, the last ones
            # backing off for up to 25 s each: the last settlement may trail the last
            # application by that much.
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 90, "offsets")
            assert service.metric("customer_sync_api_requests_total", code="429") > 0
            assert service.metric("customer_sync_records_total", outcome="dead_lettered") == 0
            assert service.metric("customer_sync_dead_letter_records_total") == 0
        finally:
            assert service.stop() == 0, service.logs()[-3000:]


def test_wrong_credentials_make_the_service_unready_and_keep_the_data(
    broker: KafkaNode, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    config = SimulatorConfig(api_key="the-real-key", secret_key="the-real-secret", seed=17)
    with RunningSimulator(config) as simulator:
        produced = produce(
            broker.bootstrap, topic, generate(500, 200, seed=51), partitions=PARTITIONS
        )
        service = start_service(broker, simulator, topic, group, tmp_path)
        try:
            wait_for(
                lambda: service.metric("customer_sync_api_requests_total", code="401") > 0,
                30,
                "the API to refuse the credentials",
            )
            response = service.get("/readyz")
            assert response is not None
            assert response.status_code == 503
            assert response.json()["credentials_accepted"] is False
            assert applied(simulator) == []
            assert service.metric("customer_sync_records_total", outcome="dead_lettered") == 0
            assert "demo-secret-key" not in service.logs()
            # The operator fixes the keys on the API side: delivery resumes by itself.
            httpx.post(
                f"{simulator.base_url}/_sim/config",
                json={"api_key": "demo-api-key", "secret_key": "demo-secret-key"},
                timeout=5,
            ).raise_for_status()
            expected = latest_versions(produced)
            wait_for(lambda: everything_applied(simulator, expected), 90, "delivery after the fix")
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "offsets")
            wait_for(service.ready, 30, "readiness after the fix")
            assert service.metric("customer_sync_dead_letter_records_total") == 0
        finally:
            assert service.stop() == 0, service.logs()[-3000:]


def test_a_customer_changed_many_times_never_goes_back_in_time(
    broker: KafkaNode, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    config = SimulatorConfig(job_duration_seconds=0.05, seed=23)
    with RunningSimulator(config) as simulator:
        # 20 customers changed 100 times each, produced in waves while the service
        # runs, so every customer's changes cross several batches and jobs.
        events = list(generate(2000, 20, seed=61))
        service = start_service(
            broker,
            simulator,
            topic,
            group,
            tmp_path,
            BATCH_MAX_RECORDS="5",
            BATCH_MAX_WAIT_SECONDS="0.05",
        )
        try:
            produced = Produced()
            for wave in range(5):
                part = produce(
                    broker.bootstrap,
                    topic,
                    events[wave * 400 : (wave + 1) * 400],
                    partitions=PARTITIONS,
                )
                produced.events.extend(part.events)
                produced.per_partition.update(part.per_partition)
                wave_latest = latest_versions(part)
                wait_for(
                    lambda w=wave_latest: everything_applied(simulator, w),
                    60,
                    f"wave {wave} applied",
                )
            expected = latest_versions(produced)
            history = applied_versions(simulator)
            for customer, versions in history.items():
                assert versions == sorted(versions), f"{customer} went back in time: {versions}"
                assert versions[-1] == expected[customer]
            assert all(len(v) >= 5 for v in history.values()), "customers did not cross batches"
            wait_for(lambda: fully_committed(broker.bootstrap, group, topic), 30, "offsets")
        finally:
            assert service.stop() == 0, service.logs()[-3000:]


def test_sigterm_flushes_the_buffer_waits_for_jobs_and_commits(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = setup_topic(broker)
    produced = produce(broker.bootstrap, topic, generate(600, 250, seed=71), partitions=PARTITIONS)
    # Nothing is due by size or time: every record waits in the buffer until SIGTERM.
    service = start_service(broker, simulator, topic, group, tmp_path, BATCH_MAX_WAIT_SECONDS="120")
    wait_for(
        lambda: service.metric("customer_sync_records_consumed_total") == produced.total,
        60,
        "every record consumed and buffered",
    )
    assert applied(simulator) == []
    assert service.metric("customer_sync_buffered_records") > 0
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0, service.logs()[-3000:]
    assert everything_applied(simulator, latest_versions(produced))
    assert fully_committed(broker.bootstrap, group, topic)
    assert '"event": "shutdown_complete"' in service.logs()


def test_an_update_that_leaves_a_toasted_value_out_keeps_the_insert_s_value(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An insert with a large jsonb, then an update whose ``after`` carries Debezium's
    placeholder for it (REPLICA IDENTITY DEFAULT): both wait on the topic, so the service
    coalesces them, and the merged change must still carry the insert's value."""
    topic, group = setup_topic(broker)
    blob = "x" * 6400
    insert = {"op": "c", "after": {"customer_id": "toast", "name": "New", "custom": {"blob": blob}}}
    update = {
        "op": "u",
        "before": None,
        "after": {"customer_id": "toast", "name": "Renamed", "custom": UNAVAILABLE_VALUE},
    }
    events = [Event(b"toast", orjson.dumps(v), "toast", 0, "deliver") for v in (insert, update)]
    produce(broker.bootstrap, topic, events, partitions=PARTITIONS)
    summary = service_for(broker, simulator, topic, group, tmp_path).run_until_idle(60)
    assert fully_committed(broker.bootstrap, group, topic)
    simulator.state.settle()
    assert simulator.state.latest["toast"] == {
        "customerId": "toast",
        "customerAttributes": {"displayName": "Renamed", "custom": {"blob": blob}},
    }
    assert summary.outcomes["coalesced"] == 1
    assert summary.outcomes["succeeded"] == 1
