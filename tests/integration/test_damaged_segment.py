"""A damaged old segment found at start-up: its partition goes offline with a clear log line and nothing is
deleted; the broker and every other partition serve; once the file is restored, `umbra storage recover`
brings it back with every record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from harness import create_topic, http_get
from test_disk_full import KAFKA_STORAGE_ERROR, fetch_error, read_all, storage_cli


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "batch.num.messages": 4})
    for i in range(count):
        producer.produce(topic, value=b"%05d" % i + b"." * 200, partition=0)
        producer.poll(0)
    assert producer.flush(30) == 0


def segments(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.log"))}


def test_a_damaged_old_segment_is_offline_not_deleted(broker_factory: Any) -> None:
    broker = broker_factory("broker", config={"log_segment_bytes": 4096})
    create_topic(broker.bootstrap, "precious", partitions=1)
    create_topic(broker.bootstrap, "other", partitions=1)
    produce(broker.bootstrap, "precious", 200)
    produce(broker.bootstrap, "other", 10)
    broker.stop()

    directory = broker.data_dir / "precious-0"
    before = segments(directory)
    assert len(before) >= 4
    victim = directory / sorted(before)[1]
    damaged = bytearray(before[victim.name])
    second_batch = 12 + int.from_bytes(damaged[8:12], "big")
    damaged[second_batch + 16] = 9  # the magic byte of its second batch: a bad header, not a torn tail
    victim.write_bytes(bytes(damaged))

    broker.start()
    assert "precious-0 is offline" in broker.log_text() and "no data was deleted" in broker.log_text()
    assert {name: len(data) for name, data in segments(directory).items()} == \
        {name: len(data) for name, data in before.items()}
    assert fetch_error(broker, "precious", 0) == KAFKA_STORAGE_ERROR
    status = storage_cli(broker, "status")
    assert status.returncode == 0 and "precious-0: " in status.stdout and "damaged" in status.stdout, status
    _, metrics = http_get(broker.admin_url + "/metrics")
    assert b"umbra_offline_partitions 1.0" in metrics
    produce(broker.bootstrap, "other", 10)  # the rest of the broker serves
    assert len(read_all(broker.bootstrap, "other", 0, 20)) == 20

    still = storage_cli(broker, "recover")  # nothing repaired yet: it stays offline, and says why
    assert still.returncode != 0 and "precious-0" in still.stdout + still.stderr, still
    assert segments(directory)[victim.name] == bytes(damaged)

    victim.write_bytes(before[victim.name])  # the operator restores the file
    recovered = storage_cli(broker, "recover")
    assert recovered.returncode == 0 and "online again: precious-0" in recovered.stdout, recovered
    records = read_all(broker.bootstrap, "precious", 0, 200)
    assert [value[:5] for _, value in records if value] == [b"%05d" % i for i in range(200)]
