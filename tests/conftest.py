"""Shared fixtures: one Apache Kafka broker per test session, a simulator per test.

Integration tests run on Apache Kafka 4 (``tests/brokers``: a KRaft node from the jars
``make kafka-jars`` caches). Tansu, the demo's embedded broker, has a smoke tier of its own
(``tansu``). ``group_protocol`` runs a test under both rebalance protocols.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from service.tools.embedded_broker import EmbeddedBroker
from tests.brokers.apache import KafkaNode
from tests.integration.harness import GROUP_PROTOCOLS, GroupProtocol

# `make test` runs on two pytest-xdist workers with ``--dist loadfile``: each worker starts
# its own broker (the session fixture below), and a test file runs whole on one worker. The
# end-to-end tier keeps its one PostgreSQL and one Kafka Connect that way: the tests that share
# them (``cdc_run``) are all in ``tests/cdc/test_end_to_end.py``.


@pytest.fixture(scope="session")
def broker() -> Iterator[KafkaNode]:
    with KafkaNode() as running:
        yield running


@pytest.fixture(scope="session")
def tansu() -> Iterator[EmbeddedBroker]:
    """The demo's embedded broker (memory only, wrong high watermarks): for its smoke tier."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(params=GROUP_PROTOCOLS)
def group_protocol(request: pytest.FixtureRequest) -> GroupProtocol:
    """Classic (cooperative-sticky) and KIP-848 (``group.protocol=consumer``)."""
    protocol: GroupProtocol = request.param
    return protocol


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """Override in a test module (or parametrize) to switch faults on."""
    return SimulatorConfig(seed=1)


@pytest.fixture
def simulator(simulator_config: SimulatorConfig) -> Iterator[RunningSimulator]:
    with RunningSimulator(simulator_config) as running:
        yield running
