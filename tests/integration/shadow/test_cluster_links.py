"""Shadow links between two clusters of three brokers each, on one real etcd.

Every shadow broker runs the replication tasks of the shadow partitions it leads, fetching from the source
brokers that lead them; a shadow or source broker killed during catch-up moves the tasks; a failover with a
broker down leaves consumers resuming at their synced offsets, and the broker comes back failed over.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from harness import BrokerProcess, http_get, wait_until
from link_api import admin_call, link_spec
from rawclient import RawConnection
from shadow_helpers import PartitionImage, assert_contiguous, read_partition, watermarks
from tcpproxy import TcpProxy

from umbra.devcluster import EtcdServer
from umbra.protocol.codec import build_request

BrokerFactory = Callable[..., BrokerProcess]
Cluster = dict[int, BrokerProcess]
SESSION_MS = 3000
INIT_PRODUCER_ID = 22
TIMEOUT = 90


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    started: list[TcpProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


@pytest.fixture
def start_cluster(etcd: EtcdServer, broker_factory: BrokerFactory, proxies: list[TcpProxy]
                  ) -> Callable[..., Cluster]:
    """Three brokers of cluster ``cluster_id`` on the test's etcd (started before, stopped after them). With
    ``proxied``, each advertises a TCP proxy in front of its listener (``proxies``): whoever reads its metadata,
    a shadow link included, goes through the proxy, which can throttle."""
    def start(cluster_id: str, proxied: bool = False, **config: Any) -> Cluster:
        settings = {"broker_session_timeout_ms": SESSION_MS, "group_initial_rebalance_delay_ms": 0,
                    "replica_lag_time_max_ms": 4000, "leader_imbalance_check_interval_ms": 2000, **config}
        brokers = {}
        for n in (1, 2, 3):
            proxy = TcpProxy() if proxied else None
            broker = broker_factory(f"{cluster_id}-{n}", node_id=n, config=settings, start=False,
                                    advertise=proxy.address if proxy else None,
                                    extra_args=["--etcd", etcd.url, "--cluster-id", cluster_id])
            broker.start()
            if proxy is not None:
                proxy.target = (broker.host, broker.port)
                proxies.append(proxy)
            brokers[n] = broker
        wait_until(lambda: len([b for b in cluster_doc(brokers[1])["brokers"] if b["alive"]]) == 3
                   and cluster_doc(brokers[1])["controller"] is not None, timeout=30,
                   message=f"three live brokers in {cluster_id}")
        return brokers
    return start


def cluster_doc(broker: BrokerProcess) -> dict[str, Any]:
    status, body = http_get(broker.admin_url + "/v1/cluster", timeout=10)
    assert status == 200, body
    return dict(json.loads(body))


def bootstrap(brokers: Cluster) -> str:
    return ",".join(b.bootstrap for b in brokers.values() if b.running)


def live(brokers: Cluster) -> BrokerProcess:
    return next(b for b in brokers.values() if b.running)


def controller_of(brokers: Cluster) -> int:
    return int(wait_until(lambda: cluster_doc(live(brokers))["controller"], timeout=30, message="a controller"))


def create_source_topic(brokers: Cluster, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)]).values():
        future.result(timeout=30)

    def replicated() -> bool:
        found = admin.list_topics(topic=topic, timeout=10).topics[topic]
        return found.error is None and len(found.partitions) == partitions and all(
            len(p.isrs) == 3 for p in found.partitions.values())

    wait_until(replicated, timeout=30, message=f"{topic}: {partitions} partitions with three in-sync replicas")


def produce(brokers: Cluster, topic: str, count: int, partitions: int, size: int = 100, seed: int = 1,
            **config: Any) -> None:
    """``count`` records of about ``size`` bytes, round the partitions, in a few codecs (acks=all)."""
    rng = random.Random(seed)
    failures: list[Any] = []
    for codec, share in (("lz4", 2), ("none", 1), ("zstd", 1)):
        producer = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "compression.type": codec,
                             "linger.ms": 5, "enable.idempotence": codec != "none", **config})
        for i in range(count * share // 4):
            producer.produce(topic, key=b"k%d" % rng.randrange(1000), value=rng.randbytes(size // 2).hex().encode(),
                             partition=i % partitions, on_delivery=lambda err, _m: err and failures.append(err))
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0 and not failures, failures


def partition_count(broker: BrokerProcess, topic: str) -> int:
    """The partitions of ``topic`` in this very broker's Metadata answer."""
    request = build_request(3, 12, {"topics": [{"name": topic, "topic_id": None}],
                                    "allow_auto_topic_creation": False})
    request.with_header(correlation_id=1, client_id="raw-test")
    with RawConnection(broker.host, broker.port or 0) as conn:
        conn.sock.sendall(bytes(request.encode(header=True, framed=True)))
        _, response = conn.receive(3, 12)
    return sum(len(t.partitions) for t in response.topics if t.name == topic and t.error_code == 0)


