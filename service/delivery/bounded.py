"""A bounded run: when ``customer-sync run --until-idle`` / ``--max-records`` is over.

The pipeline runs :meth:`BoundedRun.wait` as a task of its own beside fetch and dispatch; it
reads the state those tasks change (the buffer, the jobs, the ledgers, the commits) and the
broker's watermarks, and returns once everything read is settled and committed
(:class:`Until`). :meth:`BoundedRun.settled` is the same "nothing held" test the shutdown
drains to.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from service.delivery.assembly import Parts
from service.delivery.offsets import PartitionKey
from service.labels import OUTCOMES
from service.metrics import PREFIX

log = structlog.get_logger(__name__)

IDLE_QUIET_SECONDS = 1.0
"""A bounded run's idle: no record arrived for this long (and the rest of :class:`Until`)."""
UNTIL_CHECK_INTERVAL = 0.1
END_OFFSET_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Until:
    """When a bounded run ends (``customer-sync run --until-idle``, ``--max-records``).

    ``idle``: everything there was to read is read, settled and committed. Precisely, all of:

    * at least one partition is assigned, and no record arrived for ``quiet`` seconds;
    * nothing is buffered, no batch is in flight, no takeover is under way, no
      dead letter awaits its acknowledgement;
    * every settled watermark was committed and acknowledged: none is pending
      (changed since its last commit) or on its way;
    * for every assigned partition, the high watermark is known (from a fetch
      response) and the consumer's position has reached it (a partition nothing
      was read from stands at its committed offset), with no fetch returned
      meanwhile; and the offset the broker acknowledged as committed is one past
      the last record read: every record read is settled and committed.

    The position, not the committed offset, is compared with the high
    watermark: on a topic written transactionally the last offset is a
    transaction marker, never a record, and the commit stops one short of it.

    An instance that owns no partition is never idle: run a bounded run as the
    group's only member (a backfill's own group, say).

    ``records``: after this many records were read (fetches are cut to it), once
    they are all settled and committed as above, whether or not the end was reached.

    Either way the run then shuts down as on SIGTERM: leaves the group, closes.
    """

    idle: bool = False
    records: int | None = None
    quiet: float = IDLE_QUIET_SECONDS


@dataclass(slots=True)
class Reads:
    """What the fetch task has read: records consumed since the run began, and when last."""

    records: int = 0
    last: float = 0.0

    def count(self, records: int) -> None:
        self.records += records
        self.last = time.monotonic()


class BoundedRun:
    """Whether a bounded run is over, asked of the parts of one pipeline."""

    def __init__(self, parts: Parts, reads: Reads) -> None:
        self._reads = reads
        self._metrics = parts.metrics
        self._health = parts.health
        self._topics = parts.topics
        self._offsets = parts.offsets
        self._batcher = parts.batcher
        self._in_flight = parts.in_flight
        self._takeovers = parts.takeovers
        self._dead_letters = parts.dead_letters
        self._committer = parts.committer
        self._rebalancer = parts.rebalancer
        self._kafka_thread = parts.kafka_thread
        self._consumer = parts.consumer

    async def wait(self, until: Until) -> None:
        """Return once ``until`` is met (see :class:`Until`)."""
        while True:
            # The conditions are state several tasks change: a short poll, as the shutdown's.
            await asyncio.sleep(UNTIL_CHECK_INTERVAL)
            if until.records is not None and self._reads.records >= until.records:
                if self.settled():
                    self._finished("max_records")
                    return
            elif until.idle and await self._idle(until.quiet):
                self._finished("idle")
                return

    def _finished(self, reason: str) -> None:
        """The one line a bounded run (a backfill) ends with: what it read and what became of it."""
        sample = self._metrics.registry.get_sample_value
        log.info(
            "run_finished",
            reason=reason,
            records_read=self._reads.records,
            consumed=int(
                sum(
                    sample(f"{PREFIX}records_consumed_total", {"topic": topic}) or 0
                    for topic in self._topics
                )
            ),
            outcomes={
                outcome: int(sample(f"{PREFIX}records_total", {"outcome": outcome}) or 0)
                for outcome in OUTCOMES
            },
            ready=self._health.ready()[0],
        )

    def settled(self) -> bool:
        """Nothing held, nothing in flight, and every settled watermark acknowledged."""
        return not (
            self._batcher
            or self._in_flight
            or self._takeovers
            or self._dead_letters.in_flight
            or self._committer.in_flight
            or self._offsets.commit_candidates()
        )

    async def _idle(self, quiet: float) -> bool:
        assigned = sorted(self._rebalancer.assignment)
        if not assigned or time.monotonic() - self._reads.last < quiet or not self.settled():
            return False
        read = self._reads.records
        ends = await self._kafka_thread.call(self._ends, assigned)
        if (
            self._reads.records != read
        ):  # a fetch came back meanwhile (its records are ahead of ends)
            return False
        return all(self._at_end(tp, *end) for tp, end in zip(assigned, ends, strict=True))

    def _ends(self, partitions: list[PartitionKey]) -> list[tuple[int | None, int | None]]:
        """On the Kafka thread: each partition's (consumer position, high watermark).

        The watermark is asked of the broker, not read from the last fetch response: before
        a fetch has returned records that cached value can say 0 of a partition that holds
        some, and the run would end having read nothing.
        """
        return [
            (self._consumer.position(tp), self._consumer.end_offset(tp, END_OFFSET_TIMEOUT))
            for tp in partitions
        ]

    def _at_end(self, tp: PartitionKey, position: int | None, high: int | None) -> bool:
        """Read to the end, and all of it settled and committed: the commit is one past it.

        The commit is compared with what was read, not with the high watermark,
        and only :meth:`settled` would not do: work the pipeline does not count
        as held (the tags of a takeover's inherited job) keeps records unsettled.
        """
        if high is None:
            return False
        mine = self._offsets.position(tp)  # one past the last record read (None: none, no commit)
        if position is None:  # nothing consumed yet: it stands where it was assigned from
            position = mine or 0
        return position >= high and (mine is None or self._offsets.committed_offset(tp) == mine)
