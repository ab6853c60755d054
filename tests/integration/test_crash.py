"""kill -9 while acks=all writes (fsync before ack) are in flight; torn tails are recovered on restart."""

from __future__ import annotations

import random
import threading

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from harness import create_topic, wait_until

TOPIC = "durable"
PARTITIONS = 2


class AckingProducer:
    """Produces unique values in a thread until stopped; records (partition, offset, value) of every ack."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        # No retries: every value is sent once, so an acknowledged value can exist only once.
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
                                   "enable.idempotence": False, "linger.ms": 2, "message.timeout.ms": 5000,
                                   "socket.timeout.ms": 3000})
        self._prefix = prefix
        self.acked: list[tuple[int, int, bytes]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, message) -> None:
        if err is None:
            with self._lock:
                self.acked.append((message.partition(), message.offset(), message.value()))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            value = f"{self._prefix}-{i}".encode()
            try:
                self._producer.produce(TOPIC, value=value, partition=i % PARTITIONS, on_delivery=self._on_delivery)
                i += 1
            except BufferError:
                pass
            self._producer.poll(0.001)

    def start(self) -> None:
        self._thread.start()

    def ack_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._producer.flush(15)


def _read_everything(bootstrap: str, expected_end: dict[int, int]) -> dict[int, list[tuple[int, bytes]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-audit", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        out: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}

        def caught_up() -> bool:
            for message in consumer.consume(num_messages=5000, timeout=0.2):
                if message.error() is None:
                    out[message.partition()].append((message.offset(), message.value()))
            return all((out[p][-1][0] + 1 if out[p] else 0) >= expected_end[p] for p in range(PARTITIONS))

        wait_until(caught_up, timeout=60, message="reading back every partition")
        return out
    finally:
        consumer.close()


def _high_watermarks(bootstrap: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-hw"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        consumer.close()


def _assert_acked_present(bootstrap: str, acked: list[tuple[int, int, bytes]]) -> dict[int, int]:
    ends = wait_until(lambda: _high_watermarks(bootstrap), timeout=30, retry_on=(KafkaException,),
                      message="high watermarks")
    stored = _read_everything(bootstrap, ends)
    by_offset = {p: dict(stored[p]) for p in stored}
    counts: dict[bytes, int] = {}
    for p in stored:
        offsets = [o for o, _ in stored[p]]
        assert offsets == sorted(set(offsets)), f"partition {p} has duplicate or unordered offsets"
        for _, value in stored[p]:
            counts[value] = counts.get(value, 0) + 1
    for partition, offset, value in acked:
        assert by_offset[partition].get(offset) == value, f"acked {value!r} missing at {partition}/{offset}"
        assert counts[value] == 1, f"acked {value!r} stored {counts[value]} times"
    return ends


def test_acknowledged_writes_survive_kill9(broker_factory) -> None:
    broker = broker_factory("crashy", config={"fsync_before_ack": True})
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    rng = random.Random()
    all_acked: list[tuple[int, int, bytes]] = []
    for round_number in range(3):
        producer = AckingProducer(broker.bootstrap, f"r{round_number}")
        producer.start()
        target = rng.randint(200, 1500)
        wait_until(lambda: producer.ack_count() >= target, timeout=60, message=f"{target} acks")  # noqa: B023
        broker.kill9()
        producer.stop()
        all_acked.extend(producer.acked)
        broker.restart()
        _assert_acked_present(broker.bootstrap, all_acked)
    assert len(all_acked) >= 600


def test_garbled_tail_is_truncated_on_restart(broker_factory) -> None:
    broker = broker_factory("garbled")
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    acked: list[tuple[int, int, bytes]] = []

    def on_delivery(err, message) -> None:
        assert err is None, err
        acked.append((message.partition(), message.offset(), message.value()))

    for i in range(500):
        producer.produce(TOPIC, value=b"v%d" % i, partition=i % PARTITIONS, on_delivery=on_delivery)
    assert producer.flush(20) == 0
    broker.kill9()

    segment = sorted((broker.data_dir / f"{TOPIC}-0").glob("*.log"))[-1]
    clean_size = segment.stat().st_size
    with open(segment, "ab") as handle:  # half a batch header, then noise
        handle.write(b"\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x80" + bytes(range(200)))
    broker.restart()
    assert segment.stat().st_size == clean_size
    assert "truncat" in broker.log_text().lower()
    ends = _assert_acked_present(broker.bootstrap, acked)
    assert ends == {0: 250, 1: 250}

    # New writes continue at the next offset.
    delivered = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce(TOPIC, value=b"after", partition=0, on_delivery=lambda e, m: delivered.append((e, m.offset())))
    assert producer.flush(20) == 0
    assert delivered == [(None, 250)]
