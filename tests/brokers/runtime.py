"""Where Apache Kafka comes from for the tests: Java 17+, the jars in ``.cache/``, ports, ids.

``make kafka-jars`` copies the broker's runtime classpath out of Maven Central into
``.cache/kafka-<version>/libs`` (``tests/brokers/pom.xml`` names the version). Every error
here says in one sentence what to install or run.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shutil
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).with_name("pom.xml")
MIN_JAVA = 17


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot run here: the jars or a Java 17+ runtime are missing."""


# --- locating Java and the jars ---------------------------------------------------------------


def kafka_version() -> str:
    """The Kafka version ``tests/brokers/pom.xml`` pins (and ``make kafka-jars`` fetches)."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if match is None:
        raise KafkaUnavailable(f"{POM} does not name a <kafka.version>.")
    return match.group(1)


def kafka_libs() -> Path:
    """The folder of the broker's jars, complete (the Makefile's stamp is there) or an error."""
    home = REPO_ROOT / ".cache" / f"kafka-{kafka_version()}"
    libs = home / "libs"
    if not (home / ".installed").is_file() or not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(
            f"Apache Kafka's jars are not in {libs}: run `make kafka-jars` "
            "(it needs Java 17+ and Maven)."
        )
    return libs


@functools.cache
def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home, "bin", "java")) if java_home else shutil.which("java")
    if java is None or not Path(java).is_file():
        raise KafkaUnavailable(
            "Apache Kafka for the integration tests needs Java 17+ and there is no `java`: "
            "apt-get install openjdk-17-jdk-headless."
        )
    shown = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', shown.stderr + shown.stdout)
    major = 0
    if match is not None:  # "1.8.0_412" is Java 8, "17.0.15" is Java 17
        major = int(match[2] or 0) if match[1] == "1" else int(match[1])
    if major < MIN_JAVA:
        found = f"Java {major}" if major else "a Java of unknown version"
        raise KafkaUnavailable(
            f"Apache Kafka for the integration tests needs Java {MIN_JAVA}+ but {java} is "
            f"{found}: apt-get install openjdk-17-jdk-headless."
        )
    return java


@dataclass(frozen=True)
class KafkaRuntime:
    """What a node runs: a Java 17+ binary and the broker's jars."""

    java: str
    libs: Path
    version: str

    @property
    def classpath(self) -> str:
        return f"{self.libs}/*"


def kafka_runtime() -> KafkaRuntime:
    """Java and the jars, or ``KafkaUnavailable`` saying in one sentence what to do."""
    libs = kafka_libs()
    return KafkaRuntime(java=java_binary(), libs=libs, version=kafka_version())


# --- small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port (as ``service.tools.embedded_broker.free_port``)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all are held open together while chosen."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def kafka_uuid() -> str:
    """A random Kafka Uuid (cluster or directory id): URL-safe base64 of 16 bytes, no padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # a leading dash would read as a command-line option
            return text


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file, for failure messages."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 200 * lines))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path.name} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def die_with_this_process() -> list[str]:
    """``setpriv --pdeathsig KILL`` when it can work: the JVM dies if the tests' process does.

    Context managers and ``atexit`` stop nodes on any ordinary exit; this covers the others
    (an abort in a native library, SIGKILL, pytest-timeout's os._exit). The kernel sends the
    signal when the launching *thread* ends, so only launches from the main thread get it.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL"]
