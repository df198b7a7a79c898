"""From the first INSERT to the API: what customer-sync delivers is what the table holds.

Set-ups (``conftest.SETUPS``): the JSON converter with schemas on and off, ``decimal.handling
.mode`` precise, string and double, deletes skipped and dead-lettered, Avro through a schema
registry (Apicurio Registry and its converter), and a second source with other column names
through ``FIELD_MAPPING_FILE``. Each test examines the session's one run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from service.gameball.operations import Operation
from tests.cdc import chain, shop
from tests.cdc.conftest import SETUPS, Run
from tests.integration.harness import end_offsets, fully_committed, read_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def surviving(run: Run, setup_name: str) -> dict[str, dict[str, Any]]:
    setup = run.pipes[setup_name].setup
    return {cid: c for t in setup.tables for cid, c in run.expected[t].items()}


@pytest.mark.parametrize("setup", [s.name for s in SETUPS if not s.avro])
def test_the_api_holds_each_surviving_customer_s_latest_row_field_for_field(
    cdc_run: Run, setup: str
) -> None:
    pipe = cdc_run.pipes[setup]
    pipe.simulator.state.settle()
    latest = pipe.simulator.state.latest
    rows = surviving(cdc_run, setup)
    assert rows, "the views hold no rows"
    for customer_id, row in rows.items():
        if customer_id in shop.PLACEHOLDER_ROWS:
            continue  # the test below reads those as an upserting API holds them
        expected = chain.as_received(chain.nested(row))
        got = latest.get(customer_id)
        assert got is not None, customer_id
        for field in sorted(set(expected) | set(got)):  # field by field, attributes too
            if field == "customerAttributes":
                mine, theirs = got.get(field, {}), expected.get(field, {})
                for attribute in sorted(set(mine) | set(theirs)):
                    assert mine.get(attribute) == theirs.get(attribute), (customer_id, attribute)
            else:
                assert got.get(field) == expected.get(field), (customer_id, field)


@pytest.mark.parametrize("setup", ["dbz_json", "dbz_plain", "dbz_string", "dbz_json_crm"])
def test_numbers_arrive_with_their_exact_value(cdc_run: Run, setup: str) -> None:
    """Checked on the request bodies' bytes: 12345678901234567890.123456789 keeps 29 digits.
    (decimal.handling.mode=double cannot: Debezium sends 1.2345678901234567E19.)"""
    exact = chain.exact_bodies(cdc_run.pipes[setup].recorder.bodies())
    for customer_id, row in surviving(cdc_run, setup).items():
        if customer_id not in shop.PLACEHOLDER_ROWS:  # read as upserts below
            assert exact.get(customer_id) == chain.nested(row), customer_id
    if setup != "dbz_json_crm":
        points = exact["3"]["customerAttributes"]["custom"]["points"]
        assert str(points) == "12345678901234567890.123456789"


@pytest.mark.parametrize("setup", [s.name for s in SETUPS])
def test_nothing_valid_is_dead_lettered(cdc_run: Run, setup: str) -> None:
    pipe = cdc_run.pipes[setup]
    if pipe.setup.delete_policy == "skip":
        assert sum(end_offsets(cdc_run.bootstrap, pipe.setup.dlq).values()) == 0
        return
    letters = read_all(cdc_run.bootstrap, pipe.setup.dlq, expected=1)
    assert [(r.headers["dlq.reason"], r.key) for r in letters] == [
        ("unsupported_operation", b'{"customer_id":2}')
    ]


def test_deleted_and_truncated_customers_keep_their_last_change(cdc_run: Run) -> None:
    """The API has no delete: a deleted or truncated row's customer stays as it last was."""
    latest = cdc_run.pipes["dbz_json"].simulator.state.latest
    assert latest["2"] == {
        "customerId": "2",
        "email": "nulls@example.com",
        "customerAttributes": {"email": "nulls@example.com"},
    }
    for customer_id in shop.TRUNCATED["customers_text"]:
        assert customer_id in latest
        assert customer_id not in cdc_run.expected["customers_text"]
    member = cdc_run.pipes["dbz_json_crm"].simulator.state.latest["900002"]
    # updated, then deleted, in one transaction
    assert member["customerAttributes"]["displayName"] == "Alan Turing"


