"""``make bench``: the pipeline measured against its two limits, in one run.

Users pick a sink by how much it carries per core (the *ceiling* a bare
consumer reaches on the same topic) and by how close it gets to what the API
allows (``MAX_JOBS_IN_FLIGHT x records-per-job / job duration``). Both are
reported as ratios, next to memory under a backlog and latency under a trickle.

The service runs as a real process (``customer-sync run``) against the
embedded broker and the simulator (``customer-sync simulate``, a process of
its own too, so it shares no interpreter with the benchmark's producers),
exactly as in production but on one machine: the broker and the simulator
share its cores, so absolute numbers are a floor. Regimes:

1. **ceiling**: ``consume(num_messages=…)`` plus ``orjson.loads`` per value;
2. **cpu_bound**: instant jobs; records/s from the first record consumed until
   every offset is committed (the group join, a broker artefact, is left out);
3. **api_bound**: fixed job duration at two ``MAX_JOBS_IN_FLIGHT`` settings;
   records accepted by the API per second over a steady window, divided by the
   theoretical limit computed with the batch size actually achieved;
4. **backlog**: a million records waiting; peak RSS (``VmHWM``) and throughput;
5. **light_load**: a 200 records/s trickle; produce-to-submit latency, from the
   ``sentAt`` each event carries to the submission time the simulator logs,
   once one change has gone end to end (start-up is not the buffer's wait);
6. **quota_bound**: two instances in one group sharing one API key against the
   simulator enforcing Gameball's documented limits (30 requests/s, 360 per
   30 s, 429 without ``Retry-After``), 2-second jobs. In production the key's
   quota is the ceiling: 12 requests/s / requests per job x records per job.
   Reported: records/s against that ceiling (requests per job as measured at
   the simulator over the window), requests per job, and every 429 provoked;
7. **quota_backlog**: the same two instances and limits, against a million
   changes of 200,000 customers already waiting, chosen uniformly and again by
   a Zipf law (``benchmarks/backlogs.py``); each backlog caught up twice, with
   compaction on (``COMPACTION_MAX_BYTES`` unset) and off (``0``). Reported:
   records sent to the API per distinct customer of the backlog, changes retired
   per API request (every request the simulator counted), the catch-up time
   (both processes started → every offset committed: start-up and the group
   join are in it; when the first record was read is reported beside it), peak
   RSS per instance, 429s, and the catch-up with compaction on ÷ off.

Run only when named (``--only``), each a few minutes (``benchmarks/routes.py``):

8. **quota_routes**: the same two instances and limits serving a routes file of two routes,
   customers and orders, a backlog waiting on each topic: records delivered per operation,
   requests per operation and kind, the catch-up, and 429s (the one budget is shared);
9. **cpu_routes**: the CPU-bound regime's method on one route of orders, and of customers:
   what a fact route costs a record.

The other regimes measure the service, not the key: the simulator enforces
no limits there and the service's budget is sized out of the way (it still
runs, so its per-request cost is in every figure).

Figures go to a table and to ``benchmarks/results/latest.json``. ``--smoke``
runs every regime on a few thousand records, for the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks import rebalance, routes
from benchmarks.backlogs import ZIPF_S, Backlog
from benchmarks.simulator import SimulatorProcess
from service.delivery.broker_retry import committed_offsets
from service.gameball.simulator import DOCUMENTED_LIMITS
from service.tools.embedded_broker import EmbeddedBroker, free_port
from service.tools.samples import change_event, generate
from tests.brokers.apache import KafkaNode
from tests.helpers import wait_for
from tests.integration.harness import GROUP_PROTOCOLS, GroupProtocol, protocol_env

PARTITIONS = 6
RESULTS = Path(__file__).parent / "results" / "latest.json"
DEFAULT_REGIMES = (
    "ceiling",
    "cpu",
    "api",
    "backlog",
    "light",
    "quota",
    "quota_backlog",
    "rebalance",
)
OPT_IN_REGIMES = ("quota_routes", "cpu_routes")
"""Run only when named (``--only``): the routes file's two operations (``benchmarks/routes.py``)."""
REGIMES = (*DEFAULT_REGIMES, *OPT_IN_REGIMES)
BROKERS = {"kafka": "Apache Kafka 4.1 (one KRaft node)", "tansu": "Tansu (the demo's broker)"}
API_KEY, SECRET_KEY = "bench-api-key", "bench-secret-key"  # the simulator's, not real ones
UNLIMITED = {"GAMEBALL_RATE_LIMIT_PER_SECOND": "1000000", "GAMEBALL_QUOTA_REQUESTS": "30000000"}
"""Every regime but quota_bound: a budget far above anything one machine can send."""
DOCUMENTED = {
    "GAMEBALL_RATE_LIMIT_PER_SECOND": str(DOCUMENTED_LIMITS["limit_per_second"]),
    "GAMEBALL_QUOTA_REQUESTS": str(DOCUMENTED_LIMITS["limit_per_window"]),
    "GAMEBALL_QUOTA_WINDOW_SECONDS": str(DOCUMENTED_LIMITS["limit_window_seconds"]),
}
QUOTA_PER_SECOND = DOCUMENTED_LIMITS["limit_per_window"] / DOCUMENTED_LIMITS["limit_window_seconds"]
COMPACTION = "COMPACTION_MAX_BYTES"
"""Compaction's bound (issue 27): unset is on at its default, ``0`` is off."""


