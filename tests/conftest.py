"""Shared fixtures: one real broker per test session, a simulator per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.embedded_broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """Override in a test module (or parametrize) to switch faults on."""
    return SimulatorConfig(seed=1)


@pytest.fixture
def simulator(simulator_config: SimulatorConfig) -> Iterator[RunningSimulator]:
    with RunningSimulator(simulator_config) as running:
        yield running
