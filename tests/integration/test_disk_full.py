"""A disk that fills up: the partition on it goes offline with KAFKA_STORAGE_ERROR, nothing acknowledged is lost,
no offset is written twice, every other partition keeps serving, and it comes back once space is freed.

One partition's directory is a link into a small tmpfs (mounted by the test, as root), nearly filled with a
filler file; the rest of the data dir is on the ordinary disk. Freeing space means deleting the filler, then
`umbra storage recover`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from harness import BrokerProcess, create_topic, http_get, wait_until
from link_api import admin_call, create_link, link_spec, link_status
from rawclient import RawConnection

from umbra.records.batch import iter_batch_headers

FETCH, KAFKA_STORAGE_ERROR = 1, 56
TMPFS_BYTES = 1 << 20
FREE_BYTES = 160 << 10  # what the filler leaves


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A nearly full 1 MiB tmpfs at ``path``; skips the test where it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        stats = os.statvfs(path)
        free = stats.f_bavail * stats.f_frsize
        (path / "filler").write_bytes(b"\0" * (free - FREE_BYTES))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_space(disk: Path) -> None:
    (disk / "filler").unlink()


def on_disk(broker: BrokerProcess, topic: str, partition: int, disk: Path) -> None:
    """Put the partition's directory on ``disk`` before the broker creates it."""
    broker.data_dir.mkdir(parents=True, exist_ok=True)
    target = disk / f"{topic}-{partition}"
    target.mkdir()
    (broker.data_dir / f"{topic}-{partition}").symlink_to(target, target_is_directory=True)


def base_offsets_on_disk(directory: Path) -> list[int]:
    offsets = []
    for segment in sorted(directory.glob("*.log")):
        offsets += [h.base_offset for h in iter_batch_headers(segment.read_bytes())]
    return offsets


def fetch_error(broker: BrokerProcess, topic: str, partition: int) -> int:
    from kafka.protocol.consumer import FetchRequest

    with RawConnection(broker.host, broker.port) as conn:
        response = conn.request(FETCH, 12, replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                                isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                                forgotten_topics_data=[], topics=[FetchRequest.FetchTopic(topic=topic, partitions=[
                                    FetchRequest.FetchTopic.FetchPartition(
                                        partition=partition, current_leader_epoch=-1, fetch_offset=0,
                                        last_fetched_epoch=-1, log_start_offset=-1,
                                        partition_max_bytes=1 << 20)])])
    return int(response.responses[0].partitions[0].error_code)


