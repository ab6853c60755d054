"""Issue 13: KIP-848's online migration with real confluent-kafka consumers.

A classic group of two members (``group.protocol=classic``, the eager ``range`` assignor) consumes a 4-partition
topic. One member restarts with ``group.protocol=consumer``: the group becomes a consumer group online, the
classic member staying in it (ConsumerGroupDescribe shows one member of each type) and getting its share through
rejoins. Then the consumer-protocol member leaves: the group goes back to the classic protocol and the remaining
member reads everything. Every record produced before, during and after is consumed exactly once: each member
commits synchronously after each poll and before it gives partitions up. A kafka-python classic member also joins
a consumer group of a confluent-kafka consumer-protocol member, shares its partitions, and leaves.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka.admin import AdminClient  # noqa: E402
from group_members import CountingMember  # noqa: E402
from group_members import consumed_to as consumed_to_end  # noqa: E402
from group_members import produce as produce_records  # noqa: E402
from harness import BrokerProcess, create_topic, wait_until  # noqa: E402
from rawclient import RawConnection  # noqa: E402

from umbra.protocol.codec import build_request  # noqa: E402

TOPIC = "migration-orders"
GROUP = "migration-group"
PARTITIONS = 4
BROKER_CONFIG = {"group_initial_rebalance_delay_ms": 0, "group_consumer_heartbeat_interval_ms": 300,
                 "group_consumer_session_timeout_ms": 10000}
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(Path(tmp_path_factory.mktemp("migration")), name="broker", config=BROKER_CONFIG)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def produce(bootstrap: str, per_partition: int, start: int, topic: str = TOPIC) -> None:
    produce_records(bootstrap, topic, PARTITIONS, per_partition, start)


def new_member(bootstrap: str, name: str, protocol: str, group: str = GROUP, topic: str = TOPIC) -> CountingMember:
    """Classic members use the eager ``range`` assignor."""
    return CountingMember(bootstrap, name, topic, group, protocol,
                          classic_config={"partition.assignment.strategy": "range"})


def shared_by(members: list[Any]) -> bool:
    """Every partition owned by exactly one member, two each."""
    for member in members:
        member.poll()
    owned = Counter(p for m in members for p in m.assignment)
    return (set(owned) == set(range(PARTITIONS)) and max(owned.values()) == 1
            and all(len(m.assignment) == PARTITIONS // len(members) for m in members))


def consumed_to(polling: list[Any], end: int, counted: list[Any]) -> bool:
    return consumed_to_end(polling, PARTITIONS, end, counted)


def group_type(admin: AdminClient) -> str:
    listed = admin.list_consumer_groups(request_timeout=10).result().valid
    return next(str(g.type.name) for g in listed if g.group_id == GROUP)


def member_types(broker: BrokerProcess, group: str = GROUP) -> dict[str, int]:
    """client id -> ConsumerGroupDescribe v1 member type (0 classic, 1 consumer)."""
    with RawConnection(broker.host, broker.port or 0) as conn:
        request = build_request(69, 1, {"group_ids": [group], "include_authorized_operations": False})
        request.with_header(correlation_id=next(_ids), client_id="raw-test")
        conn.sock.sendall(bytes(request.encode(header=True, framed=True)))
        described = conn.receive(69, 1)[1].groups[0]
    assert described.error_code == 0, described.error_message
    return {m.client_id: m.member_type for m in described.members}


def test_a_classic_group_upgrades_online_and_downgrades_consuming_exactly_once(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    produce(broker.bootstrap, 30, 0)
    first = new_member(broker.bootstrap, "classic-a", "classic")
    second = new_member(broker.bootstrap, "classic-b", "classic")
    everyone = [first, second]
    members = [first, second]
    try:
        wait_until(lambda: shared_by(members), timeout=30, message="two classic members sharing four partitions")
        assert group_type(admin) == "CLASSIC"

        # The second member restarts with the consumer protocol: the group upgrades, the first stays classic.
        second.consumer.close()  # commits in on_revoke, then LeaveGroup
        members.remove(second)
        produce(broker.bootstrap, 30, 30)
        # Once the first owns everything, the upgrade must take partitions from a classic member: through a
        # Heartbeat answering REBALANCE_IN_PROGRESS and a rejoin into the consumer group.
        wait_until(lambda: shared_by(members), timeout=30, message="the first member owning every partition")
        upgraded = new_member(broker.bootstrap, "consumer-b", "consumer")
        everyone.append(upgraded)
        members.append(upgraded)
        wait_until(lambda: shared_by(members), timeout=30, message="a classic and a consumer member sharing")
        assert group_type(admin) == "CONSUMER"
        assert member_types(broker) == {"classic-a": 0, "consumer-b": 1}
        produce(broker.bootstrap, 30, 60)
        wait_until(lambda: consumed_to(members, 90, everyone), timeout=30, message="everything so far consumed")

        # The consumer-protocol member leaves: the group goes back to the classic protocol.
        upgraded.consumer.close()  # commits in on_revoke, then leaves with epoch -1
        members.remove(upgraded)
        produce(broker.bootstrap, 30, 90)
        wait_until(lambda: shared_by(members), timeout=30, message="the classic member owning every partition")
        assert group_type(admin) == "CLASSIC"
        wait_until(lambda: consumed_to(members, 120, everyone), timeout=30, message="every record consumed")
    finally:
        for member in members:
            member.consumer.close()

    total = Counter[tuple[int, int]]()
    for member in everyone:
        total.update(member.seen)
    assert set(total) == {(p, o) for p in range(PARTITIONS) for o in range(120)}
    twice = {key: count for key, count in total.items() if count != 1}
    assert not twice, f"records consumed more than once: {sorted(twice)[:10]}"


class KafkaPythonMember:
    """A kafka-python consumer (classic protocol, range) with the same bookkeeping as ``Member``."""

    def __init__(self, bootstrap: str, name: str, group: str, topic: str) -> None:
        kafka = pytest.importorskip("kafka")
        from kafka.coordinator.assignors.range import RangePartitionAssignor

        self.name = name
        self.assignment: set[int] = set()
        self.seen: Counter[tuple[int, int]] = Counter()
        self.consumer = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id=name, auto_offset_reset="earliest",
            enable_auto_commit=False, partition_assignment_strategy=[RangePartitionAssignor],
            session_timeout_ms=10000, heartbeat_interval_ms=300)
        member = self

        class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                # Nothing to commit: kafka-python rebalances inside poll(), before it returns records, and every
                # poll's records were committed right after it (a sync listener may not block on a commit).
                member.assignment -= {tp.partition for tp in revoked}

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.assignment |= {tp.partition for tp in assigned}

        self.consumer.subscribe([topic], listener=Listener())

    def poll(self) -> None:
        batches = self.consumer.poll(timeout_ms=50, max_records=200)
        for records in batches.values():
            for record in records:
                self.seen[(record.partition, record.offset)] += 1
        if batches:
            self.consumer.commit()


def test_a_kafka_python_classic_member_joins_a_consumer_group(broker: BrokerProcess) -> None:
    """A classic member new to a consumer group (MEMBER_ID_REQUIRED, then a JoinGroup answered at once) gets its
    share once the consumer-protocol member has released it, and leaves with LeaveGroup."""
    topic, group = "migration-kp", "migration-kp-group"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    produce(broker.bootstrap, 20, 0, topic)
    modern = new_member(broker.bootstrap, "consumer-c", "consumer", group, topic)
    everyone: list[Any] = [modern]
    members: list[Any] = [modern]
    try:
        wait_until(lambda: shared_by(members), timeout=30, message="the consumer member owning every partition")
        classic = KafkaPythonMember(broker.bootstrap, "kafka-python-k", group, topic)
        everyone.append(classic)
        members.append(classic)
        wait_until(lambda: shared_by(members), timeout=30, message="kafka-python and confluent sharing")
        assert member_types(broker, group) == {"consumer-c": 1, "kafka-python-k": 0}
        produce(broker.bootstrap, 20, 20, topic)
        wait_until(lambda: consumed_to(members, 40, everyone), timeout=30, message="everything so far consumed")
        classic.consumer.close()  # it committed after each poll; LeaveGroup
        members.remove(classic)
        produce(broker.bootstrap, 20, 40, topic)
        wait_until(lambda: shared_by(members), timeout=30, message="the consumer member owning every partition")
        wait_until(lambda: consumed_to(members, 60, everyone), timeout=30, message="every record consumed")
        assert member_types(broker, group) == {"consumer-c": 1}
    finally:
        for member in members:
            member.consumer.close()
    total = Counter[tuple[int, int]]()
    for member in everyone:
        total.update(member.seen)
    assert set(total) == {(p, o) for p in range(PARTITIONS) for o in range(60)}
    twice = {key: count for key, count in total.items() if count != 1}
    assert not twice, f"records consumed more than once: {sorted(twice)[:10]}"
