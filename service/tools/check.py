"""``customer-sync check``: can this configuration work, here and now? One line per check.

Meant as the Kubernetes init container (same image, same environment as the
service): it fails the pod early, with a sentence an operator can act on,
instead of letting ``run`` start and retry forever. librdkafka retries an
unreachable broker forever by design, which is right for the service and
wrong for a preflight, so every network call here has a short deadline
(``--timeout``): what a broker answers while it starts, elects a leader or
loads a coordinator is asked again within it, never beyond
(:mod:`service.delivery.broker_retry`), and a missing topic fails at once.

What fails the check (exit 1): the configuration, the field-mapping or routes file, no
broker answering, a source or dead-letter topic missing, the API rejecting
the credentials or the version or not answering, the configured job dialect
absent where the other answers, a source topic whose newest records
none can become a customer (a wrong mapping; see :mod:`service.tools.sampling`), and a
schema registry (``SCHEMA_REGISTRY_URL``) that cannot be reached or refuses the credentials.
What does not: consumer-group lag, reported for information only (lag is
normal after a deploy and must not gate a rollout), and what the sample
warns about (``!``). An unusable configuration exits 2, like ``run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata  # typed here, not re-exported

from service.config import Settings, load_settings
from service.delivery.avro import AvroReader
from service.delivery.broker_retry import (
    BrokerCallFailed,
    ask_again_if_transient,
    committed_offsets,
    is_transient,
    watermarks,
    with_broker_retry,
)
from service.delivery.compaction import HORIZON, REQUESTS_PER_JOB
from service.delivery.decoding import Decoder
from service.delivery.mapping import FieldMapping
from service.delivery.routes import Route, routes_from_settings
from service.errors import ConfigError, KafkaError, RegistryUnavailable
from service.gameball.budget import HEADROOM
from service.gameball.operations import Delivery, Operation
from service.tools.check_api import check_api
from service.tools.check_registry import check_registry
from service.tools.check_results import FAIL, INFO, OK, WARN, Result
from service.tools.sampling import SAMPLE, Sample, newest

# Properties that only make sense for the service's own producer or consumer;
# the short-lived admin and lag clients here take everything else (security,
# SASL, TLS) from the same settings.
_NOT_FOR_ADMIN = frozenset({"linger.ms", "enable.idempotence", "acks"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the brokers and for the API, each (10)",
    )


def admin_config(settings: Settings) -> dict[str, str | int | float | bool]:
    """The settings' client properties for a short-lived admin client, librdkafka logs muted.

    librdkafka logs every failed connection attempt to stderr; a preflight
    reports the outcome itself, in one line, so the log is silenced (level 0).
    """
    config: dict[str, str | int | float | bool] = {
        k: v for k, v in settings.producer_config().items() if k not in _NOT_FOR_ADMIN
    }
    config["log_level"] = 0
    return config


def create_topic_hint(settings: Settings, topic: str) -> str:
    return (
        f"kafka-topics.sh --bootstrap-server {settings.kafka_bootstrap_servers} "
        f"--create --topic {topic} --partitions {1 if topic == settings.kafka_dlq_topic else 6} "
        "--replication-factor 3"
    )


def _sources(routes: tuple[Route, ...]) -> list[str]:
    return [topic for route in routes for topic in route.topics]


def _sources_or_none(routes: tuple[Route, ...] | None) -> tuple[str, ...] | None:
    return tuple(_sources(routes)) if routes else None


def _dead_letter_topics(settings: Settings, routes: tuple[Route, ...]) -> list[str]:
    return list(dict.fromkeys([settings.kafka_dlq_topic, *(r.dead_letter_topic for r in routes)]))


def _topics(settings: Settings, routes: tuple[Route, ...]) -> list[str]:
    return [*_sources(routes), *_dead_letter_topics(settings, routes)]


_DELIVERY = {
    Delivery.UPSERT: "upsert, the latest state of a customer wins",
    Delivery.KEYED: "keyed by {key}, a second delivery is refused as a duplicate",
    Delivery.IDLESS: "no id, at most once: an item whose fate is unknown is dead-lettered "
    "(unsafe_without_ids)",
}


def describe_routes(routes: tuple[Route, ...]) -> list[Result]:
    """One line per route: its operation, its topics and the delivery its operation bears."""
    results = []
    for route in routes:
        delivery = _DELIVERY[route.delivery].format(key=route.natural_key)
        extras = ""
        if route.limits is not None:
            shown = [
                f"{count}/{span}"
                for count, span in ((route.limits.per_second, "s"), (route.limits.per_30s, "30 s"))
                if count is not None
            ]
            extras += f"; own limits {', '.join(shown)} ({OWN_LIMITS})"
        results.append(
            Result(
                OK,
                f"route {route.name}",
                f"{route.operation} from {', '.join(route.topics)}: {delivery}{extras} "
                f"→ dead letters {route.dead_letter_topic}",
            )
        )
    return results


OWN_LIMITS = "its submissions; job reads share the group's budget"


def check_broker(
    settings: Settings, routes: tuple[Route, ...], timeout: float
) -> tuple[Result, ClusterMetadata | None]:
    """Cluster metadata, asked again while a configured topic has no leader yet, within
    ``timeout``: then the last answer stands and :func:`check_topics` says what is wrong."""
    admin = AdminClient(admin_config(settings))
    last: ClusterMetadata | None = None

    def lookup(left: float) -> ClusterMetadata:
        nonlocal last
        last = admin.list_topics(timeout=left)
        for topic in _topics(settings, routes):
            found = last.topics.get(topic)
            if found is not None:
                ask_again_if_transient(found.error)
        return last

    try:
        metadata = with_broker_retry(lookup, what="asking for metadata", timeout=timeout)
    except BrokerCallFailed as exc:
        if last is None:
            return (
                Result(
                    FAIL,
                    "brokers",
                    f"no answer from {settings.kafka_bootstrap_servers} within {timeout:g} s "
                    f"({exc.reason}); check KAFKA_BOOTSTRAP_SERVERS, the network path and the "
                    "KAFKA_CLIENT_SECURITY_* / SASL settings",
                ),
                None,
            )
        metadata = last
    return (
        Result(
            OK,
            "brokers",
            f"{settings.kafka_bootstrap_servers} answered ({len(metadata.brokers)} broker(s))",
        ),
        metadata,
    )


def check_topics(
    settings: Settings, routes: tuple[Route, ...], metadata: ClusterMetadata
) -> list[Result]:
    results = []
    wanted = [(t, "source topic") for t in _sources(routes)]
    wanted.extend((t, "dead-letter topic") for t in _dead_letter_topics(settings, routes))
    for topic, role in wanted:
        found = metadata.topics.get(topic)
        if found is not None and found.error is not None and is_transient(found.error):
            results.append(
                Result(
                    FAIL,
                    f"{role} {topic}",
                    f"exists but is not served yet ({found.error.name()}: a leader is being "
                    "elected); check again in a minute, or the brokers' logs if it stays",
                )
            )
        elif found is None or found.error is not None:
            results.append(
                Result(
                    FAIL,
                    f"{role} {topic}",
                    f"does not exist; create it: {create_topic_hint(settings, topic)}",
                )
            )
        else:
            results.append(Result(OK, f"{role} {topic}", f"{len(found.partitions)} partition(s)"))
    return results


def check_lag(
    settings: Settings, routes: tuple[Route, ...], metadata: ClusterMetadata, timeout: float
) -> Result:
    """Committed offsets of the group against the high watermarks; informational only."""
    parts = [
        TopicPartition(topic, p)
        for topic in _sources(routes)
        if topic in metadata.topics and metadata.topics[topic].error is None
        for p in metadata.topics[topic].partitions
    ]
    name = f"group {settings.kafka_group_id}"
    if not parts:
        return Result(INFO, name, "no source partitions to measure")
    config = {
        **admin_config(settings),
        "group.id": settings.kafka_group_id,
        "enable.auto.commit": False,
    }
    consumer = Consumer(config)  # never subscribes: it does not join the group
    try:
        lag, unstarted = 0, 0
        for tp in committed_offsets(consumer, parts, timeout):
            low, high = watermarks(consumer, TopicPartition(tp.topic, tp.partition), timeout)
            if tp.offset < 0:
                unstarted += 1
                lag += max(0, high - low)
            else:
                lag += max(0, high - tp.offset)
    except KafkaError as exc:
        return Result(INFO, name, f"lag unknown ({exc}); not a failure")
    finally:
        consumer.close()
    note = (
        f"; {unstarted} partition(s) without a committed offset start at the earliest record"
        if unstarted
        else ""
    )
    return Result(
        OK,
        name,
        f"lag {lag:,} record(s) over {len(parts)} partition(s){note}{catch_up(settings, lag)} "
        "(informational, from the brokers' high watermarks)",
    )


def catch_up(settings: Settings, lag: int) -> str:
    """What a backlog of ``lag`` records costs at the group's budget, as a clause.

    Every change sent is the bound; compaction (``compaction.py``) sends each customer's
    latest change once, so a backlog of many changes per customer takes less. How many
    customers the backlog holds is not counted: that means reading all of it.
    """
    rate = (
        (1 - HEADROOM)
        * settings.gameball_key_share
        * min(w.requests / w.seconds for w in settings.api_windows())
    )
    per_second = rate / REQUESTS_PER_JOB * settings.batch_max_records
    seconds = lag / per_second
    if seconds < 1:
        return ""
    compacted = lag > per_second * HORIZON and settings.compaction_max_bytes > 0
    return (
        f"; at the API budget ({rate:.1f} requests/s for the group, {REQUESTS_PER_JOB:.0f} a "
        f"job of {settings.batch_max_records:,}) catching up takes up to {_duration(seconds)}"
        + (", less as compaction sends each customer's latest change once" if compacted else "")
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_records(
    settings: Settings, routes: tuple[Route, ...], metadata: ClusterMetadata, timeout: float
) -> list[Result]:
    """The newest records of each customers route's topics, decoded as the service would
    decode them (the other operations' records are not sampled yet)."""
    config = {**admin_config(settings), "group.id": f"{settings.kafka_group_id}.check"}
    registry = settings.schema_registry_config()
    avro = None if registry is None else AvroReader.from_config(registry)
    results = []
    for route in routes:
        if route.operation is Operation.CUSTOMERS:
            results.extend(_check_route_records(settings, route, avro, config, metadata, timeout))
    return results


def _check_route_records(
    settings: Settings,
    route: Route,
    avro: AvroReader | None,
    config: dict[str, str | int | float | bool],
    metadata: ClusterMetadata,
    timeout: float,
) -> list[Result]:
    decoder = Decoder(
        route.mapping if isinstance(route.mapping, FieldMapping) else None,
        settings.delete_policy,
        shape=settings.gameball_customer_shape,
        tags_sync=settings.tags_sync,
        avro=avro,
    )
    results = []
    for topic in route.topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            continue
        sample = Sample()
        try:
            values = newest(config, topic, sorted(found.partitions), timeout)
        except KafkaError as exc:
            results.append(Result(WARN, f"records of {topic}", f"not looked at: {exc}"))
            continue
        try:
            for value in values:
                sample.add(value, decoder)
        except RegistryUnavailable as exc:
            results.append(Result(WARN, f"records of {topic}", f"not decoded: {exc}"))
            continue
        results.extend(describe_sample(f"records of {topic}", sample))
    return results


def describe_sample(name: str, sample: Sample) -> list[Result]:
    if not sample.records:
        return [Result(INFO, name, "none yet to look at")]
    rejected = sum(sample.rejected.values())
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(sample.skipped.items()))
    counts = (
        f"the newest {sample.records} (at most {SAMPLE} per topic) decode to "
        f"{sample.customers} customer(s)" + (f", skipped: {skipped}" if skipped else "")
    )
    if rejected and not sample.customers:
        mark, tail = (
            FAIL,
            (f"; none becomes a customer: {sample.first_error} (check FIELD_MAPPING_FILE)"),
        )
    elif rejected:
        mark, tail = WARN, f"; {rejected} would be dead-lettered, e.g. {sample.first_error}"
    else:
        mark, tail = OK, ""
    results = [Result(mark, name, counts + tail)]
    if sample.records > sum(sample.skipped.values()) and not sample.with_schema:
        results.append(
            Result(
                INFO,
                name,
                "no schema in the events (schemas.enable=false): dates are told apart by "
                "magnitude and base64 decimals look like text; state types in "
                "FIELD_MAPPING_FILE where it matters (README: Input)",
            )
        )
    if sample.defaulted and not sample.nulls_in_defaulted:
        columns = ", ".join(sorted(sample.defaulted))
        results.append(
            Result(
                WARN,
                name,
                f"columns with a DEFAULT ({columns}): a NULL written into them reaches the API "
                "as the default unless the connector sets "
                "value.converter.replace.null.with.default=false (no NULL seen in them here, "
                "which is what both look like)",
            )
        )
    elif sample.nulls_in_defaulted:
        results.append(
            Result(OK, name, "NULLs are kept (value.converter.replace.null.with.default=false)")
        )
    if sample.unavailable:
        results.append(
            Result(
                WARN,
                name,
                f"{sample.unavailable} record(s) without an unchanged TOASTed value "
                "(__debezium_unavailable_value): that field is left out and the API keeps its "
                "own; ALTER TABLE ... REPLICA IDENTITY FULL carries it",
            )
        )
    return results


