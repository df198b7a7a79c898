"""Avro from a schema registry decodes to the same customers as Debezium's JSON.

Every captured JSON-converter record with schemas (``tests/fixtures/debezium``: all of
Debezium's logical types for PostgreSQL, in the default and the ``connect`` time precision) is
written again as Connect's ``AvroData`` writes it (``connect.name``, ``connect.parameters``,
Avro's ``decimal``/``date``/``timestamp-millis`` logical types), framed in the Confluent wire
format with fastavro, and read back through confluent-kafka's ``AvroDeserializer`` against a
registry stand-in. Both paths must give the same outcome, column for column.
"""

from __future__ import annotations

import base64
import decimal
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from service.delivery.avro import AvroReader
from service.delivery.decoding import Customer, Decoder, Reject, Skip
from service.delivery.mapping import FieldMapping
from service.errors import RegistryUnavailable
from service.gameball.customer import CustomerShape
from service.labels import DeadLetterReason

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "debezium"
WITH_SCHEMAS = sorted(
    [*FIXTURES.glob("json-schemas/*.json"), *FIXTURES.glob("time-connect/*.json")]
)
ID_COLUMN_IS_ID = ("customers", "customers_uuid")

_PRIMITIVE = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "long",
    "float32": "float",
    "float64": "double",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
}
_CONNECT_LOGICAL = {
    "org.apache.kafka.connect.data.Date": "date",
    "org.apache.kafka.connect.data.Timestamp": "timestamp-millis",
    "org.apache.kafka.connect.data.Time": "time-millis",
}


def avro_type(connect: dict[str, Any], defined: set[str]) -> Any:
    """A Connect schema as Connect's ``AvroData`` writes it (optional: a union with null)."""
    kind = connect["type"]
    name = connect.get("name")
    if kind == "struct":
        # Debezium's schema.name.adjustment.mode=avro: a topic prefix's "-" is no Avro name
        record_name = re.sub(r"[^A-Za-z0-9_.]", "_", name or f"ConnectDefault{len(defined)}")
        if record_name in defined:
            written: Any = record_name
        else:
            defined.add(record_name)
            written = {
                "type": "record",
                "name": record_name,
                "fields": [
                    {"name": f["field"], **optional(avro_type(f, defined), f)}
                    for f in connect["fields"]
                ],
            }
    elif kind == "array":
        written = {"type": "array", "items": avro_type(connect["items"], defined)}
    elif kind == "map":
        written = {"type": "map", "values": avro_type(connect["values"], defined)}
    else:
        written = {"type": _PRIMITIVE[kind]}
    if type(written) is dict:
        if name is not None:
            written["connect.name"] = name
        if "version" in connect:
            written["connect.version"] = connect["version"]
        if connect.get("parameters"):
            written["connect.parameters"] = connect["parameters"]
        if name == "org.apache.kafka.connect.data.Decimal":
            parameters = connect["parameters"]
            written["logicalType"] = "decimal"
            written["scale"] = int(parameters["scale"])
            written["precision"] = int(parameters.get("connect.decimal.precision", 64))
        elif name in _CONNECT_LOGICAL:
            written["logicalType"] = _CONNECT_LOGICAL[name]
    return ["null", written] if connect.get("optional") else written


def optional(written: Any, connect: dict[str, Any]) -> dict[str, Any]:
    return {"type": written, "default": None} if connect.get("optional") else {"type": written}


def avro_value(connect: dict[str, Any], value: Any) -> Any:
    """A JSON-converter value → what fastavro writes for the same Connect type."""
    if value is None:
        return None
    kind = connect["type"]
    if kind == "struct":
        return {f["field"]: avro_value(f, value.get(f["field"])) for f in connect["fields"]}
    if kind == "array":
        return [avro_value(connect["items"], v) for v in value]
    if kind == "bytes":
        raw = base64.b64decode(value)
        if connect.get("name") == "org.apache.kafka.connect.data.Decimal":
            unscaled = int.from_bytes(raw, "big", signed=True)
            scale = int(connect["parameters"]["scale"])
            digits = tuple(int(d) for d in str(abs(unscaled)))
            return decimal.Decimal((int(unscaled < 0), digits, -scale))
        return raw
    return value


