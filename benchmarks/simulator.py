"""The Gameball API simulator in a process of its own, driven over its ``/_sim`` controls.

In a thread of the benchmark it shared one interpreter with everything else the
benchmark does, and its CPU could only be read as the benchmark's. Here it is
``customer-sync simulate`` on a port the kernel picks on 127.0.0.1; everything the
benchmark reads or changes goes through the documented controls (``GET /_sim/stats``,
``GET /_sim/applied``, ``POST /_sim/config``, ``POST /_sim/reset``), and its CPU is read
from its own ``/proc/<pid>/stat``. (The move did not change the API-bound figures,
0.54-0.63 at 16 in flight before and after: the simulator's own CPU per job bounds them.)
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
PAGE = 50_000  # applied records per /_sim/applied read
BANNER = b"Gameball API simulator listening on "


class SimulatorProcess:
    """``customer-sync simulate`` as a child process; a context manager that always stops it.

    Ready when its banner's first line is read: the simulator listens before printing it,
    so the URL it names accepts connections from then on. Stopped with SIGTERM (uvicorn
    shuts down gracefully), SIGKILL if it has not exited ``STOP_TIMEOUT_SECONDS`` later.
    Its stdout (after the banner) and stderr go to ``log``.
    """

    def __init__(self, log: Path, api_key: str, secret_key: str, seed: int = 1) -> None:
        self.log = log
        self.arguments = ["--api-key", api_key, "--secret-key", secret_key, "--seed", str(seed)]
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._http: httpx.Client | None = None
        self._drain: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the simulator is not running"
        return self.process.pid

    @property
    def http(self) -> httpx.Client:
        assert self._http is not None, "the simulator is not running"
        return self._http

    def __enter__(self) -> SimulatorProcess:
        out = self.log.open("ab")
        try:
            self._start(out)
        except BaseException:
            self.__exit__()
            if self._drain is None:
                out.close()
            raise
        return self

    def _start(self, out: IO[bytes]) -> None:
        command = [sys.executable, "-m", "service.cli", "simulate", "--host", "127.0.0.1"]
        command += ["--port", "0", *self.arguments]
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI, in this venv
            command, stdout=subprocess.PIPE, stderr=out
        )
        assert self.process.stdout is not None
        first, rest = _read_line(self.process, self.process.stdout, START_TIMEOUT_SECONDS)
        out.write(first + rest)
        out.flush()
        if not first.startswith(BANNER):
            raise RuntimeError(f"the simulator said {first!r}, not its banner; see {self.log}")
        self.base_url = first[len(BANNER) :].decode().strip()
        self._http = httpx.Client(base_url=self.base_url, timeout=30)
        # The rest of the banner, and anything it prints later, to the log: a pipe
        # nobody reads would block the simulator once full.
        self._drain = threading.Thread(
            target=_copy, args=(self.process.stdout, out), name="simulator-log", daemon=True
        )
        self._drain.start()

    def __exit__(self, *_: object) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self._drain is not None:
                self._drain.join(STOP_TIMEOUT_SECONDS)  # ends at the pipe's end of file
                self._drain = None
            elif process.stdout is not None:
                process.stdout.close()

    # ---------------------------------------------------------------- controls

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /_sim/config``: checked by the simulator, 400 (raised here) otherwise."""
        response = self.http.post("/_sim/config", json=changes)
        response.raise_for_status()
        config: dict[str, Any] = response.json()["config"]
        return config

    def reset(self) -> None:
        """``POST /_sim/reset``: jobs, log and counters go; the configuration stays."""
        self.http.post("/_sim/reset").raise_for_status()

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: counters as of now (the simulator settles its jobs first)."""
        response = self.http.get("/_sim/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def applied_since(self, since: int = 0) -> Iterator[dict[str, Any]]:
        """Every applied record from index ``since`` on, read a page at a time."""
        while True:
            response = self.http.get("/_sim/applied", params={"since": since, "limit": PAGE})
            response.raise_for_status()
            body = response.json()
            yield from body["applied"]
            if body["next"] == since:
                return
            since = body["next"]


def _read_line(
    process: subprocess.Popen[bytes], stream: IO[bytes], timeout: float
) -> tuple[bytes, bytes]:
    """The child's first line (with its newline) and what came after it in the same reads.

    Read from the pipe as it comes; fails if the child exits first or after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    fd, line = stream.fileno(), b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in line:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"the simulator printed no banner within {timeout:g} s")
            if not selector.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = process.wait()
                raise RuntimeError(f"the simulator exited ({code}) before its banner")
            line += chunk
    first, _, rest = line.partition(b"\n")
    return first + b"\n", rest


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError), source, target:
        for line in source:
            target.write(line)
            target.flush()
