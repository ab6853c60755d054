"""The Kafka clients of `make demo` (umbra/demo.py), on confluent-kafka (librdkafka, installed by `make install`):
a producer writing at a steady rate, a consumer group that commits what it reads, and the reads and writes the
demo checks with. Each keeps what it did, so the demo can compare what was read with what was acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic
except ImportError:  # pragma: no cover - make install installs it
    raise SystemExit("umbra demo: its clients are confluent-kafka (requirements-dev.txt); `make demo` installs "
                     "it, or: .venv/bin/pip install -r requirements-dev.txt") from None

TOPIC = "orders"
PARTITIONS = 6
GROUP = "billing"
T = TypeVar("T")
Offsets = dict[int, int]
Record = tuple[int, int, bytes]  # partition, offset, value


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; DemoError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, KeyError, KafkaException) as exc:  # a broker not answering yet, or mid-change
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


_QUIET = logging.getLogger("umbra.demo.librdkafka")  # librdkafka's connection chatter is not the story
_QUIET.setLevel(logging.CRITICAL + 1)


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "logger": _QUIET, "log.connection.close": False, **extra}


def value_of(i: int) -> bytes:
    return f"order {i:07d}: customer-{i % 97:02d} amount={(i * 37) % 1000}.{i % 100:02d}".encode()


def create_topic(bootstrap: str, replication_factor: int) -> None:
    admin = AdminClient(client_config(bootstrap))
    topic = NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=replication_factor)
    for future in admin.create_topics([topic]).values():
        future.result(timeout=30)


def replica_sets(bootstrap: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Each partition of TOPIC: (leader, replicas, in-sync replicas), from Metadata."""
    topic = AdminClient(client_config(bootstrap)).list_topics(topic=TOPIC, timeout=10).topics[TOPIC]
    if topic.error is not None:
        raise ValueError(f"{TOPIC}: {topic.error}")
    return {p: (m.leader, list(m.replicas), list(m.isrs)) for p, m in sorted(topic.partitions.items())}


class LiveProducer(threading.Thread):
    """Writes record i to partition i % PARTITIONS at ``rate`` records/s (acks=all, idempotent) until stopped;
    ``acked`` maps each acknowledged (partition, offset) to its value."""

    def __init__(self, bootstrap: str, rate: int) -> None:
        super().__init__(name="producer", daemon=True)
        self.bootstrap = bootstrap
        self.rate = rate
        self.stopping = threading.Event()
        self.acked: dict[tuple[int, int], bytes] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failures.append(str(err))
            else:
                self.acked[(msg.partition() or 0, msg.offset() or 0)] = msg.value() or b""

        try:
            producer = Producer(client_config(self.bootstrap, **{"acks": "all", "enable.idempotence": True,
                                                                 "linger.ms": 5, "compression.type": "lz4"}))
            started, sent = time.monotonic(), 0
            while not self.stopping.is_set():
                while sent < (time.monotonic() - started) * self.rate:
                    producer.produce(TOPIC, key=b"customer-%02d" % (sent % 97), value=value_of(sent),
                                     partition=sent % PARTITIONS, on_delivery=delivered)
                    sent += 1
                producer.poll(0.05)  # serves delivery reports; also the producer's pace
            if producer.flush(30) != 0:
                self.failures.append("records still unacknowledged 30 s after the producer stopped")
        except Exception as exc:  # the demo reports it
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


class BillingService(threading.Thread):
    """Consumer group GROUP: reads at ``rate`` records/s and commits synchronously after every batch, so what it
    has read is exactly what it has committed."""

    def __init__(self, bootstrap: str, rate: int) -> None:
        super().__init__(name="billing", daemon=True)
        self.bootstrap = bootstrap
        self.rate = rate
        self.stopping = threading.Event()
        self.read: list[Record] = []
        self.committed: Offsets = {}
        self.failures: list[str] = []

    def run(self) -> None:
        try:
            consumer = Consumer(client_config(self.bootstrap, **{"group.id": GROUP, "enable.auto.commit": False,
                                                                 "auto.offset.reset": "earliest"}))
            consumer.subscribe([TOPIC])
            started = time.monotonic()
            try:
                while not self.stopping.is_set():
                    batch = [m for m in consumer.consume(max(1, self.rate // 5), 0.5) if m.error() is None]
                    if batch:
                        self.read += [(m.partition() or 0, m.offset() or 0, m.value() or b"") for m in batch]
                        for tp in consumer.commit(asynchronous=False) or []:
                            self.committed[tp.partition] = tp.offset
                    self.stopping.wait(started + len(self.read) / self.rate - time.monotonic())  # the pace
            finally:
                consumer.close()
        except Exception as exc:  # the demo reports it
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


def committed_offsets(bootstrap: str) -> Offsets:
    """GROUP's committed offsets (OffsetFetch, without joining the group); OFFSET_INVALID (-1001) where none."""
    consumer = Consumer(client_config(bootstrap, **{"group.id": GROUP}))
    try:
        found = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def resume_group(bootstrap: str, start: Offsets, end: Offsets, timeout: float) -> list[Record]:
    """Join GROUP on ``bootstrap`` and read until every partition p is at ``end[p]`` (from its committed offset,
    ``start[p]``, where it should resume); commit and leave."""
    consumer = Consumer(client_config(bootstrap, **{"group.id": GROUP, "enable.auto.commit": False,
                                                    "auto.offset.reset": "earliest"}))
    consumer.subscribe([TOPIC])
    read: list[Record] = []
    position = dict(start)

    def done() -> bool:
        for m in consumer.consume(500, 0.5):
            if m.error() is None:
                p, offset = m.partition() or 0, m.offset() or 0
                read.append((p, offset, m.value() or b""))
                position[p] = offset + 1
                if position[p] >= end[p]:
                    consumer.pause([TopicPartition(TOPIC, p)])
        return all(position[p] >= end[p] for p in end)

    try:
        wait_for(f"group {GROUP} to read up to {end}", done, timeout, interval=0)
        if read:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return read


def produce_one(bootstrap: str, value: bytes, partition: int) -> tuple[int | None, str | None]:
    """One record (acks=all, no retries): (its offset, None), or (None, the error)."""
    result: list[tuple[int | None, str | None]] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        result.append((None, str(err.str())) if err is not None else (msg.offset(), None))

    producer = Producer(client_config(bootstrap, **{"acks": "all", "message.timeout.ms": 15000, "retries": 0}))
    producer.produce(TOPIC, value=value, partition=partition, on_delivery=delivered)
    producer.flush(30)
    return result[0] if result else (None, "no delivery report within 30 s")


def check_exactly_once(acked: dict[tuple[int, int], bytes], on_source: list[Record],
                       on_shadow: list[Record]) -> None:
    """What the group read, on both clusters, is exactly what the producer had acknowledged: each record once,
    with its value at its offset. DemoError saying what differs otherwise."""
    read = on_source + on_shadow
    seen = {(p, o) for p, o, _ in read}
    twice = len(read) - len(seen)
    missing = set(acked) - seen
    unknown = seen - set(acked)
    wrong = [(p, o) for p, o, v in read if (p, o) in acked and acked[(p, o)] != v]
    if twice or missing or unknown or wrong:
        raise DemoError(f"the group read {len(read):,} records for {len(acked):,} acknowledged: {twice} read twice, "
                        f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), {len(unknown)} never acknowledged, "
                        f"{len(wrong)} with another value")
