"""Apicurio Registry 2.6 for the Avro tests: a Confluent-compatible schema registry on loopback.

``make registry-jars`` unpacks the application out of Maven Central into
``.cache/apicurio-<version>`` (``tests/registry/pom.xml`` names the version). :class:`Apicurio`
runs it on 127.0.0.1 on a free port, in-memory storage, ready in about 5 s, and stops it.
confluent-kafka's ``SchemaRegistryClient`` speaks to it at :attr:`Apicurio.url`
(``/apis/ccompat/v7``, Confluent's REST API).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.brokers.runtime import REPO_ROOT, free_port, java_binary

POM = Path(__file__).with_name("pom.xml")
START_TIMEOUT = 90.0
"""Seconds for the registry to answer (about 5 s here; generous for a loaded 2-core machine)."""


class RegistryUnavailable(RuntimeError):
    """Apicurio cannot run here: its application or a Java 17+ runtime is missing."""


def _home() -> tuple[Path, str]:
    match = re.search(r"<apicurio\.version>\s*([^<\s]+)\s*</apicurio\.version>", POM.read_text())
    if match is None:
        raise RegistryUnavailable(f"{POM} does not name an <apicurio.version>.")
    version = match.group(1)
    return REPO_ROOT / ".cache" / f"apicurio-{version}", version


def converter_plugins() -> Path:
    """A ``plugin.path`` entry for Kafka Connect holding Apicurio's ``AvroConverter``.

    With ``apicurio.registry.as-confluent=true`` it writes the Confluent wire format (a zero
    byte, a 4-byte schema id, Avro), registering each schema through the registry's own API.
    """
    home, _ = _home()
    plugins = home / "connect-plugins"
    if not (home / ".installed").is_file() or not (plugins / "apicurio-converter").is_dir():
        raise RegistryUnavailable(
            f"Apicurio's Connect converter is not in {plugins}: run `make registry-jars`."
        )
    return plugins


def runner_jar() -> Path:
    home, version = _home()
    jar = home / f"apicurio-registry-app-{version}-runner.jar"
    if not (home / ".installed").is_file() or not jar.is_file():
        raise RegistryUnavailable(
            f"Apicurio Registry is not in {home}: run `make registry-jars` (Java 17+, Maven)."
        )
    return jar


class Apicurio:
    """One Apicurio Registry process on 127.0.0.1, started by ``with`` and stopped after it."""

    def __init__(self, port: int | None = None) -> None:
        """``port``: where to listen (a free one by default), chosen before it starts."""
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="apicurio-", suffix=".log", delete=False)  # noqa: SIM115 - kept open for the child's lifetime

    @property
    def url(self) -> str:
        """The Confluent-compatible API, what ``SCHEMA_REGISTRY_URL`` is set to."""
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    @property
    def native_url(self) -> str:
        """The registry's own API, which Apicurio's Connect converter speaks."""
        return f"http://127.0.0.1:{self.port}/apis/registry/v2"

    def logtail(self, chars: int = 3000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def start(self, timeout: float = START_TIMEOUT) -> Apicurio:
        jar = runner_jar()
        self._process = subprocess.Popen(
            [
                java_binary(),
                "-Xmx512m",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.port}",
                "-Dquarkus.log.level=WARN",
                "-jar",
                str(jar),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=jar.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"Apicurio exited at start:\n{self.logtail()}")
            try:
                if httpx.get(f"{self.url}/subjects", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"Apicurio not ready within {timeout} s:\n{self.logtail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> Apicurio:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
