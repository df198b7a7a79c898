"""``customer-sync check`` as a subprocess: one line per check, the fix in the line, exit codes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.embedded_broker import free_port
from tests.brokers.apache import KafkaNode
from tests.integration.commands import customer_sync, tool_env
from tests.integration.harness import unique

pytestmark = pytest.mark.integration


def topics(broker: KafkaNode, *, dlq: bool = True) -> str:
    topic = unique("check")
    broker.create_topics({topic: 3, **({f"{topic}.dlq": 1} if dlq else {})})
    return topic


def test_a_working_setup_passes_every_check(broker: KafkaNode, simulator: RunningSimulator) -> None:
    topic = topics(broker)
    out = customer_sync("check", env=tool_env(broker, simulator.base_url, topic))
    out.assert_no_traceback()
    lines = out.stdout.splitlines()
    assert out.code == 0, out
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "✓ configuration",
        "✓ route customers",
        "✓ brokers",
        f"✓ source topic {topic}",
        f"✓ dead-letter topic {topic}.dlq",
        f"✓ group {topic}-group",
        f"· records of {topic}",
        "✓ API credentials",
        "✓ API version",
        "✓ job API",
    ]
    assert f"source topic {topic}: 3 partition(s)" in out.stdout
    assert lines[-1] == "all checks passed"


def test_a_routes_file_is_reported_route_by_route_and_its_topics_checked(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    customers = topics(broker)
    orders = unique("orders")
    broker.create_topics({orders: 1})
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"""\
routes:
  - {{name: members, operation: customers, topics: [{customers}]}}
  - name: orders
    operation: orders
    topics: [{orders}]
    mapping: {{customerId: customer_id, orderId: id, orderDate: at, totalPaid: total}}