class Registry:
    """Stands in for ``SchemaRegistryClient``: schemas by id, 404 for others, or down.

    Like the client, it keeps a schema once fetched by id: ``asked`` and ``threads`` count
    the questions that would have gone over the network.
    """

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.down = False
        self.asked = 0
        self.threads: list[str] = []
        """The thread each question was asked on."""
        self._fetched: dict[int, Schema] = {}

    def register(self, schema: Any) -> int:
        text = json.dumps(schema)
        for sid, known in self.schemas.items():
            if known == text:
                return sid
        sid = len(self.schemas) + 1
        self.schemas[sid] = text
        return sid

    def get_schema(
        self, schema_id: int, subject_name: str | None = None, fmt: str | None = None
    ) -> Schema:
        cached = self._fetched.get(schema_id)
        if cached is not None:
            return cached
        self.asked += 1
        self.threads.append(threading.current_thread().name)
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        if schema_id not in self.schemas:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        schema = self._fetched[schema_id] = Schema(self.schemas[schema_id], "AVRO")
        return schema


def wire(registry: Registry, schema: Any, value: Any) -> bytes:
    """``value`` in the Confluent wire format, its schema registered."""
    sid = registry.register(schema)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return b"\x00" + sid.to_bytes(4, "big") + out.getvalue()


def as_avro(registry: Registry, json_value: str) -> bytes | None:
    event = json.loads(json_value)
    schema = avro_type(event["schema"], set())
    if event["payload"] is None:
        return None
    return wire(registry, schema, avro_value(event["schema"], event["payload"]))


def decoder(
    table: str, registry: Registry, shape: CustomerShape, columns: tuple[str, ...] = ()
) -> Decoder:
    """The table's decoder; ``columns`` also each reach ``custom``, so that all are compared."""
    entries = {"customerId": "id"} if table in ID_COLUMN_IS_ID else {}
    every = {f"custom.c_{column}": column for column in columns}
    return Decoder(FieldMapping({**entries, **every}), shape=shape, avro=AvroReader(registry))


def columns_of(json_value: str) -> tuple[str, ...]:
    schema = json.loads(json_value)["schema"]
    after = next(f for f in schema["fields"] if f["field"] == "after")
    return tuple(f["field"] for f in after["fields"])


def outcome(result: Any) -> Any:
    if isinstance(result, Customer):
        return (orjson.loads(result.payload), result.unknown, result.tags, result.tags_changed)
    if isinstance(result, Reject):
        return (result.reason, result.error)
    return result


