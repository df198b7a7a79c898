"""Feed every captured Debezium record through the service's current decoder and say where it
differs from the right answer.

    .venv/bin/python -m tests.cdc.decoder_report [--markdown] [--all]

"Right" comes from :func:`reference`, a small decoder that reads each column's Debezium /
Connect logical type from the ``schema`` block (SPEC §3). A record of a set-up without schemas
is decoded with the schema of the same record in ``json-schemas`` (capture.py verified that the
payloads are identical apart from ``source`` timestamps). The reference itself is checked
against the database: a case's last event for a row must equal the row's ``api_*`` view
(``expected_api`` in the fixture), unless the converter replaced a NULL by the column's default
(``replace.null.with.default``) or Debezium left a TOASTed value out.

Tables whose key column is ``id`` are decoded with the mapping ``customerId: id`` (what a
user must put in FIELD_MAPPING_FILE); the others match ``customer_id`` by name.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import decimal
import json
import sys
from pathlib import Path
from typing import Any

from service.delivery.decoding import Customer, Decoder, Reject, Skip
from service.delivery.mapping import FieldMapping, snake_case
from service.gameball.customer import FLAT_FIELDS as API_FIELDS

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "debezium"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
UNAVAILABLE = "__debezium_unavailable_value"
DATE_FIELDS = ("dateOfBirth", "joinDate")
ID_MAPPED_TABLES = ("customers", "customers_uuid")


# ---- the reference: driven by the schema -----------------------------------------------------
def column_value(value: Any, schema: dict[str, Any]) -> Any:
    """A column's value as plain Python, by its Connect schema (None stays None)."""
    if value is None:
        return None
    name = schema.get("name", "")
    params = schema.get("parameters") or {}
    if name in ("io.debezium.time.Date", "org.apache.kafka.connect.data.Date"):
        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    if name in ("io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp"):
        return EPOCH + dt.timedelta(milliseconds=value)
    if name == "io.debezium.time.MicroTimestamp":
        return EPOCH + dt.timedelta(microseconds=value)
    if name == "io.debezium.time.NanoTimestamp":
        return EPOCH + dt.timedelta(microseconds=value // 1000)
    if name == "io.debezium.time.ZonedTimestamp":
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if name == "org.apache.kafka.connect.data.Decimal":
        unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
        return decimal.Decimal(f"{unscaled}E-{int(params['scale'])}")  # exact, any precision
    if name == "io.debezium.data.VariableScaleDecimal":
        unscaled = int.from_bytes(base64.b64decode(value["value"]), "big", signed=True)
        return decimal.Decimal(f"{unscaled}E-{int(value['scale'])}")
    if name == "io.debezium.data.Json":
        return UNAVAILABLE if value == UNAVAILABLE else json.loads(value)
    if schema.get("type") == "array":
        return [column_value(v, schema["items"]) for v in value]
    return value  # strings (text, uuid, enum), numbers, booleans


def to_api(field: str, value: Any) -> Any:
    if field == "customerId":
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # decimal.handling.mode=double: 42.0 is customer 42
        return str(value)
    if field in DATE_FIELDS:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).date().isoformat()  # an instant: its UTC day
        if isinstance(value, dt.date):
            return value.isoformat()
        raise ValueError(f"{field}: {value!r} is not a date")
    if field == "tags":
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return [str(t) for t in value]
    if field == "custom":
        if not isinstance(value, dict):
            raise ValueError(f"custom: {value!r} is not an object")
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value if isinstance(value, str) else str(value)


