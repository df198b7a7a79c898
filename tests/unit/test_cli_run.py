"""``customer-sync run --until-idle / --max-records``: a bounded run from the command line."""

from __future__ import annotations

import pytest

from service import app, cli
from service.config import Settings
from service.delivery.bounded import Until


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[Until | None]:
    seen: list[Until | None] = []

    def run(_settings: Settings, until: Until | None = None) -> None:
        seen.append(until)

    monkeypatch.setattr(app, "run", run)
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "GAMEBALL_API_KEY": "k",
        "GAMEBALL_SECRET_KEY": "s",
    }.items():
        monkeypatch.setenv(name, value)
    return seen


def test_run_is_unbounded_unless_asked(runs: list[Until | None]) -> None:
    assert cli.main(["run"]) == 0
    assert runs == [None]


def test_until_idle_and_max_records_bound_the_run(runs: list[Until | None]) -> None:
    assert cli.main(["run", "--until-idle"]) == 0
    assert cli.main(["run", "--max-records", "500"]) == 0
    assert cli.main(["run", "--until-idle", "--max-records", "5"]) == 0
    assert runs == [Until(idle=True), Until(records=500), Until(idle=True, records=5)]


def test_a_count_below_one_is_refused(
    runs: list[Until | None], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--max-records", "0"])
    assert exit_.value.code == 2
    assert "at least 1" in capsys.readouterr().err
    assert runs == []
