"""The replica manager: the partitions this broker holds, each with its log and its place in the replica set.

Handlers never take a log and stamp it themselves: they ask for a *leader partition* at the epoch the client
knows (:meth:`ReplicaManager.leader_partition`), which raises the error Kafka gives for each case, then append
and read through it. The partition stamps its leader epoch on appends and is the one place that moves the
high watermark (to the lowest log end offset of the in-sync replicas).

Today every partition has one replica, this broker, which leads it at the epoch the broker took at start-up
(bumped at every start, as a Kafka election would). The replica set, the ISR and the epochs are per partition,
so the control plane can assign them once partitions are replicated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from umbra.cluster.metadata import TopicMetadata
from umbra.errors import (
    FencedLeaderEpoch,
    NotEnoughReplicas,
    NotLeaderOrFollower,
    UnknownLeaderEpoch,
    UnknownTopicOrPartition,
)
from umbra.records.crc import Buffer
from umbra.storage.log import AppendResult, Log


@dataclass(frozen=True, slots=True)
class PartitionState:
    """Who holds a partition: what Metadata reports (no log needed)."""

    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class Partition:
    """One partition on this broker: its log, and its role in the replica set."""

    def __init__(self, topic: str, index: int, log: Log, state: PartitionState) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self._state = state
        self._lock = threading.Lock()

    @property
    def state(self) -> PartitionState:
        return self._state

    @property
    def leader_epoch(self) -> int:
        return self._state.leader_epoch

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """KIP-320: a client naming an older epoch is fenced, a newer one is ahead of this broker (retriable).
        ``-1`` skips the check (older clients)."""
        epoch = self._state.leader_epoch
        if current_leader_epoch < 0 or current_leader_epoch == epoch:
            return
        if current_leader_epoch < epoch:
            raise FencedLeaderEpoch(f"{self.topic}-{self.index}: leader epoch {current_leader_epoch} is older "
                                    f"than {epoch}")
        raise UnknownLeaderEpoch(f"{self.topic}-{self.index}: leader epoch {current_leader_epoch} is newer than "
                                 f"{epoch}")

    def check_min_insync(self, required: int) -> None:
        """acks=all needs at least ``required`` in-sync replicas (min.insync.replicas)."""
        if len(self._state.isr) < required:
            raise NotEnoughReplicas(f"{self.topic}-{self.index} needs {required} in-sync replicas "
                                    f"(min.insync.replicas) and has {len(self._state.isr)}")

    def append_as_leader(self, records: Buffer, now_ms: int) -> AppendResult:
        result = self.log.append_as_leader(records, leader_epoch=self._state.leader_epoch, now_ms=now_ms)
        self.maybe_advance_high_watermark()
        return result

    def maybe_advance_high_watermark(self) -> None:
        """The high watermark is the lowest log end offset over the ISR; with this broker the only replica,
        its own log end offset."""
        with self._lock:
            end = self.log.log_end_offset
            if end > self.log.high_watermark:
                self.log.high_watermark = end


class ReplicaManager:
    """The partitions of this broker, opened on first use."""

    def __init__(self, node_id: int, leader_epoch: int, topic_of: Callable[[str], TopicMetadata | None],
                 open_log: Callable[[str, int], Log]) -> None:
        self.node_id = node_id
        self._epoch = leader_epoch
        self._topic_of = topic_of
        self._open_log = open_log
        self._partitions: dict[tuple[str, int], Partition] = {}
        self._lock = threading.Lock()

    def state(self, topic: str, index: int) -> PartitionState:
        """Who holds ``topic-index`` (for Metadata; opens nothing)."""
        me = (self.node_id,)
        return PartitionState(self.node_id, self._epoch, me, me)

    def leader_partition(self, topic: str, index: int, current_leader_epoch: int = -1) -> Partition:
        """The partition, if this broker leads it at ``current_leader_epoch`` (``-1``: any); else the error
        Kafka answers: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH or
        UNKNOWN_LEADER_EPOCH."""
        meta = self._topic_of(topic)
        if meta is None or not 0 <= index < meta.partitions:
            raise UnknownTopicOrPartition(f"{topic}-{index} does not exist on this broker")
        state = self.state(topic, index)
        if state.leader != self.node_id:
            raise NotLeaderOrFollower(f"{topic}-{index} is led by broker {state.leader}, not {self.node_id}")
        partition = self._partition(topic, index, meta, state)
        partition.check_leader_epoch(current_leader_epoch)
        return partition

    def _partition(self, topic: str, index: int, meta: TopicMetadata, state: PartitionState) -> Partition:
        log = self._open_log(topic, index)  # the log manager's: a recreated topic has a new log
        key = (topic, index)
        with self._lock:
            existing = self._partitions.get(key)
            if existing is None or existing.log is not log:
                existing = Partition(topic, index, log, state)
                self._partitions[key] = existing
            return existing

    def forget_topic(self, topic: str) -> None:
        """A deleted topic: its partitions go (their logs are the log manager's to remove)."""
        with self._lock:
            for key in [key for key in self._partitions if key[0] == topic]:
                del self._partitions[key]
