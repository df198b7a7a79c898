"""Two routes under one key: a customers backlog and an orders backlog caught up together.

``quota_routes``: two instances in one group serve a routes file of two routes, customers and
orders, each from its own topic (6 partitions each, keyed by customer), against the simulator
enforcing Gameball's documented limits (30 requests/s, 360 per 30 s, 429 without
``Retry-After``) with 2-second jobs, as the quota regimes do. Both topics hold a backlog
before the services start: changes of customers chosen uniformly (``backlogs.py``), and
orders of those same customers, each order its own ``orderId``. The simulator answers
"Customer not found" (7000) for an order whose customer no customers job has applied yet, as
Gameball does; the service retries such an order (``CUSTOMER_WAIT_SECONDS``).

Reported: records delivered per operation (applied at the simulator, refused as duplicates,
refused as customer not found), requests per operation and kind (the simulator's
``requests_by_operation``), the catch-up (both processes started → every offset of both
topics committed, and when each topic's were), requests/s over it against the key's 12, the
budget each instance believed it had, and 429s (the one budget is the group's, shared by both
routes: 0 means it was never exceeded).

``cpu_routes``: what a fact route costs per record, by the CPU-bound regime's method
(``Bench.run_to_commit``: one instance, instant jobs, no limits, CPU time of the service from
the first record consumed to the last offset committed, divided by the records): the same
number of records on a one-route file of orders, of customers as the CPU-bound regime draws
them (15 changes per customer, coalesced), and of customers that change once each (every
record an item, as every order is). The simulator knows every customer there
(``all_customers_known``): no order waits for a profile.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from benchmarks.backlogs import Backlog
from service.gameball.simulator import DOCUMENTED_LIMITS
from service.tools.samples import change_event

SAMPLE_SECONDS = 1.0  # the timeline's resolution
PLACED_FROM_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z: every order is in the past
ORDERS_MAPPING = """\
    mapping:
      customerId: customer_id
      orderId: id
      orderDate: {column: created_at, type: timestamp-micros}
      totalPaid: {column: total, type: decimal}
      totalDiscount: {column: discount, type: decimal}