@dataclass(frozen=True)
class Sizes:
    cpu_events: int = 300_000
    cpu_customers: int = 20_000
    backlog_events: int = 1_000_000
    backlog_customers: int = 200_000
    job_duration: float = 0.5
    api_warmup: float = 3.0
    api_window: float = 10.0  # ~70 jobs at 4 in flight: one job more or less is 1.4 %
    trickle_rate: int = 200
    trickle_seconds: float = 20.0
    rebalance_window: float = 12.0  # seconds watched after a member joins, and after it leaves
    quota_job_duration: float = 2.0
    quota_warmup: float = 15.0  # both instances in, the job durations learnt
    quota_window: float = 60.0  # two quota windows; ~350 jobs
    quota_backlog_changes: int = 1_000_000
    quota_backlog_customers: int = 200_000
    quota_backlog_timeout: float = 1800.0  # a run that has not caught up by then failed
    quota_routes_changes: int = 200_000
    quota_routes_customers: int = 40_000
    quota_routes_orders: int = 100_000
    cpu_routes_records: int = 100_000


SMOKE = Sizes(
    cpu_events=3_000,
    cpu_customers=500,
    backlog_events=30_000,
    backlog_customers=15_000,
    job_duration=1.0,
    api_warmup=0.5,
    api_window=1.0,
    trickle_rate=200,
    trickle_seconds=3.0,
    rebalance_window=3.0,
    quota_job_duration=1.0,
    quota_warmup=2.0,
    quota_window=3.0,
    quota_backlog_changes=4_000,
    quota_backlog_customers=1_000,
    quota_backlog_timeout=120.0,
    quota_routes_changes=2_000,
    quota_routes_customers=500,
    quota_routes_orders=1_000,
    cpu_routes_records=2_000,
)


# ----------------------------------------------------------------- plumbing


def produce(bootstrap: str, topic: str, events: Iterator[tuple[bytes, bytes]]) -> Counter[int]:
    """Produce keyed events; return what the broker acknowledged per partition."""
    per_partition: Counter[int] = Counter()
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            per_partition[msg.partition()] += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            "enable.idempotence": True,
        }
    )
    for key, value in events:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if errors or left:
        first = errors[0] if errors else "no answer"
        raise RuntimeError(f"{len(errors) + left} record(s) not acknowledged, first: {first}")
    return per_partition


def sized(events: Iterator[tuple[bytes, bytes]], size: list[int]) -> Iterator[tuple[bytes, bytes]]:
    """``events`` as they are, adding each value's bytes to ``size[0]``."""
    for key, value in events:
        size[0] += len(value)
        yield key, value


def keyed(events: int, customers: int, seed: int, prefix: str) -> Iterator[tuple[bytes, bytes]]:
    for event in generate(events, customers, seed=seed, prefix=prefix):
        assert event.key is not None
        assert event.value is not None
        yield event.key, event.value