def read_all(bootstrap: str, topic: str, partition: int, expected: int) -> list[tuple[int, bytes | None]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "disk-full-reader", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    got: list[tuple[int, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        wait_until(lambda: got.extend((m.offset(), m.value()) for m in consumer.consume(500, 0.2)
                                      if m.error() is None) or len(got) >= expected,
                   timeout=60, message=lambda: f"{expected} records of {topic}-{partition}, got {len(got)}")
    finally:
        consumer.close()
    return got


def storage_cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "umbra", "storage", "--admin-url", broker.admin_url, *args],
                          capture_output=True, text=True, timeout=60)


def test_disk_full_during_produce(broker_factory: Any, tmp_path: Path) -> None:
    with small_disk(tmp_path / "small") as disk:
        broker = broker_factory("broker", start=False, config={"log_segment_bytes": 65536})
        on_disk(broker, "full", 0, disk)
        broker.start()
        create_topic(broker.bootstrap, "full", partitions=1)
        create_topic(broker.bootstrap, "roomy", partitions=1)

        count, delivered, errors = 3000, [], []
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "batch.num.messages": 50, "message.timeout.ms": 120_000,
                             "retry.backoff.ms": 100})

        def report(err: Any, message: Any) -> None:
            (errors if err is not None else delivered).append(err or message.offset())

        for i in range(count):  # about 300 KB of records: more than the 160 KB left on the disk
            producer.produce("full", value=b"%06d" % i + b"x" * 90, partition=0, on_delivery=report)
            producer.poll(0)
        wait_until(lambda: producer.poll(0.1) is not None and
                   http_get(broker.admin_url + "/v1/storage")[1].count(b"No space left") == 1,
                   timeout=60, message="the partition on the full disk offline")

        # Offline: fetches get KAFKA_STORAGE_ERROR; the other partition takes writes and serves reads.
        assert fetch_error(broker, "full", 0) == KAFKA_STORAGE_ERROR
        status = storage_cli(broker, "status")
        assert status.returncode == 0 and "full-0: " in status.stdout and "No space left" in status.stdout
        other = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(100):
            other.produce("roomy", value=b"r%d" % i, partition=0)
        assert other.flush(30) == 0
        assert len(read_all(broker.bootstrap, "roomy", 0, 100)) == 100
        _, metrics = http_get(broker.admin_url + "/metrics")
        assert b"umbra_offline_partitions 1.0" in metrics
        assert len(delivered) < count  # the producer is still retrying

        free_space(disk)
        recovered = storage_cli(broker, "recover")
        assert recovered.returncode == 0 and "online again: full-0" in recovered.stdout, recovered
        assert producer.flush(120) == 0
        assert not errors and len(delivered) == count and sorted(delivered) == list(range(count))

        # Every acknowledged record once, in order, and no offset written twice in any segment.
        records = read_all(broker.bootstrap, "full", 0, count)
        assert [offset for offset, _ in records] == list(range(count))
        assert [value[:6] for _, value in records if value] == [b"%06d" % i for i in range(count)]
        offsets = base_offsets_on_disk(disk / "full-0")
        assert offsets == sorted(set(offsets)), "a base offset appears twice in the segment files"
        assert storage_cli(broker, "status").stdout.strip() == "no offline partitions"


def test_disk_full_during_shadow_replication(broker_factory: Any, tmp_path: Path) -> None:
    with small_disk(tmp_path / "small") as disk:
        source = broker_factory("source", node_id=1)
        shadow = broker_factory("shadow", node_id=2, start=False, config={"log_segment_bytes": 65536})
        on_disk(shadow, "full", 0, disk)
        shadow.start()
        for topic in ("full", "roomy"):
            create_topic(source.bootstrap, topic, partitions=1)
            producer = Producer({"bootstrap.servers": source.bootstrap, "acks": "all", "linger.ms": 5,
                                 "batch.num.messages": 50})
            for i in range(3000):
                producer.produce(topic, value=b"%06d" % i + b"y" * 90, partition=0)
            assert producer.flush(30) == 0

        create_link(shadow, link_spec(source, prefixes=("full", "roomy")))

        def full_offline_roomy_done(doc: dict[str, Any]) -> bool:
            parts = {p["topic"]: p for p in doc["partitions"]}
            return ("full" in parts and parts["full"]["state"] == "FAULTED" and "storage offline" in
                    parts["full"]["reason"] and "roomy" in parts and parts["roomy"]["lag"] == 0
                    and parts["roomy"]["shadow_high_watermark"] == 3000)

        wait_until(lambda: full_offline_roomy_done(link_status(shadow)), timeout=60,
                   message=lambda: f"full-0 offline, roomy caught up: {link_status(shadow)['partitions']}")
        assert admin_call(shadow, "GET", "/v1/storage")[1]["offline"][0]["topic"] == "full"

        free_space(disk)
        assert storage_cli(shadow, "recover").returncode == 0
        wait_until(lambda: {p["topic"]: (p["shadow_high_watermark"], p["state"]) for p in
                            link_status(shadow)["partitions"]}.get("full") == (3000, "ACTIVE"),
                   timeout=60, message=lambda: f"full-0 caught up: {link_status(shadow)['partitions']}")
        records = read_all(shadow.bootstrap, "full", 0, 3000)
        assert [offset for offset, _ in records] == list(range(3000))
        assert [value[:6] for _, value in records if value] == [b"%06d" % i for i in range(3000)]
        offsets = base_offsets_on_disk(disk / "full-0")
        assert offsets == sorted(set(offsets)), "a base offset appears twice in the segment files"
