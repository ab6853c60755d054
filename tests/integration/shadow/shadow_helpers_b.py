"""Helpers for the sync, read-only/bad-input and CLI shadow-link tests (the link helpers are in link_api.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from harness import BrokerProcess, wait_until
from link_api import admin_call, link_status

TIMEOUT = 20.0
REPO = Path(__file__).resolve().parents[3]


def admin(broker: BrokerProcess) -> AdminClient:
    """A new AdminClient. Keep a reference until its futures are resolved: a freed client fails them."""
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def topic_partitions(broker: BrokerProcess) -> dict[str, int]:
    """{topic: partition count} of every topic (Metadata for all topics: never auto-creates one)."""
    client = admin(broker)
    metadata = client.list_topics(timeout=TIMEOUT)
    return {name: len(t.partitions) for name, t in metadata.topics.items()
            if t.error is None and not name.startswith("__")}


def produce(broker: BrokerProcess, topic: str, count: int, partitions: int | None = None, prefix: str = "v",
            **config: Any) -> None:
    """Write ``count`` records (acks=all), round-robin over ``partitions`` when given, and wait for them."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, **config})
    errors: list[Any] = []
    for i in range(count):
        kwargs = {} if partitions is None else {"partition": i % partitions}
        producer.produce(topic, key=b"k%d" % i, value=b"%s%d" % (prefix.encode(), i),
                         on_delivery=lambda err, _msg: err and errors.append(err), **kwargs)
    assert producer.flush(TIMEOUT) == 0, "records still in flight"
    assert not errors, errors[:3]


def high_watermarks(broker: BrokerProcess, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "hw-probe", "enable.auto.commit": False})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


def wait_replicated(source: BrokerProcess, shadow: BrokerProcess, topic: str, partitions: int,
                    timeout: float = TIMEOUT) -> list[int]:
    """Wait until the shadow's high watermarks of ``topic`` equal the source's (asked of both brokers now).

    Unlike the status's lag, which compares with the source high watermark of the latest Fetch response,
    this cannot pass on a stale view right after records were written to the source.
    """
    def equal() -> list[int] | None:
        wanted = high_watermarks(source, topic, partitions)
        return wanted if high_watermarks(shadow, topic, partitions) == wanted else None

    return wait_until(equal, timeout=timeout, interval=0.1,
                      message=lambda: f"{topic} replicated: source {high_watermarks(source, topic, partitions)}, "
                                      f"shadow {high_watermarks(shadow, topic, partitions)}")


def consume_all(broker: BrokerProcess, topic: str, expected: int, group: str = "reader",
                timeout: float = TIMEOUT) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Subscribe with ``group`` from the earliest offset and return (partition, offset, key, value) of
    ``expected`` records, sorted."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    try:
        consumer.subscribe([topic])

        def enough() -> bool:
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is not None:
                    raise KafkaException(message.error())
                out.append((message.partition(), message.offset(), message.key(), message.value()))
            return len(out) >= expected

        wait_until(enough, timeout=timeout, interval=0, message=lambda: f"{expected} records of {topic}, got {len(out)}")
    finally:
        consumer.close()
    return sorted(out)


def topic_config(broker: BrokerProcess, topic: str) -> dict[str, str | None]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    client = admin(broker)  # held until the result is in: a freed client fails its futures
    entries = client.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    return {name: entry.value for name, entry in entries.items()}


def topic_states(shadow: BrokerProcess, link: str = "dr") -> dict[str, tuple[str, str]]:
    """{topic: (state, reason)} of the link's shadow topics, from the status document."""
    return {t["topic"]: (t["state"], t["reason"]) for t in link_status(shadow, link)["topics"]}


def link_names(shadow: BrokerProcess) -> list[str]:
    status, body = admin_call(shadow, "GET", "/v1/shadow-links")
    assert status == 200, body
    return [link["name"] for link in body["links"]]


def run_cli(shadow: BrokerProcess, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``python -m umbra shadow --admin-url <shadow> ARGS``, as an operator runs it."""
    command = [sys.executable, "-m", "umbra", "shadow", "--admin-url", shadow.admin_url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