def link_status(shadow: Cluster) -> dict[str, Any]:
    status, body = admin_call(live(shadow), "GET", "/v1/shadow-links/dr/status")
    assert status == 200, body
    return dict(body)


def cluster_spec(source: Cluster, **client: Any) -> dict[str, Any]:
    spec = link_spec(live(source))
    spec["source"]["bootstrap_servers"] = [b.bootstrap for b in source.values()]
    spec["source"]["client"].update(client)
    return spec


def wait_caught_up(source: Cluster, shadow: Cluster, topics: Mapping[str, int], timeout: float = TIMEOUT) -> None:
    """Every partition's shadow high watermark is the source's (asked of the live brokers of each cluster)."""
    def caught_up() -> bool:
        return watermarks(bootstrap(shadow), topics) == watermarks(bootstrap(source), topics)

    wait_until(caught_up, timeout=timeout, retry_on=(KafkaException,),
               message=lambda: f"caught up: link status {link_status(shadow)['partitions']}")


def images(brokers: Cluster, topics: Mapping[str, int]) -> dict[tuple[str, int], PartitionImage]:
    """Every partition's batches as its leader serves them (partition leader epoch masked)."""
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    marks = watermarks(bootstrap(brokers), topics)
    found = {}
    for topic, count in topics.items():
        meta = admin.list_topics(topic=topic, timeout=10).topics[topic]
        for p in range(count):
            leader = brokers[meta.partitions[p].leader]
            found[(topic, p)] = read_partition(leader, topic, p, marks[(topic, p)][0])
    return found


def assert_same_logs(source: Cluster, shadow: Cluster, topics: Mapping[str, int]) -> None:
    """Byte-equal batches at the same offsets, contiguous from the log start, on every partition."""
    src, dst = images(source, topics), images(shadow, topics)
    for tp, a in src.items():
        b = dst[tp]
        assert a.batches, f"{tp}: the source has no data; the test tests nothing"
        assert (b.log_start_offset, b.high_watermark) == (a.log_start_offset, a.high_watermark), tp
        assert b.base_offsets == a.base_offsets, f"{tp}: batch offsets differ: {b.summary()} vs {a.summary()}"
        for i, (x, y) in enumerate(zip(a.batches, b.batches, strict=True)):
            assert x == y, f"{tp}: batch {i} at offset {a.base_offsets[i]} differs"
        assert_contiguous(tp, b)


