"""Produce throughput and latency on a three-broker cluster: replication factor 1 against 3, acks=all.

    .venv/bin/python benchmarks/cluster.py              # 128 MiB of 1-KiB records per case
    .venv/bin/python benchmarks/cluster.py --mb 32      # a quicker run

It starts etcd and three `umbra broker` processes on free loopback ports (umbra/devcluster.py, as `umbra dev
cluster` does), creates two topics of 6 partitions, one with replication factor 1 and one with 3
(min.insync.replicas=2), and produces the same records into each with one confluent-kafka producer (acks=all,
idempotent). It prints MB/s and the p50/p99 of delivery latency under saturation (delivery report minus
produce() call, every 16th record), and the ratios of the replicated case to the unreplicated one, both
measured in this one run. Everything runs on this machine's cores: with replication factor 3 each record is
written three times and crosses loopback twice more, by three brokers sharing the same two cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from umbra.devcluster import DevCluster  # noqa: E402

RECORD = 1024
PARTITIONS = 6


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def produce(bootstrap: str, topic: str, megabytes: int) -> tuple[float, float, float]:
    """(MB/s, p50 ms, p99 ms) of producing ``megabytes`` MiB of 1-KiB records."""
    count = megabytes * 1024 * 1024 // RECORD
    value = os.urandom(RECORD)
    latencies: list[float] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 262_144, "queue.buffering.max.kbytes": 262_144})
    start = time.monotonic()
    for i in range(count):
        if i % 16 == 0:
            produce_one(producer, topic, value, timed(latencies, time.monotonic()))
        else:
            produce_one(producer, topic, value, None)
    producer.flush(300)
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)
    return (megabytes / elapsed, 1000 * statistics.median(ordered),
            1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))])


def timed(latencies: list[float], sent: float) -> Any:
    def report(err: Any, msg: Any) -> None:
        latencies.append(time.monotonic() - sent)
    return report


def produce_one(producer: Producer, topic: str, value: bytes, callback: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, on_delivery=callback)
            return
        except BufferError:
            producer.poll(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=128, help="MiB of records per case (default 128)")
    parser.add_argument("--keep", action="store_true", help="keep the brokers' data and logs (printed at the end)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="umbra-cluster-bench-")
    try:
        cluster = DevCluster(Path(work), 3, cluster_id="bench")
        cluster.start()
        try:
            bootstrap = cluster.bootstrap_servers
            admin = AdminClient({"bootstrap.servers": bootstrap})
            wait_for(lambda: len(admin.list_topics(timeout=10).brokers) == 3, 60, "three brokers")
            topics = {1: "rf1", 3: "rf3"}
            for rf, name in topics.items():
                configs = {"min.insync.replicas": "2"} if rf == 3 else {}
                admin.create_topics([NewTopic(name, PARTITIONS, rf, config=configs)])[name].result(timeout=30)

            def ready() -> bool:
                found = admin.list_topics(timeout=10).topics
                return all(name in found and len(found[name].partitions) == PARTITIONS and
                           all(len(p.isrs) == rf for p in found[name].partitions.values())
                           for rf, name in topics.items())

            wait_for(ready, 60, "both topics with full ISRs")
            for name in topics.values():  # connections, metadata and first segments, outside the measurement
                produce(bootstrap, name, 1)
            results = {rf: produce(bootstrap, name, args.mb) for rf, name in topics.items()}
        finally:
            cluster.stop()
    finally:
        if args.keep:
            print(f"data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nproduce {args.mb} MiB of {RECORD}-byte records, acks=all, idempotent, {PARTITIONS} partitions, "
          f"3 brokers on this machine")
    print(f"{'replication':<12} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for rf, (rate, p50, p99) in results.items():
        print(f"{'factor ' + str(rf):<12} {rate:8.1f} {p50:8.1f} {p99:8.1f}")
    (r1, _, p99_1), (r3, _, p99_3) = results[1], results[3]
    print(f"\nthroughput rf3/rf1 = {r3 / r1:.2f}   p99 latency rf3/rf1 = {p99_3 / p99_1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
