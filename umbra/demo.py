"""`make demo`: start a broker on embedded defaults, round-trip records through it, stop it.

It uses kafka-python, which umbra already depends on for its protocol codec, as
the client, so the demo needs nothing beyond the project's own dependencies.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TOPIC = "demo-orders"
RECORDS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(admin_url: str, process: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("umbra demo: the broker exited during start-up; see its log above")
        try:
            with urllib.request.urlopen(f"{admin_url}/v1/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("umbra demo: the broker did not become ready in time")


def main() -> int:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    port, admin_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="umbra-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        log_path = Path(tmp) / "broker.log"
        command = [sys.executable, "-m", "umbra", "broker", "--data-dir", str(data_dir),
                   "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"]
        print("$", " ".join(command[2:]))
        with open(log_path, "wb") as log:
            broker = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(f"http://127.0.0.1:{admin_port}", broker)
            bootstrap = f"127.0.0.1:{port}"
            print(f"broker ready on {bootstrap} (admin http://127.0.0.1:{admin_port}, pid {broker.pid})")
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
            admin.close()
            print(f"created topic {TOPIC} with 3 partitions")

            producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
            started = time.monotonic()
            futures = [producer.send(TOPIC, key=f"order-{i}".encode(), value=f"amount={i * 3}".encode(),
                                     headers=[("source", b"demo")]) for i in range(RECORDS)]
            producer.flush()
            offsets = [f.get(timeout=10) for f in futures]
            producer.close()
            print(f"produced {RECORDS} records (acks=all, gzip) in {time.monotonic() - started:.2f}s; "
                  f"last offsets per partition: {_last_offsets(offsets)}")

            consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="demo-readers",
                                     auto_offset_reset="earliest", enable_auto_commit=False,
                                     consumer_timeout_ms=10000)
            consumer.assign([TopicPartition(TOPIC, p) for p in range(3)])
            seen = 0
            for message in consumer:
                assert message.headers == [("source", b"demo")]
                seen += 1
                if seen == RECORDS:
                    break
            consumer.commit()
            consumer.close()
            print(f"consumed {seen} records back, keys, values and headers intact; offsets committed")
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
                lines = [line for line in response.read().decode().splitlines()
                         if line.startswith("umbra_produced_bytes_total")]
            print("metrics:", *lines)
            if seen != RECORDS:
                print(f"umbra demo: expected {RECORDS} records, got {seen}", file=sys.stderr)
                return 1
            print("demo complete: stopping the broker")
        finally:
            broker.terminate()
            try:
                broker.wait(20)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()
    return 0


def _last_offsets(metadata: list) -> dict[int, int]:  # type: ignore[type-arg]
    last: dict[int, int] = {}
    for m in metadata:
        last[m.partition] = max(last.get(m.partition, -1), m.offset)
    return dict(sorted(last.items()))


if __name__ == "__main__":
    raise SystemExit(main())
