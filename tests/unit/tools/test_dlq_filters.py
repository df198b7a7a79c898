"""Pure logic of ``dlq``: time parsing, filters, and the replay group's name."""

from __future__ import annotations

import argparse

import pytest

from service.config import load_settings
from service.tools.dlq import DeadLetterRecord, Filters, parse_time, replay_group


def record(reason: str = "record_rejected", ts: int = 1_000, topic: str = "t") -> DeadLetterRecord:
    headers = {"dlq.reason": reason, "dlq.source.topic": topic, "dlq.source.partition": "2"}
    return DeadLetterRecord(0, 0, ts, b"k", b"v", headers)


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1700000000000", 1_700_000_000_000),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000_000),  # naive means UTC
        ("2023-11-15T00:13:20+02:00", 1_700_000_000_000),
        ("2023-11-14", 1_699_920_000_000),
    ],
)
def test_times_are_iso_or_epoch_ms(text: str, ms: int) -> None:
    assert parse_time(text) == ms


def test_a_bad_time_says_what_it_accepts() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"ISO time .* epoch milliseconds"):
        parse_time("yesterday")


def test_filters_combine_reason_time_window_and_source_topic() -> None:
    filters = Filters(frozenset({"record_rejected"}), 1_000, 2_000, frozenset({"t"}))
    assert filters.matches(record())
    assert not filters.matches(record(reason="invalid_json"))
    assert not filters.matches(record(ts=999))
    assert not filters.matches(record(ts=2_000))  # until is exclusive
    assert not filters.matches(record(topic="other"))
    assert Filters().matches(record(reason="anything"))


def test_each_selection_has_its_own_stable_replay_group() -> None:
    settings = load_settings(
        {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "GAMEBALL_API_KEY": "k", "GAMEBALL_SECRET_KEY": "s"}
    )
    everything = replay_group(settings, Filters())
    rejected = replay_group(settings, Filters(frozenset({"record_rejected"})))
    assert everything == "customer-sync.dlq-replay"
    assert rejected.startswith("customer-sync.dlq-replay.")
    assert rejected == replay_group(settings, Filters(frozenset({"record_rejected"})))
    assert rejected != replay_group(settings, Filters(frozenset({"invalid_json"})))
    two = Filters(frozenset({"a", "b"}))
    assert replay_group(settings, two) == replay_group(settings, Filters(frozenset({"b", "a"})))


def test_source_partition_is_read_from_the_header() -> None:
    assert record().source_partition == 2
    assert DeadLetterRecord(0, 0, 0, None, None, {}).source_partition is None
