"""The short chaos runs (``make chaos`` is the ten-minute one): kills, faults, the full check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.driver import main
from tests.integration.harness import GroupProtocol

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow

SHORT = [
    "--seed=6",
    "--duration=30",
    "--records=2500",
    "--customers=250",
    "--tail=400",
    "--min-gap=3",
    "--max-gap=8",
    "--max-down=1.5",
    "--settle-timeout=90",
]


@pytest.mark.timeout(240)
def test_a_short_chaos_run_loses_nothing_and_keeps_order(
    group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    code = main([f"--protocol={group_protocol}", *SHORT, f"--workdir={tmp_path}"])
    report = (tmp_path / "report.json").read_text()
    assert code == 0, report


@pytest.mark.timeout(240)
def test_a_short_mixed_chaos_run_loses_no_fact_and_applies_none_twice(
    group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    """Orders, cashback and events beside the customers (``--mixed``): every fact applied
    once or dead-lettered for a reason the API gave, no event applied twice, every
    outcome_unknown accounted for; the customers' checks as above."""
    code = main([f"--protocol={group_protocol}", *SHORT, "--mixed", f"--workdir={tmp_path}"])
    report = (tmp_path / "report.json").read_text()
    assert code == 0, report
