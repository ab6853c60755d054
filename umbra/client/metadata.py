"""Immutable snapshots of a remote cluster's metadata, and their construction from Metadata responses."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

TopicPartition = tuple[str, int]
_ZERO_UUID = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    leader_id: int  # -1 when the partition has no leader
    leader_epoch: int  # -1 when the remote does not say (Metadata < v7)
    replicas: tuple[int, ...] = ()
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID | None  # None when the remote has no topic ids (Metadata < v10)
    partitions: Mapping[int, PartitionInfo]
    is_internal: bool = False


@dataclass(frozen=True, slots=True)
class ClusterMetadata:
    cluster_id: str | None = None
    controller_id: int = -1
    brokers: Mapping[int, tuple[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    topics: Mapping[str, TopicInfo] = field(default_factory=lambda: MappingProxyType({}))
    # Topics the last refresh asked for that the remote reported with an error, by error code.
    topic_errors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def leader_for(self, tp: TopicPartition) -> int | None:
        topic = self.topics.get(tp[0])
        partition = topic.partitions.get(tp[1]) if topic else None
        if partition is None or partition.leader_id < 0:
            return None
        return partition.leader_id

    def leader_epoch_for(self, tp: TopicPartition) -> int:
        """The partition's leader epoch, or -1 when unknown (Metadata < v7, or no such partition)."""
        topic = self.topics.get(tp[0])
        partition = topic.partitions.get(tp[1]) if topic else None
        return partition.leader_epoch if partition is not None else -1

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        for topic in self.topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None

    def merged(self, update: ClusterMetadata, topics_asked: Iterable[str]) -> ClusterMetadata:
        """This snapshot with ``update``'s brokers and the topics that a partial refresh asked about."""
        asked = set(topics_asked)
        topics = {name: info for name, info in self.topics.items() if name not in asked}
        topics.update(update.topics)
        return ClusterMetadata(update.cluster_id, update.controller_id, update.brokers,
                               MappingProxyType(topics), update.topic_errors)


def snapshot_from_response(response: Any, version: int) -> ClusterMetadata:
    """Build a snapshot from a decoded Metadata response. Topics with errors go to ``topic_errors``."""
    brokers = {b.node_id: (b.host, b.port) for b in response.brokers}
    topics: dict[str, TopicInfo] = {}
    errors: dict[str, int] = {}
    for topic in response.topics:
        if topic.error_code != 0 or topic.name is None:
            if topic.name is not None:
                errors[topic.name] = topic.error_code
            continue
        topic_id = topic.topic_id if version >= 10 and topic.topic_id not in (None, _ZERO_UUID) else None
        partitions = {
            p.partition_index: PartitionInfo(p.leader_id, p.leader_epoch if version >= 7 else -1,
                                             tuple(p.replica_nodes or ()), p.error_code)
            for p in topic.partitions
        }
        topics[topic.name] = TopicInfo(topic.name, topic_id, MappingProxyType(partitions), bool(topic.is_internal))
    cluster_id = response.cluster_id if version >= 2 else None
    return ClusterMetadata(cluster_id, response.controller_id, MappingProxyType(brokers), MappingProxyType(topics),
                           MappingProxyType(errors))


def metadata_request(topics: Iterable[str] | None) -> dict[str, Any]:
    """Fields of a Metadata request for ``topics`` (None: every topic). Never auto-creates topics."""
    return {
        "topics": None if topics is None else [{"name": name, "topic_id": None} for name in topics],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
