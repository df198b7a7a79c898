"""``customer-sync run`` refuses a configuration it cannot use in one sentence, never a traceback.

An unreachable broker is not among them: librdkafka retries it forever by
design, and ``customer-sync check`` is where that is reported (test_check.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.commands import customer_sync

pytestmark = pytest.mark.integration

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "GAMEBALL_API_KEY": "k",
    "GAMEBALL_SECRET_KEY": "s",
}


def bad_yaml(tmp_path: Path) -> str:
    path = tmp_path / "mapping.yaml"
    path.write_text("customerId: [unclosed\n")
    return str(path)


def not_a_mapping(tmp_path: Path) -> str:
    path = tmp_path / "mapping.json"
    path.write_text('["customerId"]')
    return str(path)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "FIELD_MAPPING_FILE",
            "/nonexistent/map.yaml",
            "FIELD_MAPPING_FILE '/nonexistent/map.yaml' cannot be read",
        ),
        ("FIELD_MAPPING_FILE", bad_yaml, "is not valid"),
        ("FIELD_MAPPING_FILE", not_a_mapping, "must map API field names to source column paths"),
        ("MAX_JOBS_IN_FLIGHT", "many", "MAX_JOBS_IN_FLIGHT is invalid 'many'"),
        ("GAMEBALL_SECRET_KEY", None, "GAMEBALL_SECRET_KEY is required but not set"),
    ],
)
def test_run_refuses_a_bad_setting_in_one_sentence(
    variable: str, value: object, expected: str, tmp_path: Path
) -> None:
    env = dict(BASE)
    if value is None:
        env.pop(variable)
    else:
        env[variable] = value(tmp_path) if callable(value) else str(value)
    out = customer_sync("run", env=env, timeout=30)
    out.assert_no_traceback()
    assert out.code == 2, out
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("customer-sync: configuration error: ")
    assert expected in line
