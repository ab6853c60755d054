"""confluent-kafka group members that count what they consume, for the consumer-group compatibility tests
(KIP-848 in test_compat_consumer_protocol.py, online migration in test_compat_group_migration.py).

A ``CountingMember`` counts every (partition, offset) it consumed and commits synchronously after each poll and
before it gives a partition up, so the next owner starts right after it: every record is then consumed exactly
once, which the tests check with ``consumed_to``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from harness import wait_until

from umbra.errors import ErrorCode


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int) -> None:
    """``per_partition`` records into each partition, values v<start>..; every one acknowledged."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures: list[Any] = []
    for i in range(start, start + per_partition):
        for partition in range(partitions):
            producer.produce(topic, value=f"v{i}".encode(), partition=partition,
                             on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


class CountingMember:
    def __init__(self, bootstrap: str, name: str, topic: str, group: str, protocol: str = "consumer",
                 classic_config: dict[str, Any] | None = None) -> None:
        self.name = name
        self.assignment: set[int] = set()
        self.seen: Counter[tuple[int, int]] = Counter()
        self.uncommitted = False
        config = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "group.protocol": protocol}
        if protocol == "classic":
            config.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 300, **(classic_config or {})})
        self.consumer = confluent_kafka.Consumer(config)
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self.assignment |= {p.partition for p in partitions}

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        self.commit()
        self.assignment -= {p.partition for p in partitions}

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        raise AssertionError(f"{self.name} lost partitions {partitions}: the broker fenced it")

    def poll(self, max_records: int = 200) -> None:
        for _ in range(max_records):
            message = self.consumer.poll(0.02)
            if message is None:
                break
            assert message.error() is None, message.error()
            self.seen[(message.partition(), message.offset())] += 1
            self.uncommitted = True
        self.commit()

    def commit(self) -> None:
        if not self.uncommitted:
            return
        positions = [tp for tp in self.consumer.position(self.consumer.assignment()) if tp.offset >= 0]
        if positions:
            wait_until(lambda: self._committed(positions), timeout=10, message=f"{self.name} to commit")
        self.uncommitted = False

    def _committed(self, positions: list[Any]) -> bool:
        """Commit; False on STALE_MEMBER_EPOCH: a heartbeat bumped the member epoch while the commit was in
        flight (as with Kafka), and librdkafka sends the new epoch once the heartbeat response is in."""
        try:
            committed = self.consumer.commit(offsets=positions, asynchronous=False)
        except confluent_kafka.KafkaException as exc:
            if exc.args[0].code() == ErrorCode.STALE_MEMBER_EPOCH:
                return False
            raise
        for tp in committed:
            assert tp.error is None, tp.error
        return True


def consumed_to(polling: Sequence[CountingMember], partitions: int, end: int,
                counted: Sequence[CountingMember] | None = None) -> bool:
    """Poll ``polling``; True once ``counted`` (default: them) consumed every partition up to ``end``."""
    for member in polling:
        member.poll()
    seen = Counter[tuple[int, int]]()
    for member in counted or polling:
        seen.update(member.seen)
    return all((p, o) in seen for p in range(partitions) for o in range(end))
