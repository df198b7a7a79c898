"""What the chaos run produces, and the manifest the checker reads back.

Every event has an expected outcome decided here, at generation time, from
nothing but the bytes we chose to write: ``deliver`` (a good change),
``api_reject`` (a good change the API will refuse: an email without "@"),
``skip`` (tombstones, deletes) or the dead-letter reason SPEC §3 promises.
The manifest is written from the producer's *delivery reports* (partition
and offset as the broker acknowledged them): what the checker expects of each
offset is known from the moment it was written.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from service.tools.samples import BAD_EVENTS, Event, change_event, customer_row

DELIVER = "deliver"
API_REJECT = "api_reject"
SKIP = "skip"

_SOURCE = {"connector": "postgresql", "db": "shop", "table": "customers"}

# Every kind of input SPEC §3 names that is not a plain good change.
BAD_KINDS: dict[str, tuple[bytes | None, str]] = {
    **BAD_EVENTS,
    "tombstone": (None, SKIP),
    "delete": (
        orjson.dumps({"before": {"customer_id": "x"}, "after": None, "op": "d", "ts_ms": 1}),
        SKIP,
    ),
    "schema-wrapped delete": (
        orjson.dumps(
            {
                "schema": {"type": "struct"},
                "payload": {"before": {"customer_id": "x"}, "after": None, "op": "d"},
            }
        ),
        SKIP,
    ),
    "schema-wrapped tombstone": (b'{"schema":{"type":"struct"},"payload":null}', SKIP),
    "array": (b"[1,2,3]", "invalid_event"),
    "update without after": (b'{"op":"u","before":null,"after":null}', "invalid_event"),
}


def _rejected_change(customer_id: str, version: int, rng: random.Random) -> bytes:
    row = customer_row(customer_id, version, rng)
    row["email"] = f"{customer_id}.at.example.com"  # no "@": the API says "Invalid email address"
    return orjson.dumps(
        {"before": None, "after": row, "op": "u", "ts_ms": 1_700_000_000_000, "source": _SOURCE}
    )


def plan(
    count: int,
    customers: int,
    *,
    seed: int,
    bad_fraction: float = 0.02,
    api_reject_fraction: float = 0.005,
    prefix: str = "c",
) -> Iterator[Event]:
    """``count`` events; versions count up per customer over good and API-rejected changes."""
    rng = random.Random(seed)
    kinds = list(BAD_KINDS.values())
    versions: dict[str, int] = {}
    bad_seen = 0
    for i in range(count):
        roll = rng.random()
        customer = f"{prefix}{rng.randrange(customers)}"
        if roll < bad_fraction:
            value, expected = kinds[bad_seen % len(kinds)]
            bad_seen += 1
            key = customer.encode() if expected == SKIP else f"bad-{i}".encode()
            yield Event(key, value, None, 0, expected)
            continue
        version = versions.get(customer, 0) + 1
        versions[customer] = version
        if roll < bad_fraction + api_reject_fraction:
            value = _rejected_change(customer, version, rng)
            yield Event(customer.encode(), value, customer, version, API_REJECT)
        else:
            value = change_event(customer, version, rng)
            yield Event(customer.encode(), value, customer, version, DELIVER)


@dataclass(frozen=True, slots=True)
class Planned:
    """A record of the mixed workload (``mixed.py``): its route, ``customers`` or a fact
    route, and a fact's id (``orderId``, ``transactionId``, or an event's sequence number)."""

    route: str
    event: Event
    fact: str | None = None


def digest(value: bytes | None) -> str | None:
    return None if value is None else hashlib.sha1(value, usedforsecurity=False).hexdigest()


def await_producer_ids(bootstrap: str, topic: str, timeout: float = 60.0) -> None:
    """Produce to the scratch ``topic`` until a delivery report carries an offset.

    On a fresh broker the first idempotent producer waits for its producer id while the
    transaction coordinator loads ("Coordinator load in progress"). Seen twice in the mixed
    runs: the records queued meanwhile for one partition were reported delivered, without an
    offset, and the topic never held them. After this, producer ids come at once.
    """
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    deadline = time.monotonic() + timeout
    offsets: list[int | None] = []
    while time.monotonic() < deadline:
        producer.produce(
            topic, value=b"warm-up", on_delivery=lambda _, m: offsets.append(m.offset())
        )
        producer.flush(max(0.1, deadline - time.monotonic()))
        if offsets and offsets[-1] is not None:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no delivery report with an offset from {topic} in {timeout:.0f} s")


class ManifestProducer:
    """Produces planned events at a steady rate; appends one manifest line per acknowledgement.

    A :class:`Planned` record of a fact route goes to its topic in ``fact_topics`` and its
    manifest line names the route (``r``) and the fact (``f``); the customers' lines are
    as they always were.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        manifest: Path,
        fact_topics: Mapping[str, str] | None = None,
    ) -> None:
        self.topic = topic
        self.fact_topics = fact_topics or {}
        self.manifest = manifest
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
        )
        self._file = manifest.open("ab")
        self.acknowledged = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def _delivered(self, planned: Event, route: str | None, fact: str | None) -> Any:
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))
                return
            line = {
                "p": msg.partition(),
                "o": msg.offset(),
                "k": planned.key.decode() if planned.key is not None else None,
                "c": planned.customer_id,
                "v": planned.version,
                "x": planned.expected,
                "h": digest(planned.value),
                "t": time.time(),
            }
            if route is not None:
                line["r"], line["f"] = route, fact
            with self._lock:
                self._file.write(orjson.dumps(line) + b"\n")
                self.acknowledged += 1

        return callback

    def _destination(self, record: Event | Planned) -> tuple[Event, str, str | None, str | None]:
        """The event, its topic, and for a fact its route and id."""
        if not isinstance(record, Planned):
            return record, self.topic, None, None
        if record.route not in self.fact_topics:  # the customers' route
            return record.event, self.topic, None, None
        return record.event, self.fact_topics[record.route], record.route, record.fact

    def produce(
        self,
        events: Iterable[Event | Planned],
        rate: float,
        stop: threading.Event | None = None,
    ) -> int:
        """Produce at ``rate`` events/s (0 = as fast as possible); returns how many were sent."""
        started = time.monotonic()
        sent = 0
        for record in events:
            if stop is not None and stop.is_set():
                break
            planned, topic, route, fact = self._destination(record)
            self._producer.produce(
                topic,
                key=planned.key,
                value=planned.value,
                on_delivery=self._delivered(planned, route, fact),
            )
            sent += 1
            self._producer.poll(0)
            if rate > 0:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        return sent

    def close(self, timeout: float = 60.0) -> None:
        remaining = self._producer.flush(timeout)
        self._file.flush()
        self._file.close()
        if remaining:
            self.errors.append(f"{remaining} events not acknowledged")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]
