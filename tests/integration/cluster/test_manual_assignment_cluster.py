"""Manual replica assignments and preferred-leader elections on a cluster of two brokers on etcd, through
kafka-python's admin client: the controller stores the assignment it was given (checked against the live
brokers), and ElectLeaders moves a partition's leadership to its preferred replica.

One etcd and one cluster for the module; automatic leader rebalancing is off, so that only ElectLeaders moves a
leader back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cluster_helpers import alive, cluster_broker, status_when
from harness import BrokerProcess, require_command, stop_all, wait_until
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from umbra.devcluster import EtcdServer

INVALID_REPLICA_ASSIGNMENT = 39
ELECTION_NOT_NEEDED = 84
PREFERRED_LEADER_NOT_AVAILABLE = 80


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, BrokerProcess]]:
    require_command("etcd", "make install installs Debian's etcd-server as root")
    work = tmp_path_factory.mktemp("manual-cluster")
    etcd = EtcdServer(work / "etcd").start()
    started: list[BrokerProcess] = []

    def factory(name: str, **options: Any) -> BrokerProcess:
        broker = BrokerProcess(work / name, name=name, **options)
        started.append(broker)
        return broker.start()

    try:
        brokers = {n: cluster_broker(factory, etcd, "manual", n, {"auto_leader_rebalance_enable": False})
                   for n in (1, 2)}
        for b in brokers.values():
            status_when(b, lambda d: alive(d) == {1: True, 2: True} and d["controller"] is not None,
                        "two live brokers and a controller")
        yield brokers
    finally:
        errors = stop_all(reversed(started))  # the brokers leave the cluster before etcd stops
        etcd.stop()
        if errors:
            raise errors[0]


@pytest.fixture
def admin(cluster: dict[int, BrokerProcess]) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=[b.bootstrap for b in cluster.values()], request_timeout_ms=20_000)
    try:
        yield client
    finally:
        client.close()


def placement(admin: KafkaAdminClient, topic: str) -> list[tuple[list[int], int]] | None:
    """Each partition's (replicas, leader) as DescribeTopicPartitions answers, or None before the topic shows."""
    (described,) = admin.describe_topic_partitions([topic])["topics"]
    if described["error_code"] != 0:
        return None
    return [(p["replica_nodes"], p["leader_id"]) for p in described["partitions"]]


def test_manual_assignments_are_stored_as_given(admin: KafkaAdminClient) -> None:
    created = admin.create_topics({"placed": {"assignments": {0: [2, 1], 1: [1, 2]}}})
    assert [(t["error_code"], t["replication_factor"]) for t in created["topics"]] == [(0, 2)]
    wait_until(lambda: placement(admin, "placed") == [([2, 1], 2), ([1, 2], 1)], timeout=30,
               message="the partitions on the replicas given, the first of each leading")

    refused = admin.create_topics({"placed-7": {"assignments": {0: [1, 7]}}}, raise_errors=False)
    (topic,) = refused["topics"]
    assert topic["error_code"] == INVALID_REPLICA_ASSIGNMENT and "broker 7" in topic["error_message"]

    grown = admin.create_partitions({"placed": {"count": 3, "assignments": [[2, 1]]}})
    assert [r.error_code for r in grown.results] == [0]
    wait_until(lambda: (placement(admin, "placed") or [])[2:] == [([2, 1], 2)], timeout=30,
               message="the new partition on the replicas given")
    narrower = admin.create_partitions({"placed": {"count": 4, "assignments": [[1]]}}, raise_errors=False)
    (result,) = narrower.results
    assert result.error_code == INVALID_REPLICA_ASSIGNMENT and "replication factor" in result.error_message


def election_code(admin: KafkaAdminClient, topic: str, partition: int) -> int:
    response = admin.elect_leaders(0, {topic: [partition]}, raise_errors=False)
    ((code,),) = [[p.error_code for p in t.partition_result] for t in response.replica_election_results]
    return int(code)


def test_elect_leaders_moves_leadership_to_the_preferred_replica(admin: KafkaAdminClient) -> None:
    admin.create_topics({"elected": {"assignments": {0: [1, 2]}}})
    wait_until(lambda: placement(admin, "elected") == [([1, 2], 1)], timeout=30, message="the topic, led by 1")
    assert election_code(admin, "elected", 0) == ELECTION_NOT_NEEDED

    # A reassignment that only reorders the replicas makes broker 2 the preferred replica and leaves 1 leading.
    assert admin.alter_partition_reassignments({TopicPartition("elected", 0): [2, 1]}) == {
        TopicPartition("elected", 0): None}
    wait_until(lambda: placement(admin, "elected") == [([2, 1], 1)] and not admin.list_partition_reassignments(),
               timeout=30, message="the replicas reordered, broker 1 still leading")

    # Broker 2 may be briefly out of the ISR after the reassignment: retried until it is in sync.
    wait_until(lambda: election_code(admin, "elected", 0) != PREFERRED_LEADER_NOT_AVAILABLE, timeout=30,
               message="the preferred replica elected")
    wait_until(lambda: placement(admin, "elected") == [([2, 1], 2)], timeout=30,
               message="broker 2, the preferred replica, leading")
    assert election_code(admin, "elected", 0) == ELECTION_NOT_NEEDED
