"""A cluster of three brokers on etcd serving one topic together: the controller creates topics in etcd with
their partitions assigned over the live brokers, each broker leads its share, clients are steered by Metadata,
and the group coordinator is the leader of __consumer_offsets. (Replication between brokers comes next: topics
have replication factor 1 here; test_replication.py replicates.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from cluster_helpers import alive, cluster_broker, status, status_when
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness import BrokerProcess, wait_until

from umbra.devcluster import EtcdServer

BrokerFactory = Callable[..., BrokerProcess]


def three_brokers(factory: BrokerFactory, etcd: EtcdServer) -> dict[int, BrokerProcess]:
    brokers = {n: cluster_broker(factory, etcd, "east", n) for n in (1, 2, 3)}
    for b in brokers.values():
        status_when(b, lambda d: alive(d) == {1: True, 2: True, 3: True} and d["controller"] is not None,
                    "three live brokers and a controller")
    return brokers


def bootstrap(brokers: dict[int, BrokerProcess]) -> str:
    return ",".join(b.bootstrap for b in brokers.values())


def create(admin: AdminClient, name: str, partitions: int, replication: int = 1) -> None:
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=replication)]).values():
        future.result(timeout=30)


def test_three_brokers_serve_one_topic(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    brokers = three_brokers(broker_factory, etcd)
    controller = status(brokers[1])["controller"]
    admin = AdminClient({"bootstrap.servers": brokers[2].bootstrap})  # librdkafka sends CreateTopics to the controller
    create(admin, "spread", 6)

    def leaders() -> dict[int, int] | None:
        topic = admin.list_topics(timeout=10).topics.get("spread")
        if topic is None or topic.error is not None or len(topic.partitions) != 6:
            return None
        return {p: topic.partitions[p].leader for p in topic.partitions}

    placed = wait_until(leaders, timeout=30, message="every broker sees the new topic")
    cluster = admin.list_topics(timeout=10)
    assert sorted(cluster.brokers) == [1, 2, 3] and cluster.controller_id == controller
    assert sorted(set(placed.values())) == [1, 2, 3]  # each broker leads two of the six
    def held(n: int) -> list[str]:
        return sorted(p.name for p in brokers[n].data_dir.glob("spread-*"))

    for n in brokers:  # each broker opens the partitions it leads when it reads the topic, and only those
        wait_until(lambda n=n: held(n) == sorted(f"spread-{p}" for p, leader in placed.items() if leader == n),
                   timeout=30, message=f"broker {n} holds its partitions")

    # A broker asked for a partition it does not lead says so, and says who does (KIP-951).
    from kafka.protocol.consumer import FetchRequest
    from rawclient import RawConnection

    led_elsewhere = next(b for n, b in brokers.items() if n != placed[0])
    with RawConnection("127.0.0.1", led_elsewhere.port) as conn:
        answer = conn.request(1, 12, replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20,
                              isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                              forgotten_topics_data=[], topics=[FetchRequest.FetchTopic(topic="spread", partitions=[
                                  FetchRequest.FetchTopic.FetchPartition(
                                      partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1,
                                      log_start_offset=-1, partition_max_bytes=1 << 20)])])
        entry = answer.responses[0].partitions[0]
        assert entry.error_code == 6 and entry.current_leader.leader_id == placed[0]  # NOT_LEADER_OR_FOLLOWER

    producer = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "enable.idempotence": True})
    for i in range(600):
        producer.produce("spread", key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(60) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": "readers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: list[bytes] = []
    try:
        consumer.subscribe(["spread"])
        deadline = time.monotonic() + 60
        while len(got) < 600 and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(200, 0.5) if m.error() is None]
        assert sorted(got) == sorted(b"v%d" % i for i in range(600))  # every record once
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition("spread", p) for p in range(6)], timeout=20)
        assert sum(tp.offset for tp in committed) == 600
    finally:
        consumer.close()

    # The group coordinator is the leader of __consumer_offsets, whichever broker is asked.
    offsets_leader = admin.list_topics(topic="__consumer_offsets", timeout=10).topics["__consumer_offsets"] \
        .partitions[0].leader
    assert offsets_leader in (1, 2, 3)
    assert (brokers[offsets_leader].data_dir / "__consumer_offsets-0").exists()


def test_topic_admin_goes_through_the_controller(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    from kafka.admin import KafkaAdminClient
    from kafka.admin import NewTopic as KafkaNewTopic
    from kafka.errors import InvalidReplicationFactorError

    brokers = three_brokers(broker_factory, etcd)
    python_admin = KafkaAdminClient(bootstrap_servers=bootstrap(brokers), request_timeout_ms=20_000)
    try:
        assert sorted(b["broker_id"] for b in python_admin.describe_cluster()["brokers"]) == [1, 2, 3]
        python_admin.create_topics([KafkaNewTopic("by-kafka-python", 3, 1)])
        wait_until(lambda: sum(len(list(b.data_dir.glob("by-kafka-python-*"))) for b in brokers.values()) == 3,
                   timeout=30, message="the leaders of the topic created through kafka-python opened it")
        try:
            python_admin.create_topics([KafkaNewTopic("four-copies", 3, 4)])
            raise AssertionError("replication factor 4 was accepted on three brokers")
        except InvalidReplicationFactorError as exc:
            assert "larger than available brokers: 3" in str(exc)
        python_admin.delete_topics(["by-kafka-python"])
        wait_until(lambda: not any(list(b.data_dir.glob("by-kafka-python-*")) for b in brokers.values()),
                   timeout=30, message="every broker removed its partitions of the deleted topic")
    finally:
        python_admin.close()

    # Topic configs and partition counts change through the controller, and every broker applies them.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions

    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    create(admin, "tuned", 3, replication=2)
    resource = ConfigResource("topic", "tuned", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)

    def stored_configs(broker: BrokerProcess) -> dict[str, str]:
        try:
            doc = json.loads((broker.data_dir / "cluster-metadata.json").read_text())
        except (OSError, ValueError):
            return {}
        return next((t["configs"] for t in doc["topics"] if t["name"] == "tuned"), {})

    wait_until(lambda: all(stored_configs(b).get("retention.ms") == "3600000" for b in brokers.values()),
               timeout=30, message="every broker applied the new topic config")
    admin.create_partitions([NewPartitions("tuned", 6)])["tuned"].result(timeout=30)
    wait_until(lambda: len(admin.list_topics(topic="tuned", timeout=10).topics["tuned"].partitions) == 6,
               timeout=30, message="six partitions")
    wait_until(lambda: sum(len(list(b.data_dir.glob("tuned-*"))) for b in brokers.values()) == 12, timeout=30,
               message="the new partitions' replicas opened")
    grower = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all"})
    grower.produce("tuned", value=b"in a new partition", partition=5)
    assert grower.flush(30) == 0

    # ACLs and dynamic broker configs are cluster-wide documents: created through one broker, on all of them.
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    one = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    acl = AclBinding(ResourceType.TOPIC, "tuned", ResourcePatternType.LITERAL, "User:alice", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)
    for future in one.create_acls([acl], request_timeout=30).values():
        future.result()

    def has_alice(broker: BrokerProcess) -> bool:
        path = broker.data_dir / "acls.json"
        return path.exists() and "User:alice" in path.read_text()

    wait_until(lambda: all(has_alice(b) for b in brokers.values()), timeout=30,
               message="every broker has the new ACL")
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    three, two = (AdminClient({"bootstrap.servers": brokers[n].bootstrap}) for n in (3, 2))
    assert [b.principal for b in three.describe_acls(everything, request_timeout=30).result()] == ["User:alice"]
    for future in two.delete_acls([everything], request_timeout=30).values():
        assert len(future.result()) == 1
    wait_until(lambda: not any(has_alice(b) for b in brokers.values()), timeout=30,
               message="the ACL deleted on every broker")

    cluster_wide = ConfigResource("broker", "1", incremental_configs=[  # broker 1's, stored for the cluster
        ConfigEntry("log.retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    one.incremental_alter_configs([cluster_wide])[cluster_wide].result(timeout=30)

    def broker_configs(broker: BrokerProcess) -> dict[str, str]:
        try:
            return dict(json.loads((broker.data_dir / "cluster-metadata.json").read_text())["broker_configs"])
        except (OSError, ValueError, KeyError):
            return {}

    wait_until(lambda: all("7200000" in broker_configs(b).values() for b in brokers.values()), timeout=30,
               message="every broker took the cluster-wide broker config")

    # Group configs (resource type 32, KIP-848) are a cluster document in etcd: set through one broker,
    # described by another.
    group = ConfigResource(ResourceType.GROUP, "tuned-group", incremental_configs=[
        ConfigEntry("consumer.session.timeout.ms", "50000", incremental_operation=AlterConfigOpType.SET)])
    one.incremental_alter_configs([group])[group].result(timeout=30)

    def group_session_timeout() -> tuple[str | None, int]:
        described = ConfigResource(ResourceType.GROUP, "tuned-group")
        entry = three.describe_configs([described])[described].result(timeout=30)["consumer.session.timeout.ms"]
        return entry.value, entry.source

    wait_until(lambda: group_session_timeout() == ("50000", 8), timeout=30,  # 8: GROUP_CONFIG
               message=lambda: f"the group config seen by broker 3: {group_session_timeout()}")


def test_a_reassignment_through_the_kafka_api_moves_a_partition(broker_factory: BrokerFactory,
                                                               etcd: EtcdServer) -> None:
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import KafkaAdminClient

    brokers = three_brokers(broker_factory, etcd)
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    create(admin, "moving", 3)

    def partition(index: int) -> Any:
        topic = admin.list_topics(topic="moving", timeout=10).topics["moving"]
        return topic.partitions.get(index) if topic.error is None else None

    wait_until(lambda: partition(0) is not None, timeout=30, message="the topic everywhere")
    producer = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "enable.idempotence": True})
    for i in range(300):
        producer.produce("moving", value=b"%03d" % i, partition=0)
    assert producer.flush(30) == 0

    old = partition(0).leader
    target = [n for n in brokers if n != old]  # two other brokers: replication factor 1 -> 2 as well
    python_admin = KafkaAdminClient(bootstrap_servers=bootstrap(brokers), request_timeout_ms=20_000)
    try:
        result = python_admin.alter_partition_reassignments({KafkaTopicPartition("moving", 0): target})
        assert all(error is None for error in result.values()), result
        wait_until(lambda: sorted(partition(0).replicas) == sorted(target) and partition(0).leader in target,
                   timeout=60, message="partition 0 moved to its new replicas")
        assert not python_admin.list_partition_reassignments()  # finished
    finally:
        python_admin.close()
    wait_until(lambda: not (brokers[old].data_dir / "moving-0").exists(), timeout=30,
               message="the old replica's copy removed")
    for n in target:
        assert (brokers[n].data_dir / "moving-0").exists()

    for i in range(300, 400):  # the moved partition takes writes at its new leader
        producer.produce("moving", value=b"%03d" % i, partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": "after-move",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition("moving", 0, 0)])
        deadline = time.monotonic() + 30
        while len(got) < 400 and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(400, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert got == [b"%03d" % i for i in range(400)]  # every record, in order, once


def test_rebalance_gives_a_new_broker_its_share(broker_factory: BrokerFactory, etcd: EtcdServer) -> None:
    from cluster_helpers import umbra

    first = {n: cluster_broker(broker_factory, etcd, "east", n) for n in (1, 2)}
    for b in first.values():
        status_when(b, lambda d: alive(d) == {1: True, 2: True} and d["controller"] is not None, "two brokers")
    admin = AdminClient({"bootstrap.servers": bootstrap(first)})
    create(admin, "grown", 6, replication=2)
    wait_until(lambda: (t := admin.list_topics(topic="grown", timeout=10).topics["grown"]).error is None
               and len(t.partitions) == 6, timeout=30, message="the topic")

    brokers = {**first, 3: cluster_broker(broker_factory, etcd, "east", 3)}  # joins later: holds nothing yet
    status_when(brokers[3], lambda d: alive(d) == {1: True, 2: True, 3: True}, "three brokers")
    assert not list(brokers[3].data_dir.glob("grown-*"))

    controller = status(brokers[3])["controller"]
    refused = umbra("cluster", "rebalance", "--admin-url", brokers[next(n for n in brokers if n != controller)].admin_url)
    assert refused.returncode != 0 and "ask the controller" in refused.stderr
    done = umbra("cluster", "rebalance", "--admin-url", brokers[controller].admin_url)
    assert done.returncode == 0 and "moving" in done.stdout, done

    def spread() -> bool:
        topic = admin.list_topics(topic="grown", timeout=10).topics["grown"]
        leaders = {p.leader for p in topic.partitions.values()}
        holders = {r for p in topic.partitions.values() for r in p.replicas}
        return leaders == {1, 2, 3} and holders == {1, 2, 3} and all(len(p.isrs) == 2 for p in topic.partitions.values())

    wait_until(spread, timeout=60, message="replicas and leaders on all three brokers")
    assert len(list(brokers[3].data_dir.glob("grown-*"))) == 4  # its share: 12 replicas over 3 brokers
    again = umbra("cluster", "rebalance", "--admin-url", brokers[controller].admin_url)
    assert again.returncode == 0 and "balanced: nothing to move" in again.stdout
