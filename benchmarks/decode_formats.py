"""The decoder's CPU per record: the bench's Debezium-shaped changes as JSON and as Avro.

The same changes (``service.tools.samples.change_event``, the bench's records: a twenty-column
``customers`` row with Debezium's logical types) are decoded three ways on one process, one
after the other: JSON with the converter's schema block (what the bench sends 30 % of the
time), JSON without it, and Avro in the Confluent wire format through confluent-kafka's
``AvroDeserializer`` (schemas from a registry stand-in, fetched once). CPU time is
``time.process_time``, best of ``--rounds``.

    python -m benchmarks.decode_formats [--records 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import orjson

from service.delivery.avro import AvroReader
from service.delivery.decoding import Customer, Decoder
from service.tools.samples import SCHEMA, change_event
from tests.unit.delivery.test_avro import Registry, avro_type, avro_value, wire


def records(count: int) -> tuple[list[bytes], list[bytes], list[bytes]]:
    rng = random.Random(7)
    with_schema: list[bytes] = []
    plain: list[bytes] = []
    avro: list[bytes] = []
    registry = Registry()
    schema = avro_type(SCHEMA, set())
    head = b'{"schema":' + orjson.dumps(SCHEMA) + b',"payload":'
    for index in range(count):
        value = change_event(f"c{index % 5000}", index + 2, rng)
        envelope = orjson.loads(value)
        payload = envelope.get("payload", envelope)
        plain.append(orjson.dumps(payload))
        with_schema.append(head + orjson.dumps(payload) + b"}")
        avro.append(wire(registry, schema, avro_value(SCHEMA, payload)))
    return with_schema, plain, avro


def cpu_per_record(decode: Callable[[bytes], object], values: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for value in values:
            decode(value)
        best = min(best, time.process_time() - start)
    return best / len(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with_schema, plain, avro = records(args.records)
    registry = Registry()
    registry.register(avro_type(SCHEMA, set()))  # id 1, the one the records were written with
    decoder = Decoder(avro=AvroReader(registry))
    for sample in (with_schema[0], plain[0], avro[0]):
        assert isinstance(decoder.decode(sample), Customer)
    print(f"records: {args.records}, best of {args.rounds} rounds, CPU µs per record")
    for name, values in (("json+schema", with_schema), ("json", plain), ("avro", avro)):
        print(f"  {name:12} {cpu_per_record(decoder.decode, values, args.rounds):7.2f}")


if __name__ == "__main__":
    main()