def test_every_kind_of_change_went_through(cdc_run: Run) -> None:
    """The run exercised what it claims: snapshot, inserts, updates, deletes with their
    tombstones, a TRUNCATE (skipped.operations=none), and the service skipped, never
    dead-lettered, what names no customer to update, and the facts it must not send again
    (an order's and an adjustment's UPDATE, the snapshot's adjustment)."""
    service = cdc_run.pipes["dbz_json"].service
    outcomes = {
        o: service.metric("customer_sync_records_total", outcome=o)
        for o in ("succeeded", "dead_lettered", "skipped", "coalesced")
    }
    consumed = service.metric("customer_sync_records_consumed_total")
    assert sum(outcomes.values()) == consumed
    # deletes of customer 2: its d and its tombstone; the TRUNCATE of customers_text: its t;
    # the shipped order's u; the adjustments' snapshot r and the reworded note's u.
    assert outcomes["skipped"] == 6
    assert outcomes["dead_lettered"] == 0
    assert consumed == chain.records_on(cdc_run.bootstrap, cdc_run.pipes["dbz_json"].sources)
    truncates = [line for line in service.logs().splitlines() if "truncate_skipped" in line]
    assert len(truncates) == 1, "a TRUNCATE is logged: the API keeps the table's customers"
    assert '"topic": "dbz_json.public.customers_text"' in truncates[0]


def test_a_null_written_into_a_column_with_a_default_stays_null(cdc_run: Run) -> None:
    """With value.converter.replace.null.with.default=false (README: Debezium set-up)."""
    latest = cdc_run.pipes["dbz_json"].simulator.state.latest
    assert latest["102"] == {
        "customerId": "102",
        "email": "defaults@example.com",
        "customerAttributes": {"email": "defaults@example.com"},
    }
    assert "country" not in latest["3"]["customerAttributes"]
    assert "vip" not in latest["3"]["customerAttributes"]["custom"]
    assert "gender" not in latest["1003"]["customerAttributes"]


def test_a_toasted_value_survives_an_update_of_another_column(cdc_run: Run) -> None:
    """customers_uuid has REPLICA IDENTITY FULL: the 6 kB jsonb comes with every update."""
    latest = cdc_run.pipes["dbz_json"].simulator.state.latest
    toasted = latest["6f1c2a3e-1111-4a5b-9c3d-000000000001"]
    assert toasted["customerAttributes"]["displayName"] == "Uuid Uno"
    assert len(toasted["customerAttributes"]["custom"]["blob"]) == 6400


def test_a_toasted_value_reaches_the_api_when_an_update_leaves_it_out(cdc_run: Run) -> None:
    """customers has REPLICA IDENTITY DEFAULT: the update right after the insert carries
    Debezium's placeholder for the 6 kB jsonb it left unchanged, so the update alone does not
    say it. Delivered apart, the API keeps the insert's value; coalesced (the update arrives
    while the insert is still buffered), the merged change must carry it, or it never reaches
    the API at all."""
    for setup in ("dbz_json", "dbz_plain", "dbz_avro"):
        held = chain.upserted(cdc_run.pipes[setup].recorder.bodies())
        for customer_id in shop.PLACEHOLDER_ROWS:
            expected = chain.nested(cdc_run.expected["customers"][customer_id])
            assert held[customer_id] == expected, setup
            assert len(held[customer_id]["customerAttributes"]["custom"]["blob"]) == 6400