class Service:
    """``customer-sync run`` as a real process, observed through /metrics and /proc."""

    def __init__(self, env: dict[str, str], log: Path, profile: Path | None = None) -> None:
        self.profile = profile
        self.port = free_port()
        self.env = {**os.environ, **env, "HTTP_PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def __enter__(self) -> Service:
        command = [sys.executable, "-m", "service.cli", "run"]
        if self.profile is not None:  # 250 Hz, GIL holder only, folded stacks
            spy = str(Path(sys.executable).with_name("py-spy"))
            command = [
                spy,
                "record",
                "--gil",
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(self.profile),
                "--",
                *command,
            ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, in this venv
                command, env=self.env, stdout=out, stderr=out
            )
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()
        if self.process is not None and self.process.poll() is None:
            self.service_pid_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def service_pid(self) -> int:
        """The service's pid: py-spy's child when profiling (py-spy writes when it exits)."""
        assert self.process is not None
        if self.profile is None:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return int(children.read_text().split()[0])

    def service_pid_signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, IndexError, FileNotFoundError):
            os.kill(self.service_pid(), sig)

    def samples(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its line's name and labels."""
        try:
            text = self.http.get("/metrics").text
        except httpx.HTTPError:
            return {}
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def total(self, metric: str, samples: dict[str, float] | None = None) -> float:
        samples = self.samples() if samples is None else samples
        return sum(v for k, v in samples.items() if k == metric or k.startswith(metric + "{"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service so far (load-independent, unlike rates)."""
        fields = Path(f"/proc/{self.service_pid()}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def environ(self, name: str) -> str | None:
        """A variable of the service process's environment as it started, or None if unset."""
        prefix = name.encode() + b"="
        environ = Path(f"/proc/{self.service_pid()}/environ").read_bytes()
        found = next((v for v in environ.split(b"\0") if v.startswith(prefix)), None)
        return None if found is None else found[len(prefix) :].decode()

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.service_pid()}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


def _ticks(stat: str) -> float:
    """User + system seconds from a /proc/.../stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    """Where the machine's CPU time went: the service's threads, the broker, the rest."""

    at: float
    service_main: float
    service_other: float
    broker: float
    simulator: float  # its own process (customer-sync simulate)
    machine_busy: float

    @classmethod
    def take(cls, service_pid: int, broker_pid: int, simulator_pid: int) -> CpuSnapshot:
        main, other = 0.0, 0.0
        for task in Path(f"/proc/{service_pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                seconds = _ticks((task / "stat").read_text())
                if task.name == str(service_pid):
                    main = seconds
                else:
                    other += seconds
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in cpu]
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        return cls(
            at=time.perf_counter(),
            service_main=main,
            service_other=other,
            broker=_ticks(Path(f"/proc/{broker_pid}/stat").read_text()),
            simulator=_ticks(Path(f"/proc/{simulator_pid}/stat").read_text()),
            machine_busy=busy / os.sysconf("SC_CLK_TCK"),
        )

    def cores_since(self, earlier: CpuSnapshot) -> dict[str, float]:
        """Cores used on average between two snapshots, per consumer of CPU."""
        wall = max(self.at - earlier.at, 1e-9)
        return {
            name: round((getattr(self, name) - getattr(earlier, name)) / wall, 2)
            for name in ("service_main", "service_other", "broker", "simulator", "machine_busy")
        }


def _api_means(samples: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds per API request (by operation) and per job, and their counts."""
    series = {
        "submit": ("customer_sync_api_request_duration_seconds", '{operation="submit"}'),
        "status": ("customer_sync_api_request_duration_seconds", '{operation="status"}'),
        "job": ("customer_sync_job_duration_seconds", ""),
    }
    means: dict[str, float] = {}
    for name, (metric, labels) in series.items():
        count = samples.get(f"{metric}_count{labels}", 0.0)
        if count:
            means[f"{name}_ms"] = round(samples[f"{metric}_sum{labels}"] / count * 1000, 1)
            means[f"{name}_count"] = int(count)
    return means


def _polling(samples: list[dict[str, float]], duration: float) -> dict[str, float | None]:
    """Status reads per job, and how late a job's end is noticed, as the services saw them.

    The simulator's jobs all take ``duration``; the service times a job from
    its submission's answer to the read that found it terminal, so the mean
    of that minus ``duration`` is the mean job-end-to-settle lateness (a
    round trip included).
    """

    def total(name: str) -> float:
        return sum(s.get(name, 0.0) for s in samples)

    jobs = total("customer_sync_job_duration_seconds_count")
    status = total('customer_sync_api_requests_per_job_sum{operation="status"}')
    counted = total('customer_sync_api_requests_per_job_count{operation="status"}')
    if not jobs or not counted:
        return {"status_reads_per_job": None, "late_ms": None}
    seen = total("customer_sync_job_duration_seconds_sum") / jobs
    return {
        "status_reads_per_job": round(status / counted, 3),
        "late_ms": round((seen - duration) * 1000, 1),
    }


def quantile(samples: dict[str, float], metric: str, q: float) -> float | None:
    """``histogram_quantile`` over a scraped histogram (linear within the bucket)."""
    buckets = []
    for name, value in samples.items():
        if name.startswith(metric + "_bucket{"):
            bound = name.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return None


def committed_all(
    bootstrap: str, group: str, topic: str, produced: Counter[int]
) -> Callable[[], bool]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def check() -> bool:
        offsets = {tp.partition: tp.offset for tp in committed_offsets(reader, parts, 10)}
        return all(offsets.get(p, -1) >= n for p, n in produced.items())

    return check


@dataclass
class Bench:
    broker: KafkaNode | EmbeddedBroker
    simulator: SimulatorProcess
    sizes: Sizes
    logs: Path
    profile: bool = False
    log_level: str = "WARNING"
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(
        self, topic: str, group: str, protocol: GroupProtocol = "classic", **extra: str
    ) -> dict[str, str]:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "KAFKA_SOURCE_TOPICS": topic,
            "KAFKA_GROUP_ID": group,
            "KAFKA_DLQ_TOPIC": "bench.dlq",
            **protocol_env(protocol),
            "GAMEBALL_BASE_URL": self.simulator.base_url,
            "GAMEBALL_API_KEY": API_KEY,
            "GAMEBALL_SECRET_KEY": SECRET_KEY,
            "LOG_LEVEL": self.log_level,
            # The job path is what every regime measures, against its figures of before the
            # tags call: tags ride in the item, as they did (one call per tagged customer
            # would be a cost of its own, see README: Tags).
            "TAGS_SYNC": "item",
            **UNLIMITED,
            **extra,
        }
        if "ROUTES_FILE" in extra:  # its routes name their topics; both set stops start-up
            del env["KAFKA_SOURCE_TOPICS"]
        return env

    def committed(self, group: str, topic: str, produced: Counter[int]) -> Callable[[], bool]:
        """Whether ``group`` has committed every record ``produced`` on ``topic``."""
        return committed_all(self.broker.bootstrap, group, topic, produced)

    def configure(self, **changes: Any) -> None:
        """The simulator for the next regime: no rate limits, and an order's customer must
        have been applied by a customers job, unless ``changes`` say otherwise."""
        defaults = {"limit_per_second": 0, "limit_per_window": 0, "all_customers_known": False}
        self.simulator.configure(**{**defaults, **changes})
        self.simulator.reset()

    def cpu(self, service: Service) -> CpuSnapshot:
        return CpuSnapshot.take(service.service_pid(), self.broker.pid, self.simulator.pid)

    def service(
        self,
        topic: str,
        group: str,
        protocol: GroupProtocol = "classic",
        name: str = "",
        **extra: str,
    ) -> Service:
        profile = self.logs / f"{group.split('-')[0]}.profile.txt" if self.profile else None
        log = self.logs / f"{group}{'-' + name if name else ''}.log"
        return Service(self.env(topic, group, protocol, **extra), log, profile)

    # -------------------------------------------------------------- regimes

    def ceiling(self, topic: str, total: int) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.broker.bootstrap,
                "group.id": f"ceiling-{random.getrandbits(32)}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "queued.max.messages.kbytes": 65536,
                # Without it a full queue stops fetching for a second: the ceiling would be
                # librdkafka's backoff, not the cost of consuming (the service sets it too).
                "fetch.queue.backoff.ms": 20,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        count, started = 0, None
        loads = orjson.loads
        try:
            while count < total:
                messages = consumer.consume(num_messages=5000, timeout=1.0)
                if messages and started is None:
                    started = time.perf_counter()
                for message in messages:
                    if message.error() is None:
                        loads(message.value())
                        count += 1
            assert started is not None
            elapsed = time.perf_counter() - started
        finally:
            consumer.close()
        self.results["ceiling"] = {"records": count, "records_per_s": round(count / elapsed)}

    def run_to_commit(
        self, name: str, topic: str, produced: Counter[int], **extra: str
    ) -> dict[str, Any]:
        """Start a service on a fresh group; time it from first consume to last commit."""
        total = sum(produced.values())
        group = f"{name}-{random.getrandbits(32)}"
        done = committed_all(self.broker.bootstrap, group, topic, produced)
        with self.service(topic, group, **extra) as service:
            wait_for(
                lambda: service.total("customer_sync_records_consumed_total") > 0,
                60,
                "the first record consumed",
                interval=0.02,  # the clock starts here
            )
            started, cpu_started = time.perf_counter(), service.cpu_seconds()
            machine = self.cpu(service)
            # The group's committed offsets say when everything is settled. The
            # consumed counter, scraped every 0.25 s (about 2 ms of the service's
            # CPU each), says when the last record was read: after that the run
            # is the tail, mostly the last partial batch waiting out
            # BATCH_MAX_WAIT_SECONDS, as the contract says it must.
            consumed_all: float | None = None
            next_scrape = 0.0
            while not done():
                now = time.perf_counter()
                if consumed_all is None and now >= next_scrape:
                    next_scrape = now + 0.25
                    if service.total("customer_sync_records_consumed_total") >= total:
                        consumed_all = now
                time.sleep(0.05)
            finished = time.perf_counter()
            consumed_all = consumed_all or finished
            cpu = service.cpu_seconds() - cpu_started
            cores = self.cpu(service).cores_since(machine)
            samples = service.samples()
            peak = service.peak_rss_mb()
            batches = service.total("customer_sync_batches_flushed_total", samples)
        elapsed = finished - started
        result = {
            "records": total,
            "seconds": round(elapsed, 2),
            "records_per_s": round(total / elapsed),
            "steady_records_per_s": round(total / max(consumed_all - started, 1e-9)),
            "tail_s": round(finished - consumed_all, 2),
            "e2e_p50_s": _round(quantile(samples, "customer_sync_end_to_end_latency_seconds", 0.5)),
            "e2e_p99_s": _round(
                quantile(samples, "customer_sync_end_to_end_latency_seconds", 0.99)
            ),
            "peak_rss_mb": round(peak, 1),
            "cpu_us_per_record": round(cpu / total * 1e6, 1),
            "batches": int(batches),
            "coalesced": int(samples.get('customer_sync_records_total{outcome="coalesced"}', 0)),
            "cores_used": cores,
            "api": _api_means(samples),
        }
        return result

    def cpu_bound(self, topic: str, produced: Counter[int]) -> None:
        self.configure(job_duration_seconds=0.0)
        result = self.run_to_commit("cpu", topic, produced)
        ceiling = self.results["ceiling"]["records_per_s"]
        result["ratio_to_ceiling"] = round(result["records_per_s"] / ceiling, 3)
        self.results["cpu_bound"] = result

    def api_bound(self, topic: str, in_flight: int) -> None:
        duration = self.sizes.job_duration
        self.configure(job_duration_seconds=duration)
        group = f"api{in_flight}-{random.getrandbits(32)}"
        with self.service(topic, group, MAX_JOBS_IN_FLIGHT=str(in_flight)) as service:
            wait_for(lambda: _received(self.simulator)[0] > 0, 60, "the first job")
            time.sleep(self.sizes.api_warmup)  # fill the pipeline: every slot busy
            before, jobs_before, t0 = _received(self.simulator)
            machine = self.cpu(service)
            time.sleep(self.sizes.api_window)
            after, jobs_after, t1 = _received(self.simulator)
            cores = self.cpu(service).cores_since(machine)
            scraped = service.samples()
            api = _api_means(scraped)
        if jobs_after == jobs_before:
            raise RuntimeError(f"no job was submitted in the window: the topic {topic} ran dry")
        achieved = (after - before) / (t1 - t0)
        per_job = (after - before) / max(1, jobs_after - jobs_before)
        limit = in_flight * per_job / duration
        self.results[f"api_bound_{in_flight}"] = {
            "max_jobs_in_flight": in_flight,
            "job_duration_s": duration,
            "records_per_job": round(per_job, 1),
            "records_per_s": round(achieved),
            "limit_records_per_s": round(limit),
            "ratio_to_limit": round(achieved / limit, 3),
            "cores_used": cores,
            "api": api,
            "polling": _polling([scraped], duration),  # whole run, warm-up included
        }

    def quota_bound(self, topic: str) -> None:
        """Two instances, one key, the documented limits: how much of the quota delivers."""
        duration = self.sizes.quota_job_duration
        self.configure(
            job_duration_seconds=duration,
            limit_retry_after=False,  # as Gameball documents its 429s
            **DOCUMENTED_LIMITS,
        )
        group = f"quota-{random.getrandbits(32)}"
        # Job slots are no limit here (~13 jobs run at once in the group): only the key is.
        env = self.env(topic, group, MAX_JOBS_IN_FLIGHT="16", **DOCUMENTED)
        services = [Service(env, self.logs / f"{group}-{i}.log") for i in (1, 2)]
        self._quota_bound(self.simulator, services, duration)

    def _quota_bound(
        self, simulator: SimulatorProcess, services: list[Service], duration: float
    ) -> None:
        with services[0] as one, services[1] as two:
            wait_for(
                lambda: all(s.total("customer_sync_records_consumed_total") for s in (one, two)),
                90,
                "both instances consuming",
            )
            time.sleep(self.sizes.quota_warmup)
            before, t0 = _requests(simulator), time.perf_counter()
            time.sleep(self.sizes.quota_window)
            after, t1 = _requests(simulator), time.perf_counter()
            samples = [one.samples(), two.samples()]
        records = after["records"] - before["records"]
        jobs = max(1, after["jobs"] - before["jobs"])
        per_job = (after["requests"] - before["requests"]) / jobs
        records_per_job = records / jobs
        achieved = records / (t1 - t0)
        ceiling = QUOTA_PER_SECOND / per_job * records_per_job
        by_operation = {}
        for operation in ("submit", "status", "stop"):
            label = f'{{operation="{operation}"}}'
            total = sum(s.get(f"customer_sync_api_requests_per_job_sum{label}", 0) for s in samples)
            count = sum(
                s.get(f"customer_sync_api_requests_per_job_count{label}", 0) for s in samples
            )
            by_operation[operation] = round(total / count, 3) if count else None
        self.results["quota_bound"] = {
            "instances": 2,
            "job_duration_s": duration,
            "window_s": self.sizes.quota_window,
            "records_per_s": round(achieved),
            "records_per_job": round(records_per_job, 1),
            "requests_per_job": round(per_job, 3),
            "requests_per_s": round((after["requests"] - before["requests"]) / (t1 - t0), 2),
            "quota_requests_per_s": QUOTA_PER_SECOND,
            "ceiling_records_per_s": round(ceiling),
            "ratio_to_ceiling": round(achieved / ceiling, 3),
            "target_ratio": 0.9,
            "target_requests_per_job": 2.2,
            "rate_limited": simulator.stats()["rate_limited"],  # 429s provoked, whole regime
            "budget_requests_per_s": [
                round(s.get("customer_sync_api_budget_requests_per_second", 0), 3) for s in samples
            ],
            "requests_per_job_by_operation": by_operation,  # the services' view, whole run
            "polling": _polling(samples, duration),  # whole run
        }

    def quota_backlog(self, backlog: Backlog, topic: str, produced: Counter[int]) -> None:
        """A backlog caught up by two instances under the key's limits, compaction on and off."""
        on = self._catch_up(backlog, topic, produced, compaction=True)
        off = self._catch_up(backlog, topic, produced, compaction=False)
        self.results[f"quota_backlog_{backlog.name}"] = {
            "instances": 2,
            "job_duration_s": self.sizes.quota_job_duration,
            "changes": backlog.changes,
            "customers_drawn_from": backlog.customers,
            "choice": "uniform" if backlog.zipf_s is None else f"zipf s={backlog.zipf_s:g}",
            "distinct_customers": backlog.distinct_customers,
            "busiest_customer_changes": backlog.busiest_changes,
            "compaction_on": on,
            "compaction_off": off,
            "catch_up_on_over_off": round(on["catch_up_s"] / off["catch_up_s"], 3),
            "targets": {
                "records_sent_per_customer": 1.1,
                "catch_up_on_over_off": 0.3,
                "rate_limited": 0,
                "peak_rss_mb": 300,
            },
        }

    def _catch_up(
        self, backlog: Backlog, topic: str, produced: Counter[int], compaction: bool
    ) -> dict[str, Any]:
        """Two instances on a fresh group, from their start until every offset is committed."""
        self.configure(
            job_duration_seconds=self.sizes.quota_job_duration,
            limit_retry_after=False,
            **DOCUMENTED_LIMITS,
        )
        group = f"quota-backlog-{backlog.name}-{'on' if compaction else 'off'}"
        group += f"-{random.getrandbits(32)}"
        settings = {"MAX_JOBS_IN_FLIGHT": "16", **DOCUMENTED}
        if not compaction:
            settings[COMPACTION] = "0"
        env = self.env(topic, group, "classic", **settings)
        services = [Service(env, self.logs / f"{group}-{i}.log") for i in (1, 2)]
        for service in services:
            if compaction:  # on is the default: unset, whatever the benchmark's own environment
                service.env.pop(COMPACTION, None)
        done = committed_all(self.broker.bootstrap, group, topic, produced)
        consumed = "customer_sync_records_consumed_total"
        started = time.perf_counter()
        first_consumed: float | None = None
        with services[0] as one, services[1] as two:
            while not done():
                now = time.perf_counter()
                for service in (one, two):
                    if service.process is not None and service.process.poll() is not None:
                        raise RuntimeError(f"an instance exited early; see {service.log}")
                if now - started > self.sizes.quota_backlog_timeout:
                    raise RuntimeError(f"{group} not caught up in {now - started:.0f} s")
                if first_consumed is None and any(s.total(consumed) for s in (one, two)):
                    first_consumed = now
                time.sleep(0.2)
            finished = time.perf_counter()
            samples = [one.samples(), two.samples()]
            peaks = [round(one.peak_rss_mb(), 1), round(two.peak_rss_mb(), 1)]
            seen = [one.environ(COMPACTION), two.environ(COMPACTION)]
        stats = self.simulator.stats()
        requests = {kind: sum(codes.values()) for kind, codes in stats["requests"].items()}
        catch_up = finished - started
        return {
            "compaction_max_bytes": seen,  # as each process's environment had it
            "catch_up_s": round(catch_up, 1),
            "first_consumed_s": round(
                (first_consumed or finished) - started, 1
            ),  # start-up, group join
            "changes_per_s": round(backlog.changes / catch_up),
            "records_sent": stats["records_received"],
            "records_sent_per_customer": round(
                stats["records_received"] / backlog.distinct_customers, 3
            ),
            "jobs": stats["jobs_created"],
            "requests": sum(requests.values()),
            "requests_by_kind": requests,
            "changes_per_request": round(backlog.changes / max(1, sum(requests.values())), 1),
            "rate_limited": stats["rate_limited"],
            "peak_rss_mb": peaks,
            "coalesced": int(sum(_outcome(s, "coalesced") for s in samples)),
        }

    def backlog(self, topic: str, produced: Counter[int]) -> None:
        self.configure(job_duration_seconds=0.0)
        self.results["backlog"] = self.run_to_commit("backlog", topic, produced)

    def light_load(self) -> None:
        self.configure(job_duration_seconds=0.0)
        topic, group = f"trickle-{random.getrandbits(32)}", f"trickle-{random.getrandbits(32)}"
        self.broker.create_topics({topic: PARTITIONS})
        rate, seconds = self.sizes.trickle_rate, self.sizes.trickle_seconds
        wait = 2.0
        rng = random.Random(5)
        with self.service(topic, group, BATCH_MAX_WAIT_SECONDS=str(wait)) as service:
            wait_for(lambda: _ready(service), 60, "the service to join the group")
            producer = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 0})

            def send(customer: str) -> None:
                envelope = orjson.loads(change_event(customer, 1, rng))
                row = (envelope.get("payload") or envelope)["after"]
                row["custom"] = orjson.dumps({"version": 1, "sentAt": time.time()}).decode()
                producer.produce(topic, key=customer.encode(), value=orjson.dumps(row))
                producer.poll(0)

            # One change carried end to end before the clock starts: the
            # producer's first metadata round and the consumer's first fetch
            # positions are start-up, not the buffer's wait (on a loaded
            # machine they added over a second to the first records' latency).
            send("warm-up")
            producer.flush(10)
            wait_for(lambda: self.simulator.stats()["records_applied"] >= 1, 30, "the warm-up")
            count = int(rate * seconds)
            start = time.perf_counter()
            for i in range(count):
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
                send(f"t{i}")
            producer.flush(10)
            wait_for(
                lambda: self.simulator.stats()["records_applied"] >= 1 + count, 30, "the trickle"
            )
            polling = _polling([service.samples()], 0.0)
        latencies = sorted(
            entry["submittedAt"] - entry["customer"]["customerAttributes"]["custom"]["sentAt"]
            for entry in self.simulator.applied_since(1)
        )
        q = statistics.quantiles(latencies, n=100)
        self.results["light_load"] = {
            "records": count,
            "rate_per_s": rate,
            "batch_max_wait_s": wait,
            "produce_to_submit_p50_s": round(q[49], 3),
            "produce_to_submit_p99_s": round(q[98], 3),
            "target_p99_s": wait + 0.2,
            "polling": polling,
        }