def reference(value: str | None, schema_value: str | None, mapping: dict[str, str]) -> Any:
    """What the service should make of a record: a customer dict, or ("skip", why)."""
    if value is None:
        return ("skip", "tombstone")
    event = json.loads(value)
    wrapped = json.loads(schema_value) if schema_value else event
    envelope_schema = wrapped["schema"]
    event = event.get("payload", event) if "schema" in event else event
    op = event["op"]
    if op == "d":
        return ("skip", "delete")
    if op == "t":
        return ("skip", "truncate")
    row = event["after"]
    fields = {f["field"]: f for f in envelope_schema["fields"]}["after"]["fields"]
    by_column = {f["field"]: f for f in fields}
    names = {**{snake_case(f): f for f in API_FIELDS}, **{f: f for f in API_FIELDS}}
    paths: dict[str, list[str]] = {}
    for api_field, column in mapping.items():
        names = {k: v for k, v in names.items() if v != api_field}
        if "." in column:
            paths[api_field] = column.split(".")
        else:
            names[column] = api_field
    customer: dict[str, Any] = {}
    for column, raw in row.items():
        target = names.get(column)
        if target is None or raw is None:
            continue
        plain = column_value(raw, by_column[column])
        if plain == UNAVAILABLE:
            continue  # not in the WAL: leave the API's value alone
        customer[target] = to_api(target, plain)
    for api_field, (column, *rest) in paths.items():
        current_value = column_value(row.get(column), by_column[column]) if column in row else None
        for part in rest:
            current_value = current_value.get(part) if isinstance(current_value, dict) else None
        if current_value is not None and current_value != UNAVAILABLE:
            customer[api_field] = to_api(api_field, current_value)
    if "customerId" not in customer:
        return ("reject", "invalid_event", "no customer id")
    return customer


# ---- the current decoder -----------------------------------------------------------------------
def current(decoder: Decoder, value: str | None) -> Any:
    result = decoder.decode(None if value is None else value.encode())
    if isinstance(result, Customer):
        return json.loads(result.payload)
    if isinstance(result, Skip):
        return ("skip", result.reason)
    assert isinstance(result, Reject)
    return ("reject", result.reason.value, result.error)


def same_outcome(got: Any, right: Any, field: str | None = None) -> bool:
    """Equal customers (or equal ``field``), equal skips, or rejects for the same reason."""
    if isinstance(got, tuple) and isinstance(right, tuple):
        return got[:2] == right[:2]
    if field and isinstance(got, dict) and isinstance(right, dict):
        return got.get(field) == right.get(field)
    return bool(got == right)


# A second pass maps typed columns into API text and date fields, as a FIELD_MAPPING_FILE
# would: what does a numeric, a boolean, a timestamp(3), a timestamptz become?
TYPED_PROBES = [  # (table, API field, source column): one mapping entry at a time
    ("customers", "joinDate", "created_at"),  # timestamp(3): io.debezium.time.Timestamp
    ("customers", "joinDate", "join_date"),  # timestamp: MicroTimestamp
    ("customers", "dateOfBirth", "last_login"),  # timestamptz: ZonedTimestamp
    ("customers", "referrerCode", "balance"),  # numeric(10,2): Decimal
    ("customers", "city", "lifetime_points"),  # numeric: VariableScaleDecimal
    ("customers", "displayName", "is_vip"),  # boolean
    ("customers", "lastName", "internal_score"),  # integer
    ("customers", "firstName", "preferences.lang"),  # a path into a json column
    ("customers_text", "referrerCode", "points"),  # numeric(12,0): Decimal, scale 0
    ("customers_text", "customerId", "points"),  # a numeric id column
    ("customers_int", "joinDate", "date_of_birth"),  # timestamp holding a date
    ("customers_uuid", "joinDate", "join_date"),  # timestamptz
]


def short(value: Any, limit: int = 90) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def difference(got: Any, right: Any) -> str:
    if isinstance(got, dict) and isinstance(right, dict):
        parts = []
        for key in sorted(set(got) | set(right)):
            if got.get(key, "<absent>") != right.get(key, "<absent>"):
                was, should = got.get(key, "<absent>"), right.get(key, "<absent>")
                parts.append(f"{key}: {short(was)} -> {short(should)}")
        return "; ".join(parts)
    return f"{short(got, 200)} -> {short(right, 200)}"


def records(fixtures: Path):  # type: ignore[no-untyped-def]
    """(fixture, index, table, value, value-with-schema) for every captured record."""
    for path in sorted(fixtures.glob("*/*.json")):
        fixture = json.loads(path.read_text())
        schema_twin = fixtures / "json-schemas" / path.name
        twin = json.loads(schema_twin.read_text())["records"] if schema_twin.exists() else []
        for index, record in enumerate(fixture["records"]):
            value = record["value"]
            schema_value = value
            if value is not None and not value.startswith('{"schema"'):
                schema_value = twin[index]["value"] if index < len(twin) else None
            yield fixture, index, record["topic"].rsplit(".", 1)[1], value, schema_value


