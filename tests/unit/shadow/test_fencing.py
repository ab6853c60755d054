"""Fencing of shadow appends by leader epoch: a replicator writes only while its broker leads the partition at
the epoch the replicator started under. A deposed leader holding a fetched batch has the write refused and
its log untouched; that is the same write path the engine's writer thread runs."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from umbra.client.fetch_response import FetchedPartition
from umbra.cluster.metadata import PartitionAssignment, TopicMetadata
from umbra.errors import ErrorCode
from umbra.records.records import build_batch
from umbra.server.replicas import ReplicaManager
from umbra.shadow.engine import ReplicationEngine
from umbra.shadow.replicator import PartitionReplicator, plan_append
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

ME, OTHER = 1, 2


def fetched(base_offset: int, count: int) -> FetchedPartition:
    """A source's Fetch answer for partition 0: one batch at ``base_offset`` (source epoch 3)."""
    batch = build_batch([(b"k", b"v%d" % i, [], 1_000 + i) for i in range(count)], base_offset=base_offset,
                        partition_leader_epoch=3)
    return FetchedPartition("t", None, 0, 0, base_offset + count, base_offset + count, 0, memoryview(batch),
                            fetch_offset=base_offset)


@pytest.mark.parametrize("deposed_by", ["another leader", "a new epoch of this broker"])
def test_a_deposed_leader_holding_a_fetched_batch_cannot_append_it(tmp_path: Path, deposed_by: str) -> None:
    topics = {"t": TopicMetadata("t", uuid.uuid4(), 1, assignments=(
        PartitionAssignment((ME, OTHER), ME, 5, (ME, OTHER)),))}
    log = Log.open(tmp_path / "t-0", "t", 0, LogConfig())
    replicas = ReplicaManager(ME, 0, topics.get, lambda topic, index: log)
    rep = PartitionReplicator(("t", 0), replicas.leader_partition("t", 0), None)
    assert rep.leader_epoch == 5

    first = fetched(0, 4)  # while it leads at epoch 5: written, stamped with epoch 5
    errors = ReplicationEngine._write_on_thread([(rep, first, plan_append(first))])
    assert errors == {} and log.log_end_offset == 4 and rep.appended

    in_hand = fetched(4, 3)  # fetched before the controller moved the leadership
    planned = plan_append(in_hand)
    a = topics["t"].assignments[0]
    moved = replace(a, leader=OTHER, leader_epoch=6) if deposed_by == "another leader" else replace(a, leader_epoch=6)
    topics["t"] = replace(topics["t"], assignments=(moved,))
    before = (log.log_end_offset, log.size_in_bytes, bytes(log.read(0, 1 << 20)))
    rep.appended = False

    errors = ReplicationEngine._write_on_thread([(rep, in_hand, planned)])

    expected = ErrorCode.NOT_LEADER_OR_FOLLOWER if deposed_by == "another leader" else ErrorCode.FENCED_LEADER_EPOCH
    assert errors[("t", 0)].code is expected, errors
    assert not rep.appended
    assert (log.log_end_offset, log.size_in_bytes, bytes(log.read(0, 1 << 20))) == before  # the log is untouched
    log.close()
