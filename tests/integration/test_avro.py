"""Avro from a real schema registry (Apicurio 2.6, Confluent's REST API), end to end.

Debezium-shaped envelopes, the captured records of ``tests/fixtures/debezium`` (every logical
type Debezium writes for PostgreSQL), are produced as Avro by confluent-kafka's
``AvroSerializer`` against the registry, keys too, beside one of them left in JSON. The service
(``SCHEMA_REGISTRY_URL``) must deliver to the simulator exactly the customers the JSON path
makes of the same records, and dead-letter an unknown schema id and a record its schema does not
read, as ``invalid_event``, saying which.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from service.config import load_settings
from service.delivery.decoding import Customer, Decoder
from service.delivery.mapping import load_field_mapping
from service.gameball.simulator import RunningSimulator
from service.tools.check_registry import check_registry
from service.tools.check_results import FAIL, INFO, OK
from service.tools.embedded_broker import free_port
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    ServiceProcess,
    end_offsets,
    read_all,
    service_env,
    unique,
)
from tests.integration.relay import LateRelay
from tests.integration.test_delivery import applied
from tests.registry.apicurio import Apicurio
from tests.registry.guarded import GuardedRegistry
from tests.unit.delivery.test_avro import Registry, avro_type, avro_value, wire

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium" / "json-schemas"
KEY_SCHEMA = {"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]}


@pytest.fixture(scope="module")
def registry() -> Iterator[Apicurio]:
    with Apicurio() as running:
        yield running


def customers_records() -> list[str]:
    """The ``customers`` table's snapshot and insert, as the JSON converter wrote them."""
    values = []
    for case in ("snapshot", "insert"):
        for record in json.loads((FIXTURES / f"{case}.json").read_text())["records"]:
            if record["topic"].endswith(".customers") and record["value"] is not None:
                values.append(record["value"])
    return values


