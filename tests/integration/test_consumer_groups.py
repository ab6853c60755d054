"""Issue 2, point 2: a consumer group of real confluent-kafka consumers on a real broker.

Three consumers share a 6-partition topic, rebalance when one leaves, and commit. The broker is then
killed with SIGKILL and restarted; a new consumer in the group resumes at the committed offsets. Every
produced record is consumed by someone, and none is skipped (duplicates after uncommitted progress are
allowed; gaps are not).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from harness import create_topic, wait_until  # noqa: E402

TOPIC = "orders"
GROUP = "order-processors"
PARTITIONS = 6
RECORDS_PER_PARTITION = 200
BROKER_CONFIG = {"group_initial_rebalance_delay_ms": 0}


def produce_all(bootstrap: str) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures: list[Any] = []
    for i in range(RECORDS_PER_PARTITION):
        for partition in range(PARTITIONS):
            producer.produce(TOPIC, key=f"k{partition}-{i}".encode(), value=f"v{i}".encode(), partition=partition,
                             on_delivery=lambda err, msg: failures.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


class GroupMember:
    """One consumer and what it saw: its assignment and the offsets it consumed per partition."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.name = name
        self.assignment: set[int] = set()
        self.consumed: dict[int, list[int]] = defaultdict(list)
        self.consumer = confluent_kafka.Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 300,
            "partition.assignment.strategy": "range",
        })
        self.consumer.subscribe([TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.assignment = {p.partition for p in partitions}

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self.assignment = set()

    def poll(self, max_records: int = 100) -> int:
        """Consume up to ``max_records`` that are already there; returns how many."""
        count = 0
        while count < max_records:
            message = self.consumer.poll(0.05)
            if message is None:
                break
            if message.error() is not None:
                assert message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, message.error()
                continue
            self.consumed[message.partition()].append(message.offset())
            count += 1
        return count

    def commit(self) -> dict[int, int]:
        """Commit the positions of the assigned partitions synchronously; returns what was committed."""
        positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
        if not positions:
            return {}
        committed = self.consumer.commit(offsets=positions, asynchronous=False)
        for tp in committed:
            assert tp.error is None, tp.error
        return {tp.partition: tp.offset for tp in committed}


def poll_all(members: list[GroupMember]) -> None:
    for member in members:
        member.poll()


def balanced(members: list[GroupMember]) -> bool:
    poll_all(members)
    assigned = [m.assignment for m in members]
    every = set().union(*assigned)
    return every == set(range(PARTITIONS)) and sum(len(a) for a in assigned) == PARTITIONS and all(assigned)


def consumed_offsets(members: list[GroupMember]) -> dict[int, set[int]]:
    union: dict[int, set[int]] = defaultdict(set)
    for member in members:
        for partition, offsets in member.consumed.items():
            union[partition].update(offsets)
    return union


def test_group_rebalances_commits_and_resumes_after_kill9(broker_factory: Any) -> None:
    broker = broker_factory("broker", config=BROKER_CONFIG)
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    produce_all(broker.bootstrap)

    members = [GroupMember(broker.bootstrap, f"consumer-{i}") for i in range(3)]
    everyone = list(members)
    try:
        wait_until(lambda: balanced(members), timeout=60, message="three consumers sharing six partitions")
        assert all(len(m.assignment) == 2 for m in members)

        # Everyone makes some progress and commits it.
        wait_until(lambda: (poll_all(members), all(sum(map(len, m.consumed.values())) >= 50 for m in members))[1],
                   timeout=30, message="every consumer to consume some records")
        committed: dict[int, int] = {}
        for member in members:
            committed.update(member.commit())
        leaving = members.pop()
        leaving_partitions = set(leaving.assignment)
        leaving.consumer.close()  # LeaveGroup: its partitions go to the other two

        wait_until(lambda: balanced(members), timeout=60, message="two consumers sharing six partitions")
        assert leaving_partitions <= members[0].assignment | members[1].assignment

        # More progress, committed; then a little more that is never committed (duplicates later are fine).
        wait_until(lambda: (poll_all(members), sum(len(o) for o in consumed_offsets(everyone).values()) >= 700)[1],
                   timeout=30, message="the two consumers to make progress")
        for member in members:
            committed.update(member.commit())
        for member in members:
            member.poll(20)
    finally:
        for member in members:
            member.consumer.close()

    assert committed and all(offset > 0 for offset in committed.values())
    broker.kill9()
    broker.start()

    resumed = GroupMember(broker.bootstrap, "consumer-after-restart")
    everyone.append(resumed)
    try:
        stored = resumed.consumer.committed(
            [confluent_kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=30)
        assert {tp.partition: tp.offset for tp in stored if tp.offset >= 0} == committed

        # Partitions committed at their end have nothing left to deliver.
        unfinished = [p for p in range(PARTITIONS) if committed.get(p, 0) < RECORDS_PER_PARTITION]
        assert unfinished, "the test should leave some records uncommitted"

        def caught_up() -> bool:
            resumed.poll(500)
            return all(max(resumed.consumed.get(p, [-1])) >= RECORDS_PER_PARTITION - 1 for p in unfinished)

        wait_until(caught_up, timeout=60, message="the new consumer to read every partition to its end")
    finally:
        resumed.consumer.close()

    for partition in unfinished:
        first = min(resumed.consumed[partition])
        assert first == committed.get(partition, 0), f"partition {partition} resumed at {first}"
    union = consumed_offsets(everyone)
    for partition in range(PARTITIONS):
        missing = set(range(RECORDS_PER_PARTITION)) - union[partition]
        assert not missing, f"partition {partition}: offsets {sorted(missing)[:10]}... were never consumed"
