"""``customer-sync simulate`` as a subprocess: the banner tells a newcomer everything to use it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx
import pytest

from service.tools.embedded_broker import free_port
from tests.integration.commands import Outcome, clean_environ, customer_sync

pytestmark = pytest.mark.integration


def test_the_banner_gives_the_url_and_credentials_that_work_and_ctrl_c_stops_it() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "simulate", "--port", str(port), "--api-key", "k1"],
        env=clean_environ({}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        base_url = f"http://127.0.0.1:{port}"
        assert banner[0].strip() == f"Gameball API simulator listening on {base_url}"
        assert "APIKey: k1" in banner[1]
        assert "SecretKey: demo-secret-key" in banner[1]
        headers = {"APIKey": "k1", "SecretKey": "demo-secret-key"}
        created = httpx.post(
            f"{base_url}/api/v4.0/integrations/batch/customers",
            json={"body": [{"customerId": "1"}]},
            headers=headers,
            timeout=5,
        )
        assert created.status_code == 200, created.text
        wrong = httpx.get(f"{base_url}/api/v4.0/integrations/batch/x", timeout=5)
        assert wrong.status_code == 401
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out = Outcome(process.returncode, stdout, stderr)
    out.assert_no_traceback()
    assert out.code in (0, 130), out


def test_a_taken_port_is_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = customer_sync("simulate", "--port", str(port), env={})
    out.assert_no_traceback()
    assert out.code == 2
    assert out.stderr.strip() == (
        f"customer-sync: configuration error: simulate: cannot listen on 127.0.0.1:{port} "
        "(Address already in use); choose another --port or --host"
    )


def test_an_impossible_switch_is_one_sentence() -> None:
    out = customer_sync("simulate", "--record-failure-rate", "2", env={})
    out.assert_no_traceback()
    assert out.code == 2
    assert "record_failure_rate must be between 0 and 1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