def _received(simulator: SimulatorProcess) -> tuple[int, int, float]:
    """Records and jobs the simulator has received, and when (the middle of the read)."""
    asked = time.perf_counter()
    stats = simulator.stats()
    at = (asked + time.perf_counter()) / 2
    return stats["records_received"], stats["jobs_created"], at


def _requests(simulator: SimulatorProcess) -> dict[str, int]:
    """What the simulator has seen so far: records, jobs and requests of every kind and code."""
    stats = simulator.stats()
    return {
        "records": stats["records_received"],
        "jobs": stats["jobs_created"],
        "requests": sum(sum(codes.values()) for codes in stats["requests"].values()),
    }


def _outcome(samples: dict[str, float], outcome: str) -> float:
    """Records that ended with ``outcome``, whatever other labels the counter carries."""
    label = f'outcome="{outcome}"'
    return sum(
        v for k, v in samples.items() if k.startswith("customer_sync_records_total{") and label in k
    )


def _ready(service: Service) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return service.http.get("/readyz").status_code == 200
    return False


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -------------------------------------------------------------------- report


def _steady_row(table: Any, r: dict[str, Any], ceiling: int | None) -> None:
    """The same run until its last record was read, and the tail after it."""
    table.add_row(
        "  … until the last record was read",
        f"{r['steady_records_per_s']:,}",
        f"{r['steady_records_per_s'] / ceiling:.2f} of ceiling" if ceiling else "",
        f"then a {r['tail_s']} s tail (last batch's linger, jobs, commit)",
        "",
    )


