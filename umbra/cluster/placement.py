"""Placement an operator asks for: the checks Kafka makes on a manual replica assignment (CreateTopics and
CreatePartitions ``assignments``) before a topic or its new partitions take it, and the preferred-leader election
of ElectLeaders.

The automatic placement (round-robin, rack-aware) is :func:`umbra.cluster.control.assign_partitions`; both end
in the same :class:`PartitionAssignment` (replicas, the first of them leading at epoch 0, all in sync).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from umbra.cluster.metadata import PartitionAssignment
from umbra.errors import ErrorCode, InvalidReplicaAssignment, KafkaError


def check_replica_lists(replica_lists: Sequence[Sequence[int]], live: Collection[int],
                        replication_factor: int | None = None, first_partition: int = 0) -> int:
    """Check the replica lists of consecutive partitions (the first is ``first_partition``): each non-empty,
    without a broker twice, every broker live, and all of one length (``replication_factor`` when given: a
    topic's new partitions keep its factor). Returns that length; InvalidReplicaAssignment names the offending
    partition and broker otherwise."""
    expected = replication_factor
    for offset, replicas in enumerate(replica_lists):
        partition = first_partition + offset
        if not replicas:
            raise InvalidReplicaAssignment(f"partition {partition} has an empty replica list")
        seen: set[int] = set()
        for broker in replicas:
            if broker in seen:
                raise InvalidReplicaAssignment(f"partition {partition} names broker {broker} twice in its "
                                               f"replicas {list(replicas)}")
            seen.add(broker)
            if broker not in live:
                raise InvalidReplicaAssignment(f"partition {partition} names broker {broker}, which is not a live "
                                               f"broker (live: {sorted(live)})")
        if expected is None:
            expected = len(replicas)
        elif len(replicas) != expected:
            raise InvalidReplicaAssignment(f"partition {partition} has {len(replicas)} replicas {list(replicas)} "
                                           f"where every partition must have {expected} (the replication factor)")
    if expected is None:
        raise InvalidReplicaAssignment("the replica assignment names no partition")
    return expected


def indexed_replica_lists(assignments: Sequence[tuple[int, Sequence[int]]]) -> list[list[int]]:
    """CreateTopics' (partition index, broker ids) pairs in partition order; the indexes must be 0, 1, ... n-1
    (Kafka: a consecutive 0-based sequence), else InvalidReplicaAssignment names the first gap or repeat."""
    by_index: dict[int, list[int]] = {}
    for index, brokers in assignments:
        if index in by_index:
            raise InvalidReplicaAssignment(f"partition {index} is assigned more than once")
        by_index[index] = list(brokers)
    for expected, index in enumerate(sorted(by_index)):
        if index != expected:
            raise InvalidReplicaAssignment(f"partition ids must be consecutive from 0: partition {expected} is "
                                           f"missing (next given: {index})")
    return [by_index[index] for index in range(len(by_index))]


def manual_assignments(replica_lists: Sequence[Sequence[int]]) -> tuple[PartitionAssignment, ...]:
    """Checked replica lists as partition assignments: the first replica (the preferred one) leads."""
    return tuple(PartitionAssignment(tuple(r), r[0], 0, tuple(r)) for r in replica_lists)


def elect_preferred(a: PartitionAssignment, alive: Collection[int]) -> PartitionAssignment:
    """ElectLeaders (PREFERRED) on one partition: its first replica leads, at the next epoch. KafkaError
    ELECTION_NOT_NEEDED when it already does, PREFERRED_LEADER_NOT_AVAILABLE when it is not alive and in sync
    (as Kafka's controller answers)."""
    preferred = a.replicas[0]
    if a.leader == preferred and preferred in alive:
        raise KafkaError(f"broker {preferred}, the preferred replica, already leads", ErrorCode.ELECTION_NOT_NEEDED)
    if preferred not in alive or preferred not in a.isr:
        raise KafkaError(f"the preferred replica, broker {preferred}, is not a live in-sync replica "
                         f"(ISR {list(a.isr)})", ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE)
    return replace(a, leader=preferred, leader_epoch=a.leader_epoch + 1)
