"""A member joining makes the other revoke partitions; the revoking member must commit them.

Found by the chaos run (issue 6; fixed in ``Rebalancer.on_revoke``):
an instance revoking partitions with settled, uncommitted offsets froze for
good. Its Kafka thread sat in the revoke callback waiting for the loop, and
the loop's commit (a synchronous ``Consumer.commit`` on another thread)
waited for librdkafka, which does not complete it while the rebalance
callback is being served. A frozen member keeps heartbeating, so its
partitions stay stuck and SIGTERM never finishes.

To make the window certain rather than likely, instance A runs with the
periodic commit effectively off (``COMMIT_INTERVAL`` patched to an hour, and
the commits soon after settlements and on draining off), so at the rebalance every settled offset is
still uncommitted and the revoke handler is what must commit it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.gameball.simulator import RunningSimulator
from service.tools.samples import generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import (
    GroupProtocol,
    ServiceProcess,
    committed,
    end_offsets,
    produce,
    service_env,
    unique,
)

pytestmark = pytest.mark.integration

NO_PERIODIC_COMMIT = (
    "import sys, service.delivery.commits as c; c.COMMIT_INTERVAL = 3600.0; "
    "c.COMMIT_WHEN_DRAINED = False; c.Committer.soon = lambda self: None; "
    "from service.cli import main; sys.exit(main(['run']))"
)


class PatchedService(ServiceProcess):
    def start(self) -> PatchedService:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", NO_PERIODIC_COMMIT], env=self.env, stdout=log, stderr=log
            )
        return self


def test_a_member_joining_makes_the_other_commit_what_it_gives_up(
    broker: KafkaNode, simulator: RunningSimulator, group_protocol: GroupProtocol, tmp_path: Path
) -> None:
    topic, group = unique("rebalance"), unique("rebalance-group")
    broker.create_topics({topic: 4, f"{topic}.dlq": 1})
    env = service_env(broker, simulator.base_url, topic, group, protocol=group_protocol)
    first = PatchedService(env, tmp_path / "a.log").start()
    second = ServiceProcess(env, tmp_path / "b.log")
    try:
        wait_for(first.ready, 30, "instance A ready")
        produced = produce(broker.bootstrap, topic, generate(400, 100, seed=3), partitions=4)
        wait_for(
            lambda: (
                len(simulator.state.applied) + simulator.state.records_failed
                >= len(simulator.state.latest)
                > 0
                and first.metric("customer_sync_records_consumed_total") >= produced.total
            ),
            30,
            "A consumed and delivered everything (nothing committed yet)",
        )
        # Nothing settled is committed yet: only each job's write-ahead, at the start.
        assert set(committed(broker.bootstrap, group, topic, 4).values()) <= {0}
        second.start()
        # A gives up two partitions and commits them on the way out of the callback.
        offsets = wait_for(
            lambda: (
                len(
                    c := {
                        p: o for p, o in committed(broker.bootstrap, group, topic, 4).items() if o
                    }
                )
                >= 2
                and c
            ),
            15,
            "the revoked partitions' offsets committed by A",
            interval=0.5,
        )
        # All of them, not some: A had settled everything it consumed.
        ends = end_offsets(broker.bootstrap, topic)
        assert all(offsets[p] == ends[p] for p in offsets), (offsets, ends)
        # And by A: had B committed them itself, it would have re-read them first.
        wait_for(second.ready, 15, "instance B ready")
        assert second.metric("customer_sync_records_consumed_total") == 0
        first.signal(signal.SIGTERM)
        assert first.wait(20) == 0
    finally:
        for process in (first, second):
            if process.process and process.process.poll() is None:
                process.process.kill()
                process.process.wait()
