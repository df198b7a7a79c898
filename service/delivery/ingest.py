"""Ingest: a fetched slice of records → tracked, decoded, and routed.

Every record is *tracked* the moment it is consumed, before anything else can
happen to it (``offsets.py``), then decoded, then routed:

* a customer goes into the buffer (``batching.py``), where it may supersede
  an earlier change of the same customer (settled as ``coalesced``); while a backlog is
  compacted (``compaction.py``) it goes without its source value, left in Kafka;
* a tombstone, a skipped delete or a TRUNCATE is settled at once (``skipped``); a
  TRUNCATE is also logged, since the API keeps the customers the table no longer has;
* a record that cannot become a customer goes to the dead-letter topic, and
  settles on the broker's acknowledgement.

While the dead-letter breaker is open (``breaker.py``) nothing is ingested: the record that
opened it is the last one routed, and the rest of its fetch, and whatever is fetched before
the consumer is paused, waits in :attr:`Ingestor.held`, in order, untracked, until the
pipeline hands it back (:meth:`Ingestor.unhold`).

A record whose schema registry cannot be reached (:class:`~service.errors.RegistryUnavailable`)
is not the record's fault: it is untracked again and held, with the rest of its slice, the
same way, and retried with backoff (:data:`REGISTRY_RETRY_FIRST` doubling to
:data:`REGISTRY_RETRY_MAX`); meanwhile :attr:`Ingestor.registry_waiting` is true, which the
pipeline turns into a paused consumer and a not-ready service.

A partition being taken over from a previous owner (``takeover.py``) routes
differently: a record its ledger shows settled is counted and skipped without
being decoded, and a change is held by the takeover instead of buffered.

This is the hot path: no logging per record, no label lookups, counters
updated once per slice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError as RdKafkaError

from service.delivery.breaker import DeadLetterBreaker, Example
from service.delivery.buffers import Buffers
from service.delivery.compaction import Compaction
from service.delivery.consumer import raise_if_fatal
from service.delivery.deadletter import DeadLetter, DeadLetterWriter
from service.delivery.decoding import Customer, Decoder, Fact, Reject, Skip
from service.delivery.edges import Message
from service.delivery.offsets import Mark, OffsetTracker, PartitionKey
from service.delivery.records import PendingRecord
from service.delivery.settlement import Settlement
from service.delivery.takeover import Takeovers
from service.errors import RegistryUnavailable
from service.metrics import Metrics

log = structlog.get_logger(__name__)

INGEST_SLICE = 100
"""Records ingested between two yields to the loop (about 1 ms of CPU).

