"""Building the pipeline from its parts, in one pass, each part before those that use it.

The order is the dependency order, so no part needs a reference to one built
later:

1. the books: offsets, the buffer, the key's request budget;
2. the edges (``edges.py``): the API client, the consumer, the dead-letter
   writer and its producer. Given ones (fakes in unit tests) are used as they are;
3. what turns verdicts into settled offsets and commits them: settlement,
   the committer (which also hears of each job created, for the ledger), and
   the :class:`Progress` signal that wakes the dispatcher after a release;
4. what produces verdicts: jobs, tags, takeovers; then compaction, ingest, backpressure, lag;
5. the rebalancer, over everything the instance holds for its partitions.

The two callbacks that point back up the chain, the consumer's (rebalance,
commit results) and the dead-letter writer's (acknowledgements), are given
when those edges *start* (:meth:`Pipeline.run`), as librdkafka's own are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from service.config import Settings
from service.delivery.avro import AvroReader
from service.delivery.backpressure import Backpressure
from service.delivery.batching import Batcher
from service.delivery.breaker import DeadLetterBreaker
from service.delivery.buffers import Buffers
from service.delivery.commits import Committer
from service.delivery.compaction import Compaction
from service.delivery.consumer import KafkaThread, SourceConsumer
from service.delivery.deadletter import DeadLetterWriter, Reread
from service.delivery.decoding import Decoder
from service.delivery.edges import Consumer, GameballApi, ProducerFactory
from service.delivery.ingest import Ingestor
from service.delivery.items import ItemBuilder, ItemMapping
from service.delivery.jobs import JobTracker
from service.delivery.lag import Lag
from service.delivery.mapping import FieldMapping
from service.delivery.offsets import OffsetTracker
from service.delivery.polling import PollSchedule
from service.delivery.rebalance import REVOKE_WAIT, Holdings, InFlight, KeyShare, Rebalancer
from service.delivery.records import PendingRecord
from service.delivery.reread import SourceReader
from service.delivery.routes import Route, routes_from_settings, source_topics
from service.delivery.settlement import Settlement
from service.delivery.tags import TagSender
from service.delivery.takeover import Takeovers
from service.gameball.budget import RequestBudget
from service.gameball.client import GameballClient, RetryPolicy
from service.health import Health
from service.metrics import Metrics


class Progress:
    """Work was settled or released: the dispatcher looks at the buffer again, a commit follows."""

    def __init__(self, committer: Committer) -> None:
        self.wake = asyncio.Event()
        self._committer = committer

    def __call__(self) -> None:
        self.wake.set()
        self._committer.soon()


class Current:
    """Whether a record is of its partition's current assignment (it may still settle)."""

    def __init__(self, offsets: OffsetTracker) -> None:
        self._offsets = offsets

    def __call__(self, record: PendingRecord) -> bool:
        return self._offsets.generation((record.topic, record.partition)) == record.generation


@dataclass(frozen=True, slots=True)
class Parts:
    """Every part of one pipeline, built and wired (see the module docstring)."""

    settings: Settings
    routes: tuple[Route, ...]
    topics: tuple[str, ...]  # every route's source topics
    metrics: Metrics
    health: Health
    offsets: OffsetTracker
    batcher: Buffers
    budget: RequestBudget
    client: GameballApi
    consumer: Consumer
    kafka_thread: KafkaThread
    dead_letters: DeadLetterWriter
    settlement: Settlement
    breaker: DeadLetterBreaker
    committer: Committer
    progress: Progress
    tracker: JobTracker
    tags: TagSender
    takeovers: Takeovers
    ingestor: Ingestor
    compaction: Compaction
    source_reader: SourceReader | None
    backpressure: Backpressure
    lag: Lag
    in_flight: InFlight
    rebalancer: Rebalancer


def decoders(settings: Settings, routes: tuple[Route, ...], metrics: Metrics) -> dict[str, Decoder]:
    """Each source topic's decoder: its route's mapping, one Avro reader shared by all."""
    registry = settings.schema_registry_config()
    avro = AvroReader.from_config(registry) if registry is not None else None
    by_route = {
        route.name: Decoder(
            route.mapping if isinstance(route.mapping, FieldMapping) else None,
            settings.delete_policy,
            shape=settings.gameball_customer_shape,
            tags_sync=settings.tags_sync,
            metrics=metrics,
            avro=avro,
            items=ItemBuilder(route.mapping) if isinstance(route.mapping, ItemMapping) else None,
        )
        for route in routes
    }
    return {topic: by_route[route.name] for route in routes for topic in route.topics}