def decide(value: str | None, schema_value: str | None, mapping: dict[str, str]) -> tuple[Any, Any]:
    try:
        right = reference(value, schema_value, mapping)
    except Exception as exc:  # noqa: BLE001 - a report, not a service
        right = ("reference failed", f"{type(exc).__name__}: {exc}")
    got = current(Decoder(FieldMapping(mapping) if mapping else None, shape="flat"), value)
    return got, right


def default_pass(fixtures: Path, show_all: bool) -> list[str]:
    wrong = checked = 0
    notes: list[str] = []
    by_fixture: dict[str, tuple[dict[str, Any], dict[tuple[str, str], Any]]] = {}
    for fixture, index, table, value, schema_value in records(fixtures):
        mapping = {"customerId": "id"} if table in ID_MAPPED_TABLES else {}
        got, right = decide(value, schema_value, mapping)
        checked += 1
        key = f"{fixture['setup']}/{fixture['case']}"
        _, last_seen = by_fixture.setdefault(key, (fixture, {}))
        if isinstance(right, dict):
            last_seen[(table, right["customerId"])] = right
        same = same_outcome(got, right)
        wrong += not same
        if show_all or not same:
            print(f"{'ok  ' if same else 'DIFF'} {key} #{index} {table}: "
                  f"{'' if same else difference(got, right)}")  # fmt: skip
    print(f"{checked} records, {wrong} decoded differently from the reference")
    for key, (fixture, last_seen) in by_fixture.items():
        expected = {(r["table"], r["customer"].get("customerId")): r["customer"]
                    for r in fixture["expected_api"]}  # fmt: skip
        columns = {t: info["columns"] for t, info in fixture["columns"].items()}
        for (table, customer_id), customer in last_seen.items():
            truth = expected.get((table, customer_id))
            if truth is None or truth == customer:
                continue
            for field in sorted(set(truth) | set(customer)):
                if truth.get(field) == customer.get(field):
                    continue
                column = columns[table].get(snake_case(field), columns[table].get(field, {}))
                if field not in truth and "default" in column:
                    why = "NULL in the database, the column's DEFAULT on the topic"
                elif field not in customer:
                    why = "not on the topic (unchanged TOASTed value)"
                else:
                    why = "UNEXPLAINED"
                notes.append(
                    f"{key} {table} {customer_id} {field}: "
                    f"topic {short(customer.get(field, '<absent>'), 40)}, "
                    f"database {short(truth.get(field, '<absent>'), 40)}: {why}"
                )
    return notes


def typed_pass(fixtures: Path) -> None:
    for table, field, column in TYPED_PROBES:
        mapping = {field: column}
        if field != "customerId" and table in ID_MAPPED_TABLES:
            mapping["customerId"] = "id"
        total = 0
        outcomes: dict[str, list[str]] = {}
        for fixture, index, record_table, value, schema_value in records(fixtures):
            if record_table != table:
                continue
            got, right = decide(value, schema_value, mapping)
            if isinstance(right, tuple) and right[0] == "skip":
                continue
            total += 1
            if not same_outcome(got, right, field):
                if isinstance(got, dict) and isinstance(right, dict):
                    diff = f"{short(got.get(field, '<absent>'), 40)} instead of " \
                           f"{short(right.get(field, '<absent>'), 40)}"  # fmt: skip
                else:
                    diff = (
                        f"{short(got, 100)} instead of a customer with {field} "
                        f"{short(right.get(field) if isinstance(right, dict) else right, 40)}"
                    )
                outcomes.setdefault(diff, []).append(
                    f"{fixture['setup']}/{fixture['case']}#{index}"
                )
        wrong = sum(len(v) for v in outcomes.values())
        print(f"{field} <- {table}.{column}: {total} records, {wrong} wrong")
        for diff, where in outcomes.items():
            print(f"    {len(where)}x {diff}   e.g. {where[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--all", action="store_true", help="list matching records too")
    args = parser.parse_args(argv)

    print("== pass 1: default mapping (customerId: id where the key column is id) ==")
    notes = default_pass(args.fixtures, args.all)
    print("\n== the reference against the database (api_* views) ==")
    for line in notes:
        print("  " + line)
    unexplained = sum("UNEXPLAINED" in line for line in notes)
    print(f"{len(notes)} differences, {unexplained} unexplained")
    print("\n== pass 2: one typed column mapped into an API field at a time ==")
    typed_pass(args.fixtures)
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
