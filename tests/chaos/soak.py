"""The soak: one service process under a steady load and the chaos simulator, watched for leaks.

Every ``--interval`` seconds it samples the process's RSS (``VmRSS``), open
file descriptors (``/proc/PID/fd``) and threads (``Threads``), plus the
service's own ``buffered_records`` and ``jobs_in_flight`` gauges. asyncio
tasks are not visible from outside; the service starts one task per batch
in flight and a fixed handful besides, so ``jobs_in_flight`` is the task
count's only moving part, and a leak of tasks would show as a leak of
memory. The slopes are least squares per minute over the samples after the
``--warmup``; a slope above its limit fails the run. At the end the
independent checker verifies every record as in the chaos run.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from service.gameball.simulator import RunningSimulator, SimulatorConfig
from tests.brokers.apache import KafkaNode
from tests.chaos.checker import check, read_log, read_topic
from tests.chaos.driver import Fleet, chaos_env, scrape, wait_committed
from tests.chaos.workload import ManifestProducer, plan, read_manifest

LIMITS = {"rss_mb": 1.0, "fds": 0.5, "threads": 0.2}
"""Largest acceptable growth per minute after the warm-up."""


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mb: float
    fds: int
    threads: int
    buffered: float
    jobs: float


def sample(pid: int, metrics_text: str | None) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    gauges = {"customer_sync_buffered_records": 0.0, "customer_sync_jobs_in_flight": 0.0}
    for line in (metrics_text or "").splitlines():
        name, _, value = line.partition(" ")
        if name in gauges:
            gauges[name] = float(value)
    return Sample(
        time.monotonic(),
        int(fields["VmRSS"].split()[0]) / 1024,
        len(os.listdir(f"/proc/{pid}/fd")),
        int(fields["Threads"]),
        gauges["customer_sync_buffered_records"],
        gauges["customer_sync_jobs_in_flight"],
    )


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


def soak_simulator(seed: int) -> SimulatorConfig:
    return SimulatorConfig(
        seed=seed,
        latency_seconds=0.005,
        job_duration_seconds=1.0,
        rate_limit_rate=0.02,
        retry_after_seconds=0.5,
        server_error_rate=0.02,
        stuck_job_rate=0.01,
        stopped_job_rate=0.02,
        job_failure_rate=0.02,
        record_failure_rate=0.002,
    )


def run(args: argparse.Namespace) -> int:
    master = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    seeds = random.Random(master)
    data_seed, sim_seed = seeds.randrange(2**31), seeds.randrange(2**31)
    print(f"soak seeds: --seed {master} (events {data_seed}, simulator {sim_seed})", flush=True)
    workdir = Path(args.workdir or f"/tmp/soak-{master}")  # noqa: S108 - a report dir
    workdir.mkdir(parents=True, exist_ok=True)
    manifest_path = workdir / "manifest.jsonl"
    manifest_path.unlink(missing_ok=True)
    topic, group = f"soak-{master}", f"soak-{master}-group"
    total = int(args.rate * args.minutes * 60)
    with KafkaNode() as broker, RunningSimulator(soak_simulator(sim_seed)) as simulator:
        broker.create_topics({topic: args.partitions, f"{topic}.dlq": 3})
        env = chaos_env(broker, simulator.base_url, topic, group, "classic")
        fleet = Fleet(env, workdir, 1)
        try:
            fleet.start_all()
            process = fleet.processes[0]
            assert process.process is not None
            pid = process.process.pid
            producer = ManifestProducer(broker.bootstrap, topic, manifest_path)
            events = plan(total, args.customers, seed=data_seed, bad_fraction=0.02)
            thread = threading.Thread(target=producer.produce, args=(events, args.rate))
            started = time.monotonic()
            thread.start()
            samples: list[Sample] = []
            while thread.is_alive():
                response = process.get("/metrics")
                samples.append(sample(pid, response.text if response is not None else None))
                last = samples[-1]
                print(
                    f"  t+{last.at - started:7.1f}s rss {last.rss_mb:6.1f} MB  fds {last.fds:3}  "
                    f"threads {last.threads:3}  buffered {last.buffered:6.0f}  "
                    f"jobs {last.jobs:2.0f}  produced {producer.acknowledged}",
                    flush=True,
                )
                thread.join(args.interval)
            producer.close()
            manifest = read_manifest(manifest_path)
            settled = wait_committed(broker.bootstrap, group, [topic], 300)
            metrics = scrape(process)
            fleet.stop_all()
            report = check(
                manifest,
                read_log(simulator.base_url, "applied"),
                read_log(simulator.base_url, "rejected"),
                read_topic(broker.bootstrap, f"{topic}.dlq"),
                topic=topic,
                faults=[],
            )
        finally:
            fleet.kill_all()
    report.must_be_zero("group did not commit everything in time", int(not settled))
    report.numbers["final metrics"] = metrics
    warm = [s for s in samples if s.at - started >= args.warmup]
    failures = 0
    for name, limit in LIMITS.items():
        slope = slope_per_minute([(s.at, float(getattr(s, name))) for s in warm])
        whole = slope_per_minute([(s.at, float(getattr(s, name))) for s in samples])
        values = [getattr(s, name) for s in warm] or [0]
        report.numbers[f"{name} slope/min after warm-up (limit {limit})"] = round(slope, 4)
        report.numbers[f"{name} slope/min whole run"] = round(whole, 4)
        report.numbers[f"{name} min/max after warm-up"] = (min(values), max(values))
        if slope > limit:
            failures += 1
            report.failures.append(f"{name} grows {slope:.3f}/min (limit {limit})")
    report.numbers["samples"] = len(samples)
    print(report.render(), flush=True)
    (workdir / "samples.json").write_bytes(orjson.dumps([s.__dict__ for s in samples]))
    return 1 if report.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__)
    add = parser.add_argument
    add("--seed", type=int)
    add("--minutes", type=float, default=30.0)
    add("--rate", type=float, default=300.0, help="events per second (300)")
    add("--customers", type=int, default=20_000)
    add("--partitions", type=int, default=6)
    add("--interval", type=float, default=10.0, help="seconds between samples (10)")
    add("--warmup", type=float, default=120.0, help="seconds left out of the slopes (120)")
    add("--workdir")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
