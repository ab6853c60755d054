"""How long the broker's event loop stalls while its background work runs.

Every client of a broker waits while its one event loop is busy, so a long stall is latency for everyone. This
benchmark runs, each on a fresh broker, the work that used to stall it, and meanwhile a probe connection asks
ApiVersions back to back (one request in flight, answered from memory): a probe request's time is the time the
loop took to get to it. It prints, per case, the longest probe wait next to the median one.

Cases:
- produce: 10-KiB records at 25 MB/s for 8 s with acks=all, no flush (the baseline for the next case);
- flushes: the same while a flush runs every 50 ms (log_flush_interval_ms), fsyncing segments;
- retention: a topic of 400 small segments whose retention.ms is then cut, so retention deletes them;
- compaction: 200 MB of keyed records (5,000 keys) in 4 MiB segments, then made compacted and cleaned
  (probed while the cleaner runs, not while loading);
- failover: a shadow link over 1,000 one-partition topics, failed over with --all;
- delete: a 1,000-partition topic with data in every partition, deleted.

    .venv/bin/python benchmarks/loop_stalls.py [--cases flushes,retention,...] [--umbra-src DIR]

``--umbra-src DIR`` runs the brokers from another checkout (a git worktree of an older commit, say), to
measure before and after a change on the same machine in one sitting.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
from harness import BrokerProcess, create_topic, stop_all, wait_until  # noqa: E402
from loading import produce_values  # noqa: E402

MIB = 1024 * 1024


def _probe_loop(host: str, port: int, ready: Any, stop: Any, results: Any) -> None:
    """In a process of its own (the benchmark's own work would hold its GIL): round trips until ``stop``."""
    sock = socket.create_connection((host, port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the probe connection")
            data += chunk
        return data

    times: list[float] = []
    correlation = 0
    while not stop.is_set():
        correlation += 1
        body = struct.pack(">hhih", 18, 0, correlation, 5) + b"probe"
        started = time.perf_counter()
        sock.sendall(struct.pack(">i", len(body)) + body)
        read(struct.unpack(">i", read(4))[0])
        times.append(time.perf_counter() - started)
        ready.set()
        time.sleep(0.001)
    sock.close()
    results.send(times)


class Probe:
    """ApiVersions v0 requests, one in flight, from another process: every round trip's seconds."""

    def __init__(self, broker: BrokerProcess) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop, self._ready = context.Event(), context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_probe_loop, daemon=True,
                                        args=(broker.host, broker.port, self._ready, self._stop, send))
        self.times: list[float] = []

    def __enter__(self) -> Probe:
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the probe did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._receive.poll(60):
            self.times = self._receive.recv()
        self._process.join(30)


def admin(broker: BrokerProcess, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.admin_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read() or b"null")


# -- cases: each gets fresh brokers and returns the callable the probe watches ------------------------------

def _produce_case(config: dict[str, Any]) -> Callable[[Callable[..., BrokerProcess]], Callable[[], None]]:
    def case(start: Callable[..., BrokerProcess]) -> Callable[[], None]:
        broker = start("broker", config=config)
        create_topic(broker.bootstrap, "flushed", partitions=3)

        def run() -> None:  # 25 MB/s for 8 s: well below what the disk takes, so writeback does not throttle
            producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
            value = os.urandom(10240)
            started = time.monotonic()
            for i in range(8 * 2500):
                producer.produce("flushed", value, partition=i % 3)
                if i % 250 == 0:
                    producer.poll(0)
                    time.sleep(max(0.0, started + i / 2500 - time.monotonic()))
            assert producer.flush(60) == 0
        return run
    return case


case_produce = _produce_case({})  # the baseline: the same load with no flush at all
case_flushes = _produce_case({"log_flush_interval_ms": 50})


def case_retention(start: Callable[..., BrokerProcess]) -> Callable[[], None]:
    broker = start("broker", config={"log_retention_check_interval_ms": 200})
    create_topic(broker.bootstrap, "retained", partitions=1, config={"segment.bytes": str(256 * 1024)})
    produce_values(broker.bootstrap, "retained", 1, 10240, 100 * MIB // 10240, {"acks": "1", "linger.ms": 5})

    def run() -> None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource("topic", "retained", set_config={"segment.bytes": str(256 * 1024),
                                                                    "retention.ms": "1"})
        with warnings.catch_warnings():  # the incremental API cannot set two configs this old tree accepts
            warnings.simplefilter("ignore", DeprecationWarning)
            client.alter_configs([resource])[resource].result(30)
        directory = broker.data_dir / "retained-0"
        wait_until(lambda: len(list(directory.glob("*.log"))) <= 2, timeout=300, message="retention done")
    return run


def case_compaction(start: Callable[..., BrokerProcess]) -> Callable[[], None]:
    broker = start("broker", config={"log_cleaner_interval_ms": 100})
    # Loaded as an ordinary topic; the case makes it compacted, and the cleaner goes.
    configs = {"cleanup.policy": "delete", "segment.bytes": str(4 * MIB), "min.cleanable.dirty.ratio": "0.01",
               "retention.ms": "-1"}
    create_topic(broker.bootstrap, "compacted", partitions=1, config=configs)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1", "linger.ms": 5})
    value = os.urandom(1000)
    for i in range(200 * 1000):
        while True:
            try:
                producer.produce("compacted", value, b"key-%d" % (i % 5000), partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(300) == 0
    del producer

    def run() -> None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource("topic", "compacted", set_config={**configs, "cleanup.policy": "compact"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.alter_configs([resource])[resource].result(30)
        metrics = broker.admin_url + "/metrics"
        wait_until(lambda: b"umbra_log_cleaner_passes_total{topic=\"compacted\"}" in
                   urllib.request.urlopen(metrics, timeout=10).read(), timeout=300, message="a cleaner pass")
    return run


def case_failover(start: Callable[..., BrokerProcess]) -> Callable[[], None]:
    source = start("source", node_id=1)
    shadow = start("shadow", node_id=2)
    client = AdminClient({"bootstrap.servers": source.bootstrap})
    from confluent_kafka.admin import NewTopic

    names = [f"fo-{i:04d}" for i in range(1000)]
    for chunk in range(0, len(names), 200):
        for future in client.create_topics([NewTopic(n, 1, 1) for n in names[chunk:chunk + 200]]).values():
            future.result(120)
    admin(shadow, "POST", "/v1/shadow-links", {
        "name": "dr", "source": {"bootstrap_servers": [source.bootstrap]},
        "topics": {"sync_interval": "1s", "filters": [{"include": "prefix", "name": "fo-"}]},
        "consumer_offsets": {"enabled": False}, "acls": {"enabled": False}})
    wait_until(lambda: len(admin(shadow, "GET", "/v1/shadow-links/dr")["topics"]) == 1000, timeout=600,
               message="1,000 shadow topics")

    def run() -> None:
        admin(shadow, "POST", "/v1/shadow-links/dr/failover", {"all": True})
        wait_until(lambda: admin(shadow, "GET", "/v1/shadow-links/dr")["state"] == "FAILED_OVER", timeout=600,
                   interval=0.2, message="failed over")
    run.probed = shadow  # type: ignore[attr-defined]
    return run


def case_delete(start: Callable[..., BrokerProcess]) -> Callable[[], None]:
    broker = start("broker")
    create_topic(broker.bootstrap, "wide", partitions=1000, timeout=120)
    produce_values(broker.bootstrap, "wide", 1000, 1000, 20000, {"acks": "1", "linger.ms": 20})

    def run() -> None:
        client = AdminClient({"bootstrap.servers": broker.bootstrap})
        client.delete_topics(["wide"])["wide"].result(300)
        wait_until(lambda: not any(p.name.startswith("wide-") for p in broker.data_dir.iterdir()), timeout=300,
                   message="partitions removed")
    return run


CASES = {"produce": case_produce, "flushes": case_flushes, "retention": case_retention, "compaction": case_compaction,
         "failover": case_failover, "delete": case_delete}


def measure(name: str, work_dir: Path, env: dict[str, str]) -> tuple[float, float, float, int]:
    started: list[BrokerProcess] = []

    def start(broker_name: str, **options: Any) -> BrokerProcess:
        broker = BrokerProcess(work_dir / name / broker_name, name=broker_name, env=env, **options)
        started.append(broker)
        return broker.start()

    try:
        run = CASES[name](start)
        probed = getattr(run, "probed", started[-1])
        with Probe(probed) as probe:
            run()
        times = sorted(probe.times)
        return times[-1], statistics.median(times), times[int(len(times) * 0.99)], len(times)
    finally:
        stop_all(reversed(started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--umbra-src", help="run the brokers from this checkout instead of this one")
    args = parser.parse_args()
    env: dict[str, str] = {}
    if args.umbra_src:  # the same as UMBRA_BROKER_SOURCE for any benchmark
        os.environ["UMBRA_BROKER_SOURCE"] = str(Path(args.umbra_src).resolve())
    print(f"brokers from {args.umbra_src or REPO_ROOT}; probe: ApiVersions v0 round trips, one in flight")
    print(f"{'case':<12} {'longest wait':>13} {'median':>9} {'p99':>9} {'probes':>8}")
    with tempfile.TemporaryDirectory(prefix="umbra-loop-stalls-") as temp:
        for name in args.cases.split(","):
            longest, median, p99, count = measure(name, Path(temp), env)
            print(f"{name:<12} {longest * 1000:>10.1f} ms {median * 1000:>6.2f} ms {p99 * 1000:>6.2f} ms {count:>8}",
                  flush=True)


if __name__ == "__main__":
    main()