def test_avro_through_the_registry_reaches_the_api_as_json_does(cdc_run: Run) -> None:
    """The same transactions, read once through the JSON converter and once as Avro from the
    registry: the API receives the very same customers, field by field, numbers exact, but
    for what the Avro converter itself changes.

    Apicurio's converter 2.6 writes a NULL in a column that has a DEFAULT as that default
    (its AvroData reads ``Struct.get``, and has no ``ignore.default.for.nullables``): the
    JSON converter, with ``replace.null.with.default=false``, leaves the field out. Those
    fields, and only those, may differ, and only that way. The Avro records are checked to be
    Avro (the Confluent wire format), so a converter that quietly fell back to JSON would
    fail here rather than pass as a second JSON run."""
    avro, json = cdc_run.pipes["dbz_avro"], cdc_run.pipes["dbz_json"]
    first = read_all(cdc_run.bootstrap, avro.sources[0], expected=1)[0]
    assert (first.key or b"")[:1] == b"\x00", "the key is not in the Avro wire format"
    assert (first.value or b"")[:1] == b"\x00", "the value is not in the Avro wire format"
    sent_avro = _received(avro.recorder.bodies())
    sent_json = _received(json.recorder.bodies())
    assert sent_avro.keys() == sent_json.keys()
    differences = {
        customer_id: _differences(sent_json[customer_id], sent_avro[customer_id])
        for customer_id in sent_json
    }
    defaulted = {cid: found for cid, found in differences.items() if found}
    for customer_id, found in defaulted.items():
        for path, (in_json, in_avro) in found.items():
            assert in_json is _ABSENT, (customer_id, path, in_json, in_avro)
            assert path in shop.COLUMN_DEFAULTS, (customer_id, path, in_avro)
            assert in_avro == shop.COLUMN_DEFAULTS[path], (customer_id, path, in_avro)
    # The rows whose latest version holds a NULL in a column with a DEFAULT, and no other:
    # 2 (every nullable column NULL), 3 (country, vip), 102 (written for this), 1002 (NULLs)
    # and 1003 (gender set to NULL by an update).
    assert set(defaulted) == {"2", "3", "102", "1002", "1003"}, defaulted
    points = sent_avro["3"]["customerAttributes"]["custom"]["points"]
    assert str(points) == "12345678901234567890.123456789"
    consumed = "customer_sync_records_consumed_total"
    assert avro.service.metric(consumed) == json.service.metric(consumed)


def _received(bodies: list[bytes]) -> dict[str, dict[str, Any]]:
    """Each customer's last item, numbers exact; for a row whose update left a TOASTed value
    out, what an upserting API holds instead (whether that update was coalesced with its
    insert or sent apart is timing)."""
    last, held = chain.exact_bodies(bodies), chain.upserted(bodies)
    return {cid: held[cid] if cid in shop.PLACEHOLDER_ROWS else item for cid, item in last.items()}


_ABSENT = object()


def _differences(
    json_item: dict[str, Any], avro_item: dict[str, Any], at: tuple[str, ...] = ()
) -> dict[tuple[str, ...], tuple[Any, Any]]:
    """Where two items differ, leaf by leaf (an object one side lacks counts as empty):
    path → (JSON's value, Avro's), ``_ABSENT`` where one has none."""
    found: dict[tuple[str, ...], tuple[Any, Any]] = {}
    for key in sorted(set(json_item) | set(avro_item)):
        mine, theirs = json_item.get(key, _ABSENT), avro_item.get(key, _ABSENT)
        present = [value for value in (mine, theirs) if value is not _ABSENT]
        if all(isinstance(value, dict) for value in present):
            empty: dict[str, Any] = {}
            inner = (empty if mine is _ABSENT else mine, empty if theirs is _ABSENT else theirs)
            found.update(_differences(*inner, (*at, key)))
        elif mine != theirs:
            found[(*at, key)] = (mine, theirs)
    return found


