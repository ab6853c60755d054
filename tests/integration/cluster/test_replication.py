"""Replicated partitions (Kafka's ISR model) on a cluster of three brokers on etcd: followers fetch from
leaders, acks=all waits for the ISR, and when a leader is killed the controller elects a new one from the
ISR; nothing acknowledged is lost, and no record is read twice.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from cluster_helpers import alive, cluster_broker, status, status_when
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness import BrokerProcess, wait_until

from umbra.devcluster import EtcdServer

BrokerFactory = Callable[..., BrokerProcess]
TOPIC = "replicated"


def start_cluster(factory: BrokerFactory, etcd: EtcdServer) -> dict[int, BrokerProcess]:
    brokers = {n: cluster_broker(factory, etcd, "east", n, config_extra={"replica_lag_time_max_ms": 4000,
                                                                      "leader_imbalance_check_interval_ms": 2000})
               for n in (1, 2, 3)}
    status_when(brokers[1], lambda d: alive(d) == {1: True, 2: True, 3: True} and d["controller"] is not None,
                "three live brokers")
    return brokers


def partitions_of(admin: AdminClient) -> dict[int, Any]:
    topic = admin.list_topics(topic=TOPIC, timeout=10).topics[TOPIC]
    return dict(topic.partitions)


def create_replicated(admin: AdminClient, partitions: int, configs: dict[str, str] | None = None) -> None:
    """TOPIC with replication factor 3; returns once every partition has three in-sync replicas."""
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=3,
                                                config=configs or {})]).values():
        future.result(timeout=30)
    wait_until(lambda: len(partitions_of(admin)) == partitions
               and all(len(p.isrs) == 3 for p in partitions_of(admin).values()),
               timeout=30, message=f"{partitions} partitions with three in-sync replicas")


class BackgroundProducer:
    """An idempotent acks=all producer writing numbered records until stopped; what was acknowledged and
    every delivery failure are kept."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.acknowledged: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _report(self, err: Any, message: Any) -> None:
        if err is None:
            self.acknowledged.append(message.value())
        else:
            self.failures.append(str(err))

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 120_000})
        i = 0
        while not self._stop.is_set():
            producer.produce(TOPIC, value=b"%06d" % i, on_delivery=self._report)
            producer.poll(0.002)
            i += 1
        producer.flush(120)

    def wait_for_more(self, count: int, what: str) -> None:
        before = len(self.acknowledged)
        wait_until(lambda: len(self.acknowledged) >= before + count, timeout=60, message=what)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(150)


