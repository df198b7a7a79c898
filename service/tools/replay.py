"""The ``dlq inspect`` and ``dlq replay`` commands (reading and end detection: :mod:`.dlq`)."""

from __future__ import annotations

import argparse
import datetime as dt
from collections import Counter
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from service.config import Settings, load_settings
from service.delivery.broker_retry import ask_again_if_transient, with_broker_retry
from service.errors import KafkaError
from service.tools.check import admin_config
from service.tools.dlq import (
    COMMIT_EVERY,
    DeadLetterRecord,
    Filters,
    Reader,
    parse_time,
    reason_arg,
    replay_group,
)

_PREVIEW = 160
_SAMPLE = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = actions.add_parser(
        "inspect", help="print dead-letter records with their decoded headers"
    )
    inspect.add_argument("--limit", type=int, default=20, help="records to print (20)")
    _filters(inspect)
    replay = actions.add_parser(
        "replay",
        help="re-produce dead-lettered records to their source topic (dry run unless --execute)",
        description=(
            "Re-produce the original key and value of dead-lettered records to their source "
            "topic and partition. A dry run (the default) shows what would be replayed. With "
            "--execute, the replay's position is recorded in its own consumer group "
            "(<KAFKA_GROUP_ID>.dlq-replay, plus a digest of the filters) once the broker has "
            "acknowledged the records, so running it again does not replay them twice. "
            "Reading stops at the end of the topic as it was when the command started."
        ),
    )
    mode = replay.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        dest="execute",
        action="store_false",
        help="count and sample what would be replayed; produce nothing (the default)",
    )
    mode.add_argument("--execute", action="store_true", help="really produce the records")
    replay.set_defaults(execute=False)
    _filters(replay)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the brokers' first answer (10)",
    )
    parser.add_argument(
        "--reason",
        action="append",
        type=reason_arg,
        metavar="REASON",
        help="only records with this dlq.reason (repeatable)",
    )
    parser.add_argument(
        "--since",
        type=parse_time,
        metavar="TIME",
        help="only records dead-lettered at or after TIME (ISO 8601, UTC if no offset, "
        "or epoch ms; the dead-letter record's own timestamp)",
    )
    parser.add_argument(
        "--until", type=parse_time, metavar="TIME", help="only records dead-lettered before TIME"
    )
    parser.add_argument(
        "--source-topic",
        action="append",
        metavar="TOPIC",
        help="only records that came from this topic (repeatable)",
    )


