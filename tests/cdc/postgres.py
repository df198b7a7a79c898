"""A private, throw-away PostgreSQL 15 cluster for the CDC tests and demo.

    with PostgresCluster() as pg:
        pg.execute("CREATE TABLE t (id int primary key)")
        xid = pg.transaction("INSERT INTO t VALUES (1)")
        rows = pg.query("SELECT id FROM t")          # [("1",)]
        pg.dsn                                       # libpq key/value string

``initdb`` refuses to run as root, so when we are root every server binary runs
as the ``postgres`` user (``runuser``) in a temporary directory that user owns.
The cluster listens on 127.0.0.1 only, on a free port, with its Unix socket in
the temporary directory, and ``wal_level=logical`` so Debezium's ``pgoutput``
plugin can stream from it. Every wait has a time limit; ``stop()`` (also run by
``__exit__``, ``atexit`` and the garbage collector) stops the server, killing it
if a fast shutdown does not finish, and removes the directory.

It talks to the server with ``psql`` (installed with the server) rather than a
driver: the helper only needs to run SQL and read a few text values back, and
this keeps it free of new dependencies. If tests ever need typed results or
parameter binding, ``psycopg[binary]`` 3 is the candidate (wheels for 3.11,
libpq bundled).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
_FIELD = "\x1f"
_NULL = "\x1aNULL"


class PostgresError(RuntimeError):
    pass


class PostgresUnavailable(PostgresError):
    """The server binaries are not installed: a sentence saying what to install."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(
        self,
        *,
        bin_dir: Path = PG_BIN,
        settings: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        statement_timeout: float = 60.0,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.settings = {
            "wal_level": "logical",
            "max_wal_senders": "16",
            "max_replication_slots": "16",
            "fsync": "off",  # a throw-away cluster: durability buys nothing
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            **(settings or {}),
        }
        self.start_timeout = start_timeout
        self.statement_timeout = statement_timeout
        self.root: Path | None = None
        self.port: int | None = None
        self.user = "postgres"
        self.dbname = "postgres"
        self._as_postgres = os.geteuid() == 0
        self._finalizer: weakref.finalize[[Path, list[str], Path], PostgresCluster] | None = None

    # ---- life cycle ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "not started"
        return self.root

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.dbname}"

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PostgresCluster:
        if self.root is not None:
            raise PostgresError("already started")
        if not (self.bin_dir / "initdb").is_file():
            raise PostgresUnavailable(
                f"PostgreSQL's server is not in {self.bin_dir}: apt-get install postgresql "
                "(version 15; or set PG_BIN to its bin folder)."
            )
        self.root = Path(tempfile.mkdtemp(prefix="pgcdc-"))
        self._finalizer = weakref.finalize(
            self, _cleanup, self.root, self._cmd_prefix(), self.bin_dir
        )
        atexit.register(self._finalizer)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        self._run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-E", "UTF8",
             "--locale=C.UTF-8", "-A", "trust", "-U", self.user, "--no-sync"],
            timeout=self.start_timeout,
        )  # fmt: skip
        last_error = ""
        for _ in range(3):  # the free port may be taken between the probe and the bind
            self.port = free_port()
            conf = {
                **self.settings,
                "port": str(self.port),
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{self.socket_dir}'",
            }
            (self.data_dir / "postgresql.auto.conf").write_text(
                "".join(f"{key} = {value}\n" for key, value in conf.items())
            )
            result = self._run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                 str(self.root / "server.log"), "-w", "-t", str(int(self.start_timeout)), "start"],
                timeout=self.start_timeout + 5,
                check=False,
            )  # fmt: skip
            if result.returncode == 0:
                return self
            last_error = result.stdout + result.stderr + self.log_tail()
        self.stop()
        raise PostgresError(f"PostgreSQL did not start: {last_error}")

    def stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            atexit.unregister(self._finalizer)
            self._finalizer = None
        self.root = None
        self.port = None

    def log_tail(self, lines: int = 30) -> str:
        if self.root is None:
            return ""
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    # ---- SQL ----------------------------------------------------------------------------------
    def execute(self, sql: str, *, dbname: str | None = None) -> str:
        """Run a script (statement by statement, each in its own transaction unless it says
        BEGIN/COMMIT); stop at the first error. Returns psql's unaligned output."""
        return self._psql(sql, dbname=dbname).stdout

    def query(self, sql: str, *, dbname: str | None = None) -> list[tuple[str | None, ...]]:
        """Rows of the script's SELECT output as text (None for NULL)."""
        out = self._psql(sql, dbname=dbname, separators=True).stdout
        rows = []
        for raw in out.split("\0")[:-1]:
            rows.append(tuple(None if f == _NULL else f for f in raw.split(_FIELD)))
        return rows

    def transaction(self, sql: str, *, dbname: str | None = None) -> int:
        """Run ``sql`` as one transaction and return its transaction id (as Debezium's
        ``source.txId`` reports it)."""
        out = self.query(
            f"BEGIN;\n{sql.rstrip().rstrip(';')};\nSELECT pg_current_xact_id()::text;\nCOMMIT;\n",
            dbname=dbname,
        )
        return int(out[-1][0] or "0")

    def _psql(
        self, sql: str, *, dbname: str | None, separators: bool = False
    ) -> subprocess.CompletedProcess[str]:
        if self.port is None:
            raise PostgresError("not started")
        args = [
            str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", self.user,
            "-d", dbname or self.dbname, "-f", "-",
        ]  # fmt: skip
        if separators:
            args += ["-A", "-t", "-F", _FIELD, "-0", "-P", f"null={_NULL}"]  # records end in NUL
        result = subprocess.run(
            args, input=sql, capture_output=True, text=True,
            timeout=self.statement_timeout, check=False, env=_env(),
        )  # fmt: skip
        if result.returncode != 0:
            raise PostgresError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # ---- helpers ------------------------------------------------------------------------------
    def _cmd_prefix(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if self._as_postgres else []

    def _run(
        self, args: list[str], *, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._cmd_prefix(), *args], capture_output=True, text=True,
            timeout=timeout, check=False, env=_env(), cwd="/",
        )  # fmt: skip
        if check and result.returncode != 0:
            raise PostgresError(f"{Path(args[0]).name} failed: {result.stdout}{result.stderr}")
        return result


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    return env


def _cleanup(root: Path, prefix: list[str], bin_dir: Path) -> None:
    """Stop the server (fast, then by signal) and remove its directory. Never raises."""
    data = root / "data"
    pid_file = data / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(Exception):
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                 "-t", "15", "stop"],
                capture_output=True, timeout=20, check=False, cwd="/",
            )  # fmt: skip
        if pid_file.exists():
            with contextlib.suppress(Exception):
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    os.kill(pid, 0)
                    time.sleep(0.05)
    shutil.rmtree(root, ignore_errors=True)
