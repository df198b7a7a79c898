"""The process owner: a shutdown that outlives its budget ends the process."""

from __future__ import annotations

import subprocess
import sys

STUCK_SHUTDOWN = """
import asyncio
from service.app import ShutdownWatchdog
from service.health import Health
from service.logs import configure_logging

async def never_finishing_commit():
    await asyncio.Event().wait()

async def main():
    configure_logging()
    health = Health()
    ShutdownWatchdog(health, budget_seconds=0.3, loop=asyncio.get_running_loop()).start()
    health.stopping = True   # shutdown begins ...
    await asyncio.create_task(never_finishing_commit(), name="commit")  # ... and never finishes

asyncio.run(main())
"""

CLEAN_SHUTDOWN = """
import time
from service.app import ShutdownWatchdog
from service.health import Health
health = Health()
watchdog = ShutdownWatchdog(health, budget_seconds=0.3)
watchdog.start()
health.stopping = True
watchdog.finished()      # shutdown finished in time
time.sleep(1.5)
"""


def test_a_stuck_shutdown_exits_the_process_with_a_reason() -> None:
    # It ends on its own (a stuck process would outlive the timeout: the test fails).
    run = subprocess.run(
        [sys.executable, "-c", STUCK_SHUTDOWN], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "shutdown_overran" in run.stdout
    # What a bug report needs: the task that never ended, where it waits ...
    assert "commit: <string>:8 never_finishing_commit > locks.py" in run.stdout
    # ... and every thread's stack.
    assert "most recent call first" in run.stderr


def test_a_finished_shutdown_is_left_alone() -> None:
    run = subprocess.run(
        [sys.executable, "-c", CLEAN_SHUTDOWN], capture_output=True, text=True, timeout=20
    )
    assert run.returncode == 0, run.stdout + run.stderr