A job's HTTP exchange needs several loop turns (a 200 KB POST, a 64 KB status
document), each waiting behind whatever holds the loop. A fetch of
``CONSUME_MAX`` records decoded in one go held it for 20-40 ms: under a backlog
the benchmark saw submits and status reads take 150-220 ms for jobs the API
finished at once. Slices of 250 brought them to 55-90 ms, and still cost a
slot of 16 in flight a fifth of its time (API-bound ratio 0.65, submits 113 ms,
reads 86 ms); slices of 100: 0.79, 51 ms and 49 ms, with the CPU-bound rate
unchanged (measured back to back, same run order).
"""
REGISTRY_RETRY_FIRST = 1.0
"""Seconds before a record held for an unreachable schema registry is first tried again."""
REGISTRY_RETRY_MAX = 30.0
"""The longest wait between two tries (the wait doubles from the first, with jitter)."""
CONSUMER_ERROR_LOG_EVERY = 30.0
"""Seconds between two log lines of the same consumer error (they can come per fetch)."""


class Ingestor:
    def __init__(
        self,
        offsets: OffsetTracker,
        decoder: Decoder | Mapping[str, Decoder],
        batcher: Buffers,
        dead_letters: DeadLetterWriter,
        settlement: Settlement,
        metrics: Metrics,
        takeovers: Takeovers,
        breaker: DeadLetterBreaker | None = None,
        compaction: Compaction | None = None,
    ) -> None:
        self._compaction = compaction
        self._breaker = breaker if breaker is not None and breaker.enabled else None
        self.held: deque[tuple[Sequence[Message], int]] = deque()
        """Fetched while the breaker is open, with their fetch's generation: not yet ingested."""
        self._front = 0  # where the rest of a resumed slice goes back: before the newer ones
        self._takeovers = takeovers
        self._offsets = offsets
        # One decoder per source topic (each route's mapping); they share the Avro reader.
        self._decoders = decoder if isinstance(decoder, Mapping) else None
        self._decoder = decoder if isinstance(decoder, Decoder) else next(iter(decoder.values()))
        self._batcher = batcher
        self._dead_letters = dead_letters
        self._settlement = settlement
        self._metrics = metrics
        self._error_logged: dict[str, float] = {}
        self._registry_failures = 0  # tries in a row that found the schema registry unreachable
        self._registry_retry_at = 0.0

    @property
    def registry_waiting(self) -> bool:
        """A record waits for the schema registry (unreachable at its last try)."""
        return self._registry_failures > 0

    async def fetch_schemas(self, messages: Sequence[Message]) -> None:
        """Fetch the Avro schemas a fetch's records need and the cache lacks, in a thread.

        A schema fetch is a blocking HTTP call; made by :meth:`ingest` on the loop, it would
        hold every job's exchange for as long as the registry takes (its timeout, when it
        does not answer). Call this before ingesting the fetch.
        """
        for sid in self._decoder.schemas_to_fetch(m.value() for m in messages):
            await asyncio.to_thread(self._decoder.fetch_schema, sid)

    def _blocked(self) -> bool:
        """Whether held records must stay held: the breaker is open or the registry's wait."""
        if self._breaker is not None and self._breaker.is_open():
            return True
        return self._registry_failures > 0 and time.monotonic() < self._registry_retry_at

    def _registry_unavailable(self, error: RegistryUnavailable) -> None:
        self._registry_failures += 1
        wait = min(REGISTRY_RETRY_MAX, REGISTRY_RETRY_FIRST * 2 ** (self._registry_failures - 1))
        wait *= random.uniform(0.75, 1.0)
        self._registry_retry_at = time.monotonic() + wait
        log.warning(
            "schema_registry_unavailable",
            error=str(error)[:500],
            retry_in_seconds=round(wait, 1),
            tries=self._registry_failures,
            hint="the record waits, unread and uncommitted, and the service reports not ready "
            "until the registry answers (SCHEMA_REGISTRY_URL)",
        )

    def unhold(self) -> tuple[Sequence[Message], int] | None:
        """The oldest records held while the breaker was open, once it lets them through.

        Ingest them with ``resumed=True``: should the breaker open again meanwhile, what is
        left of them goes back in front of the records held after them.
        """
        if not self.held or self._blocked():
            return None
        self._front = 0
        return self.held.popleft()

    @property
    def held_records(self) -> int:
        return sum(len(messages) for messages, _ in self.held)

    def _hold(self, messages: Sequence[Message], fetched: int, resumed: bool) -> None:
        if not messages:
            return
        if resumed:
            self.held.insert(self._front, (messages, fetched))
            self._front += 1
        else:
            self.held.append((messages, fetched))

    def ingest(self, messages: Sequence[Message], fetched: int, *, resumed: bool = False) -> None:
        """Track, decode and route one slice of a fetch (or hold it: the breaker is open).

        ``fetched``: the newest assignment generation when the fetch returned
        (:meth:`OffsetTracker.track`); records of partitions assigned again since are not ours.
        ``resumed``: the slice is of records :meth:`unhold` gave back, older than any held.
        """
        breaker = self._breaker
        if (self.held and not resumed) or self._blocked():
            self._hold(messages, fetched, resumed)
            return
        decoded = counted = 0  # records decoded; of them, told to the breaker
        now = time.monotonic()
        track = self._offsets.track
        decode = self._decoder.decode
        add = self._batcher.add
        consumed: Tally[str] = Tally()
        tracked = 0
        skipped: list[tuple[PartitionKey, int, int]] = []
        coalesced: list[PendingRecord] = []
        inherited: list[tuple[PartitionKey, int, int]] = []
        not_ours: list[tuple[PartitionKey, int]] = []  # held records no longer ours (resumed)
        takeovers = self._takeovers if self._takeovers else None  # fixed within a slice
        # While compacting, a buffered change keeps its API item, not its source bytes.
        compacting = self._compaction is not None and self._compaction.active
        topic = ""
        for index, message in enumerate(messages):
            error = message.error()
            if error is not None:
                self._log_consumer_error(error)
                continue
            if message.topic() != topic:  # a slice is mostly one topic: count per run
                consumed[topic] += tracked
                topic, tracked = message.topic() or "", 0
                if self._decoders is not None:
                    decode = self._decoders[topic].decode
            partition = message.partition() or 0
            offset = message.offset() or 0
            tp = (topic, partition)
            generation = track(tp, offset, fetched)
            if not generation:
                if resumed:
                    not_ours.append((tp, offset))
                continue
            tracked += 1
            slot = -1
            if takeovers is not None and tp in takeovers:
                mark = takeovers[tp].mark(offset)
                if Mark.SUCCEEDED <= mark <= Mark.COALESCED:
                    inherited.append((tp, offset, mark))
                    continue
                slot = mark - Mark.JOB  # carried by an inherited job (negative: none)
            value = message.value()
            try:
                result = decode(value)
            except RegistryUnavailable as exc:  # not the record's fault: read it again later
                self._offsets.untrack(tp, offset)
                tracked -= 1
                self._registry_unavailable(exc)
                self._hold(messages[index:], fetched, resumed)
                break
            decoded += 1
            timestamp_ms = message.timestamp()[1]
            if type(result) is Customer:
                record = PendingRecord(
                    topic,
                    partition,
                    offset,
                    timestamp_ms,
                    message.key(),
                    value,
                    result.customer_id,
                    result.payload,
                    generation=generation,
                    unknown=result.unknown,
                    tags=result.tags,
                    tags_changed=result.tags_changed,
                    tags_removed=result.tags_removed,
                )
                if takeovers is not None and tp in takeovers:
                    takeovers[tp].held.append((record, slot))
                    continue
                if compacting:
                    record.value = None  # read again from its offset if it is dead-lettered
                superseded = add(record, now)
                if superseded is not None:
                    coalesced.append(superseded)
            elif type(result) is Fact:
                record = PendingRecord(
                    topic,
                    partition,
                    offset,
                    timestamp_ms,
                    message.key(),
                    value,
                    result.customer_id,
                    result.payload,
                    generation=generation,
                    operation=result.operation,
                )
                if takeovers is not None and tp in takeovers:
                    takeovers[tp].held.append((record, slot))
                    continue
                add(record, now)
            elif type(result) is Skip:
                skipped.append((tp, offset, timestamp_ms))
                if result.reason == "truncate":  # rare, and the API keeps those customers
                    log.warning("truncate_skipped", topic=topic, partition=partition, offset=offset)
            elif isinstance(result, Reject):
                self._dead_letters.send(
                    DeadLetter(
                        topic,
                        partition,
                        offset,
                        timestamp_ms,
                        message.key(),
                        value,
                        result.reason,
                        result.error,
                        generation=generation,
                    )
                )
                if breaker is not None:
                    example = Example(topic, partition, offset, result.error)
                    tripped = breaker.dead_lettered(decoded - counted - 1, result.cause, example)
                    counted = decoded
                    if tripped:
                        self._hold(messages[index + 1 :], fetched, resumed)
                        break
        else:
            # The record that waited for the registry is first in line: decoded, or no longer
            # ours (then nothing waits: a consumer paused for it would stay paused for good).
            if self._registry_failures and (decoded or resumed):
                if decoded:
                    log.info("schema_registry_reachable", tries=self._registry_failures)
                self._registry_failures = 0
        if not_ours:
            self._log_not_ours(not_ours, fetched)
        if breaker is not None:
            breaker.passed(decoded - counted)
        consumed[topic] += tracked
        for topic, count in consumed.items():
            if count:
                self._metrics.records_consumed.labels(topic=topic).inc(count)
        self._settlement.skipped(skipped)
        self._settlement.settle(coalesced, "coalesced")
        if inherited:
            self._settlement.inherited(inherited)

    def _log_not_ours(self, records: list[tuple[PartitionKey, int]], fetched: int) -> None:
        """Held records dropped on their way back: say which, and who reads them again.

        Each is untracked, so nothing at or past it was committed: whoever owns its partition
        now (this instance after an assignment again, or the next owner) reads it from the
        committed offset. Rare (a rebalance while records were held), so said per partition.
        """
        by_partition: dict[PartitionKey, list[int]] = {}
        for tp, offset in records:
            by_partition.setdefault(tp, []).append(offset)
        for (topic, partition), offsets in by_partition.items():
            tp = (topic, partition)
            if not self._offsets.owns(tp):
                reason = "the partition was revoked or lost: its next owner reads them"
            elif self._offsets.generation(tp) > fetched:
                reason = "the partition was assigned again: it is read again from the commit"
            elif (self._offsets.position(tp) or 0) > offsets[0]:
                reason = "already tracked: read again, and on its way"
            else:
                reason = "the partition is being revoked: its next owner reads them"
            log.warning(
                "held_records_not_ours",
                partition=f"{topic}[{partition}]",
                first_offset=offsets[0],
                last_offset=offsets[-1],
                records=len(offsets),
                reason=reason,
            )

    def _log_consumer_error(self, error: Any) -> None:
        if isinstance(error, RdKafkaError):
            raise_if_fatal(error)
        text = str(error)
        now = time.monotonic()
        if now - self._error_logged.get(text, -1e9) > CONSUMER_ERROR_LOG_EVERY:
            self._error_logged[text] = now
            log.error("consumer_error", error=text)