def print_table(results: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    broker = results.get("meta", {}).get("broker", "")
    table = Table(title=f"customer-sync benchmark on {broker}", show_lines=False)
    for column in ("regime", "records/s", "vs limit", "latency", "peak RSS"):
        table.add_column(column)
    c = results.get("ceiling", {})
    if c:
        table.add_row("ceiling (bare consumer + orjson)", f"{c['records_per_s']:,}", "", "", "")
    if "cpu_bound" in results:
        r = results["cpu_bound"]
        table.add_row(
            f"cpu-bound ({r['records']:,} events, instant jobs)",
            f"{r['records_per_s']:,}",
            f"{r['ratio_to_ceiling']:.2f} of ceiling",
            f"e2e p50 {r['e2e_p50_s']} s, p99 {r['e2e_p99_s']} s",
            f"{r['peak_rss_mb']} MB",
        )
        _steady_row(table, r, c.get("records_per_s"))
    for key in sorted(k for k in results if k.startswith("api_bound_")):
        r = results[key]
        table.add_row(
            f"api-bound ({r['max_jobs_in_flight']} jobs x {r['job_duration_s']} s)",
            f"{r['records_per_s']:,}",
            f"{r['ratio_to_limit']:.2f} of {r['limit_records_per_s']:,}",
            _polling_cell(r),
            "",
        )
    if "backlog" in results:
        r = results["backlog"]
        table.add_row(
            f"backlog ({r['records']:,} waiting)",
            f"{r['records_per_s']:,}",
            "",
            "",
            f"{r['peak_rss_mb']} MB",
        )
        _steady_row(table, r, None)
    if "quota_bound" in results:
        r = results["quota_bound"]
        table.add_row(
            f"quota-bound (2 instances, one key, {r['job_duration_s']:g} s jobs)",
            f"{r['records_per_s']:,}",
            f"{r['ratio_to_ceiling']:.2f} of {r['ceiling_records_per_s']:,}",
            f"{r['requests_per_job']:.2f} requests/job, {r['rate_limited']} 429s provoked, "
            + _polling_cell(r),
            "",
        )
    for choice in ("uniform", "zipf"):
        if f"quota_backlog_{choice}" in results:
            _quota_backlog_rows(table, results[f"quota_backlog_{choice}"])
    if "quota_routes" in results:
        _quota_routes_rows(table, results["quota_routes"])
    if "cpu_routes" in results:
        r = results["cpu_routes"]
        for name in ("customers", "distinct_customers", "orders"):
            run = r[name]
            table.add_row(
                f"cpu, one route: {name.replace('_', ' ')} ({run['records']:,}, "
                f"{run['bytes_per_record']:,} B each, instant jobs)",
                f"{run['records_per_s']:,}",
                f"{run['cpu_us_per_record']} µs of CPU a record",
                f"{run['batches']:,} batches",
                f"{run['peak_rss_mb']} MB",
            )
        table.add_row(
            "  … orders ÷ customers, CPU a record",
            "",
            f"{r['orders_over_customers']:.2f} "
            f"({r['orders_over_distinct_customers']:.2f} of distinct customers)",
            "",
            "",
        )
    if "light_load" in results:
        r = results["light_load"]
        table.add_row(
            f"light load ({r['rate_per_s']}/s trickle)",
            "",
            f"target p99 ≤ {r['target_p99_s']} s",
            f"submit p50 {r['produce_to_submit_p50_s']} s, p99 {r['produce_to_submit_p99_s']} s, "
            + _polling_cell(r),
            "",
        )
    for protocol in GROUP_PROTOCOLS:
        r = results.get(f"rebalance_{protocol}")
        if r is not None:
            table.add_row(
                f"rebalance pause, {protocol} protocol",
                "",
                f"baseline {r['baseline_pause_s']} s",
                f"a member joins: {r['join_pause_s']} s, leaves: {r['leave_pause_s']} s",
                "",
            )
    Console().print(table)


def _quota_backlog_rows(table: Any, r: dict[str, Any]) -> None:
    """One row per compaction setting, then the ratio of their catch-up times."""
    for setting in ("on", "off"):
        run = r[f"compaction_{setting}"]
        table.add_row(
            f"quota backlog, {r['choice']} ({r['changes']:,} changes of "
            f"{r['distinct_customers']:,} customers), compaction {setting}",
            f"{run['changes_per_s']:,}",
            f"{run['records_sent_per_customer']:.2f} sent per customer, "
            f"{run['changes_per_request']:,.0f} changes per request",
            f"catch-up {run['catch_up_s']} s (first read at {run['first_consumed_s']} s), "
            f"{run['rate_limited']} 429s",
            ", ".join(f"{mb} MB" for mb in run["peak_rss_mb"]),
        )
    table.add_row(
        "  … catch-up, compaction on ÷ off",
        "",
        f"{r['catch_up_on_over_off']:.2f} (target ≤ {r['targets']['catch_up_on_over_off']})",
        "",
        "",
    )


def _quota_routes_rows(table: Any, r: dict[str, Any]) -> None:
    """One row per route, then the key's requests and 429s over the whole catch-up."""
    for operation in ("customers", "orders"):
        delivered = r["delivered"][operation]
        requests = r["requests_by_operation"].get(operation, {})
        refused = (
            f", refused {delivered['customer_not_found']:,} not found, "
            f"{delivered['duplicates']:,} duplicates"
            if operation == "orders"
            else ""
        )
        waiting = r["customer_changes"] if operation == "customers" else r["orders"]
        table.add_row(
            f"quota routes: {operation} ({waiting:,} waiting)",
            f"{delivered['applied']:,} applied",
            f"sent {delivered['records_sent']:,}{refused}",
            f"caught up at {r['caught_up_s'].get(operation)} s; requests "
            + ", ".join(f"{kind} {n:,}" for kind, n in sorted(requests.items())),
            "",
        )
    table.add_row(
        "  … both routes, one key (2 instances)",
        "",
        f"{r['requests_per_s']} requests/s of {r['quota_requests_per_s']:g}",
        f"catch-up {r['catch_up_s']} s (first read at {r['first_consumed_s']} s), "
        f"{r['rate_limited']} 429s, {r['dead_lettered']} dead-lettered",
        ", ".join(f"{mb} MB" for mb in r["peak_rss_mb"]),
    )


def _polling_cell(r: dict[str, Any]) -> str:
    polling = r.get("polling") or {}
    return (
        f"{polling.get('status_reads_per_job')} status reads/job, "
        f"noticed {polling.get('late_ms')} ms late"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="a few thousand records per regime")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    parser.add_argument(
        "--only",
        action="append",
        choices=REGIMES,
        help="run only these regimes (repeatable; cpu implies ceiling); "
        f"{' and '.join(OPT_IN_REGIMES)} run only when named",
    )
    parser.add_argument(
        "--broker",
        choices=("kafka", "tansu", "both"),
        default="kafka",
        help="Apache Kafka (a KRaft node from make kafka-jars), the demo's Tansu, or both",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every event count (1.0)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the service under py-spy; folded stacks go to results/logs/*.profile.txt",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="the service's LOG_LEVEL; INFO logs every job (costs CPU; logs in results/logs)",
    )
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else Sizes()
    if args.scale != 1.0:
        sizes = dataclasses.replace(
            sizes,
            cpu_events=int(sizes.cpu_events * args.scale),
            backlog_events=int(sizes.backlog_events * args.scale),
            quota_backlog_changes=int(sizes.quota_backlog_changes * args.scale),
            quota_backlog_customers=max(1, int(sizes.quota_backlog_customers * args.scale)),
            quota_routes_changes=int(sizes.quota_routes_changes * args.scale),
            quota_routes_customers=max(1, int(sizes.quota_routes_customers * args.scale)),
            quota_routes_orders=int(sizes.quota_routes_orders * args.scale),
            cpu_routes_records=int(sizes.cpu_routes_records * args.scale),
        )
    only = set(args.only or DEFAULT_REGIMES)
    logs = args.output.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    brokers = ("kafka", "tansu") if args.broker == "both" else (args.broker,)
    results: dict[str, Any] = {}
    for name in brokers:
        started = time.perf_counter()
        broker: KafkaNode | EmbeddedBroker = KafkaNode() if name == "kafka" else EmbeddedBroker()
        runs = run_regimes(broker, sizes, only, logs, args)
        runs["meta"] = {
            "broker": BROKERS[name],
            "smoke": args.smoke,
            "seconds": round(time.perf_counter() - started, 1),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        }
        results[name] = runs
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    for runs in results.values():
        print_table(runs)
    print(f"results: {args.output}")
    return 0


def run_regimes(
    broker: KafkaNode | EmbeddedBroker,
    sizes: Sizes,
    only: set[str],
    logs: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    simulator = SimulatorProcess(logs / "simulator.log", API_KEY, SECRET_KEY, seed=1)
    with broker, simulator:
        bench = Bench(
            broker, simulator, sizes, logs, profile=args.profile, log_level=args.log_level
        )
        broker.create_topics({"bench-cpu": PARTITIONS, "bench-backlog": PARTITIONS, "bench.dlq": 1})
        print("producing the regimes' events ...", flush=True)
        cpu: Counter[int] = Counter()
        if only & {"ceiling", "cpu"}:
            cpu = produce(
                broker.bootstrap, "bench-cpu", keyed(sizes.cpu_events, sizes.cpu_customers, 1, "c")
            )
        backlog: Counter[int] = Counter()
        if only & {"api", "backlog", "quota"}:
            backlog = produce(
                broker.bootstrap,
                "bench-backlog",
                keyed(sizes.backlog_events, sizes.backlog_customers, 2, "b"),
            )
        backlogs = []
        if "quota_backlog" in only:
            for seed, (choice, zipf_s) in enumerate((("uniform", None), ("zipf", ZIPF_S)), 3):
                drawn = Backlog.draw(
                    choice,
                    sizes.quota_backlog_changes,
                    sizes.quota_backlog_customers,
                    zipf_s,
                    seed,
                )
                topic = f"bench-quota-backlog-{choice}"
                broker.create_topics({topic: PARTITIONS})
                events = drawn.events(prefix=f"q{choice[0]}", seed=seed)
                backlogs.append((drawn, topic, produce(broker.bootstrap, topic, events)))
        if only & {"ceiling", "cpu"}:
            bench.ceiling("bench-cpu", sum(cpu.values()))
        if "cpu" in only:
            bench.cpu_bound("bench-cpu", cpu)
        if "backlog" in only:
            bench.backlog("bench-backlog", backlog)
        if "api" in only:
            for in_flight in (4, 16):
                bench.api_bound("bench-backlog", in_flight)
        if "light" in only:
            bench.light_load()
        if "quota" in only:
            bench.quota_bound("bench-backlog")
        for drawn, topic, produced in backlogs:
            bench.quota_backlog(drawn, topic, produced)
        if "rebalance" in only and isinstance(broker, KafkaNode):
            for protocol in GROUP_PROTOCOLS:
                bench.results[f"rebalance_{protocol}"] = rebalance.measure(bench, protocol)
        if "quota_routes" in only:
            bench.results["quota_routes"] = quota_routes(broker, bench)
        if "cpu_routes" in only:
            bench.results["cpu_routes"] = cpu_routes(broker, bench)
    return bench.results


def quota_routes(broker: KafkaNode | EmbeddedBroker, bench: Bench) -> dict[str, Any]:
    """Customers and orders backlogs, each on its topic, caught up by two instances."""
    sizes = bench.sizes
    drawn = routes.RoutesBacklog.draw(
        sizes.quota_routes_changes, sizes.quota_routes_customers, sizes.quota_routes_orders, 9
    )
    tag = random.getrandbits(32)
    topics = {"customers": f"bench-routes-customers-{tag}", "orders": f"bench-routes-orders-{tag}"}
    broker.create_topics({topic: PARTITIONS for topic in topics.values()})
    print("producing the quota_routes backlogs ...", flush=True)
    produced = {
        "customers": produce(broker.bootstrap, topics["customers"], drawn.customer_events()),
        "orders": produce(broker.bootstrap, topics["orders"], drawn.order_events()),
    }
    return routes.catch_up(bench, drawn, topics, produced, DOCUMENTED)


def cpu_routes(broker: KafkaNode | EmbeddedBroker, bench: Bench) -> dict[str, Any]:
    """The same number of orders, customers (15 changes each) and customers (one change each)."""
    count = bench.sizes.cpu_routes_records
    tag = random.getrandbits(32)
    events = {
        "orders": ("orders", routes.order_events(count, max(1, count // 15), 12)),
        "customers": ("customers", keyed(count, max(1, count // 15), 13, "cc")),
        "distinct_customers": ("customers", routes.distinct_customer_events(count, 14)),
    }
    print("producing the cpu_routes records ...", flush=True)
    workloads = {}
    for name, (operation, stream) in events.items():
        topic, size = f"bench-cpu-routes-{name}-{tag}", [0]
        broker.create_topics({topic: PARTITIONS})
        produced = produce(broker.bootstrap, topic, sized(stream, size))
        workloads[name] = (operation, topic, produced, size[0])
    return routes.fact_cost(bench, workloads)


if __name__ == "__main__":
    sys.exit(main())
