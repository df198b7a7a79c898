"""A schema registry behind TLS and basic auth, as Confluent Cloud or a secured Apicurio is seen.

:class:`GuardedRegistry` listens on 127.0.0.1 (a free port) with a self-signed certificate for
that address, answers 401 to a request without the right ``Authorization: Basic``, and passes
every other request to the registry behind it (Apicurio, over plain HTTP). The service reaches it
with ``SCHEMA_REGISTRY_URL=https://...``, ``SCHEMA_REGISTRY_CA_LOCATION`` (the certificate,
its own CA) and ``SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO``.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "registry.pem", directory / "registry-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class GuardedRegistry:
    """The registry at ``upstream`` behind TLS and ``user:password``; a ``with`` block runs it."""

    def __init__(self, upstream: str, user: str, password: str, directory: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca, self._key = self_signed(directory)
        self._expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.refused = 0
        """Requests answered 401 (no or wrong credentials)."""
        self.passed = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """What ``SCHEMA_REGISTRY_URL`` is set to: the upstream's path, over HTTPS here."""
        assert self._server is not None, "not started"
        path = httpx.URL(self.upstream).path
        return f"https://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> GuardedRegistry:
        guard = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.headers.get("Authorization") != guard._expected:
                    guard.refused += 1
                    body = b'{"error_code":40101,"message":"Unauthorized"}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                guard.passed += 1
                length = int(self.headers.get("Content-Length") or 0)
                prefix = httpx.URL(guard.upstream).path
                path = self.path.removeprefix(prefix)
                answer = httpx.request(
                    self.command,
                    guard.upstream + path,
                    content=self.rfile.read(length) if length else None,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                    timeout=10,
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca, self._key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="guarded-registry")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
