"""Request fields and response parsing for the admin reads a shadow link needs (sans-I/O).

ListOffsets, DescribeConfigs, ListGroups, FindCoordinator, OffsetFetch and DescribeAcls. Each
``*_request`` returns the request fields for a negotiated version; each ``parse_*`` turns the
decoded response into plain frozen values. :class:`umbra.client.cluster.SourceCluster` does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from umbra.client.errors import ClientResponseError
from umbra.protocol.constants import ConfigSource as ConfigSource  # re-exported

TopicPartition = tuple[str, int]
EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
_TOPIC_RESOURCE = 2


@dataclass(frozen=True, slots=True)
class ListedOffset:
    error_code: int
    offset: int
    timestamp: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    value: str | None
    source: ConfigSource | int
    is_sensitive: bool
    read_only: bool


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str  # "" when the remote does not say (ListGroups < v4)


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    leader_epoch: int
    metadata: str | None


class AclBinding(NamedTuple):
    """One ACL as plain values, with the numeric codes Kafka uses on the wire."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission_type: int


@dataclass(frozen=True, slots=True)
class AclFilter:
    """A DescribeAcls filter; the defaults match every ACL (1 = ANY, None = any name)."""

    resource_type: int = 1
    resource_name: str | None = None
    pattern_type: int = 1
    principal: str | None = None
    host: str | None = None
    operation: int = 1
    permission_type: int = 1


def _group_by_topic(tps: Iterable[TopicPartition]) -> dict[str, list[int]]:
    topics: dict[str, list[int]] = {}
    for topic, partition in tps:
        topics.setdefault(topic, []).append(partition)
    return topics


# -- ListOffsets ------------------------------------------------------------------------------------

def list_offsets_request(tps: Iterable[TopicPartition], timestamp: int) -> dict[str, Any]:
    return {
        "replica_id": -1, "isolation_level": 0, "timeout_ms": 30000,
        "topics": [{"name": topic, "partitions": [
            {"partition_index": p, "current_leader_epoch": -1, "timestamp": timestamp} for p in partitions]}
            for topic, partitions in _group_by_topic(tps).items()],
    }


def parse_list_offsets(response: Any, version: int) -> dict[TopicPartition, ListedOffset]:
    result = {}
    for topic in response.topics:
        for p in topic.partitions:
            epoch = p.leader_epoch if version >= 4 else -1
            result[(topic.name, p.partition_index)] = ListedOffset(p.error_code, p.offset, p.timestamp, epoch)
    return result


# -- OffsetForLeaderEpoch ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EpochEndOffset:
    """Where the remote's log says ``leader_epoch`` (the largest epoch <= the one asked) ends; -1s: unknown."""

    error_code: int
    leader_epoch: int
    end_offset: int


def offset_for_leader_epoch_request(epochs: dict[TopicPartition, tuple[int, int]]) -> dict[str, Any]:
    """``epochs``: partition -> (current leader epoch, the epoch to look up)."""
    topics: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), (current, epoch) in epochs.items():
        topics.setdefault(topic, []).append({"partition": partition, "current_leader_epoch": current,
                                             "leader_epoch": epoch})
    return {"replica_id": -1, "topics": [{"topic": t, "partitions": ps} for t, ps in topics.items()]}


def parse_offset_for_leader_epoch(response: Any) -> dict[TopicPartition, EpochEndOffset]:
    return {(topic.topic, p.partition): EpochEndOffset(p.error_code, p.leader_epoch, p.end_offset)
            for topic in response.topics for p in topic.partitions}


# -- DescribeConfigs --------------------------------------------------------------------------------

def describe_configs_request(topics: Iterable[str]) -> dict[str, Any]:
    return {"resources": [{"resource_type": _TOPIC_RESOURCE, "resource_name": topic, "configuration_keys": None}
                          for topic in topics],
            "include_synonyms": False, "include_documentation": False}


def _source(value: int) -> ConfigSource | int:
    try:
        return ConfigSource(value)
    except ValueError:
        return value


