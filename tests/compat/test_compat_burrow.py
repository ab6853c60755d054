"""Burrow (Debian's ``burrow`` 1.2.1, built on Sarama) monitoring an umbra broker: it lists the topics, reads
their offsets, reads the committed offsets from ``__consumer_offsets`` (Kafka's record format) and reports a
consumer group's lag through its HTTP API. Burrow keeps its own locks in ZooKeeper (Debian's ``zookeeper``),
started here on free loopback ports.

Burrow's two Kafka modules use two client profiles: the cluster module speaks as Kafka 0.10.0 (Metadata v1 and
ListOffsets v0, what older tools send), the consumer module as Kafka 2.0 because it fetches
``__consumer_offsets``, and umbra, like Kafka 4, refuses Fetch v0-3 (message formats v0/v1).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from harness import BrokerProcess, create_topic, free_ports, http_get, require_command, tcp_port_open, wait_until  # noqa: E402

CLUSTER = "umbra"
TOPIC = "burrow-watched"
GROUP = "burrow-lagging"
PRODUCED = 100
COMMITTED = 60
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
START_TIMEOUT_S = 30.0
BURROW_TIMEOUT_S = 60.0


def require_zookeeper() -> str:
    """The java that runs Debian's ZooKeeper; skipped (failed under CI) when either is missing."""
    java = require_command("java", "make install installs Debian's zookeeper, which brings a JRE")
    if not ZOOKEEPER_JAR.exists():
        message = f"{ZOOKEEPER_JAR} is missing (make install installs Debian's zookeeper as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return java


class Daemon:
    """A foreground child process with its output in a file, stopped by its pid."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=cwd)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def check_running(self) -> None:
        code = self.process.poll()
        assert code is None, f"{self.process.args[0]} exited {code}:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


@pytest.fixture
def zookeeper(tmp_path: Path) -> Iterator[str]:
    java = require_zookeeper()
    (port,) = free_ports(1)
    data = tmp_path / "zookeeper"
    data.mkdir()
    daemon = Daemon([java, "-Xmx128m", "-cp", str(ZOOKEEPER_JAR), ZOOKEEPER_MAIN, str(port), str(data)],
                    tmp_path / "zookeeper.log", tmp_path)
    try:
        def listening() -> bool:
            daemon.check_running()
            return tcp_port_open("127.0.0.1", port)

        wait_until(listening, timeout=START_TIMEOUT_S, message=lambda: f"ZooKeeper on {port}: {daemon.log_tail()}")
        yield f"127.0.0.1:{port}"
    finally:
        daemon.stop()


def burrow_config(zookeeper: str, bootstrap: str, http_port: int, work: Path) -> str:
    return f"""
[general]
pidfile="{work / 'burrow.pid'}"

[logging]
level="info"

[zookeeper]
servers=["{zookeeper}"]
timeout=6
root-path="/burrow"

[client-profile.old]
client-id="burrow-cluster"
kafka-version="0.10.0"

[client-profile.fetcher]
client-id="burrow-consumer"
kafka-version="2.0.0"

[cluster.{CLUSTER}]
class-name="kafka"
servers=["{bootstrap}"]
client-profile="old"
topic-refresh=1
offset-refresh=1

[consumer.{CLUSTER}]
class-name="kafka"
cluster="{CLUSTER}"
servers=["{bootstrap}"]
client-profile="fetcher"
offsets-topic="__consumer_offsets"
start-latest=false

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=2
intervals=10
min-distance=1
"""


def get_json(url: str) -> Any:
    status, body = http_get(url, timeout=5)
    return json.loads(body) if status == 200 else None


def test_burrow_lists_topics_and_reports_lag(broker_factory: Any, zookeeper: str, tmp_path: Path) -> None:
    burrow = require_command("Burrow", "make install installs Debian's burrow as root")
    broker: BrokerProcess = broker_factory("broker")
    create_topic(broker.bootstrap, TOPIC, partitions=1)
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(PRODUCED):
        producer.produce(TOPIC, f"record-{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": GROUP,
                                          "enable.auto.commit": False})
    try:
        committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, COMMITTED)], asynchronous=False)
    finally:
        committer.close()

    (http_port,) = free_ports(1)
    config_dir = tmp_path / "burrow"
    config_dir.mkdir()
    (config_dir / "burrow.toml").write_text(burrow_config(zookeeper, broker.bootstrap, http_port, tmp_path))
    daemon = Daemon([burrow, "--config-dir", str(config_dir)], tmp_path / "burrow.log", tmp_path)
    base = f"http://127.0.0.1:{http_port}/v3/kafka/{CLUSTER}"
    try:
        def topic_offsets() -> Any:
            daemon.check_running()
            listed = get_json(f"{base}/topic")
            if not listed or TOPIC not in listed.get("topics", []):
                return None
            detail = get_json(f"{base}/topic/{TOPIC}")  # the broker's offsets, read with ListOffsets v0
            return detail["offsets"] if detail and detail.get("offsets") == [PRODUCED] else None

        def lag() -> Any:
            daemon.check_running()
            answer = get_json(f"{base}/consumer/{GROUP}/lag")
            status = answer.get("status") if answer else None
            return status if status and status.get("totallag") == PRODUCED - COMMITTED else None

        def explain(what: str) -> Any:
            return lambda: f"{what}\nburrow log:\n{daemon.log_tail()}\nbroker log:\n{broker.log_tail(30)}"

        wait_until(topic_offsets, timeout=BURROW_TIMEOUT_S, interval=0.5,
                   message=explain(f"Burrow to list {TOPIC} with its end offset {PRODUCED}"), retry_on=(OSError,))
        status = wait_until(lag, timeout=BURROW_TIMEOUT_S, interval=0.5,
                            message=explain(f"Burrow to report a lag of {PRODUCED - COMMITTED} for {GROUP}"),
                            retry_on=(OSError,))
        (partition,) = status["partitions"]
        assert (partition["topic"], partition["partition"]) == (TOPIC, 0)
        assert partition["end"]["offset"] == COMMITTED and partition["current_lag"] == PRODUCED - COMMITTED
        assert GROUP in get_json(f"{base}/consumer")["consumers"]
        # Burrow decoded every record of __consumer_offsets: none was refused as an unknown key or value version.
        assert "failed to decode" not in daemon.log_tail(1_000_000)
    finally:
        daemon.stop()
