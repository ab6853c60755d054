"""Issue 13, point 2: confluent-kafka consumers with ``group.protocol=consumer`` (KIP-848) on a real broker.

Three members share a topic, a fourth joins and one leaves while records keep coming; every record is consumed
exactly once (each member commits what it consumed before it gives a partition up). A classic-protocol group
reads the same topic at the same time. The committed offsets survive a broker restart: a member of the same
group resumes exactly there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from group_members import CountingMember  # noqa: E402
from group_members import consumed_to as consumed_to_end  # noqa: E402
from group_members import produce as produce_records  # noqa: E402
from harness import BrokerProcess, create_topic, wait_until  # noqa: E402

TOPIC = "kip848-orders"
GROUP = "kip848-group"
CLASSIC_GROUP = "kip848-classic-group"
PARTITIONS = 6
# A short heartbeat interval makes the consumer protocol's reconciliation quick (it advances on heartbeats).
BROKER_CONFIG = {"group_initial_rebalance_delay_ms": 0, "group_consumer_heartbeat_interval_ms": 300,
                 "group_consumer_session_timeout_ms": 10000}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(Path(tmp_path_factory.mktemp("kip848")), name="broker", config=BROKER_CONFIG)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def produce(bootstrap: str, per_partition: int, start: int) -> None:
    produce_records(bootstrap, TOPIC, PARTITIONS, per_partition, start)


def new_member(bootstrap: str, name: str, group: str = GROUP, protocol: str = "consumer") -> CountingMember:
    return CountingMember(bootstrap, name, TOPIC, group, protocol)


def poll_all(members: list[CountingMember]) -> None:
    for member in members:
        member.poll()


def shared_by(members: list[CountingMember]) -> bool:
    """Every partition owned by exactly one member, and every member owning some (the sizes are balanced)."""
    poll_all(members)
    sizes = [len(m.assignment) for m in members]
    owned = Counter(p for m in members for p in m.assignment)
    return set(owned) == set(range(PARTITIONS)) and max(owned.values()) == 1 and max(sizes) - min(sizes) <= 1


def consumed_to(members: list[CountingMember], end: int, counted: list[CountingMember] | None = None) -> bool:
    return consumed_to_end(members, PARTITIONS, end, counted)


def test_members_join_and_leave_consume_exactly_once_and_commits_survive_restart(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    produce(broker.bootstrap, 50, 0)
    members = [new_member(broker.bootstrap, f"member-{i}") for i in range(3)]
    classic = new_member(broker.bootstrap, "classic", group=CLASSIC_GROUP, protocol="classic")
    everyone = [*members]
    try:
        wait_until(lambda: shared_by(members), timeout=60, message="three members sharing six partitions")
        assert sorted(len(m.assignment) for m in members) == [2, 2, 2]

        joiner = new_member(broker.bootstrap, "member-3")
        members.append(joiner)
        everyone.append(joiner)
        produce(broker.bootstrap, 50, 50)
        wait_until(lambda: shared_by(members) and bool(joiner.assignment), timeout=60,
                   message="four members sharing six partitions")

        leaving = members.pop(0)
        leaving.consumer.close()  # it commits in on_revoke, then leaves with epoch -1
        produce(broker.bootstrap, 50, 100)
        wait_until(lambda: shared_by(members), timeout=60, message="three members again after one left")
        wait_until(lambda: consumed_to(members, 150, everyone), timeout=60, message="every record consumed")
        wait_until(lambda: (classic.poll(), consumed_to([classic], 150))[1], timeout=60,
                   message="the classic group to read everything alongside")
    finally:
        for member in members:
            member.consumer.close()
    classic.consumer.close()

    total = Counter[tuple[int, int]]()
    for member in everyone:
        total.update(member.seen)
    assert set(total) == {(p, o) for p in range(PARTITIONS) for o in range(150)}
    twice = {key: count for key, count in total.items() if count != 1}
    assert not twice, f"records consumed more than once: {sorted(twice)[:10]}"
    assert all(count == 1 for count in classic.seen.values()) and len(classic.seen) == 150 * PARTITIONS

    # The group's commits are in __consumer_offsets: they survive a restart, and a member resumes there.
    broker.stop()
    broker.start()
    produce(broker.bootstrap, 10, 150)
    resumed = new_member(broker.bootstrap, "member-after-restart")
    try:
        stored = resumed.consumer.committed([confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                                            timeout=30)
        assert {tp.partition: tp.offset for tp in stored} == dict.fromkeys(range(PARTITIONS), 150)
        wait_until(lambda: (resumed.poll(), len(resumed.seen) >= 10 * PARTITIONS)[1], timeout=60,
                   message="the member after the restart to read the new records")
    finally:
        resumed.consumer.close()
    assert set(resumed.seen) == {(p, o) for p in range(PARTITIONS) for o in range(150, 160)}


def test_regex_subscription_follows_topics_created_and_deleted(broker: BrokerProcess) -> None:
    """librdkafka sends a ``^`` subscription as SubscribedTopicRegex; the broker resolves it, and a topic created
    or deleted changes the assignment on the next heartbeats."""
    from confluent_kafka.admin import AdminClient

    create_topic(broker.bootstrap, "kip848-rx-1", partitions=2)
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "kip848-regex",
                                         "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    assigned: set[tuple[str, int]] = set()
    consumer.subscribe(["^kip848-rx-.*"],
                       on_assign=lambda _c, ps: assigned.update((p.topic, p.partition) for p in ps),
                       on_revoke=lambda _c, ps: assigned.difference_update((p.topic, p.partition) for p in ps))

    def assignment_is(expected: set[tuple[str, int]]) -> bool:
        consumer.poll(0.05)
        return assigned == expected

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        wait_until(lambda: assignment_is({("kip848-rx-1", 0), ("kip848-rx-1", 1)}), timeout=30,
                   message="the regex's topic assigned")
        create_topic(broker.bootstrap, "kip848-rx-2", partitions=1)
        create_topic(broker.bootstrap, "kip848-other", partitions=1)  # not matched
        wait_until(lambda: assignment_is({("kip848-rx-1", 0), ("kip848-rx-1", 1), ("kip848-rx-2", 0)}),
                   timeout=30, message="a new matching topic assigned")
        admin.delete_topics(["kip848-rx-1"])["kip848-rx-1"].result(10)
        wait_until(lambda: assignment_is({("kip848-rx-2", 0)}), timeout=30,
                   message="the deleted topic's partitions gone")
    finally:
        consumer.close()