def parse_describe_configs(response: Any, include_defaults: bool) -> dict[str, dict[str, ConfigEntry]]:
    """{topic: {name: entry}}. Unknown topics are left out; any other error raises ClientResponseError."""
    result: dict[str, dict[str, ConfigEntry]] = {}
    for resource in response.results:
        if resource.error_code == 3:  # UNKNOWN_TOPIC_OR_PARTITION: gone since the caller looked
            continue
        if resource.error_code != 0:
            raise ClientResponseError(resource.error_code,
                                      f"DescribeConfigs {resource.resource_name}: {resource.error_message or ''}")
        configs = {}
        for config in resource.configs:
            source = _source(config.config_source)
            if source == ConfigSource.DEFAULT_CONFIG and not include_defaults:
                continue
            configs[config.name] = ConfigEntry(config.value, source, bool(config.is_sensitive),
                                               bool(config.read_only))
        result[resource.resource_name] = configs
    return result


# -- ListGroups, FindCoordinator, OffsetFetch -------------------------------------------------------

def list_groups_request() -> dict[str, Any]:
    return {"states_filter": [], "types_filter": []}


def parse_list_groups(response: Any, version: int) -> list[GroupListing]:
    if response.error_code != 0:
        raise ClientResponseError(response.error_code, "ListGroups")
    return [GroupListing(g.group_id, g.protocol_type, g.group_state if version >= 4 else "")
            for g in response.groups]


def find_coordinator_request(group: str, version: int) -> dict[str, Any]:
    if version >= 4:
        return {"key_type": 0, "coordinator_keys": [group]}
    return {"key": group, "key_type": 0}


def parse_find_coordinator(response: Any, version: int) -> tuple[int, str, int]:
    """(node id, host, port) of the coordinator; raises ClientResponseError on an error code."""
    entry = response
    if version >= 4:
        if len(response.coordinators) != 1:
            raise ClientResponseError(-1, f"FindCoordinator returned {len(response.coordinators)} coordinators")
        entry = response.coordinators[0]
    if entry.error_code != 0:
        raise ClientResponseError(entry.error_code, f"FindCoordinator: {entry.error_message or ''}")
    return entry.node_id, entry.host, entry.port


def offset_fetch_request(group: str, tps: Iterable[TopicPartition] | None, version: int) -> dict[str, Any]:
    topics = None if tps is None else [{"name": topic, "partition_indexes": partitions}
                                       for topic, partitions in _group_by_topic(tps).items()]
    if version >= 8:
        return {"groups": [{"group_id": group, "member_id": None, "member_epoch": -1, "topics": topics}],
                "require_stable": False}
    return {"group_id": group, "topics": topics, "require_stable": False}


def parse_offset_fetch(response: Any, version: int, group: str) -> dict[TopicPartition, CommittedOffset]:
    """Committed offsets of the group; partitions with nothing committed (offset -1) are left out."""
    if version >= 8:
        groups = [g for g in response.groups if g.group_id == group]
        if len(groups) != 1:
            raise ClientResponseError(-1, f"OffsetFetch answered for {len(groups)} groups named {group!r}")
        error_code, topics = groups[0].error_code, groups[0].topics
    else:
        error_code, topics = (response.error_code if version >= 2 else 0), response.topics
    if error_code != 0:
        raise ClientResponseError(error_code, f"OffsetFetch for group {group!r}")
    result = {}
    for topic in topics:
        for p in topic.partitions:
            if p.error_code != 0:
                raise ClientResponseError(p.error_code, f"OffsetFetch {group!r} {topic.name}-{p.partition_index}")
            if p.committed_offset < 0:
                continue
            epoch = p.committed_leader_epoch if version >= 5 else -1
            result[(topic.name, p.partition_index)] = CommittedOffset(p.committed_offset, epoch, p.metadata)
    return result


# -- DescribeAcls -----------------------------------------------------------------------------------

def describe_acls_request(acl_filter: AclFilter) -> dict[str, Any]:
    return {
        "resource_type_filter": acl_filter.resource_type, "resource_name_filter": acl_filter.resource_name,
        "pattern_type_filter": acl_filter.pattern_type, "principal_filter": acl_filter.principal,
        "host_filter": acl_filter.host, "operation": acl_filter.operation,
        "permission_type": acl_filter.permission_type,
    }


def parse_describe_acls(response: Any) -> list[AclBinding]:
    if response.error_code != 0:
        raise ClientResponseError(response.error_code, f"DescribeAcls: {response.error_message or ''}")
    return [AclBinding(r.resource_type, r.resource_name, r.pattern_type, a.principal, a.host, a.operation,
                       a.permission_type)
            for r in response.resources for a in r.acls]