def leaders(brokers: Cluster, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    return {p: m.leader for p, m in admin.list_topics(topic=topic, timeout=10).topics[topic].partitions.items()}


def test_every_shadow_broker_replicates_the_partitions_it_leads(start_cluster: Callable[..., Cluster]) -> None:
    source = start_cluster("src")
    create_source_topic(source, "orders", 12)
    produce(source, "orders", 8000, 12)
    shadow = start_cluster("dr", default_replication_factor=3)

    # Asked of a broker that is not the controller: the link is created through the controller.
    controller = controller_of(shadow)
    other = next(n for n in shadow if n != controller)
    status, body = admin_call(shadow[other], "POST", "/v1/shadow-links", cluster_spec(source))
    assert status == 201, body
    wait_caught_up(source, shadow, {"orders": 12})

    doc = link_status(shadow)
    led = leaders(shadow, "orders")
    by_partition = {p["partition"]: p for p in doc["partitions"] if p["topic"] == "orders"}
    assert sorted(by_partition) == list(range(12))
    assert {p: e["broker"] for p, e in by_partition.items()} == led, "each partition's task is on its leader"
    assert set(led.values()) == {1, 2, 3}, f"leaders over all three shadow brokers: {led}"
    assert all(e["state"] == "ACTIVE" and e["lag"] == 0 for e in by_partition.values()), by_partition
    fetchers = [t for t in doc["tasks"] if t["task"].startswith("fetch-from-source-broker-")]
    assert {t["broker"] for t in fetchers} == {1, 2, 3}, fetchers
    # Each shadow broker fetches each partition from the source broker that leads it.
    source_leaders = leaders(source, "orders")
    assert {p: e["source_broker"] for p, e in by_partition.items()} == source_leaders
    syncers = {t["task"]: t["broker"] for t in doc["tasks"] if t["task"] in ("topic-sync", "acl-sync")}
    assert syncers == {"topic-sync": controller, "acl-sync": controller}, "the link controller is on the controller"
    # The shadow topic has the cluster's replication factor, and its followers have the shadow data.
    admin = AdminClient({"bootstrap.servers": bootstrap(shadow)})
    topic = admin.list_topics(topic="orders", timeout=10).topics["orders"]
    assert all(len(p.replicas) == 3 for p in topic.partitions.values())
    wait_until(lambda: all(len(p.isrs) == 3 for p in
                           admin.list_topics(topic="orders", timeout=10).topics["orders"].partitions.values()),
               timeout=30, message="every shadow partition with three in-sync replicas")
    assert_same_logs(source, shadow, {"orders": 12})

    # The same status from every broker, and in the CLI's text.
    for broker in shadow.values():
        status, other_doc = admin_call(broker, "GET", "/v1/shadow-links/dr/status")
        assert status == 200 and {p["partition"]: p["broker"] for p in other_doc["partitions"]} == led
    text = subprocess.run([sys.executable, "-m", "umbra", "shadow", "status", "dr", "--admin-url",
                           shadow[other].admin_url], capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "BROKER" in text.stdout and "on broker" in text.stdout, text

    # The source topic gains partitions: so does the shadow topic, and they replicate like the others.
    source_admin = AdminClient({"bootstrap.servers": bootstrap(source)})
    for future in source_admin.create_partitions([NewPartitions("orders", 16)]).values():
        future.result(timeout=30)
    for broker in source.values():  # every source broker's metadata has them (brokers poll etcd): a producer
        # naming a partition it lacks fails at once. Asked of each broker itself: an AdminClient bootstrapped on
        # one broker may send its Metadata to another, which then goes unchecked.
        wait_until(lambda b=broker: partition_count(b, "orders") == 16, timeout=30,
                   message=f"16 source partitions on source broker {broker.name}")
    produce(source, "orders", 1600, 16, seed=2)
    wait_caught_up(source, shadow, {"orders": 16})
    assert_same_logs(source, shadow, {"orders": 16})


def _catch_up_under_way(source: Cluster, shadow: Cluster, topics: Mapping[str, int]) -> bool:
    shadow_marks = watermarks(bootstrap(shadow), topics)
    source_marks = watermarks(bootstrap(source), topics)
    copied = sum(hw for _, hw in shadow_marks.values())
    return 0 < copied < sum(hw for _, hw in source_marks.values())


@pytest.mark.parametrize("side", ["shadow", "source"])
def test_a_broker_killed_during_catch_up_moves_the_tasks(start_cluster: Callable[..., Cluster],
                                                         proxies: list[TcpProxy], side: str) -> None:
    source = start_cluster("src", proxied=True)
    create_source_topic(source, "events", 12)
    produce(source, "events", 30000, 12, size=200)
    shadow = start_cluster("dr", default_replication_factor=3)
    topics = {"events": 12}
    # 100 kB/s from each source broker until the kill, and fetches of at most 64 KiB: the 2 MB each source
    # broker holds arrive in about 30 pieces over 20 s, so the catch-up is seen under way however slow the polls
    # of both sides' watermarks are on a busy machine. (With the default 50 MB fetches each broker's share came
    # in one response: the shadow went from nothing to everything at once, and a CI run never saw it between.)
    for proxy in proxies:
        proxy.set(rate_bytes_s=100_000)
    spec = cluster_spec(source, fetch_max_bytes=65536, fetch_partition_max_bytes=16384)
    status, body = admin_call(live(shadow), "POST", "/v1/shadow-links", spec)
    assert status == 201, body
    wait_until(lambda: _catch_up_under_way(source, shadow, topics), timeout=TIMEOUT, retry_on=(KafkaException,),
               message="catch-up under way", interval=0.05)

    side_brokers = shadow if side == "shadow" else source
    victim_id = next(n for n in (3, 2, 1) if n != controller_of(side_brokers))
    led_before = [p for p, leader in leaders(side_brokers, "events").items() if leader == victim_id]
    assert led_before, f"broker {victim_id} of the {side} leads nothing; the kill would test nothing"
    assert _catch_up_under_way(source, shadow, topics), "catch-up finished before the kill"
    side_brokers[victim_id].kill9()
    for proxy in proxies:
        proxy.set(rate_bytes_s=None)

    wait_caught_up(source, shadow, topics)
    assert_same_logs(source, shadow, topics)
    doc = link_status(shadow)
    moved = {p["partition"]: p for p in doc["partitions"] if p["partition"] in led_before}
    if side == "shadow":
        assert all(e["broker"] != victim_id and e["state"] == "ACTIVE" for e in moved.values()), moved
    else:
        assert all(e["source_broker"] != victim_id for e in moved.values()), moved
        assert sum(e["source_leader_changes"] for e in moved.values()) >= len(led_before), (
            json.dumps(moved, indent=1), json.dumps(doc["events"], indent=1))


def _consumer(bootstrap_servers: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "billing", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})


def _consume(consumer: Consumer, count: int) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []

    def more() -> bool:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen.append((message.partition(), message.offset()))
        return len(seen) >= count

    wait_until(more, timeout=TIMEOUT, interval=0, message=lambda: f"{count} records (have {len(seen)})")
    return seen


def test_failover_with_a_shadow_broker_down(start_cluster: Callable[..., Cluster]) -> None:
    source = start_cluster("src")
    create_source_topic(source, "payments", 6)
    produce(source, "payments", 1200, 6)
    # A consumer group reads part of the topic on the source and commits.
    consumer = _consumer(bootstrap(source))
    consumer.subscribe(["payments"])
    first = _consume(consumer, 500)
    consumer.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in consumer.committed(
        [TopicPartition("payments", p) for p in range(6)], timeout=10)}
    consumer.close()

    shadow = start_cluster("dr", default_replication_factor=3)
    status, body = admin_call(live(shadow), "POST", "/v1/shadow-links", cluster_spec(source))
    assert status == 201, body
    wait_caught_up(source, shadow, {"payments": 6})

    def synced() -> bool:
        reader = _consumer(bootstrap(shadow))
        try:
            found = reader.committed([TopicPartition("payments", p) for p in range(6)], timeout=10)
            return {tp.partition: tp.offset for tp in found} == committed
        finally:
            reader.close()

    wait_until(synced, timeout=TIMEOUT, message="the group's offsets synced to the shadow")

    victim_id = next(n for n in (3, 2, 1) if n != controller_of(shadow))
    shadow[victim_id].kill9()
    failover = subprocess.run([sys.executable, "-m", "umbra", "shadow", "failover", "dr", "--all", "--wait",
                               "--timeout", "60", "--admin-url", live(shadow).admin_url],
                              capture_output=True, text=True, timeout=120, env={**os.environ})
    assert failover.returncode == 0, failover
    doc = link_status(shadow)
    assert doc["state"] == "FAILED_OVER" and all(p["writable"] and p["broker"] != victim_id
                                                  for p in doc["partitions"]), doc["partitions"]
    # The producer-id barrier holds on every broker: a new idempotent producer, whichever broker it asks,
    # never gets an id a replicated batch carries.
    replicated = {pid for image in images(shadow, {"payments": 6}).values() for pid in image.producer_ids}
    assert max(replicated) >= 0, "the source wrote no idempotent batches; the check tests nothing"
    for broker in shadow.values():
        if broker.running:
            with RawConnection(broker.host, broker.port) as conn:
                answer = conn.request(INIT_PRODUCER_ID, 0, transactional_id=None, transaction_timeout_ms=60000)
            assert answer.error_code == 0 and answer.producer_id > max(replicated), (broker.name, answer)

    # The group resumes on the shadow where it committed: the rest of the records, each once.
    consumer = _consumer(bootstrap(shadow))
    consumer.subscribe(["payments"])
    rest = _consume(consumer, 1200 - len(first))
    consumer.close()
    assert len(set(rest)) == len(rest), "a record was read twice"
    assert set(first).isdisjoint(rest), "the shadow re-delivered records the group had committed"
    assert any(offset > 0 for offset in committed.values()), committed
    assert {(p, o) for p in range(6) for o in range(max(committed[p], 0), 200)} == set(rest)

    # The broker that was down comes back failed over: it serves the topic as writable once it leads.
    shadow[victim_id].restart()
    status, described = admin_call(shadow[victim_id], "GET", "/v1/shadow-links/dr")
    assert status == 200 and {t["state"] for t in described["topics"].values()} == {"FAILED_OVER"}, described
    wait_until(lambda: victim_id in leaders(shadow, "payments").values(), timeout=TIMEOUT,
               message=f"broker {victim_id} leads partitions again (preferred leaders)")
    led = [p for p, leader in leaders(shadow, "payments").items() if leader == victim_id]
    status, part = admin_call(shadow[victim_id], "GET", "/v1/shadow-links/dr/status?local=1")
    assert status == 200 and all(p["writable"] for p in part["partitions"] if p["partition"] in led), part
    producer = Producer({"bootstrap.servers": bootstrap(shadow), "acks": "all", "enable.idempotence": True})
    failures: list[Any] = []
    for p in led:
        producer.produce("payments", value=b"after failover", partition=p,
                         on_delivery=lambda err, _m: err and failures.append(err))
    assert producer.flush(30) == 0 and not failures, failures