def run_checks(
    args: argparse.Namespace, emit: Callable[[Result], None], environ: dict[str, str] | None = None
) -> int:
    try:
        settings = load_settings(environ)
        routes = routes_from_settings(settings)  # reads and checks the mapping or routes file
    except ConfigError as exc:
        emit(Result(FAIL, "configuration", f"{exc}"))
        return 2
    emit(
        Result(
            OK,
            "configuration",
            f"group {settings.kafka_group_id}, topics {', '.join(_sources(routes))} "
            f"→ dead letters {settings.kafka_dlq_topic}"
            + (f", mapping {settings.field_mapping_file}" if settings.field_mapping_file else "")
            + (f", routes {settings.routes_file}" if settings.routes_file else "")
            + f", {settings.gameball_customer_shape} customer, TAGS_SYNC={settings.tags_sync}",
        )
    )
    results: list[Result] = describe_routes(routes)  # a route run would refuse fails it
    for result in results:
        emit(result)
    broker, metadata = check_broker(settings, routes, args.timeout)
    results.append(broker)
    emit(broker)
    if metadata is not None:
        for result in check_topics(settings, routes, metadata):
            results.append(result)
            emit(result)
        lag = check_lag(settings, routes, metadata, args.timeout)
        results.append(lag)
        emit(lag)
        for result in check_records(settings, routes, metadata, args.timeout):
            results.append(result)
            emit(result)
    for result in check_api(settings, args.timeout):
        results.append(result)
        emit(result)
    for result in check_registry(settings, args.timeout, _sources_or_none(routes)):
        results.append(result)
        emit(result)
    return 1 if any(r.mark == FAIL for r in results) else 0


def main(args: argparse.Namespace) -> int:
    def emit(result: Result) -> None:
        print(result.line(), flush=True)

    code = run_checks(args, emit)
    print("all checks passed" if code == 0 else "some checks failed", flush=True)
    return code
