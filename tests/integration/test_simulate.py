"""``customer-sync simulate`` as a subprocess: the banner tells a newcomer everything to use it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from benchmarks import simulator as simulator_process
from benchmarks.simulator import SimulatorProcess
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


def test_the_benchmark_drives_a_simulator_process_through_its_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulator_process, "PAGE", 4)  # several pages for 10 records
    headers = {"APIKey": "bench-key", "SecretKey": "bench-secret"}
    with SimulatorProcess(tmp_path / "simulator.log", "bench-key", "bench-secret") as simulator:
        process = simulator.process
        assert process is not None
        assert simulator.configure(job_duration_seconds=0.0)["job_duration_seconds"] == 0.0
        for job in range(2):
            body = [{"customerId": f"{job}-{i}"} for i in range(5)]
            created = simulator.http.post(
                "/api/v4.0/integrations/batch/customers", json={"body": body}, headers=headers
            )
            assert created.status_code == 200, created.text
        stats = simulator.stats()
        assert (stats["jobs_created"], stats["records_received"]) == (2, 10)
        assert stats["records_applied"] == 10
        applied = [entry["customerId"] for entry in simulator.applied_since(0)]
        assert applied == [f"{job}-{i}" for job in range(2) for i in range(5)]
        assert len(list(simulator.applied_since(7))) == 3
        with pytest.raises(httpx.HTTPStatusError):
            simulator.configure(record_failure_rate=2)
        simulator.reset()
        assert simulator.stats()["records_received"] == 0
    assert process.returncode is not None  # stopped (SIGTERM) on the way out
    assert "Gameball API simulator listening on" in (tmp_path / "simulator.log").read_text()
