"""The README's configuration table is generated from Settings and kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from service.contracts import docgen


def test_the_readme_table_is_what_the_settings_model_generates() -> None:
    assert docgen.main(["--check"]) == 0, "README.md is stale: run `make readme`"


def test_every_setting_is_in_the_table_with_its_default() -> None:
    table = docgen.config_table()
    for name in Settings.model_fields:
        if name != "kafka_client":
            assert f"| `{name.upper()}` |" in table
    assert "| `KAFKA_CLIENT_<PROPERTY>` | — |" in table
    assert "| `KAFKA_BOOTSTRAP_SERVERS` | required |" in table
    assert "| `BATCH_MAX_RECORDS` | `1000` |" in table


def test_only_the_marked_section_is_rewritten_and_staleness_is_detected(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{docgen.START}\n| old |\n{docgen.END}\noutro\n")
    assert docgen.main(["--check", "--readme", str(readme)]) == 1
    assert docgen.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n")
    assert text.endswith(f"{docgen.END}\noutro\n")
    assert "| old |" not in text
    assert docgen.main(["--check", "--readme", str(readme)]) == 0


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="config-table:start"):
        docgen.render("no markers here")
