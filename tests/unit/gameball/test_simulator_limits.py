"""The simulator's rate limits: per API key, every client counted, sliding windows, 429s."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import httpx
import pytest

from service.gameball.simulator import (
    DOCUMENTED_LIMITS,
    RunningSimulator,
    SimulatorConfig,
)
from service.gameball.simulator.cli import add_arguments, banner, config_from_args
from service.gameball.simulator.limits import KeyLimits

KEYS = {"APIKey": "demo-api-key", "SecretKey": "demo-secret-key"}
STATUS = "/api/v4.0/integrations/batch/nope"  # 404: a request all the same
DOCUMENTED = {"per_second": 30, "per_window": 360, "window_seconds": 30.0}


def test_the_rate_is_counted_over_any_second_not_per_calendar_second() -> None:
    limits = KeyLimits()
    # 30 in the last 100 ms of one second ...
    assert all(limits.admit("k", 0.9 + i / 1000, **DOCUMENTED) is None for i in range(30))
    # ... leave no room in the first 100 ms of the next: a fixed window would take these.
    wait = limits.admit("k", 1.05, **DOCUMENTED)
    assert wait == pytest.approx(0.9 + 1.0 - 1.05, abs=0.001)
    assert limits.admit("k", 1.9 + 0.001, **DOCUMENTED) is None


def test_the_quota_is_counted_over_any_30_seconds() -> None:
    limits = KeyLimits()
    times = [i * 0.05 for i in range(360)]  # 20/s: within the rate, the quota in 18 s
    assert all(limits.admit("k", t, **DOCUMENTED) is None for t in times)
    wait = limits.admit("k", 20.0, **DOCUMENTED)
    assert wait == pytest.approx(30.0 - 20.0, abs=0.001)  # when the first one leaves
    assert limits.admit("k", 29.999, **DOCUMENTED) is not None
    assert limits.admit("k", 30.0, **DOCUMENTED) is None  # (t - 30, t]: the first one is out
    # A refused request is not counted: only the admitted ones fill the window.
    assert limits.admit("k", 30.06, **DOCUMENTED) is None


def test_each_api_key_has_its_own_limits_and_zero_is_none() -> None:
    limits = KeyLimits()
    for _ in range(30):
        assert limits.admit("a", 0.0, **DOCUMENTED) is None
    assert limits.admit("a", 0.0, **DOCUMENTED) is not None
    assert limits.admit("b", 0.0, **DOCUMENTED) is None
    assert all(
        limits.admit("c", 0.0, per_second=0, per_window=0, window_seconds=30.0) is None
        for _ in range(1000)
    )


@pytest.fixture
def limited() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(limit_per_second=5, limit_per_window=8, limit_window_seconds=30.0)
    with RunningSimulator(config) as simulator:
        yield simulator


def test_past_a_limit_the_api_answers_429_for_every_client_of_the_key(
    limited: RunningSimulator,
) -> None:
    clients = [httpx.Client(base_url=limited.base_url, headers=KEYS) for _ in range(2)]
    try:
        codes = [clients[i % 2].get(STATUS).status_code for i in range(5)]
        assert codes == [404] * 5
        refused = clients[1].get(STATUS)
        assert refused.status_code == 429
        assert refused.json() == {"message": "Too many requests"}
        assert 0 < float(refused.headers["Retry-After"]) <= 1.0
        # Bad credentials are told so first, and cost the key nothing.
        assert httpx.get(limited.base_url + STATUS).status_code == 401
        limited.state.update_config({"limit_retry_after": False})
        assert "Retry-After" not in clients[0].get(STATUS).headers
    finally:
        for client in clients:
            client.close()
    stats = limited.state.stats()
    assert stats["rate_limited"] == 2
    assert stats["requests"]["status"] == {"404": 5, "429": 2, "401": 1}


def test_limits_can_be_switched_at_run_time_and_are_checked() -> None:
    with RunningSimulator() as simulator:
        http = httpx.Client(base_url=simulator.base_url, headers=KEYS)
        try:
            assert all(http.get(STATUS).status_code == 404 for _ in range(40))
            response = http.post("/_sim/config", json={"limit_per_second": 3})
            assert response.status_code == 200
            assert [http.get(STATUS).status_code for _ in range(4)] == [404, 404, 404, 429]
            bad = http.post("/_sim/config", json={"limit_per_window": 2.5})
            assert bad.status_code == 400
            assert "limit_per_window" in bad.json()["message"]
        finally:
            http.close()


def test_the_cli_switch_enforces_the_documented_limits() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert not config_from_args(parser.parse_args([])).limited
    documented = config_from_args(parser.parse_args(["--documented-limits"]))
    assert (
        documented.limit_per_second,
        documented.limit_per_window,
        documented.limit_window_seconds,
    ) == (30, 360, 30.0)
    assert DOCUMENTED_LIMITS == {
        "limit_per_second": 30,
        "limit_per_window": 360,
        "limit_window_seconds": 30.0,
    }
    assert documented.limit_retry_after
    assert "30 requests/s and 360 per 30 s per API key" in banner(documented, "http://x")
    quiet = config_from_args(
        parser.parse_args(
            ["--documented-limits", "--limit-per-window=100", "--limit-without-retry-after"]
        )
    )
    assert (quiet.limit_per_second, quiet.limit_per_window) == (30, 100)
    assert "429 without Retry-After" in banner(quiet, "http://x")
