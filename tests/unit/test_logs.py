"""Repeated librdkafka lines are folded, never lost: one line per message per period."""

from __future__ import annotations

import logging

import structlog
from structlog.testing import capture_logs

from service.logs import FoldedLog, LibrdkafkaLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_line_is_logged_once_a_period_with_the_count_it_folded() -> None:
    clock = Clock()
    folded = FoldedLog(structlog.get_logger(), every=30.0, clock=clock)
    refused = "127.0.0.1:9092/1: Connect failed: Connection refused (after {}ms in state CONNECT)"
    with capture_logs() as logs:
        for ms in range(100):  # the digits differ: still one line
            folded("warning", "kafka_error", refused.format(ms), code="_TRANSPORT")
            clock.now += 0.1
        folded("warning", "kafka_error", "all brokers are down", code="_ALL_BROKERS_DOWN")
        clock.now = 30.0
        folded("warning", "kafka_error", refused.format(7), code="_TRANSPORT")
    assert [(e["error"][:30], e.get("repeats_folded")) for e in logs] == [
        (refused.format(0)[:30], None),
        ("all brokers are down", None),
        (refused.format(7)[:30], 99),
    ]
    assert logs[0]["code"] == "_TRANSPORT"
    assert logs[0]["log_level"] == "warning"


def test_librdkafkas_own_lines_become_events_at_their_level() -> None:
    log = LibrdkafkaLog(FoldedLog(structlog.get_logger()))
    with capture_logs() as logs:
        log.log(logging.ERROR, "FAIL [%s] %s", "rdkafka#consumer-1", "Connection refused")
        log.log(logging.INFO, "REQTMOUT timed out")
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("librdkafka", "error", "FAIL [rdkafka#consumer-1] Connection refused"),
        ("librdkafka", "info", "REQTMOUT timed out"),
    ]