"""
    )
    env = tool_env(broker, simulator.base_url, customers, ROUTES_FILE=str(routes))
    del env["KAFKA_SOURCE_TOPICS"]
    out = customer_sync("check", env=env)
    out.assert_no_traceback()
    assert out.code == 0, out  # run delivers every route of the file
    lines = out.stdout.splitlines()
    assert lines[1:3] == [
        f"✓ route members: customers from {customers}: upsert, the latest state of a customer "
        f"wins → dead letters {customers}.dlq",
        f"✓ route orders: orders from {orders}: keyed by orderId, a second delivery is refused "
        f"as a duplicate → dead letters {customers}.dlq",
    ]
    assert f"✓ source topic {orders}: 1 partition(s)" in lines
    assert f"✓ source topic {customers}: 3 partition(s)" in lines


def test_lag_is_reported_from_committed_offsets_and_never_fails(
    broker: KafkaNode, simulator: RunningSimulator
) -> None:
    topic = topics(broker)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    for i in range(5):  # one producer batch: the broker's end offset counts every record
        producer.produce(topic, key=b"k", value=f'{{"customerId":"{i}"}}'.encode(), partition=0)
    assert producer.flush(10) == 0
    env = tool_env(broker, simulator.base_url, topic)
    before = customer_sync("check", env=env)
    assert "lag 5 record(s) over 3 partition(s)" in before.stdout, before
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"{topic}-group"})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    consumer.close()
    after = customer_sync("check", env=env)
    assert "lag 3 record(s)" in after.stdout, after
    assert after.code == 0, after


def test_a_missing_topic_fails_with_the_command_that_creates_it(
    broker: KafkaNode, simulator: RunningSimulator
) -> None:
    topic = topics(broker, dlq=False)
    out = customer_sync("check", env=tool_env(broker, simulator.base_url, topic))
    out.assert_no_traceback()
    assert out.code == 1
    assert (
        f"✗ dead-letter topic {topic}.dlq: does not exist; create it: kafka-topics.sh "
        f"--bootstrap-server {broker.bootstrap} --create --topic {topic}.dlq --partitions 1"
    ) in out.stdout
    assert f"✓ source topic {topic}" in out.stdout
    assert out.stdout.splitlines()[-1] == "some checks failed"


def test_rejected_credentials_fail_and_name_the_variables(
    broker: KafkaNode, simulator: RunningSimulator
) -> None:
    topic = topics(broker)
    env = tool_env(broker, simulator.base_url, topic, GAMEBALL_SECRET_KEY="wrong")
    out = customer_sync("check", env=env)
    out.assert_no_traceback()
    assert out.code == 1
    (line,) = [x for x in out.stdout.splitlines() if "API credentials" in x]
    assert line.startswith("✗ API credentials: rejected by")
    assert "check GAMEBALL_API_KEY and GAMEBALL_SECRET_KEY" in line
    assert "wrong" not in out.stdout + out.stderr  # the secret is never echoed


def test_an_unreachable_broker_is_reported_within_the_timeout(
    simulator: RunningSimulator,
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "GAMEBALL_BASE_URL": simulator.base_url,
        "GAMEBALL_API_KEY": "demo-api-key",
        "GAMEBALL_SECRET_KEY": "demo-secret-key",
    }
    started = time.monotonic()
    out = customer_sync("check", "--timeout", "2", env=env)
    assert time.monotonic() - started < 10
    out.assert_no_traceback()
    assert out.code == 1
    assert "✗ brokers: no answer from 127.0.0.1:" in out.stdout
    assert "check KAFKA_BOOTSTRAP_SERVERS" in out.stdout
    assert "✓ API credentials" in out.stdout  # the other checks still ran
    assert out.stderr == ""


def test_an_unreachable_api_is_a_failure_not_a_pass(broker: KafkaNode) -> None:
    topic = topics(broker)
    env = tool_env(broker, f"http://127.0.0.1:{free_port()}", topic)
    out = customer_sync("check", "--timeout", "2", env=env)
    assert out.code == 1
    assert "✗ API credentials: http://127.0.0.1:" in out.stdout
    assert "check GAMEBALL_BASE_URL" in out.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"BATCH_MAX_RECORDS": "5000"}, "BATCH_MAX_RECORDS is invalid '5000'"),
        ({"GAMEBALL_API_KEY": ""}, "GAMEBALL_API_KEY is invalid"),
        ({"FIELD_MAPPING_FILE": "/nonexistent/mapping.yaml"}, "FIELD_MAPPING_FILE"),
    ],
)
def test_a_bad_configuration_stops_at_the_first_line(
    override: dict[str, str], expected: str
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "GAMEBALL_API_KEY": "k",
        "GAMEBALL_SECRET_KEY": "s",
        **override,
    }
    out = customer_sync("check", env=env)
    out.assert_no_traceback()
    assert out.code == 2
    first = out.stdout.splitlines()[0]
    assert first.startswith("✗ configuration: "), out
    assert expected in first, out


def test_on_a_broker_that_just_started_the_group_is_measured_not_unknown(
    simulator: RunningSimulator,
) -> None:
    # A fresh (or restarted) Apache Kafka answers NOT_COORDINATOR until its group
    # coordinator has loaded; librdkafka does not ask again by itself. Tansu never did this,
    # and check printed "lag unknown" for the first group of every new cluster.
    with KafkaNode() as fresh:
        topic = topics(fresh)
        out = customer_sync("check", env=tool_env(fresh, simulator.base_url, topic))
    out.assert_no_traceback()
    assert f"✓ group {topic}-group: lag 0 record(s) over 3 partition(s)" in out.stdout, out


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"


def produce_captured(broker: KafkaNode, topic: str, setup: str, cases: tuple[str, ...]) -> int:
    """Real Debezium records of the ``customers`` table (tests/fixtures/debezium)."""
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    count = 0
    for case in cases:
        for record in json.loads((FIXTURES / setup / f"{case}.json").read_text())["records"]:
            if record["topic"].endswith(".public.customers") and record["value"] is not None:
                producer.produce(topic, key=record["key"], value=record["value"])
                count += 1
    assert producer.flush(10) == 0
    return count


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("json-schemas", "! records of {topic}: columns with a DEFAULT (balance, country, "
                         "is_vip, loyalty_tier): a NULL written into them reaches the API as "
                         "the default unless the connector sets "
                         "value.converter.replace.null.with.default=false"),
        ("nulls-kept", "✓ records of {topic}: NULLs are kept "
                       "(value.converter.replace.null.with.default=false)"),
    ],
)  # fmt: skip
def test_the_newest_records_are_decoded_and_nulls_turned_defaults_are_suspected(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path, setup: str, expected: str
) -> None:
    topic = topics(broker)
    count = produce_captured(broker, topic, setup, ("snapshot", "null-into-default", "delete"))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("customerId: id\n")
    env = tool_env(broker, simulator.base_url, topic, FIELD_MAPPING_FILE=str(mapping))
    out = customer_sync("check", env=env)
    out.assert_no_traceback()
    assert out.code == 0, out
    assert f"✓ records of {topic}: the newest {count} (at most 200 per topic) decode to " in (
        out.stdout
    )
    assert ", skipped: 1 delete" in out.stdout
    assert expected.format(topic=topic) in out.stdout, out.stdout


def test_a_mapping_that_finds_no_customer_in_the_records_fails(
    broker: KafkaNode, simulator: RunningSimulator
) -> None:
    """The customers table's key column is ``id``: without ``customerId: id``, no customer."""
    topic = topics(broker)
    produce_captured(broker, topic, "json-plain", ("snapshot",))
    out = customer_sync("check", env=tool_env(broker, simulator.base_url, topic))
    out.assert_no_traceback()
    assert out.code == 1, out
    assert (
        f"✗ records of {topic}: the newest 3 (at most 200 per topic) decode to 0 customer(s); "
        "none becomes a customer: no customer id (customerId / customer_id) "
        "(check FIELD_MAPPING_FILE)"
    ) in out.stdout, out.stdout
    assert f"· records of {topic}: no schema in the events" in out.stdout