"""


def routes_file(path: Path, customers: str | None, orders: str | None) -> Path:
    """A routes file of a customers route on ``customers`` and an orders route on ``orders``
    (either left out when ``None``), in the format of ``docs/routes.md``."""
    text = "routes:\n"
    if customers is not None:
        text += f"  - {{name: customers, operation: customers, topics: [{customers}]}}\n"
    if orders is not None:
        text += f"  - name: orders\n    operation: orders\n    topics: [{orders}]\n"
        text += ORDERS_MAPPING
    path.write_text(text)
    return path


def order_event(order: int, customer_id: str, rng: random.Random) -> bytes:
    """A row of a shop's ``orders`` table as Debezium 3.6 writes its insert (no schema block;
    ``decimal.handling.mode=string``, a ``timestamp`` as microseconds since 1970)."""
    placed_ms = PLACED_FROM_MS + order * 10
    cents = rng.randint(100, 50_000)
    row = {
        "id": 1_000_000 + order,
        "customer_id": customer_id,
        "created_at": placed_ms * 1000,
        "total": f"{cents // 100}.{cents % 100:02d}",
        "discount": "0.00" if rng.random() < 0.8 else f"{rng.randint(1, 20)}.00",
        "currency": "EGP",
        "status": "paid",
        "store_code": f"store-{rng.randint(1, 40)}",
    }
    return orjson.dumps(
        {
            "before": None,
            "after": row,
            "source": {
                "version": "3.6.1.Final",
                "connector": "postgresql",
                "name": "shop",
                "ts_ms": placed_ms,
                "snapshot": "false",
                "db": "shop",
                "sequence": f'["{order * 512}","{order * 512 + 128}"]',
                "ts_us": placed_ms * 1000,
                "ts_ns": placed_ms * 1_000_000,
                "schema": "public",
                "table": "orders",
                "txId": 9000 + order,
                "lsn": order * 512 + 128,
                "xmin": None,
            },
            "transaction": None,
            "op": "c",
            "ts_ms": placed_ms + 1,
        }
    )


@dataclass(frozen=True)
class RoutesBacklog:
    """A customers backlog (uniform, ``backlogs.Backlog``) and orders of the same customers.

    Every order names a customer that has at least one change in the customers backlog, so
    each order can be applied once its customer's job has run.
    """

    customers: Backlog
    orders: list[int]  # customer index of each order, in topic order
    prefix: str

    @classmethod
    def draw(cls, changes: int, customers: int, orders: int, seed: int) -> RoutesBacklog:
        backlog = Backlog.draw("routes", changes, customers, None, seed)
        present = sorted(set(backlog.choices))
        rng = random.Random(seed + 1)
        return cls(backlog, [rng.choice(present) for _ in range(orders)], "rq")

    def customer_events(self) -> Iterator[tuple[bytes, bytes]]:
        return self.customers.events(prefix=self.prefix, seed=7)

    def order_events(self) -> Iterator[tuple[bytes, bytes]]:
        rng = random.Random(8)
        for order, customer in enumerate(self.orders):
            key = f"{self.prefix}{customer}"
            yield key.encode(), order_event(order, key, rng)


def order_events(orders: int, customers: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """``orders`` orders of ``customers`` customers chosen uniformly (``cpu_routes``)."""
    rng = random.Random(seed)
    for order in range(orders):
        key = f"co{rng.randrange(customers)}"
        yield key.encode(), order_event(order, key, rng)


def catch_up(
    bench: Any,
    backlog: RoutesBacklog,
    topics: dict[str, str],
    produced: dict[str, Counter[int]],
    limits: dict[str, str],
) -> dict[str, Any]:
    """Two instances, both routes, the documented limits: from start to every offset committed.

    ``bench`` is a ``Bench``; ``topics`` and ``produced`` are per operation; ``limits`` is the
    services' budget (the documented limits).
    """
    bench.configure(
        job_duration_seconds=bench.sizes.quota_job_duration,
        limit_retry_after=False,  # as Gameball documents its 429s
        **DOCUMENTED_LIMITS,
    )
    group = f"quota-routes-{random.getrandbits(32)}"
    routes = routes_file(bench.logs / f"{group}.routes.yaml", topics["customers"], topics["orders"])
    settings = {"MAX_JOBS_IN_FLIGHT": "16", "ROUTES_FILE": str(routes), **limits}
    services = [bench.service("", group, name=str(i), **settings) for i in (1, 2)]
    done = {
        operation: bench.committed(group, topic, produced[operation])
        for operation, topic in topics.items()
    }
    caught_up: dict[str, float] = {}
    started = time.perf_counter()
    first_consumed: float | None = None
    timeline: list[dict[str, Any]] = []
    next_sample = started
    with services[0] as one, services[1] as two:
        while len(caught_up) < len(done):
            now = time.perf_counter()
            for service in (one, two):
                if service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(f"an instance exited early; see {service.log}")
            if now - started > bench.sizes.quota_backlog_timeout:
                raise RuntimeError(f"{group} not caught up in {now - started:.0f} s: {caught_up}")
            consumed = "customer_sync_records_consumed_total"
            if first_consumed is None and any(s.total(consumed) for s in (one, two)):
                first_consumed = now
            for operation, check in done.items():
                if operation not in caught_up and check():
                    caught_up[operation] = now
            if now >= next_sample:
                next_sample = now + SAMPLE_SECONDS
                timeline.append(_sample(round(now - started, 1), bench.simulator, (one, two)))
            time.sleep(0.2)
        finished = time.perf_counter()
        samples = [one.samples(), two.samples()]
        peaks = [round(one.peak_rss_mb(), 1), round(two.peak_rss_mb(), 1)]
        assignment = _assignment(bench.broker.bootstrap, group, topics)
    stats = bench.simulator.stats()
    seconds = finished - started
    busiest = _busiest(timeline, DOCUMENTED_LIMITS["limit_window_seconds"])
    by_operation = stats["requests_by_operation"]
    by_kind = {kind: sum(codes.values()) for kind, codes in stats["requests"].items()}
    requests = sum(sum(codes.values()) for codes in stats["requests"].values())
    orders = stats["operations"]["orders"]
    jobs = sum(
        sum(s.get(f'customer_sync_jobs_finished_total{{status="{status}"}}', 0) for s in samples)
        for status in ("completed", "failed", "stopped", "timed_out")
    )

    def service_total(metric: str) -> int:
        return int(sum(v for s in samples for k, v in s.items() if k.startswith(metric)))

    return {
        "instances": 2,
        "job_duration_s": bench.sizes.quota_job_duration,
        "customer_changes": backlog.customers.changes,
        "distinct_customers": backlog.customers.distinct_customers,
        "orders": len(backlog.orders),
        "catch_up_s": round(seconds, 1),
        "first_consumed_s": round((first_consumed or finished) - started, 1),
        "caught_up_s": {op: round(at - started, 1) for op, at in caught_up.items()},
        "delivered": {
            "customers": {
                "records_sent": stats["records_received"]
                - sum(op["records_received"] for op in stats["operations"].values()),
                "applied": stats["records_applied"],
            },
            "orders": {
                "records_sent": orders["records_received"],
                "applied": orders["applied"],
                "duplicates": orders["duplicates"],
                "customer_not_found": orders["customer_not_found"],
                "double_applied": orders["double_applied"],
            },
        },
        "jobs_by_operation": {
            "customers": stats["jobs_created"]
            - sum(op["jobs_created"] for op in stats["operations"].values()),
            "orders": orders["jobs_created"],
        },
        "jobs_finished": int(jobs),
        "requests": requests,
        "requests_by_operation": by_operation,
        "requests_by_kind": by_kind,
        # Requests that name no job (each instance checks its credentials: a status read of a
        # job that does not exist, at start and now and then).
        "requests_of_no_operation": {
            kind: n - sum(kinds.get(kind, 0) for kinds in by_operation.values())
            for kind, n in by_kind.items()
            if n > sum(kinds.get(kind, 0) for kinds in by_operation.values())
        },
        "requests_per_s": round(requests / seconds, 2),
        "quota_requests_per_s": (
            DOCUMENTED_LIMITS["limit_per_window"] / DOCUMENTED_LIMITS["limit_window_seconds"]
        ),
        "busiest_window_requests": busiest,  # of the key's 360 a 30 s window, from the timeline
        "rate_limited": stats["rate_limited"],
        "budget_requests_per_s": [
            round(s.get("customer_sync_api_budget_requests_per_second", 0), 3) for s in samples
        ],
        "dead_lettered": service_total("customer_sync_dead_letter_records_total"),
        "already_applied": service_total("customer_sync_records_already_applied_total"),
        "peak_rss_mb": peaks,
        "assignment_at_the_end": assignment,
        "timeline": timeline,
    }


def _sample(at: float, simulator: Any, services: tuple[Any, ...]) -> dict[str, Any]:
    """The simulator's requests and applied items per operation, each instance's buffer."""
    stats = simulator.stats()
    gauges = [service.samples() for service in services]
    return {
        "t": at,
        "requests": {op: sum(k.values()) for op, k in stats["requests_by_operation"].items()},
        "applied": {
            "customers": stats["records_applied"],
            "orders": stats["operations"]["orders"]["applied"],
        },
        "not_found": stats["operations"]["orders"]["customer_not_found"],
        "buffered": [int(g.get("customer_sync_buffered_records", 0)) for g in gauges],
        "paused": [int(g.get("customer_sync_consumer_paused", 0)) for g in gauges],
        "compacting": [int(g.get("customer_sync_compaction_active", 0)) for g in gauges],
    }


def _assignment(bootstrap: str, group: str, topics: dict[str, str]) -> list[dict[str, list[int]]]:
    """Each member's partitions per operation, as the group stands: the "customers first" rule
    holds within an instance, so where a customer's two partitions live matters."""
    operation = {topic: op for op, topic in topics.items()}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    members = []
    for member in described.members:
        owned: dict[str, list[int]] = {op: [] for op in topics}
        for tp in member.assignment.topic_partitions:
            owned[operation[tp.topic]].append(tp.partition)
        members.append({op: sorted(parts) for op, parts in owned.items()})
    return sorted(members, key=lambda m: sorted(m.items()))


