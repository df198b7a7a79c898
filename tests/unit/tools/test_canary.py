"""`customer-sync canary` against the simulator over HTTP: what landed, field by field."""

from __future__ import annotations

import orjson
import pytest

from service.config import load_settings
from service.delivery.mapping import FieldMapping, layout
from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.canary import run_canary
from service.tools.canary_sample import sample_row


async def canary(simulator: RunningSimulator, **env: str) -> tuple[int, list[str]]:
    settings = load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # the canary never reaches Kafka
            "GAMEBALL_BASE_URL": simulator.base_url,
            "GAMEBALL_API_KEY": simulator.config.api_key,
            "GAMEBALL_SECRET_KEY": simulator.config.secret_key,
            **env,
        }
    )
    mapping = FieldMapping({})
    shape = layout(mapping, settings.gameball_customer_shape, settings.tags_sync)
    row = sample_row(shape, mapping, "canary-1")
    lines: list[str] = []
    code = await run_canary(settings, mapping, row, 30.0, lines.append)
    return code, lines


@pytest.mark.parametrize("job_api", ["batch", "batches"])
async def test_every_field_lands_on_a_server_that_binds_what_is_sent(job_api: str) -> None:
    with RunningSimulator(SimulatorConfig(seed=1, job_api=job_api)) as simulator:
        code, lines = await canary(simulator)
        checked = [line for line in lines if line.startswith("  ")]
        assert code == 0, lines
        assert len(checked) >= 25  # every documented attribute, by its default column name
        assert all(line.startswith("  ✓") for line in checked), lines
        assert '  ✓ customerAttributes.displayName: "Canary Customer"' in lines
        assert '  ✓ tags (their own call): ["customer-sync-canary"]' in lines
        assert f"({job_api} dialect)" in "\n".join(lines)
        stored = orjson.loads(orjson.dumps(simulator.state.latest["canary-1"]))
        assert stored["customerAttributes"]["city"] == "Cairo"


async def test_a_server_that_drops_the_profile_is_named_field_by_field() -> None:
    """A server binding the tutorial's flat customer, lenient as the live API probably is:
    the job completes, and everything inside customerAttributes is silently gone."""
    config = SimulatorConfig(seed=1, customer_shape="flat", strict=False)
    with RunningSimulator(config) as simulator:
        code, lines = await canary(simulator)
        assert code == 1
        missing = '  ✗ customerAttributes.city: sent "Cairo", read back nothing: the API dropped it'
        assert missing in lines
        assert '  ✓ email: "canary@example.com"' in lines  # the flat customer has it
        assert lines[-1].startswith("NOT LANDED: ")
        assert "customerAttributes.displayName" in lines[-1]
        assert simulator.state.profiles.ignored["customerAttributes"] == 1


async def test_the_tutorial_s_shape_lands_on_a_server_that_binds_it() -> None:
    config = SimulatorConfig(seed=1, customer_shape="flat")
    with RunningSimulator(config) as simulator:
        code, lines = await canary(simulator, GAMEBALL_CUSTOMER_SHAPE="flat")
        assert code == 0, lines
        assert '  ✓ name: "canary-name"' in lines
        assert '  ✓ custom.canary: "yes"' in lines
