"""The short chaos run (``make chaos`` is the ten-minute one): kills, faults, the full check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.driver import main
from tests.integration.harness import GroupProtocol

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # make test-slow


@pytest.mark.timeout(240)
def test_a_short_chaos_run_loses_nothing_and_keeps_order(
    group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    code = main(
        [
            f"--protocol={group_protocol}",
            "--seed=6",
            "--duration=30",
            "--records=2500",
            "--customers=250",
            "--tail=400",
            "--min-gap=3",
            "--max-gap=8",
            "--max-down=1.5",
            "--settle-timeout=90",
            f"--workdir={tmp_path}",
        ]
    )
    report = (tmp_path / "report.json").read_text()
    assert code == 0, report
