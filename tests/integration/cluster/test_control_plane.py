"""Brokers on etcd: registration under leases, one controller elected, failover of the controller, several
clusters on one etcd, and `umbra cluster status` / `umbra dev cluster`. A real etcd (Debian's etcd-server)
runs on free loopback ports; every process is stopped by pid.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from cluster_helpers import SESSION_MS, BrokerFactory, alive, cluster_broker, status, status_when, umbra
from harness import create_topic, http_get, require_command, wait_until

from umbra.devcluster import EtcdServer


def test_brokers_register_and_elect_one_controller(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    brokers = [cluster_broker(broker_factory, etcd, "east", n) for n in (1, 2, 3)]
    docs = {}
    for b in brokers:
        docs[b.node_id] = status_when(b, lambda d: alive(d) == {1: True, 2: True, 3: True},
                                      "every broker sees three live brokers")
    controllers = {doc["controller"] for doc in docs.values()}
    assert len(controllers) == 1 and controllers <= {1, 2, 3}, docs
    doc = docs[1]
    assert doc["cluster_id"] == "east" and doc["control_plane_reachable"] is True
    for entry in doc["brokers"]:
        broker = brokers[entry["node_id"] - 1]
        assert entry["kafka_address"] == f"127.0.0.1:{broker.port}"
        assert entry["admin_address"] == broker.admin_url
    assert set(doc["partitions"]) == {"total", "under_replicated", "offline"} and doc["under_replicated"] == []

    # The text form names the controller and every broker; UMBRA_ADMIN_URL is the default admin URL.
    text = umbra("cluster", "status", env={"UMBRA_ADMIN_URL": brokers[1].admin_url})
    assert text.returncode == 0 and f"controller {doc['controller']}" in text.stdout, text
    assert all(f"127.0.0.1:{b.port}" in text.stdout for b in brokers)


def test_a_killed_controller_is_replaced_within_the_session_timeout(broker_factory: BrokerFactory,
                                                                    etcd: EtcdServer) -> None:
    brokers = {n: cluster_broker(broker_factory, etcd, "east", n) for n in (1, 2, 3)}
    first = status_when(brokers[2], lambda d: bool(d["controller"]) and alive(d) == {1: True, 2: True, 3: True},
                        "a controller")["controller"]
    brokers[first].kill9()
    survivor = brokers[next(n for n in brokers if n != first)]
    after = status_when(survivor, lambda d: d["controller"] not in (None, first), "a new controller",
                        timeout=SESSION_MS / 1000 + 15)
    assert alive(after)[first] is False and sum(alive(after).values()) == 2
    assert after["controller_epoch"] > 0
    for n, broker in brokers.items():  # every survivor learns it within one poll (a third of the timeout)
        if n != first:
            status_when(broker, lambda d: d["controller"] == after["controller"], f"broker {n} sees the new controller",
                        timeout=SESSION_MS / 1000 + 5)
    _, metrics = http_get(survivor.admin_url + "/metrics")
    assert b"umbra_cluster_brokers_alive 2.0" in metrics and b"umbra_controller_changes 1.0" in metrics, metrics
    _, on_controller = http_get(brokers[after["controller"]].admin_url + "/metrics")
    assert b"umbra_is_controller 1.0" in on_controller

    # The new controller takes topic creation over: CreateTopics works again within the session timeout.
    create_topic(",".join(b.bootstrap for n, b in brokers.items() if n != first), "after-controller-failover",
                 partitions=2)
    brokers[first].start()  # it comes back as a member, and the controller stays where it is
    back = status_when(brokers[first], lambda d: all(alive(d).values()), "the restarted broker registered again")
    assert back["controller"] == after["controller"]


def test_two_clusters_share_one_etcd_and_node_ids_are_unique(broker_factory: BrokerFactory, etcd: EtcdServer,
                                                              tmp_path: Path) -> None:
    east = cluster_broker(broker_factory, etcd, "east", 1)
    west = cluster_broker(broker_factory, etcd, "west", 1)  # the same node id, in another cluster
    assert [b["node_id"] for b in status(east)["brokers"]] == [1]
    west_doc = status(west)
    assert west_doc["cluster_id"] == "west" and [b["admin_address"] for b in west_doc["brokers"]] == [west.admin_url]

    # A second live broker with node id 1 in "east" is refused, with one line.
    done = umbra("broker", "--etcd", etcd.url, "--cluster-id", "east", "--node-id", "1", "--data-dir",
                 str(tmp_path / "twin"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("umbra: error:") and "node id 1 is already registered and alive" in last, done.stderr
    assert "Traceback" not in done.stderr


def test_configuration_errors_are_one_line(tmp_path: Path) -> None:
    missing_id = umbra("broker", "--etcd", "http://127.0.0.1:1", "--data-dir", str(tmp_path / "d"))
    assert missing_id.returncode == 2 and missing_id.stderr.strip() == \
        "umbra: error: cluster_id: required with etcd (every broker of a cluster gives the same one)"
    bad_url = umbra("broker", "--etcd", "127.0.0.1:2379", "--cluster-id", "x", "--data-dir", str(tmp_path / "d"))
    assert bad_url.returncode == 2 and "etcd: '127.0.0.1:2379' is not http://HOST:PORT" in bad_url.stderr
    unreachable = umbra("broker", "--etcd", "http://127.0.0.1:1", "--cluster-id", "x", "--data-dir",
                        str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    lines = unreachable.stderr.strip().splitlines()
    assert unreachable.returncode != 0 and lines[-1].startswith("umbra: error: cannot register with etcd at "
                                                                "http://127.0.0.1:1"), unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_brokers_serve_through_an_etcd_outage_and_converge_after(broker_factory: BrokerFactory,
                                                                 etcd: EtcdServer) -> None:
    """etcd stopped for 10 s during produce: replicated partitions keep taking acks=all writes (leaders and
    ISRs stay as they were), topic creation says etcd is down, and the cluster converges when it is back.
    Nothing acknowledged is lost."""
    import time

    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    brokers = [cluster_broker(broker_factory, etcd, "east", n) for n in (1, 2)]
    status_when(brokers[0], lambda d: alive(d) == {1: True, 2: True}, "both registered")
    bootstrap = ",".join(b.bootstrap for b in brokers)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("through-outage", 2, 2)])["through-outage"].result(timeout=30)
    wait_until(lambda: (t := admin.list_topics(topic="through-outage", timeout=10).topics["through-outage"]).error
               is None and len(t.partitions) == 2 and all(len(p.isrs) == 2 for p in t.partitions.values()),
               timeout=30, message="two partitions, two in-sync replicas each")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    acknowledged: list[bytes] = []

    def produce(prefix: bytes, count: int) -> None:
        for i in range(count):
            producer.produce("through-outage", value=prefix + b"%04d" % i, partition=i % 2,
                             on_delivery=lambda err, m: err is None and acknowledged.append(m.value()))
        assert producer.flush(30) == 0

    produce(b"before-", 100)
    etcd.stop()
    stopped = time.monotonic()
    doc = status_when(brokers[0], lambda d: not d["control_plane_reachable"], "the broker notices etcd is gone")
    assert len(doc["brokers"]) == 2  # the last view is kept
    produce(b"during-", 200)  # acks=all through the outage: the ISR is as it was
    try:
        admin.create_topics([NewTopic("during-outage", 1, 1)], request_timeout=5)["during-outage"].result(timeout=10)
        raise AssertionError("a topic was created without etcd")
    except KafkaException as exc:
        assert "etcd" in str(exc) or "NOT_CONTROLLER" in str(exc) or "timed out" in str(exc).lower(), exc
    wait_until(lambda: time.monotonic() - stopped >= 10, timeout=30, message="ten seconds of outage")
    produce(b"late-", 100)
    etcd.start()
    wait_until(lambda: all((d := status(b))["control_plane_reachable"] and d["controller"] in (1, 2)
                           and all(alive(d).values()) for b in brokers), timeout=60,
               message="the cluster converges once etcd is back")
    create_topic(bootstrap, "after-outage", partitions=1)
    produce(b"after-", 100)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "outage-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition("through-outage", p, 0) for p in range(2)])
        deadline = time.monotonic() + 30
        while len(got) < len(acknowledged) and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert len(acknowledged) == 500 and sorted(got) == sorted(acknowledged)  # nothing lost, nothing twice


def test_dev_cluster_starts_and_stops_everything(tmp_path: Path) -> None:
    require_command("etcd", "make install installs Debian's etcd-server as root")
    process = subprocess.Popen([sys.executable, "-m", "umbra", "dev", "cluster", "--brokers", "2", "--data-dir",
                                str(tmp_path / "dev")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        output = "".join(lines)
        pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        admin = re.findall(r"admin (http://127\.0\.0\.1:\d+)", output)
        assert len(pids) == 2 and len(admin) == 2 and "bootstrap servers: 127.0.0.1:" in output, output
        def dev_status() -> dict[str, Any] | None:
            doc = json.loads(umbra("cluster", "status", "--format", "json", "--admin-url", admin[0]).stdout)
            return dict(doc) if len(doc["brokers"]) == 2 else None

        doc = wait_until(dev_status, timeout=30, message="two brokers in the dev cluster")
        assert doc["cluster_id"] == "dev" and doc["controller"] in (1, 2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