@pytest.mark.parametrize("shape", ["flat", "nested"])
@pytest.mark.parametrize("path", WITH_SCHEMAS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_avro_records_become_the_same_customers_as_their_json(
    path: Path, shape: CustomerShape
) -> None:
    registry = Registry()
    compared = 0
    for record in json.loads(path.read_text())["records"]:
        if record["value"] is None:
            continue
        table = record["topic"].rsplit(".", 1)[1]
        columns = columns_of(record["value"])
        decode = decoder(table, registry, shape, columns).decode
        from_json = outcome(decode(record["value"].encode()))
        from_avro = outcome(decode(as_avro(registry, record["value"])))
        if isinstance(from_json, tuple) and isinstance(from_json[0], dict):
            assert isinstance(from_avro, tuple), from_avro
            assert isinstance(from_avro[0], dict), from_avro
            json_item, avro_item = from_json[0], from_avro[0]
            for field in sorted(set(json_item) | set(avro_item)):  # column for column
                assert avro_item.get(field) == json_item.get(field), field
            compared += 1
        assert from_avro == from_json
    if "delete" not in path.stem and "truncate" not in path.stem:
        assert compared, "no customer compared"


def customers_fixture() -> tuple[str, dict[str, Any]]:
    record = json.loads((FIXTURES / "json-schemas" / "insert.json").read_text())["records"][0]
    return record["value"], json.loads(record["value"])


def test_each_debezium_logical_type_reads_as_its_json_counterpart() -> None:
    """The values themselves, so that agreeing with the JSON path means being right."""
    registry = Registry()
    value, _ = customers_fixture()
    mapping = FieldMapping(
        {
            "customerId": "id",
            "custom.balance": "balance",
            "custom.points": "lifetime_points",
            "custom.last_login": "last_login",
            "custom.preferences": "preferences",
        }
    )
    decode = Decoder(mapping, shape="flat", avro=AvroReader(registry)).decode
    result = decode(as_avro(registry, value))
    assert isinstance(result, Customer)
    item = orjson.loads(result.payload)
    assert item["dateOfBirth"] == "2000-02-29"  # io.debezium.time.Date
    assert item["joinDate"] == "2024-06-30"  # MicroTimestamp 23:59:59.999999
    assert item["custom"]["last_login"] == "2024-06-30T21:30:00.000000Z"  # ZonedTimestamp
    assert item["custom"]["balance"] == 99999999.99  # Decimal as bytes, scale 2
    assert item["custom"]["points"] == 0.5  # VariableScaleDecimal
    assert item["custom"]["preferences"] == {"lang": "en"}  # Json
    assert item["tags"] == ["new", "promo 2024"]  # an array
    assert result.payload == decode(value.encode()).payload  # type: ignore[union-attr]


@pytest.fixture
def registry() -> Registry:
    return Registry()


def test_an_unknown_schema_id_is_an_invalid_event_naming_the_id(registry: Registry) -> None:
    value, _ = customers_fixture()
    framed = bytearray(as_avro(registry, value) or b"")
    framed[1:5] = (4242).to_bytes(4, "big")
    result = Decoder(avro=AvroReader(registry)).decode(bytes(framed))
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert "schema id 4242" in result.error


def test_an_unreachable_registry_raises_and_the_record_decodes_once_it_is_back(
    registry: Registry,
) -> None:
    value, _ = customers_fixture()
    framed = as_avro(registry, value)
    decode = decoder("customers", registry, "nested").decode
    registry.down = True
    with pytest.raises(RegistryUnavailable, match="schema id 1"):
        decode(framed)
    registry.down = False
    assert isinstance(decode(framed), Customer)


def test_a_record_its_schema_does_not_read_is_an_invalid_event_with_the_avro_error(
    registry: Registry,
) -> None:
    value, _ = customers_fixture()
    framed = as_avro(registry, value) or b""
    result = Decoder(avro=AvroReader(registry)).decode(framed[:40])
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert result.error.startswith("the record does not read as Avro of schema id 1: ")
    assert not result.fault


def test_without_a_registry_avro_is_dead_lettered_saying_what_is_missing(
    registry: Registry,
) -> None:
    value, _ = customers_fixture()
    result = Decoder().decode(as_avro(registry, value))
    assert isinstance(result, Reject)
    assert result.reason is DeadLetterReason.INVALID_EVENT
    assert "SCHEMA_REGISTRY_URL" in result.error


def test_a_flattened_avro_row_and_its_rewritten_delete(registry: Registry) -> None:
    """``ExtractNewRecordState``: the row itself, ``__deleted`` on a delete."""
    schema = {
        "type": "record",
        "name": "Value",
        "fields": [
            {"name": "customer_id", "type": "string"},
            {
                "name": "date_of_birth",
                "type": ["null", {"type": "int", "connect.name": "io.debezium.time.Date"}],
            },
            {"name": "__deleted", "type": ["null", "string"]},
        ],
    }
    decode = Decoder(shape="flat", avro=AvroReader(registry)).decode
    row = {"customer_id": "c1", "date_of_birth": 11016, "__deleted": "false"}
    result = decode(wire(registry, schema, row))
    assert isinstance(result, Customer)
    assert orjson.loads(result.payload) == {"customerId": "c1", "dateOfBirth": "2000-02-29"}
    deleted = decode(wire(registry, schema, {**row, "__deleted": "true"}))
    assert deleted == Skip("delete")
