"""Run ``customer-sync`` as a user would: a subprocess, a clean environment, output, exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from tests.integration.harness import Broker

_OWN_VARIABLES = ("KAFKA_", "GAMEBALL_", "BATCH_", "MAX_", "JOB_", "FIELD_", "HTTP_", "LOG_")


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def assert_no_traceback(self) -> None:
        for stream in (self.stdout, self.stderr):
            assert "Traceback" not in stream, stream
            assert "%3|" not in stream, f"librdkafka noise: {stream}"
            assert "%4|" not in stream, f"librdkafka noise: {stream}"


def clean_environ(env: dict[str, str]) -> dict[str, str]:
    """This process's environment minus any setting of ours, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARIABLES)}
    return {**base, "COLUMNS": "200", **env}


def customer_sync(*args: str, env: dict[str, str], timeout: float = 60) -> Outcome:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def tool_env(broker: Broker, base_url: str, topic: str, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SOURCE_TOPICS": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_GROUP_ID": f"{topic}-group",
        "GAMEBALL_BASE_URL": base_url,
        "GAMEBALL_API_KEY": "demo-api-key",
        "GAMEBALL_SECRET_KEY": "demo-secret-key",
        **extra,
    }