def build(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    health: Health | None = None,
    retry: RetryPolicy | None = None,
    poll: PollSchedule | None = None,
    client: GameballApi | None = None,
    consumer: Consumer | None = None,
    producer: ProducerFactory | None = None,
    reread: Reread | None = None,
) -> Parts:
    """The parts of a pipeline for ``settings``; ``client``, ``consumer``, ``producer``,
    ``reread`` replace the real edges (the API over HTTP, confluent-kafka's consumer and
    producer, the reader of a dead letter's source value)."""
    metrics = metrics or Metrics()
    health = health or Health()
    routes = routes_from_settings(settings)  # ConfigError: a mistake in them stops start-up
    topics = source_topics(routes)
    metrics.customer_info.labels(settings.gameball_customer_shape, settings.tags_sync).set(1)
    for route in routes:
        metrics.route_info.labels(route.name, route.operation.value).set(1)

    # 1. The books.
    offsets = OffsetTracker()
    batcher = Buffers(
        Batcher(
            settings.batch_max_records, settings.batch_max_bytes, settings.batch_max_wait_seconds
        ),
        (route.operation for route in routes),
    )
    # The key's limits, split between the group's instances by the partitions they own.
    budget = RequestBudget(
        settings.api_windows(), key_share=settings.gameball_key_share, metrics=metrics
    )

    # A route with limits of its own (the rate-limit page's Events) submits within them.
    route_budgets = {
        route.operation: RequestBudget(
            route.limits.windows(), key_share=settings.gameball_key_share
        )
        for route in routes
        if route.limits is not None
    }

    # 2. The edges.
    if client is None:
        client = GameballClient(
            settings.gameball_endpoint,
            settings.gameball_api_key,
            settings.gameball_secret_key,
            metrics=metrics,
            health=health,
            retry=retry,
            budget=budget,
            max_connections=max(8, settings.max_jobs_in_flight * 2),
            submit_budgets=route_budgets,
            request_timeout=settings.gameball_request_timeout_seconds,
        )
    consumer_is_real = consumer is None
    if consumer is None:
        consumer = SourceConsumer(settings.consumer_config(), topics)
    kafka_thread = KafkaThread()
    # A compacted change's value stays in Kafka: a dead letter reads it again from its offset,
    # where the consumer reads (a given consumer, a fake, comes with its own ``reread``).
    source_reader = SourceReader(settings.consumer_config()) if consumer_is_real else None
    dead_letters = DeadLetterWriter(
        settings.producer_config(),
        settings.kafka_dlq_topic,
        metrics=metrics,
        producer=producer,
        reread=reread or (source_reader.read if source_reader is not None else None),
        topics={topic: route.dead_letter_topic for route in routes for topic in route.topics},
    )

    # 3. Settling and committing.
    settlement = Settlement(offsets, batcher, dead_letters, metrics)
    breaker = DeadLetterBreaker.from_settings(settings)
    committer = Committer(
        offsets,
        consumer,
        kafka_thread,
        metrics,
        metadata_limit=settings.commit_metadata_max_bytes,
        hold=breaker.is_open,  # nothing is committed while the breaker is open
    )
    progress = Progress(committer)

    # 4. What produces verdicts, and what feeds it.
    tags = TagSender(client, Current(offsets))
    tracker = JobTracker(
        client,
        metrics,
        max_jobs_in_flight=settings.max_jobs_in_flight,
        job_timeout=settings.job_timeout_seconds,
        max_submit_attempts=settings.max_submit_attempts,
        poll=poll,
        write_ahead=committer.write_ahead,  # each POST waits for its intent's commit
        on_created=committer.job_created,
        on_ended=offsets.ended,
        owns=offsets.takes_all,
        customer_wait=settings.customer_wait_seconds,
    )
    takeovers = Takeovers(
        client,
        metrics,
        offsets,
        batcher,
        settlement,
        on_release=progress,
        tags=tags,
        room=settings.max_buffered_records // 2,  # the load the consumer resumes at
        job_timeout=settings.job_timeout_seconds,
        customer_wait=settings.customer_wait_seconds,
        request_timeout=settings.gameball_request_timeout_seconds,
    )
    compaction = Compaction(
        settings.compaction_max_bytes, settings.batch_max_records, budget.rate, metrics
    )
    ingestor = Ingestor(
        offsets,
        decoders(settings, routes, metrics),
        batcher,
        dead_letters,
        settlement,
        metrics,
        takeovers,
        breaker,
        compaction,
    )
    backpressure = Backpressure(
        consumer, metrics, settings.max_buffered_records, settings.compaction_max_bytes
    )
    lag = Lag(consumer.high_watermark, consumer.position, offsets, takeovers, metrics)

    # 5. Partitions arriving and leaving.
    in_flight = InFlight()
    rebalancer = Rebalancer(
        Holdings(offsets, batcher, takeovers, tracker, in_flight),
        consumer,
        committer,
        KeyShare(budget, consumer, topics, tuple(route_budgets.values())),
        health=health,
        metrics=metrics,
        on_assigned=backpressure.assigned,
        revoke_wait=min(REVOKE_WAIT, settings.shutdown_timeout_seconds),
    )
    return Parts(
        settings=settings,
        routes=routes,
        topics=topics,
        metrics=metrics,
        health=health,
        offsets=offsets,
        batcher=batcher,
        budget=budget,
        client=client,
        consumer=consumer,
        kafka_thread=kafka_thread,
        dead_letters=dead_letters,
        settlement=settlement,
        breaker=breaker,
        committer=committer,
        progress=progress,
        tracker=tracker,
        tags=tags,
        takeovers=takeovers,
        ingestor=ingestor,
        compaction=compaction,
        source_reader=source_reader,
        backpressure=backpressure,
        lag=lag,
        in_flight=in_flight,
        rebalancer=rebalancer,
    )
