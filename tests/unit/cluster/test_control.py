"""The controller's pure decisions: partition assignment, leader election from the ISR, preferred leaders."""

from __future__ import annotations

import uuid

from umbra.cluster.control import (
    BrokerInfo,
    assign_partitions,
    elect_leaders,
    parse_endpoints,
    restore_preferred_leaders,
)
from umbra.cluster.metadata import PartitionAssignment, TopicMetadata


def topic(*assignments: PartitionAssignment) -> TopicMetadata:
    return TopicMetadata("t", uuid.uuid4(), len(assignments), assignments=assignments)


def test_round_robin_spreads_replicas_and_leaders() -> None:
    placed = assign_partitions(6, 3, [3, 1, 2], start=1)
    assert [a.replicas for a in placed[:3]] == [(2, 3, 1), (3, 1, 2), (1, 2, 3)]
    assert sorted(a.leader for a in placed) == [1, 1, 2, 2, 3, 3]  # two leaderships each
    assert all(a.isr == a.replicas and a.leader == a.replicas[0] and a.leader_epoch == 0 for a in placed)


def test_a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() -> None:
    before = topic(PartitionAssignment((1, 2, 3), 1, 4, (1, 3)),  # 2 is not in sync: never elected
                   PartitionAssignment((2, 3, 1), 2, 0, (2, 3, 1)))
    after = elect_leaders(before, alive={2, 3})
    assert after is not None
    assert after.assignments[0] == PartitionAssignment((1, 2, 3), 3, 5, (3,))
    assert after.assignments[1] == before.assignments[1]
    assert elect_leaders(after, alive={2, 3}) is None  # nothing more to do


def test_no_unclean_election() -> None:
    offline = topic(PartitionAssignment((1, 2), 1, 3, (1,)))
    assert elect_leaders(offline, alive={2}) is None  # 2 is alive but was not in sync: the partition waits


def test_leadership_goes_back_to_the_preferred_replica_once_it_is_in_sync() -> None:
    moved = topic(PartitionAssignment((1, 2, 3), 2, 5, (2, 3)))
    assert restore_preferred_leaders(moved, alive={1, 2, 3}) is None  # 1 is back but not in sync yet
    in_sync = topic(PartitionAssignment((1, 2, 3), 2, 5, (1, 2, 3)))
    restored = restore_preferred_leaders(in_sync, alive={1, 2, 3})
    assert restored is not None and restored.assignments[0] == PartitionAssignment((1, 2, 3), 1, 6, (1, 2, 3))


def test_endpoints() -> None:
    assert parse_endpoints("http://a:1, http://b:2/") == [("a", 1), ("b", 2)]
    for bad in ("a:1", "https://a:1", "http://a", "http://a:x", ""):
        try:
            parse_endpoints(bad)
        except ValueError as exc:
            assert str(exc)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_replicas_span_racks() -> None:
    racks = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    placed = assign_partitions(12, 3, list(racks), start=0, racks=racks)
    for a in placed:
        assert len({racks[r] for r in a.replicas}) == 3, a  # one replica per rack
    assert sorted(a.leader for a in placed) == sorted([1, 2, 3, 4, 5, 6] * 2)  # leaders still spread
    two_racks = {1: "a", 2: "a", 3: "b"}
    for a in assign_partitions(6, 2, [1, 2, 3], racks=two_racks):
        assert {two_racks[r] for r in a.replicas} == {"a", "b"}


def test_a_registration_holds_every_listener_address() -> None:
    """Metadata answers with each broker's address on the client's listener; a broker without it is left out."""
    info = BrokerInfo(1, None, "10.0.0.1:9092", "http://10.0.0.1:9644",
                      listeners=(("PLAINTEXT", "10.0.0.1:9092"), ("SSL", "kafka-1.example:9093")))
    again = BrokerInfo.from_json(info.to_json(), alive=True)
    assert again == info
    assert again.address_for("SSL") == "kafka-1.example:9093" and again.address_for(None) == "10.0.0.1:9092"
    assert again.address_for("SASL_SSL") is None
    # a registration from before listeners: its one address is the PLAINTEXT listener's
    old = {"node_id": 2, "rack": None, "kafka_address": "10.0.0.2:9092", "admin_address": "http://10.0.0.2:9644"}
    legacy = BrokerInfo.from_json(old, alive=True)
    assert legacy.address_for("PLAINTEXT") == "10.0.0.2:9092" and legacy.address_for("SSL") is None
