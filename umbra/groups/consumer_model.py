"""The in-memory model of consumer-protocol groups (KIP-848): members with epochs, the group epoch, the target
assignment. Pure data; the transitions are in :mod:`umbra.groups.consumer`."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# topic name -> partitions
TopicPartitions = dict[str, frozenset[int]]
LEAVE_EPOCH = -1
LEAVE_STATIC_EPOCH = -2


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"


class MemberState(enum.Enum):
    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"  # it must give some up before it moves to the target epoch
    UNRELEASED_PARTITIONS = "unreleased_partitions"  # at the target epoch, waiting for others to release some


@dataclass(slots=True)
class ClassicProtocol:
    """What a member that still speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat) in a consumer group
    needs beyond a consumer-protocol member: its JoinGroup protocols (to move the group back to the classic
    protocol) and the protocol name its JoinGroup was answered with (SyncGroup must name the same)."""

    protocols: list[tuple[str, bytes]]
    protocol_name: str


@dataclass(slots=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int = 0
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: TopicPartitions = field(default_factory=dict)  # what it owns and may use
    revoking: TopicPartitions = field(default_factory=dict)  # what it must release
    session_timeout_ms: int = 0  # the group's consumer.session.timeout.ms when it heartbeat last
    session_deadline_ms: int = 0
    revocation_deadline_ms: int | None = None
    # Topics its regex matched that it may DESCRIBE (Kafka filters regex matches by the member's ACLs).
    regex_topics: frozenset[str] = frozenset()
    may_describe: Callable[[str], bool] | None = None
    # Set for a member that uses the classic protocol (KIP-848's online migration); its member epoch is its
    # generation id.
    classic: ClassicProtocol | None = None

    @property
    def subscribed_topics(self) -> frozenset[str]:
        return frozenset(self.subscribed_topic_names) | self.regex_topics

    def owns(self, topic: str, partition: int) -> bool:
        return partition in self.assigned.get(topic, ()) or partition in self.revoking.get(topic, ())


@dataclass(slots=True)
class ConsumerGroupData:
    """The consumer-protocol side of a ``Group`` (``Group.consumer``); offsets stay on the ``Group``."""

    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    target: dict[str, TopicPartitions] = field(default_factory=dict)  # member id -> target assignment
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    # Partition counts of the subscribed topics when the target was last computed: a change bumps the epoch.
    partition_counts: dict[str, int] = field(default_factory=dict)
    topics_seen: dict[str, int] | None = None  # every topic when the above was last computed
    assignor_name: str = ""

    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch != self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(m.member_epoch != self.assignment_epoch or m.state is not MemberState.STABLE
               for m in self.members.values() if m.member_epoch != LEAVE_STATIC_EPOCH):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def subscribed_topics(self) -> frozenset[str]:
        return frozenset().union(*(m.subscribed_topics for m in self.members.values()))

    def owner(self, topic: str, partition: int) -> str | None:
        """The member that owns the partition now (assigned or still revoking it), if any."""
        for member in self.members.values():
            if member.owns(topic, partition):
                return member.member_id
        return None

    def owned_by_others(self, member_id: str) -> set[tuple[str, int]]:
        return {(t, p) for m in self.members.values() if m.member_id != member_id
                for source in (m.assigned, m.revoking) for t, parts in source.items() for p in parts}


def flatten(assignment: Mapping[str, frozenset[int]]) -> set[tuple[str, int]]:
    return {(t, p) for t, parts in assignment.items() for p in parts}


def group_by_topic(partitions: set[tuple[str, int]]) -> TopicPartitions:
    grouped: dict[str, set[int]] = {}
    for topic, partition in partitions:
        grouped.setdefault(topic, set()).add(partition)
    return {topic: frozenset(parts) for topic, parts in grouped.items()}