def mapping_file(tmp_path: Path, columns: list[str]) -> Path:
    """``customerId: id``, and every column in ``custom`` too, so that all are compared."""
    path = tmp_path / "mapping.yaml"
    lines = ["customerId: id", *(f"custom.c_{c}: {c}" for c in columns)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_avro_envelopes_reach_the_api_as_their_json_twins_and_bad_ones_are_dead_lettered(
    broker: KafkaNode, simulator: RunningSimulator, registry: Apicurio, tmp_path: Path
) -> None:
    topic, group = unique("avro"), unique("avro-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    values = customers_records()
    first = json.loads(values[0])
    after = next(f for f in first["schema"]["fields"] if f["field"] == "after")
    mapping = mapping_file(tmp_path, [f["field"] for f in after["fields"]])

    with SchemaRegistryClient({"url": registry.url}) as client:
        to_key = AvroSerializer(client, json.dumps(KEY_SCHEMA))
        key_ctx = SerializationContext(topic, MessageField.KEY)
        value_ctx = SerializationContext(topic, MessageField.VALUE)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        keys: dict[int, bytes] = {}
        for index, value in enumerate(values):
            event = json.loads(value)
            customer_id = event["payload"]["after"]["id"]
            keys[customer_id] = to_key({"id": customer_id}, key_ctx)
            if index == 1:  # one left in JSON: formats are told apart per record
                producer.produce(topic, value.encode(), keys[customer_id])
                continue
            to_value = AvroSerializer(client, json.dumps(avro_type(event["schema"], set())))
            avro = to_value(avro_value(event["schema"], event["payload"]), value_ctx)
            assert avro is not None
            assert avro[0] == 0  # the Confluent wire format
            producer.produce(topic, avro, keys[customer_id])
        unknown = b"\x00" + (999_999).to_bytes(4, "big") + avro[5:]
        producer.produce(topic, unknown, b"unknown-id")
        producer.produce(topic, avro[:30], b"cut-short")
        assert producer.flush(30) == 0
    assert end_offsets(broker.bootstrap, topic) == {0: len(values) + 2}

    env = service_env(
        broker,
        simulator.base_url,
        topic,
        group,
        SCHEMA_REGISTRY_URL=registry.url,
        FIELD_MAPPING_FILE=str(mapping),
    )
    service = ServiceProcess(env, tmp_path / "service.jsonl")
    summary = service.run_until_idle(120)
    assert summary.outcomes["dead_lettered"] == 2, service.logs()[-3000:]

    decoder = Decoder(load_field_mapping(mapping), shape="nested", tags_sync="item")
    expected: dict[str, Any] = {}
    for value in values:
        result = decoder.decode(value.encode())
        assert isinstance(result, Customer)
        expected[result.customer_id] = orjson.loads(result.payload)
    delivered = {str(entry["customerId"]): entry["customer"] for entry in applied(simulator)}
    assert sorted(delivered) == sorted(expected)
    for customer_id, item in expected.items():
        assert delivered[customer_id] == item, customer_id

    dead = {r.key: r.headers for r in read_all(broker.bootstrap, f"{topic}.dlq", 2)}
    assert dead[b"unknown-id"]["dlq.reason"] == "invalid_event"
    assert "schema id 999999" in dead[b"unknown-id"]["dlq.error"]
    assert dead[b"cut-short"]["dlq.reason"] == "invalid_event"
    assert "does not read as Avro of schema id" in dead[b"cut-short"]["dlq.error"]


ROW = {
    "type": "record",
    "name": "Value",
    "fields": [
        {"name": "customer_id", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "date_of_birth", "type": {"type": "int", "connect.name": "io.debezium.time.Date"}},
    ],
}


def readiness(service: ServiceProcess) -> dict[str, Any]:
    response = service.get("/readyz")
    return {} if response is None else dict(response.json())


def test_while_the_registry_cannot_be_reached_records_wait_unready_and_none_is_dead_lettered(
    broker: KafkaNode, simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic, group = unique("avro-down"), unique("avro-down-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    ids = ["d1", "d2", "d3"]
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for customer_id in ids:  # schema id 1: the first a fresh Apicurio gives out
        row = {"customer_id": customer_id, "email": f"{customer_id}@example.com"}
        producer.produce(topic, wire(Registry(), ROW, {**row, "date_of_birth": 11016}))
    assert producer.flush(30) == 0
    assert end_offsets(broker.bootstrap, topic) == {0: 3}
    # The registry comes back knowing its schemas, as a real one does: it runs, with the
    # schema, from the start, and the service reaches it through a relay that refuses every
    # connection until it opens. (Reached directly, a fresh Apicurio answered 404 for schema
    # id 1 until the test registered it: a retry landing then dead-lettered the records.)
    late = Apicurio()
    relay = LateRelay(late.port)
    with late, relay, SchemaRegistryClient({"url": late.url}) as client:
        assert client.register_schema(f"{topic}-value", Schema(json.dumps(ROW), "AVRO")) == 1
        registry_url = str(httpx.URL(late.url).copy_with(port=relay.port))
        env = service_env(
            broker, simulator.base_url, topic, group, SCHEMA_REGISTRY_URL=registry_url
        )
        service = ServiceProcess(env, tmp_path / "service.jsonl").start()
        try:
            wait_for(
                lambda: readiness(service).get("schema_registry_unavailable"),
                60,
                "the service to report the registry unavailable",
            )
            assert readiness(service)["ok"] is False
            wait_for(  # asked again (after 1 s, then 2 s), and still nothing dead-lettered
                lambda: '"tries": 3' in service.logs(),
                60,
                "two retries of the unreachable registry",
            )
            assert end_offsets(broker.bootstrap, f"{topic}.dlq") == {0: 0}
            assert applied(simulator) == []
            relay.open()
            wait_for(
                lambda: len(applied(simulator)) == len(ids), 90, "the waiting records delivered"
            )
            wait_for(lambda: service.ready(), 30, "the service ready again")
            delivered = {str(e["customerId"]): e["customer"] for e in applied(simulator)}
            assert sorted(delivered) == ids
            assert delivered["d1"]["customerAttributes"]["dateOfBirth"] == "2000-02-29"
            assert end_offsets(broker.bootstrap, f"{topic}.dlq") == {0: 0}
            assert '"schema_registry_reachable"' in service.logs()
        finally:
            service.stop()


def test_check_reports_the_registry_and_the_source_topics_subjects(
    registry: Apicurio, tmp_path: Path
) -> None:
    topic = unique("avro-check")
    with SchemaRegistryClient({"url": registry.url}) as client:
        client.register_schema(f"{topic}-value", Schema(json.dumps(ROW), "AVRO"))
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "KAFKA_SOURCE_TOPICS": f"{topic},{topic}-json",
        "GAMEBALL_API_KEY": "k",
        "GAMEBALL_SECRET_KEY": "s",
    }
    up = check_registry(load_settings({**base, "SCHEMA_REGISTRY_URL": registry.url}), 5)
    assert [(r.mark, r.name, r.detail) for r in up[1:]] == [
        (INFO, f"subjects of {topic}", f"{topic}-value"),
        (INFO, f"subjects of {topic}-json", "none (its values may be JSON)"),
    ]
    assert up[0].mark == OK
    down_url = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    (down,) = check_registry(load_settings({**base, "SCHEMA_REGISTRY_URL": down_url}), 5)
    assert down.mark == FAIL
    assert "cannot be reached" in down.detail
    assert check_registry(load_settings(base), 5) == []


def test_a_registry_behind_tls_and_basic_auth_is_read_and_its_password_never_logged(
    broker: KafkaNode, simulator: RunningSimulator, registry: Apicurio, tmp_path: Path
) -> None:
    """As Confluent Cloud or a secured Apicurio is reached: HTTPS with a private CA, and a
    user and password. ``check`` passes with them and fails on a wrong password; the service
    decodes through them, and the password appears in no log line."""
    topic, group = unique("avro-tls"), unique("avro-tls-group")
    broker.create_topics({topic: 1, f"{topic}.dlq": 1})
    password = "s3cret-pa55-9f4e"
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    with SchemaRegistryClient({"url": registry.url}) as client:
        to_value = AvroSerializer(client, json.dumps(ROW))
        context = SerializationContext(topic, MessageField.VALUE)
        for customer_id in ("t1", "t2"):
            row = {"customer_id": customer_id, "email": f"{customer_id}@example.com"}
            producer.produce(topic, to_value({**row, "date_of_birth": 11016}, context))
    assert producer.flush(30) == 0

    with GuardedRegistry(registry.url, "customer-sync", password, tmp_path) as guarded:
        secured = {
            "SCHEMA_REGISTRY_URL": guarded.url,
            "SCHEMA_REGISTRY_CA_LOCATION": str(guarded.ca),
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": f"customer-sync:{password}",
        }
        base = {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "KAFKA_SOURCE_TOPICS": topic,
            "GAMEBALL_API_KEY": "k",
            "GAMEBALL_SECRET_KEY": "s",
        }
        (ok, *_) = check_registry(load_settings({**base, **secured}), 5)
        assert ok.mark == OK, ok.detail
        wrong = {**secured, "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "customer-sync:wrong"}
        (refused,) = check_registry(load_settings({**base, **wrong}), 5)
        assert refused.mark == FAIL
        assert "refused the credentials" in refused.detail
        assert "wrong" not in refused.detail
        untrusted = {k: v for k, v in secured.items() if k != "SCHEMA_REGISTRY_CA_LOCATION"}
        (unverified,) = check_registry(load_settings({**base, **untrusted}), 5)
        assert unverified.mark == FAIL, "a certificate no configured CA signed was trusted"

        env = service_env(broker, simulator.base_url, topic, group, **secured)
        service = ServiceProcess(env, tmp_path / "service.jsonl")
        summary = service.run_until_idle(120)
        passed = guarded.passed
    assert summary.outcomes["succeeded"] == 2, service.logs()[-3000:]
    delivered = {str(e["customerId"]) for e in applied(simulator)}
    assert delivered == {"t1", "t2"}
    assert passed > 0, "the service did not go through the guarded registry"
    assert password not in service.logs()
