"""Loading a topic with confluent-kafka for the benchmarks: random (incompressible) values, 8-byte keys,
partitions round robin, every delivery checked."""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from confluent_kafka import Producer

MIB = 1024 * 1024
KEY = struct.Struct(">Q")


def produce_values(
    bootstrap: str,
    topic: str,
    partitions: int,
    record_size: int,
    records: int,
    producer_config: dict[str, Any],
    timeout: float = 600,
) -> float:
    """Produce ``records`` values of ``record_size`` bytes (1,024 distinct ones, cycled) with record
    ``i`` keyed ``i`` in partition ``i % partitions``; returns the seconds from the first produce() until
    every record was acknowledged. Raises on any delivery error or when ``timeout`` runs out."""
    pool = os.urandom(record_size * 1025)
    values = [pool[i * record_size : (i + 1) * record_size] for i in range(1024)]
    errors: list[str] = []

    def on_delivery(err: object, _message: object) -> None:
        if err is not None and len(errors) < 5:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2 * MIB, **producer_config})
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    for index in range(records):
        while True:
            try:
                producer.produce(topic, values[index & 1023], KEY.pack(index), partition=index % partitions,
                                 on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:
                producer.poll(0.005)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"loading {topic}: still not done after {timeout:.0f} s") from None
        if index % 1024 == 0:
            producer.poll(0)
            if errors:
                break
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    seconds = time.perf_counter() - started
    if remaining or errors:
        raise RuntimeError(f"loading {topic}: {remaining} undelivered, errors {errors}")
    return seconds