def _busiest(timeline: list[dict[str, Any]], window: float) -> int:
    """The most requests (all operations) the samples saw within ``window`` seconds."""
    totals = [(s["t"], sum(s["requests"].values())) for s in timeline]
    return max(
        (n - m for t, n in totals for u, m in totals if t - window <= u <= t),
        default=0,
    )


def distinct_customer_events(count: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """``count`` customers that change once each: every record an item (``cpu_routes``)."""
    rng = random.Random(seed)
    for n in range(count):
        key = f"cd{n}"
        yield key.encode(), change_event(key, 1, rng)


def fact_cost(
    bench: Any, workloads: dict[str, tuple[str, str, Counter[int], int]]
) -> dict[str, Any]:
    """CPU per record of one instance on a one-route file, per workload (``bench`` is a Bench).

    ``workloads``: name → (operation, topic, records produced per partition, bytes produced).
    """
    bench.configure(job_duration_seconds=0.0, all_customers_known=True)
    runs: dict[str, Any] = {}
    for name, (operation, topic, produced, size) in workloads.items():
        customers = topic if operation == "customers" else None
        orders = topic if operation == "orders" else None
        # The run's name is the group's first word: --profile writes <name>.profile.txt.
        routes = routes_file(bench.logs / f"cpu_routes_{name}.yaml", customers, orders)
        run = bench.run_to_commit(f"cpu_routes_{name}", topic, produced, ROUTES_FILE=str(routes))
        run["operation"] = operation
        run["bytes_per_record"] = round(size / max(1, sum(produced.values())))
        runs[name] = run
    stats = bench.simulator.stats()
    runs["orders_over_customers"] = round(
        runs["orders"]["cpu_us_per_record"] / runs["customers"]["cpu_us_per_record"], 2
    )
    runs["orders_over_distinct_customers"] = round(
        runs["orders"]["cpu_us_per_record"] / runs["distinct_customers"]["cpu_us_per_record"], 2
    )
    runs["orders_applied"] = stats["operations"]["orders"]["applied"]
    return runs
