"""Admin calls the tests make against a real broker: topics, coordinators, offsets.

Every call asks again while a starting or restarted broker gives a transient answer, within a
deadline (``service.delivery.broker_retry``: the rule the tools follow too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from service.delivery.broker_retry import is_transient
from service.tools import embedded_broker

# librdkafka's own log lines (connection refused while a node starts, ...) go to Python logging,
# where pytest keeps them with the test, instead of to the terminal.
_client_log = logging.getLogger(f"{__name__}.librdkafka")


def admin_client(bootstrap: str) -> AdminClient:
    """An AdminClient that retries a node that is not up yet every ≤ 0.5 s (not 10 s).

    Keep a reference while waiting on its futures: a client that is garbage-collected first
    never completes them (``admin_client(b).describe_consumer_groups(...)`` hangs).
    """
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        },
        logger=_client_log,
    )


def create_topics(
    bootstrap: str,
    names: Mapping[str, int],
    timeout: float = 30.0,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    served_by: Sequence[str] | None = None,
) -> None:
    """Create topics ({name: partitions}; existing ones are left alone) and wait for leaders.

    ``served_by``: the addresses of every node that must know the topics before this returns
    (default: ``bootstrap``), so that a client of any of them finds them at once.
    """
    embedded_broker.create_topics(
        admin_client(bootstrap),
        names,
        timeout,
        replication_factor=replication_factor,
        config=config,
    )
    # Created means committed by the controller; each broker learns it a little later, on its
    # own: wait until every node in ``served_by`` serves every partition with a leader.
    deadline = time.monotonic() + timeout
    for address in served_by or [bootstrap]:
        while not _serves(address, names, deadline):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{address} does not serve {sorted(names)} with leaders after {timeout}s"
                )
            time.sleep(0.05)


def _serves(address: str, names: Mapping[str, int], deadline: float) -> bool:
    """Whether the node at ``address`` has every partition with a leader in its metadata.

    A fresh client asks the one broker it was given; a longer-lived one may ask any broker.
    """
    try:
        metadata = admin_client(address).list_topics(
            timeout=max(0.1, min(2.0, deadline - time.monotonic()))
        )
    except KafkaException:
        return False
    for name, partitions in names.items():
        topic = metadata.topics.get(name)
        if (
            topic is None
            or topic.error is not None
            or len(topic.partitions) < partitions
            or any(p.leader < 0 for p in topic.partitions.values())
        ):
            return False
    return True


def group_coordinator(bootstrap: str, group: str, timeout: float = 30.0) -> int:
    """The node id coordinating a consumer group, once it answers (an unknown group: DEAD).

    Retries while the coordinator moves or loads: the first lookup on a fresh node creates
    ``__consumer_offsets``, and a restarted node answers metadata before its coordinators have
    loaded (both answer NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS meanwhile).
    """
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(1.0, deadline - time.monotonic())
        # One request for all the time left, never short ones: librdkafka 2.x can abort the
        # whole process when a DescribeConsumerGroups request times out with its
        # FindCoordinator still in flight (confluentinc/librdkafka#4605).
        future = admin.describe_consumer_groups([group], request_timeout=remaining)[group]
        try:
            return int(future.result(timeout=remaining + 5).coordinator.id)
        except KafkaException as exc:
            if not is_transient(exc.args[0]) or time.monotonic() > deadline:
                raise
        time.sleep(0.2)
