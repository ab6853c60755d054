"""The in-memory model of classic consumer groups: members, groups, committed offsets (the consumer protocol's
side of a group is in ``consumer_model.py``).

Pure data and small rules (protocol selection, liveness). The coordinator drives the
transitions; nothing here does I/O or touches the event loop.
"""

from __future__ import annotations

import enum
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from umbra.groups.consumer_model import ConsumerGroupData


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_timestamp_ms: int


@dataclass(slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    # (name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    # Deadline of the session: the member is removed when no heartbeat (or join/sync) arrives before it.
    session_deadline_ms: int = 0
    # Futures of a JoinGroup / SyncGroup this member is waiting on (asyncio futures, owned by the coordinator).
    join_waiter: Any = None
    sync_waiter: Any = None

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None


@dataclass(slots=True)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # group_instance_id -> member_id
    # Member ids handed out with MEMBER_ID_REQUIRED and not joined yet -> deadline (ms).
    pending_members: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], OffsetAndMetadata] = field(default_factory=dict)
    # Deadline by which a rebalance completes even if some members have not rejoined.
    rebalance_deadline_ms: int = 0
    # While set, the rebalance is in Kafka's "initial delay" for a new group: wait this long for more members.
    initial_delay_until_ms: int | None = None
    initial_delay_limit_ms: int = 0
    state_since_ms: int = 0
    # Set while the group uses the consumer protocol (KIP-848): its members, epochs and assignments. Its classic
    # members stay empty, and ``state`` is only Empty or Stable (it has members) for the classic-side checks.
    consumer: ConsumerGroupData | None = None

    @property
    def group_type(self) -> str:
        return "classic" if self.consumer is None else "consumer"

    def state_name(self) -> str:
        """The state as ListGroups and the describe APIs show it (a consumer group has states of its own)."""
        return self.state.value if self.consumer is None else self.consumer.state().value

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def add_member(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove_member(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.group_instance_id is not None and self.static_members.get(member.group_instance_id) == member_id:
            del self.static_members[member.group_instance_id]
        if self.leader_id == member_id:
            self.leader_id = self._pick_leader()
        return member

    def _pick_leader(self) -> str | None:
        # Prefer a member that already rejoined: it will get the member list in its JoinGroup response.
        for member in self.members.values():
            if member.awaiting_join:
                return member.member_id
        return next(iter(self.members), None)

    def static_member_id(self, group_instance_id: str | None) -> str | None:
        if group_instance_id is None:
            return None
        return self.static_members.get(group_instance_id)

    def is_fenced_instance(self, member_id: str, group_instance_id: str | None) -> bool:
        """True when ``group_instance_id`` belongs to the group under another member id."""
        known = self.static_member_id(group_instance_id)
        return known is not None and known != member_id

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        members = list(self.members.values())
        if not members:
            return set()
        common = set(members[0].protocol_names)
        for member in members[1:]:
            common &= set(member.protocol_names)
        return common

    def supports_protocols(self, protocol_type: str, protocol_names: list[str]) -> bool:
        if not self.members:
            return bool(protocol_type) and bool(protocol_names)
        return protocol_type == self.protocol_type and bool(self.candidate_protocols() & set(protocol_names))

    def select_protocol(self) -> str:
        """Each member votes for its most preferred protocol among those every member supports."""
        candidates = self.candidate_protocols()
        votes: Counter[str] = Counter()
        for member in self.members.values():
            votes[next(name for name in member.protocol_names if name in candidates)] += 1
        # Ties go to the protocol the leader prefers most, so the choice is deterministic.
        leader = self.members.get(self.leader_id or "")
        preference = leader.protocol_names if leader else sorted(candidates)
        best = max(votes.values())
        return next(name for name in preference if votes.get(name) == best)

    def all_members_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def max_rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to, from consumer-protocol metadata; None when it cannot be known."""
        if self.consumer is not None:
            return set(self.consumer.subscribed_topics())
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = parse_subscription_topics(member.metadata_for(self.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics


def parse_subscription_topics(metadata: bytes) -> set[str] | None:
    """The topic list of a ConsumerProtocolSubscription (any version: the topics come first). None if malformed."""
    try:
        (count,) = struct.unpack_from(">i", metadata, 2)
        pos = 6
        if count < 0 or count > len(metadata):
            return None
        topics = set()
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.add(metadata[pos : pos + length].decode("utf-8"))
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
