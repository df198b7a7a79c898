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

# `make test` runs on two pytest-xdist workers (``--dist loadgroup``). Each worker starts its
# own broker; the end-to-end tier shares one PostgreSQL and one Kafka Connect, so all of it
# should go to one worker. It does not yet: under pytest 9 and pytest-xdist 3.8 the group
# never reaches the node id, and each worker that runs an end-to-end test sets the tier up.
# The fix (``--dist loadfile``: one file holds the tier) awaits a clean-clone run.
WHOLE_ON_ONE_WORKER = ("cdc",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.parent.name
        if tier in WHOLE_ON_ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(tier))


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