# --- orders and point adjustments ---------------------------------------------------------
#
# Orders and point adjustments from PostgreSQL: each row that becomes a fact reaches the API
# once, as the row says, and nothing else does.
#
# The session's one run (``conftest.cdc_run``): the set-ups with facts (``dbz_json``, and
# ``dbz_avro`` for Debezium's Avro logical types) read customers, ``orders`` and
# ``point_adjustments`` through a ``ROUTES_FILE``. The scripted changes (``shop.STEPS``) place
# orders in the snapshot and after it, two of one customer in one transaction, one with its new
# customer in the same transaction, one before its customer's row exists (refused "customer not
# found" until that customer reaches the API, when the service reads it first), ship an order
# (an UPDATE) and reword an adjustment (an UPDATE): neither UPDATE may send anything.
#
# In this file, not one of their own: the session's CDC chain is set up once per pytest worker,
# and --dist loadfile sends each file to a worker (a second file cost a second chain, 63 s).

WITH_FACTS = [s.name for s in SETUPS if s.facts]


def applied(run: Run, setup: str, operation: Operation) -> list[dict[str, Any]]:
    state = run.pipes[setup].simulator.state
    return [entry["item"] for entry in state.items_applied_since(operation, 0, None)]


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_every_order_row_is_applied_once_as_the_row_says(cdc_run: Run, setup: str) -> None:
    """orderId, customerId, orderDate (UTC, milliseconds cut), totalPaid and the rest, from
    the snapshot's ``r`` and the inserts' ``c`` alike; every offset committed."""
    orders = applied(cdc_run, setup, Operation.ORDERS)
    assert sorted(o["orderId"] for o in orders) == sorted(cdc_run.orders), "each order once"
    for order in orders:
        assert order == chain.as_received(cdc_run.orders[order["orderId"]]), order["orderId"]
    group = f"customer-sync-{setup}"
    for topic in cdc_run.pipes[setup].sources:
        assert fully_committed(cdc_run.bootstrap, group, topic), topic


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_order_totals_arrive_with_their_exact_digits(cdc_run: Run, setup: str) -> None:
    """On the request bodies' bytes: numeric(12,2)'s largest value, 9999999999.99, and
    149.90 with its zero, never through a float; every body, retries included."""
    sent = [
        item
        for body in cdc_run.pipes[setup].recorder.bodies("orders")
        for item in chain.exact_json(body.decode())["body"]
    ]
    assert sent, "no orders request recorded"
    for item in sent:
        assert item == cdc_run.orders[item["orderId"]], item["orderId"]
    totals = {item["orderId"]: str(item["totalPaid"]) for item in sent}
    assert totals["5001"] == "9999999999.99"
    assert totals["1"] == "149.90"


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_an_order_s_update_sends_nothing(cdc_run: Run, setup: str) -> None:
    """A shipped order's UPDATE (op ``u``) is skipped: the order went out once, with its
    INSERT. Sent again it would be refused as a duplicate, which the simulator counts."""
    pipe = cdc_run.pipes[setup]
    sent = Counter(
        item["orderId"]
        for body in pipe.recorder.bodies("orders")
        for item in chain.exact_json(body.decode())["body"]
    )
    for order_id in shop.UPDATED_ORDERS:
        assert sent[order_id] == 1, order_id
    assert pipe.simulator.state.stats()["operations"]["orders"]["duplicates"] == 0


@pytest.mark.parametrize("setup", WITH_FACTS)
def test_each_adjustment_inserted_is_applied_once_and_nothing_else(
    cdc_run: Run, setup: str
) -> None:
    """Only the INSERTs after the snapshot are sent: the snapshot's row (op ``r``) may be
    one the API applied already, and the UPDATE of a note would award the points again."""
    adjustments = applied(cdc_run, setup, Operation.BALANCE_ADJUSTMENT)
    assert sorted((a["customerId"], a["amount"]) for a in adjustments) == sorted(
        (row.customer_id, row.points) for row in cdc_run.adjustments if row.sent
    )
    reasons = {a["reason"] for a in adjustments}
    assert "welcome bonus" not in reasons, "the snapshot's adjustment was sent"
    assert "goodwill: late delivery" in reasons, "sent as inserted"
    stats = cdc_run.pipes[setup].simulator.state.stats()["operations"]["balance-adjustment"]
    assert stats["double_applied"] == 0