def _iso(ms: int | str | None) -> str:
    try:
        value = int(ms) if ms is not None else -1
    except ValueError:
        return str(ms)
    if value < 0:
        return "unknown"
    return dt.datetime.fromtimestamp(value / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _text(data: bytes | None) -> str:
    if data is None:
        return "(null)"
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + f"… ({len(data):,} bytes)"


def describe_record(settings: Settings, record: DeadLetterRecord) -> list[str]:
    h = record.headers
    source = (
        f"{h.get('dlq.source.topic', '?')}[{h.get('dlq.source.partition', '?')}]"
        f"@{h.get('dlq.source.offset', '?')}, {_iso(h.get('dlq.source.timestamp'))}"
    )
    lines = [
        f"── {settings.kafka_dlq_topic}[{record.partition}]@{record.offset}  "
        f"dead-lettered {_iso(record.timestamp_ms)}",
        f"  reason    {record.reason}",
        f"  error     {h.get('dlq.error', '')}",
        f"  source    {source}",
        f"  attempts  {h.get('dlq.attempts', '?')}"
        + (f"   job {h['dlq.job.id']}" if "dlq.job.id" in h else ""),
        f"  key       {_text(record.key)}",
        f"  value     {_text(record.value)}",
    ]
    other = {k: v for k, v in h.items() if not k.startswith("dlq.")}
    if other:
        lines.append(f"  headers   {other}")
    return lines


def inspect(settings: Settings, args: argparse.Namespace) -> int:
    filters = Filters.from_args(args)
    reader = Reader(settings, group=None, timeout=args.timeout)
    shown = read = 0
    try:
        reader.open()
        for record in reader.records():
            read += 1
            if not filters.matches(record):
                continue
            print("\n".join(describe_record(settings, record)), flush=True)
            shown += 1
            if shown >= args.limit:
                break
    finally:
        reader.close()
    more = "; --limit reached, more may follow" if shown >= args.limit else ""
    print(f"{shown} record(s) shown of {read} read from {settings.kafka_dlq_topic}{more}")
    return 0


class _Topics:
    """Partition counts of the replay targets (0 = the topic does not exist), asked once each."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._admin = AdminClient(admin_config(settings))
        self._timeout = timeout
        self._partitions: dict[str, int] = {}

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:

            def lookup(left: float) -> Any:
                found = self._admin.list_topics(timeout=left).topics.get(topic)
                if found is not None:
                    ask_again_if_transient(found.error)  # created a moment ago
                return found

            found = with_broker_retry(
                lookup, what=f"looking up the topic {topic!r}", timeout=self._timeout
            )
            ok = found is not None and found.error is None
            self._partitions[topic] = len(found.partitions) if ok and found else 0
        return self._partitions[topic]


class _Replayer:
    """Produces the selected records and remembers what the broker did not acknowledge."""

    def __init__(self, settings: Settings, topics: _Topics) -> None:
        config: dict[str, Any] = {
            **admin_config(settings),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
        self._producer = Producer(config)
        self._topics = topics
        self.failed: list[str] = []
        self.acknowledged = 0

    def send(self, topic: str, record: DeadLetterRecord) -> None:
        partition = record.source_partition
        kwargs: dict[str, Any] = {}
        if partition is not None and partition < self._topics.partitions(topic):
            kwargs["partition"] = partition  # where it came from: per-customer order
        while True:
            try:
                self._producer.produce(
                    topic, key=record.key, value=record.value, on_delivery=self._done, **kwargs
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _done(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acknowledged += 1

    def flush(self, timeout: float = 60.0) -> int:
        remaining: int = self._producer.flush(timeout)
        return remaining


def replay(settings: Settings, args: argparse.Namespace) -> int:
    filters = Filters.from_args(args)
    group = replay_group(settings, filters)
    reader = Reader(settings, group=group, timeout=args.timeout)
    selected: Counter[str] = Counter()
    unselected: Counter[str] = Counter()
    targets: Counter[str] = Counter()
    unplayable: Counter[str] = Counter()
    sample: list[DeadLetterRecord] = []
    topics = _Topics(settings, args.timeout)
    replayer = _Replayer(settings, topics) if args.execute else None
    read = 0
    progress = Progress(
        TextColumn("replaying" if args.execute else "reading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    try:
        reader.open()
        with progress:
            task = progress.add_task("dlq", total=reader.expected or None)
            for record in reader.records():
                read += 1
                progress.update(task, completed=read, total=max(read, reader.expected))
                if not filters.matches(record):
                    unselected[record.reason] += 1
                    continue
                topic = record.source_topic
                why: str | None = None
                if topic is None:
                    why = "it has no dlq.source.topic header"
                elif topics.partitions(topic) == 0:
                    why = f"its source topic {topic!r} does not exist"
                if why is not None or topic is None:
                    why = why or "it has no source topic"
                    unplayable[why] += 1
                    if replayer is not None:
                        _stop_before(replayer, reader, record, why)
                    continue
                selected[record.reason] += 1
                targets[topic] += 1
                if len(sample) < _SAMPLE:
                    sample.append(record)
                if replayer is not None:
                    replayer.send(topic, record)
                    if read % COMMIT_EVERY == 0:
                        _settle(replayer, reader)
            if replayer is not None:
                _settle(replayer, reader)
    finally:
        reader.close()
    _report(settings, args, group, read, selected, unselected, targets, unplayable, sample)
    if replayer is not None:
        print(
            f"replayed {replayer.acknowledged:,} record(s), acknowledged by the broker; "
            f"position recorded in consumer group {group}"
        )
    return 1 if unplayable else 0


def _stop_before(replayer: _Replayer, reader: Reader, record: DeadLetterRecord, why: str) -> None:
    """A selected record that cannot be replayed: keep it for a later run, stop here.

    Skipping it would move the recorded position past it for good, so the
    position is rewound to it and what was produced before it is settled.
    """
    reader.partitions[record.partition].position = record.offset
    _settle(replayer, reader)
    raise KafkaError(
        f"record {record.partition}@{record.offset} cannot be replayed because {why}; "
        f"{replayer.acknowledged} record(s) before it were replayed and the position was "
        "recorded, so the next run starts at it (create the topic, or filter with "
        "--source-topic / --reason)"
    )


def _settle(replayer: _Replayer, reader: Reader) -> None:
    """Commit the position only when every record produced so far is acknowledged."""
    remaining = replayer.flush()
    if remaining or replayer.failed:
        detail = replayer.failed[0] if replayer.failed else f"{remaining} still unacknowledged"
        raise KafkaError(
            f"the broker did not acknowledge every replayed record ({detail}); the position "
            "was not recorded, so running the command again replays them (at least once)"
        )
    reader.commit()


def _report(
    settings: Settings,
    args: argparse.Namespace,
    group: str,
    read: int,
    selected: Counter[str],
    unselected: Counter[str],
    targets: Counter[str],
    unplayable: Counter[str],
    sample: list[DeadLetterRecord],
) -> None:
    print(
        f"{settings.kafka_dlq_topic}: {read:,} record(s) read after the position of "
        f"consumer group {group}"
    )
    print(f"{sum(selected.values()):,} selected for replay, by reason:")
    for reason, count in selected.most_common():
        print(f"  {reason:<24}{count:>10,}")
    for reason, count in unselected.most_common():
        print(f"  {reason:<24}{count:>10,}  (not selected)")
    for topic, count in targets.most_common():
        print(f"  → {topic:<22}{count:>10,}")
    for why, count in unplayable.most_common():
        print(f"  ✗ {count:,} cannot be replayed: {why}")
    if not args.execute:
        if sample:
            print("sample:")
            for record in sample:
                print(
                    f"  [{record.partition}]@{record.offset} {record.reason}: "
                    f"{record.headers.get('dlq.error', '')[:100]} (key {_text(record.key)})"
                )
        flags = [f"--reason {r}" for r in sorted(args.reason or ())]
        flags += [f"--source-topic {t}" for t in sorted(args.source_topic or ())]
        flags += [f"--since {args.since}"] if args.since is not None else []
        flags += [f"--until {args.until}"] if args.until is not None else []
        command = " ".join(["customer-sync dlq replay --execute", *flags])
        print(f"dry run: nothing was produced. To replay them: {command}")


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.dlq_command == "inspect":
        return inspect(settings, args)
    return replay(settings, args)