def api_lines(out: object) -> dict[str, str]:
    """The API lines of a check's output, by name: ``{"job API": "✓ job API: ..."}``."""
    lines = str(getattr(out, "stdout", "")).splitlines()
    names = ("API credentials", "API version", "job API")
    return {name: line for line in lines for name in names if line[2:].startswith(name + ":")}


@pytest.mark.parametrize(
    ("served", "job_api", "expected", "code"),
    [
        ("batches", "auto", "✓ job API: batches answers (GET /batches/{id}/status); "
                            "GAMEBALL_JOB_API=auto will choose it", 0),
        ("batch", "auto", "✓ job API: batch answers (GET /batch/{jobId}); "
                          "GAMEBALL_JOB_API=auto will choose it", 0),
        ("batches", "batches", "✓ job API: batches answers (GET /batches/{id}/status), "
                               "as configured", 0),
        ("batches", "batch", "✗ job API: batch is configured but its route is absent, and "
                             "batches answers", 1),
    ],
)  # fmt: skip
def test_check_says_which_job_dialect_answers(
    broker: KafkaNode, served: str, job_api: str, expected: str, code: int
) -> None:
    topic = topics(broker)
    with RunningSimulator(SimulatorConfig(job_api=served)) as simulator:
        env = tool_env(broker, simulator.base_url, topic, GAMEBALL_JOB_API=job_api)
        out = customer_sync("check", env=env)
    out.assert_no_traceback()
    lines = api_lines(out)
    assert lines["job API"].startswith(expected), out.stdout
    absent = "batch" if served == "batches" else "batches"
    assert f"{absent}: HTTP 404, no JSON (absent)" in lines["job API"]
    assert f"{served}: HTTP 404, JSON (the route exists)" in lines["job API"]
    assert lines["API credentials"].startswith("✓ API credentials: accepted by")
    assert lines["API version"] == "✓ API version: v4.0 (GAMEBALL_API_VERSION), not refused"
    assert out.code == code, out
    if code:
        assert f"set GAMEBALL_JOB_API={served} or auto" in lines["job API"]


def test_check_says_to_set_v41_where_the_account_refuses_v40(broker: KafkaNode) -> None:
    topic = topics(broker)
    config = SimulatorConfig(min_api_version="v4.1", error_envelope=True)
    with RunningSimulator(config) as simulator:
        env = tool_env(broker, simulator.base_url, topic)
        refused = customer_sync("check", env=env)
        accepted = customer_sync("check", env={**env, "GAMEBALL_API_VERSION": "v4.1"})
    refused.assert_no_traceback()
    assert refused.code == 1, refused
    line = api_lines(refused)["API version"]
    assert line.startswith("✗ API version: v4.0 refused (HTTP 403, requestId "), line
    assert line.endswith("set GAMEBALL_API_VERSION=v4.1"), line
    assert accepted.code == 0, accepted
    assert api_lines(accepted)["API version"].startswith("✓ API version: v4.1")
    assert api_lines(accepted)["job API"].startswith("✓ job API: batch answers")


def test_rejected_keys_are_named_with_the_gameball_code(broker: KafkaNode) -> None:
    topic = topics(broker)
    config = SimulatorConfig(error_envelope=True, secret_key="the-right-one")
    with RunningSimulator(config) as simulator:
        out = customer_sync("check", env=tool_env(broker, simulator.base_url, topic))
    assert out.code == 1, out
    line = api_lines(out)["API credentials"]
    assert line.startswith("✗ API credentials: ")
    assert "HTTP 403, code 1002, requestId " in line
    assert line.endswith("check GAMEBALL_SECRET_KEY (batch calls need both keys)"), line
    assert "the-right-one" not in out.stdout + out.stderr
