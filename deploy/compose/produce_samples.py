"""Produce realistic CDC events (``service.tools.samples``) to a real broker, for the compose stack.

Runs inside the customer-sync image (it has confluent-kafka and the service package):
``python produce_samples.py``. Settings come from the environment:
``KAFKA_BOOTSTRAP_SERVERS``, ``TOPIC`` (customer-changes), ``EVENTS`` (20000),
``CUSTOMERS`` (3000), ``BAD_FRACTION`` (0.01, dead-lettered as invalid), ``SEED`` (7).
Exits 0 once every event is acknowledged and prints how many were, 1 otherwise.
"""

from __future__ import annotations

import os
import sys

from confluent_kafka import Producer

from service.tools.samples import generate


def main() -> int:
    env = os.environ
    topic = env.get("TOPIC", "customer-changes")
    events = generate(
        int(env.get("EVENTS", "20000")),
        int(env.get("CUSTOMERS", "3000")),
        seed=int(env.get("SEED", "7")),
        bad_fraction=float(env.get("BAD_FRACTION", "0.01")),
    )
    producer = Producer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    acknowledged = 0
    failed = 0

    def delivered(err: object, _msg: object) -> None:
        nonlocal acknowledged, failed
        if err is None:
            acknowledged += 1
        else:
            failed += 1

    for event in events:
        while True:
            try:
                producer.produce(topic, key=event.key, value=event.value, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    print(f"produced {acknowledged} events to {topic}, {failed} failed", flush=True)
    return 0 if failed == 0 and len(producer) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
