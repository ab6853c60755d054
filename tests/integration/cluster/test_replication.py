"""Replicated partitions (Kafka's ISR model) on a cluster of three brokers on etcd: followers fetch from
leaders, acks=all waits for the ISR, and when a leader is killed the controller elects a new one from the
ISR; nothing acknowledged is lost, and no record is read twice.
"""

from __future__ import annotations

import threading
import time
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
    brokers = {n: cluster_broker(factory, etcd, "east", n, config_extra={"replica_lag_time_max_ms": 4000})
               for n in (1, 2, 3)}
    status_when(brokers[1], lambda d: alive(d) == {1: True, 2: True, 3: True} and d["controller"] is not None,
                "three live brokers")
    return brokers


def partitions_of(admin: AdminClient) -> dict[int, Any]:
    topic = admin.list_topics(topic=TOPIC, timeout=10).topics[TOPIC]
    return dict(topic.partitions)


def read_all(bootstrap: str, expected: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(3)])
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(500, 0.5) if m.error() is None]
        time.sleep(0)  # nothing more is expected: a short extra poll would show duplicates
        got += [m.value() for m in consumer.consume(500, 1.0) if m.error() is None]
    finally:
        consumer.close()
    return got


def test_a_killed_leader_loses_no_acknowledged_record(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3,
                                                config={"min.insync.replicas": "2"})]).values():
        future.result(timeout=30)
    wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()) and len(partitions_of(admin)) == 3,
               timeout=30, message="three partitions with three in-sync replicas")
    for n, broker in brokers.items():  # every broker holds every partition: leader or follower
        wait_until(lambda broker=broker: len(list(broker.data_dir.glob(f"{TOPIC}-*"))) == 3, timeout=30,
                   message=f"broker {n} holds its replicas")

    acknowledged: list[bytes] = []
    failures: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 120_000})

        def report(err: Any, message: Any) -> None:
            if err is None:
                acknowledged.append(message.value())
            else:
                failures.append(str(err))

        i = 0
        while not stop.is_set():
            producer.produce(TOPIC, value=b"%06d" % i, on_delivery=report)
            producer.poll(0.002)
            i += 1
        producer.flush(120)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 500, timeout=60, message="records acknowledged before the kill")

    victim = partitions_of(admin)[0].leader
    brokers[victim].kill9()
    survivor = next(b for n, b in brokers.items() if n != victim)
    status_when(survivor, lambda d: not alive(d)[victim], "the dead broker's lease expires", timeout=30)
    wait_until(lambda: all(p.leader not in (victim, -1) for p in partitions_of(admin).values()), timeout=30,
               message="new leaders for the dead broker's partitions")
    before = len(acknowledged)
    wait_until(lambda: len(acknowledged) >= before + 500, timeout=60, message="producing on after the failover")

    brokers[victim].start()  # it comes back as a follower, catches up, and rejoins the ISR
    wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
               message="the restarted broker back in every ISR")

    # Once it is back, another broker dies: the leader of another partition.
    second = next(p.leader for p in partitions_of(admin).values() if p.leader != victim)
    brokers[second].kill9()
    wait_until(lambda: all(p.leader not in (second, -1) for p in partitions_of(admin).values()), timeout=30,
               message="new leaders for the second dead broker's partitions")
    before = len(acknowledged)
    wait_until(lambda: len(acknowledged) >= before + 500, timeout=60, message="producing on after the second kill")
    brokers[second].start()
    wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
               message="the second broker back in every ISR")
    stop.set()
    writer.join(150)
    assert not failures, failures[:5]

    got = read_all(bootstrap, len(acknowledged))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acknowledged) <= set(got), f"{len(set(acknowledged) - set(got))} acknowledged records lost"
    assert status(survivor)["partitions"]["offline"] == 0


def test_a_rolling_restart_under_load_loses_nothing(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    """SIGTERM each broker in turn and start it again, under an idempotent acks=all producer: a stopping broker
    gives up its lease at once, so the controller moves its leaderships within a poll."""
    brokers = start_cluster(broker_factory, etcd)
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3,
                                                config={"min.insync.replicas": "2"})]).values():
        future.result(timeout=30)
    wait_until(lambda: len(partitions_of(admin)) == 3 and all(len(p.isrs) == 3 for p in partitions_of(admin).values()),
               timeout=30, message="three partitions with three in-sync replicas")
    acknowledged: list[bytes] = []
    failures: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 120_000})

        def report(err: Any, message: Any) -> None:
            (failures.append(str(err)) if err is not None else acknowledged.append(message.value()))

        i = 0
        while not stop.is_set():
            producer.produce(TOPIC, value=b"%06d" % i, on_delivery=report)
            producer.poll(0.002)
            i += 1
        producer.flush(120)

    writer = threading.Thread(target=produce, daemon=True)
    writer.start()
    for n, broker in brokers.items():
        before = len(acknowledged)
        wait_until(lambda before=before: len(acknowledged) >= before + 300, timeout=60,
                   message=f"producing before restarting broker {n}")
        assert broker.stop() == 0  # SIGTERM: a clean exit
        broker.start()
        wait_until(lambda: all(len(p.isrs) == 3 for p in partitions_of(admin).values()), timeout=60,
                   message=f"broker {n} back in every ISR")
    stop.set()
    writer.join(150)
    assert not failures, failures[:5]
    got = read_all(bootstrap, len(acknowledged))
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acknowledged) <= set(got), f"{len(set(acknowledged) - set(got))} acknowledged records lost"