def read_all(bootstrap: str, expected: int, *, counted: bool = True) -> list[bytes]:
    """Every record of TOPIC, read from the start. With ``counted`` (values are a counter written by one
    producer) it asserts each partition's records come in the order they were produced."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: list[tuple[int, bytes]] = []
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(3)])
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            got += [(m.partition(), m.value()) for m in consumer.consume(500, 0.5) if m.error() is None]
        # nothing more is expected: one more poll would show duplicates
        got += [(m.partition(), m.value()) for m in consumer.consume(500, 1.0) if m.error() is None]
    finally:
        consumer.close()
    for partition in {p for p, _ in got} if counted else ():
        values = [v for p, v in got if p == partition]
        assert values == sorted(values), f"partition {partition} is out of order"
    return [v for _, v in got]


def test_a_killed_leader_loses_no_acknowledged_record(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_replicated(admin, 3, {"min.insync.replicas": "2"})
    for n, broker in brokers.items():  # every broker holds every partition: leader or follower
        wait_until(lambda broker=broker: len(list(broker.data_dir.glob(f"{TOPIC}-*"))) == 3, timeout=30,
                   message=f"broker {n} holds its replicas")
    writer = BackgroundProducer(bootstrap)
    writer.wait_for_more(500, "records acknowledged before the kill")

    victim = partitions_of(admin)[0].leader
    brokers[victim].kill9()
    survivor = next(b for n, b in brokers.items() if n != victim)
    status_when(survivor, lambda d: not alive(d)[victim], "the dead broker's lease expires", timeout=30)
    wait_until(lambda: all(p.leader not in (victim, -1) for p in partitions_of(admin).values()), timeout=30,
               message="new leaders for the dead broker's partitions")
    writer.wait_for_more(500, "producing on after the failover")
    degraded = status(survivor)  # every partition has a replica on the dead broker
    assert sorted(e["partition"] for e in degraded["under_replicated"] if e["topic"] == TOPIC) == [0, 1, 2]
    assert degraded["partitions"]["under_replicated"] == len(degraded["under_replicated"])
    assert all(victim in entry["replicas"] and victim not in entry["isr"]
               for entry in degraded["under_replicated"] if entry["topic"] == TOPIC)

    brokers[victim].start()  # it comes back as a follower, catches up, and rejoins the ISR
    wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
               message="the restarted broker back in every ISR")
    status_when(survivor, lambda d: d["partitions"]["under_replicated"] == 0, "no partition under-replicated")
    leader_url = brokers[partitions_of(admin)[0].leader].admin_url + "/metrics"
    wait_until(lambda: b"umbra_under_replicated_partitions 0.0" in urllib.request.urlopen(leader_url).read(),
               timeout=30, message="the under-replicated gauge back to 0")
    assert b"umbra_isr_shrinks_total" in urllib.request.urlopen(leader_url).read()

    # Once it is back, another broker dies: the leader of another partition.
    second = next(p.leader for p in partitions_of(admin).values() if p.leader != victim)
    brokers[second].kill9()
    wait_until(lambda: all(p.leader not in (second, -1) for p in partitions_of(admin).values()), timeout=30,
               message="new leaders for the second dead broker's partitions")
    writer.wait_for_more(500, "producing on after the second kill")
    brokers[second].start()
    wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
               message="the second broker back in every ISR")
    # auto.leader.rebalance.enable: once back in sync, the preferred replicas lead again (leaders spread).
    wait_until(lambda: all(p.leader == p.replicas[0] for p in partitions_of(admin).values()), timeout=30,
               message="leadership back on the preferred replicas")
    writer.stop()
    assert not writer.failures, writer.failures[:5]

    got = read_all(bootstrap, len(writer.acknowledged))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(writer.acknowledged) <= set(got), f"{len(set(writer.acknowledged) - set(got))} acknowledged lost"
    assert status(survivor)["partitions"]["offline"] == 0


def test_a_rolling_restart_under_load_loses_nothing(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    """SIGTERM each broker in turn and start it again, under an idempotent acks=all producer: a stopping broker
    asks the controller to move its leaderships to other in-sync replicas, waits until they moved, and only
    then lets go of its lease (a controlled shutdown)."""
    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_replicated(admin, 3, {"min.insync.replicas": "2"})
    writer = BackgroundProducer(bootstrap)
    for n, broker in brokers.items():
        writer.wait_for_more(300, f"producing before restarting broker {n}")
        assert broker.stop() == 0  # SIGTERM: a clean exit
        # A controlled shutdown: its leaderships moved to other in-sync replicas before it let go.
        assert "controlled shutdown: no partition led here" in broker.log_text()
        broker.start()
        wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
                   message=f"broker {n} back in every ISR")
    writer.stop()
    assert not writer.failures, writer.failures[:5]
    got = read_all(bootstrap, len(writer.acknowledged))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(writer.acknowledged) <= set(got), f"{len(set(writer.acknowledged) - set(got))} acknowledged lost"


def test_a_deposed_leader_truncates_what_never_reached_the_isr(broker_factory: BrokerFactory,
                                                              etcd: EtcdServer) -> None:
    """The leader takes records its followers never get (acks=1 while they are frozen), then dies. A follower
    becomes leader at the next epoch and takes new writes. The old leader comes back as a follower and drops
    the records that never reached the ISR (leader epochs, KIP-595); everything acknowledged by the ISR stays."""
    import os
    import signal

    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    create_replicated(admin, 1, {"min.insync.replicas": "2"})
    safe = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(100):
        safe.produce(TOPIC, value=b"safe-%03d" % i, partition=0)
    assert safe.flush(30) == 0

    leader = partitions_of(admin)[0].leader
    followers = [b for n, b in brokers.items() if n != leader]
    for follower in followers:  # frozen: they cannot take what the leader writes next
        os.kill(follower.pid, signal.SIGSTOP)
    try:
        lossy = Producer({"bootstrap.servers": brokers[leader].bootstrap, "acks": 1, "linger.ms": 0})
        for i in range(20):
            lossy.produce(TOPIC, value=b"divergent-%02d" % i, partition=0)
        assert lossy.flush(10) == 0  # written on the leader alone
        brokers[leader].kill9()
    finally:
        # The followers die frozen too, so the leader's last fetch answers, still in their sockets, are never
        # read: the divergent records exist on the old leader only.
        for follower in followers:
            follower.kill9()
    for follower in followers:
        follower.start()

    survivor = followers[0]
    status_when(survivor, lambda d: alive(d).get(leader) is False and d["controller"] in {b.node_id for b in followers},
                "the old leader's lease expires and a follower is controller", timeout=30)
    wait_until(lambda: partitions_of(AdminClient({"bootstrap.servers": survivor.bootstrap}))[0].leader
               not in (leader, -1), timeout=30, message="a new leader from the ISR")
    after = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in followers), "acks": "all",
                      "enable.idempotence": True})
    for i in range(50):
        after.produce(TOPIC, value=b"after-%03d" % i, partition=0)
    assert after.flush(60) == 0

    brokers[leader].start()  # back as a follower of the new leader
    wait_until(lambda: len(partitions_of(admin)[0].isrs) == 3, timeout=60,
               message="the old leader caught up and back in the ISR")
    on_disk = b"".join(path.read_bytes() for path in (brokers[leader].data_dir / f"{TOPIC}-0").glob("*.log"))
    assert b"divergent-" not in on_disk  # truncated on the old leader itself
    assert b"after-049" in on_disk  # and it has the new leader's records
    assert "truncating the follower's log" in brokers[leader].log_text()

    got = read_all(bootstrap, 150, counted=False)
    assert sorted(got) == sorted([b"safe-%03d" % i for i in range(100)] + [b"after-%03d" % i for i in range(50)])


def test_a_killed_group_coordinator_moves_and_the_group_resumes_from_its_commits(
        broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3)]).values():
        future.result(timeout=30)

    def offsets_partition() -> Any:
        topic = admin.list_topics(timeout=10).topics.get("__consumer_offsets")
        return topic.partitions[0] if topic is not None and topic.partitions else None

    wait_until(lambda: (p := offsets_partition()) is not None and len(p.isrs) == 3, timeout=60,
               message="__consumer_offsets replicated on the three brokers")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(600):
        producer.produce(TOPIC, value=b"%03d" % i, partition=i % 3)
    assert producer.flush(30) == 0

    def consumer() -> Consumer:
        return Consumer({"bootstrap.servers": bootstrap, "group.id": "survivors", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})

    first = consumer()
    seen: list[Any] = []
    first.subscribe([TOPIC])
    deadline = time.monotonic() + 60
    while len(seen) < 300 and time.monotonic() < deadline:
        seen += [m for m in first.consume(300 - len(seen), 0.5) if m.error() is None]
    first.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in
                 first.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=20)}
    first.close()
    assert sum(o for o in committed.values() if o >= 0) == len(seen) >= 300  # -1001: nothing committed there

    coordinator = offsets_partition().leader
    brokers[coordinator].kill9()
    wait_until(lambda: (p := offsets_partition()) is not None and p.leader not in (coordinator, -1), timeout=30,
               message="a new leader for __consumer_offsets: the new group coordinator")

    second = consumer()
    resumed: list[Any] = []
    try:
        second.subscribe([TOPIC])
        deadline = time.monotonic() + 60
        while len(resumed) < 600 - len(seen) and time.monotonic() < deadline:
            resumed += [m for m in second.consume(300, 0.5) if m.error() is None]
    finally:
        second.close()
    first_offsets: dict[int, int] = {}
    for m in resumed:
        first_offsets.setdefault(m.partition(), m.offset())
    expected = {p: max(o, 0) for p, o in committed.items() if o < 200}  # no commit: from the start
    assert first_offsets == expected  # resumed exactly at the commits
    values = sorted(m.value() for m in seen + resumed)
    assert values == sorted(b"%03d" % i for i in range(600))  # nothing skipped, nothing read twice
