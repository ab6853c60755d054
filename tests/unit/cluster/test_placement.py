"""Manual replica assignments checked as Kafka checks them, and the preferred-leader election."""

from __future__ import annotations

import pytest

from umbra.cluster.metadata import PartitionAssignment
from umbra.cluster.placement import check_replica_lists, elect_preferred, indexed_replica_lists, manual_assignments
from umbra.errors import ErrorCode, InvalidReplicaAssignment, KafkaError


def test_live_distinct_replicas_of_one_length_are_accepted() -> None:
    assert check_replica_lists([[1, 2], [2, 3], [3, 1]], {1, 2, 3}) == 2
    assert check_replica_lists([[0]], {0}) == 1


@pytest.mark.parametrize(("lists", "replication", "message"), [
    ([[1], [7]], None, "partition 1 names broker 7"),
    ([[1, 1]], None, "names broker 1 twice"),
    ([[1], []], None, "partition 1 has an empty replica list"),
    ([[1, 2], [1]], None, "partition 1 has 1 replicas"),
    ([[1]], 2, "must have 2"),
    ([], None, "names no partition"),
])
def test_refusals_name_the_partition_and_broker(lists: list[list[int]], replication: int | None, message: str) -> None:
    with pytest.raises(InvalidReplicaAssignment, match=message):
        check_replica_lists(lists, {1, 2}, replication)


def test_new_partitions_are_numbered_from_the_first_new_one() -> None:
    with pytest.raises(InvalidReplicaAssignment, match="partition 4 names broker 9"):
        check_replica_lists([[1], [9]], {1}, 1, first_partition=3)


def test_partition_ids_must_run_from_zero_without_gaps() -> None:
    assert indexed_replica_lists([(1, [2]), (0, [1])]) == [[1], [2]]
    with pytest.raises(InvalidReplicaAssignment, match="partition 1 is missing"):
        indexed_replica_lists([(0, [1]), (2, [1])])
    with pytest.raises(InvalidReplicaAssignment, match="partition 0 is missing"):
        indexed_replica_lists([(1, [1])])
    with pytest.raises(InvalidReplicaAssignment, match="more than once"):
        indexed_replica_lists([(0, [1]), (0, [2])])


def test_the_first_replica_leads_a_manual_assignment() -> None:
    assert manual_assignments([[2, 1]]) == (PartitionAssignment((2, 1), 2, 0, (2, 1)),)


def test_preferred_election() -> None:
    moved = elect_preferred(PartitionAssignment((2, 1), 1, 4, (1, 2)), {1, 2})
    assert (moved.leader, moved.leader_epoch, moved.replicas, moved.isr) == (2, 5, (2, 1), (1, 2))
    with pytest.raises(KafkaError) as not_needed:
        elect_preferred(PartitionAssignment((1, 2), 1, 0, (1, 2)), {1, 2})
    assert not_needed.value.code == ErrorCode.ELECTION_NOT_NEEDED
    for isr, alive in (((1,), {1, 2}), ((1, 2), {1})):  # not in sync, or not alive
        with pytest.raises(KafkaError) as unavailable:
            elect_preferred(PartitionAssignment((2, 1), 1, 0, isr), alive)
        assert unavailable.value.code == ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE
