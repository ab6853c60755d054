"""The consumer group protocol (KIP-848): ConsumerGroupHeartbeat's state machine, run by the coordinator.

The server assigns partitions. Each change of a member's subscription, each member joining or leaving and each
change of a subscribed topic's partitions bumps the group epoch; the target assignment is then recomputed by the
group's assignor (``assignors.py``) at that epoch. Each member then reconciles towards its target on its own
heartbeats: it first revokes what it must give up (its epoch stays), then moves to the target epoch and gets the
new partitions that no other member still owns; those that another member has not released yet come on a later
heartbeat. A partition is thus never owned by two members.

Membership is not persisted (a restart brings members back with epoch 0, see README); offsets are, through the
``Group`` that holds this group's ``ConsumerGroupData``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from umbra.errors import ErrorCode
from umbra.groups.assignors import ASSIGNORS, DEFAULT_ASSIGNOR, AssignmentSpec
from umbra.groups.consumer_model import (
    LEAVE_EPOCH,
    LEAVE_STATIC_EPOCH,
    ConsumerGroupData,
    ConsumerMember,
    MemberState,
    TopicPartitions,
    flatten,
    group_by_topic,
)
from umbra.groups.membership import valid_group_id
from umbra.groups.model import Group, GroupState

log = logging.getLogger("umbra.groups")

CONSUMER_PROTOCOL_TYPE = "consumer"


class HeartbeatError(Exception):
    """A ConsumerGroupHeartbeat refused with ``code`` (the handler puts ``message`` in the response)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: TopicPartitions | None = None  # the partitions the member reports owning; None: unchanged
    client_id: str = ""
    client_host: str = ""
    version: int = 1
    may_describe: Callable[[str], bool] | None = None  # the ACL filter of regex matches
    # The group's own configs (GROUP resource, KIP-848), when set: else the broker's defaults apply.
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    assignment: TopicPartitions | None  # None: unchanged since the last response


def compile_topic_regex(pattern: str) -> re.Pattern[str]:
    """Kafka matches RE2/J patterns against whole topic names. Python's ``re`` agrees on the common syntax
    (classes, alternation, repetition, anchors); it also accepts backreferences and lookarounds, which RE2/J
    refuses, and lacks RE2's ``\\p{Greek}``-style Unicode classes and ``\\C``."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise HeartbeatError(ErrorCode.INVALID_REGULAR_EXPRESSION,
                             f"SubscribedTopicRegex {pattern!r} is not a valid regular expression: {exc}") from None


class ConsumerGroups:
    """ConsumerGroupHeartbeat for every consumer-protocol group in ``groups`` (shared with the classic side)."""

    def __init__(self, groups: dict[str, Group], *, clock: Callable[[], int], heartbeat_interval_ms: int,
                 session_timeout_ms: int) -> None:
        self.groups = groups
        self._clock = clock
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self._topics: Mapping[str, int] = {}  # topic -> partitions, as of the latest heartbeat
        # KIP-848's online migration (``migration.py`` sets them when the policy allows): turn a non-empty classic
        # group into a consumer group (True when done), and a consumer group left with classic members only back.
        self.upgrade: Callable[[Group, int], bool] | None = None
        self.downgrade: Callable[[Group, int], None] | None = None

    def set_topics(self, topics: Mapping[str, int]) -> None:
        """Every topic a consumer may subscribe to (a classic member's JoinGroup brings them, as heartbeats do)."""
        self._topics = topics

    # --- ConsumerGroupHeartbeat --------------------------------------------------------------------
    def heartbeat(self, req: HeartbeatRequest, topics: Mapping[str, int]) -> HeartbeatResult:
        """``topics``: every topic a consumer may subscribe to, with its partition count."""
        now = self._clock()
        self._topics = topics
        self._validate(req)
        if req.member_epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH):
            return self._leave(req, now)
        group, data = self._group_for(req, now)
        member, bump = self._member_for(data, req)
        before = dict(member.assigned)
        bump = self._update_member(member, req) or bump
        member.session_timeout_ms = req.session_timeout_ms or self.session_timeout_ms
        member.session_deadline_ms = now + member.session_timeout_ms
        self._refresh(group, data, bump, now)
        self._reconcile(data, member, req.owned, now)
        full = req.member_epoch == 0 or (req.rebalance_timeout_ms != -1 and req.subscribed_topic_names is not None
                                         and req.owned is not None)
        # As Kafka: the assignment goes out on a full request (a join, or after an error) or when it changed.
        assignment = dict(member.assigned) if full or member.assigned != before else None
        return HeartbeatResult(member.member_id, member.member_epoch,
                               req.heartbeat_interval_ms or self.heartbeat_interval_ms, assignment)

    def _validate(self, req: HeartbeatRequest) -> None:
        def invalid(message: str) -> HeartbeatError:
            return HeartbeatError(ErrorCode.INVALID_REQUEST, message)

        if not valid_group_id(req.group_id):
            raise invalid("GroupId can't be empty.")
        if req.instance_id == "":
            raise invalid("InstanceId can't be empty.")
        if req.rack_id == "":
            raise invalid("RackId can't be empty.")
        if req.member_epoch > 0 or req.member_epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH) or req.version >= 1:
            if not req.member_id:  # version 1+: the consumer generates its member id (KIP-848)
                raise invalid("MemberId can't be empty.")
        if req.member_epoch == 0:
            if req.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or req.owned:
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if not req.subscribed_topic_names and not req.subscribed_topic_regex:
                raise invalid("SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
        elif req.member_epoch == LEAVE_STATIC_EPOCH:
            if req.instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif req.member_epoch < LEAVE_STATIC_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if req.server_assignor is not None and req.server_assignor not in ASSIGNORS:
            raise HeartbeatError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                                 f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                                 f"{', '.join(ASSIGNORS)}.")
        if req.subscribed_topic_regex:
            compile_topic_regex(req.subscribed_topic_regex)

    def _group_for(self, req: HeartbeatRequest, now: int) -> tuple[Group, ConsumerGroupData]:
        group = self.groups.get(req.group_id)
        if group is not None and group.consumer is not None:
            return group, group.consumer
        if (group is not None and group.members and req.member_epoch == 0 and self.upgrade is not None
                and self.upgrade(group, now) and group.consumer is not None):
            return group, group.consumer
        if group is not None and (group.members or group.pending_members or not group.is_(GroupState.EMPTY)):
            raise HeartbeatError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group")
        if req.member_epoch != 0:
            # Membership is not persisted: after a restart (or once the group was deleted) the member must
            # rejoin, which UNKNOWN_MEMBER_ID tells it to do.
            raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID, f"Consumer group {req.group_id} not found.")
        if group is None:
            group = self.groups[req.group_id] = Group(req.group_id, state_since_ms=now)
        else:
            log.info("group %s: an empty classic group becomes a consumer group", req.group_id)
        group.consumer = ConsumerGroupData()
        group.protocol_type = CONSUMER_PROTOCOL_TYPE
        group.protocol_name = None
        return group, group.consumer

    def _member_for(self, data: ConsumerGroupData, req: HeartbeatRequest) -> tuple[ConsumerMember, bool]:
        """The member the request is from, created or replaced on a join; True when the group epoch must bump."""
        if req.member_epoch != 0:
            member = data.members.get(req.member_id)
            if member is None:
                raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID, f"member {req.member_id} is not in the group")
            if req.instance_id is not None and member.instance_id not in (None, req.instance_id):
                raise HeartbeatError(ErrorCode.FENCED_INSTANCE_ID, "the member id belongs to another instance id")
            self._check_epoch(member, req)
            return member, False
        member_id = req.member_id or str(uuid.uuid4())  # version 0: the coordinator names the member
        if req.instance_id is not None:
            old_id = data.static_members.get(req.instance_id)
            if old_id is not None and old_id != member_id:
                old = data.members[old_id]
                if old.member_epoch != LEAVE_STATIC_EPOCH:
                    raise HeartbeatError(ErrorCode.UNRELEASED_INSTANCE_ID,
                                         f"instance id {req.instance_id} is still used by member {old_id}")
                return self._replace_static(data, old, member_id), False
        existing = data.members.get(member_id)
        if existing is not None:
            # A rejoin (epoch 0) of a known member: it has dropped its partitions, so it starts afresh.
            existing.assigned, existing.revoking = {}, {}
            existing.member_epoch = existing.previous_member_epoch = 0
            existing.state, existing.revocation_deadline_ms = MemberState.STABLE, None
            return existing, True
        member = ConsumerMember(member_id, instance_id=req.instance_id)
        data.members[member_id] = member
        if req.instance_id is not None:
            data.static_members[req.instance_id] = member_id
        log.info("group %s: member %s joins (consumer protocol)", req.group_id, member_id)
        return member, True

    @staticmethod
    def _check_epoch(member: ConsumerMember, req: HeartbeatRequest) -> None:
        if req.member_epoch > member.member_epoch:
            raise HeartbeatError(ErrorCode.FENCED_MEMBER_EPOCH,
                                 f"The member epoch ({req.member_epoch}) is greater than the coordinator's "
                                 f"({member.member_epoch}). The member must abandon all its partitions and rejoin.")
        if req.member_epoch < member.member_epoch:
            # The previous epoch with a subset of the current assignment: the response that bumped the epoch
            # may have been lost, so accept it.
            owned = flatten(req.owned) if req.owned is not None else None
            if (req.member_epoch != member.previous_member_epoch or owned is None
                    or not owned <= flatten(member.assigned)):
                raise HeartbeatError(ErrorCode.FENCED_MEMBER_EPOCH,
                                     f"The member epoch ({req.member_epoch}) is smaller than the coordinator's "
                                     f"({member.member_epoch}). The member must abandon all its partitions and "
                                     "rejoin.")

    @staticmethod
    def _replace_static(data: ConsumerGroupData, old: ConsumerMember, member_id: str) -> ConsumerMember:
        """A static member back after leaving with epoch -2: the new member id takes over its assignment."""
        old_id = old.member_id
        del data.members[old_id]
        old.member_id = member_id
        old.member_epoch = old.previous_member_epoch = 0
        old.state, old.revoking, old.revocation_deadline_ms = MemberState.STABLE, {}, None
        data.members[member_id] = old
        data.target[member_id] = data.target.pop(old_id, {})
        if old.instance_id is not None:
            data.static_members[old.instance_id] = member_id
        return old

    def _update_member(self, member: ConsumerMember, req: HeartbeatRequest) -> bool:
        """Apply what the request changes; True when the subscription changed (the group epoch bumps)."""
        changed = False
        if req.subscribed_topic_names is not None:
            names = tuple(sorted(set(req.subscribed_topic_names)))
            changed |= names != member.subscribed_topic_names
            member.subscribed_topic_names = names
        if req.version >= 1 and req.subscribed_topic_regex is not None:
            regex = req.subscribed_topic_regex or None  # an empty regex drops the regex subscription
            changed |= regex != member.subscribed_topic_regex
            member.subscribed_topic_regex = regex
        if req.server_assignor is not None:
            changed |= req.server_assignor != member.server_assignor
            member.server_assignor = req.server_assignor
        if req.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.instance_id is not None:
            member.instance_id = req.instance_id
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.may_describe is not None:
            member.may_describe = req.may_describe
        member.client_id, member.client_host = req.client_id, req.client_host
        return changed

    # --- target assignment and reconciliation ------------------------------------------------------
    def _refresh(self, group: Group, data: ConsumerGroupData, bump: bool, now: int) -> None:
        """Resolve regexes, notice topics created, deleted or grown, and recompute the target on a new epoch."""
        # Both depend only on the members' subscriptions (a change bumps) and the topics: skip them otherwise, so
        # that a steady heartbeat costs O(topics), not O(members).
        if bump or self._topics != data.topics_seen:
            data.topics_seen = dict(self._topics)
            for member in data.members.values():
                member.regex_topics = self._resolve(member)
            counts = {topic: self._topics[topic] for topic in data.subscribed_topics() if topic in self._topics}
            if counts != data.partition_counts:
                data.partition_counts = counts
                bump = True
        counts = data.partition_counts
        if bump:
            data.group_epoch += 1
        if data.group_epoch > data.assignment_epoch:
            data.assignor_name = self._assignor_of(data)
            subscriptions = {mid: m.subscribed_topics & counts.keys() for mid, m in data.members.items()}
            data.target = ASSIGNORS[data.assignor_name](AssignmentSpec(subscriptions, counts, data.target))
            data.assignment_epoch = data.group_epoch
            log.info("group %s: epoch %d, %d members, target assignment by %s", group.group_id, data.group_epoch,
                     len(data.members), data.assignor_name)
        self._sync_state(group, now)

    def _resolve(self, member: ConsumerMember) -> frozenset[str]:
        if not member.subscribed_topic_regex:
            return frozenset()
        pattern = compile_topic_regex(member.subscribed_topic_regex)
        allowed = member.may_describe or (lambda _topic: True)
        return frozenset(t for t in self._topics if pattern.fullmatch(t) and allowed(t))

    @staticmethod
    def _assignor_of(data: ConsumerGroupData) -> str:
        """The server assignor most members ask for (Kafka's rule); the default when none asks."""
        votes = Counter(m.server_assignor for m in data.members.values() if m.server_assignor)
        if not votes:
            return DEFAULT_ASSIGNOR
        best = max(votes.values())
        return min(name for name, count in votes.items() if count == best)

    def _reconcile(self, data: ConsumerGroupData, member: ConsumerMember, owned: TopicPartitions | None,
                   now: int) -> None:
        if member.member_epoch == LEAVE_STATIC_EPOCH:
            return
        if member.state is MemberState.UNREVOKED_PARTITIONS:
            still_owned = flatten(owned) & flatten(member.revoking) if owned is not None else None
            if still_owned is None or still_owned:
                return  # it has not confirmed the revocation yet
            member.revoking = {}
        elif member.state is MemberState.STABLE and member.member_epoch == data.assignment_epoch:
            return
        current = flatten(member.assigned)
        target = flatten(data.target.get(member.member_id, {}))
        revoke = current - target
        # As Kafka: when the request shows the member no longer owns them (a deleted topic's, say), it need not
        # be asked to revoke them.
        if revoke and (owned is None or flatten(owned) & revoke):
            member.assigned = group_by_topic(current & target)
            member.revoking = group_by_topic(revoke)
            member.state = MemberState.UNREVOKED_PARTITIONS
            member.revocation_deadline_ms = now + member.rebalance_timeout_ms
            return
        current -= revoke
        wanted = target - current
        free = {tp for tp in wanted if tp not in data.owned_by_others(member.member_id)} if wanted else set()
        member.assigned, member.revoking = group_by_topic(current | free), {}
        member.revocation_deadline_ms = None
        if member.member_epoch != data.assignment_epoch:
            member.previous_member_epoch, member.member_epoch = member.member_epoch, data.assignment_epoch
        member.state = MemberState.STABLE if free == wanted else MemberState.UNRELEASED_PARTITIONS

    # --- leaving, expiry ---------------------------------------------------------------------------
    def _leave(self, req: HeartbeatRequest, now: int) -> HeartbeatResult:
        group = self.groups.get(req.group_id)
        if group is None or group.consumer is None:
            raise HeartbeatError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group")
        data = group.consumer
        if req.instance_id is None:
            member_id = req.member_id
        else:
            known = data.static_members.get(req.instance_id)
            if known is None:
                raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID, f"instance id {req.instance_id} is unknown")
            if known != req.member_id:
                raise HeartbeatError(ErrorCode.FENCED_INSTANCE_ID,
                                     f"instance id {req.instance_id} belongs to member {known}")
            member_id = known
        member = data.members.get(member_id)
        if member is None:
            raise HeartbeatError(ErrorCode.UNKNOWN_MEMBER_ID, f"member {member_id} is not in the group")
        if req.member_epoch == LEAVE_STATIC_EPOCH:
            # It will be back: keep its assignment (no rebalance) until its session times out.
            member.member_epoch, member.revoking, member.state = LEAVE_STATIC_EPOCH, {}, MemberState.STABLE
            member.session_deadline_ms = now + (member.session_timeout_ms or self.session_timeout_ms)
            log.info("group %s: static member %s (%s) leaves for now", group.group_id, member_id, req.instance_id)
            return HeartbeatResult(member_id, LEAVE_STATIC_EPOCH, self.heartbeat_interval_ms, None)
        self.remove_member(group, member_id, now, "left the group")
        return HeartbeatResult(member_id, LEAVE_EPOCH, self.heartbeat_interval_ms, None)

    def remove_member(self, group: Group, member_id: str, now: int, reason: str) -> None:
        data = group.consumer
        if data is None or data.members.pop(member_id, None) is None:
            return
        for instance_id, known in list(data.static_members.items()):
            if known == member_id:
                del data.static_members[instance_id]
        data.target.pop(member_id, None)
        log.info("group %s: member %s %s", group.group_id, member_id, reason)
        self._refresh(group, data, True, now)
        if self.downgrade is not None:
            self.downgrade(group, now)

    def refresh(self, group: Group, bump: bool, now: int) -> None:
        """Recompute the target assignment if a member joined or changed its subscription (``bump``), or a
        subscribed topic changed (for classic members, whose JoinGroup goes through ``migration.py``)."""
        assert group.consumer is not None
        self._refresh(group, group.consumer, bump, now)

    def reconcile(self, data: ConsumerGroupData, member: ConsumerMember, owned: TopicPartitions, now: int) -> None:
        self._reconcile(data, member, owned, now)

    def tick(self, now: int) -> None:
        """Fence members whose session expired, and members that did not revoke within the rebalance timeout."""
        for group in list(self.groups.values()):
            if group.consumer is None:
                continue
            for member in list(group.consumer.members.values()):
                if now >= member.session_deadline_ms:
                    self.remove_member(group, member.member_id, now, "session timed out")
                elif member.revocation_deadline_ms is not None and now >= member.revocation_deadline_ms:
                    self.remove_member(group, member.member_id, now, "did not revoke its partitions in time")

    def next_deadline(self) -> int | None:
        deadlines = [d for group in self.groups.values() if group.consumer is not None
                     for m in group.consumer.members.values()
                     for d in (m.session_deadline_ms, m.revocation_deadline_ms) if d is not None]
        return min(deadlines, default=None)

    @staticmethod
    def _sync_state(group: Group, now: int) -> None:
        """The classic view of the group (used by retention, DeleteGroups, OffsetDelete): Empty or not."""
        data = group.consumer
        assert data is not None
        state = GroupState.STABLE if data.members else GroupState.EMPTY
        if state is not group.state:
            group.state, group.state_since_ms = state, now

    # --- offsets ----------------------------------------------------------------------------------
    @staticmethod
    def validate_commit(data: ConsumerGroupData, member_id: str, member_epoch: int,
                        api_version: int) -> ErrorCode:
        """Kafka's rules for an OffsetCommit to a consumer group (the generation id field is the member epoch)."""
        if member_epoch < 0 and not data.members:
            return ErrorCode.NONE  # the admin client, or a consumer that assigns partitions itself
        member = data.members.get(member_id)
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if member.classic is not None:  # a classic member commits with its generation, in any version
            return ErrorCode.NONE if member_epoch == member.member_epoch else ErrorCode.ILLEGAL_GENERATION
        if api_version < 9:
            return ErrorCode.UNSUPPORTED_VERSION  # consumer-protocol members commit with version 9+
        return _epoch_error(member_epoch, member.member_epoch)

    @staticmethod
    def validate_fetch(data: ConsumerGroupData, member_id: str | None, member_epoch: int) -> ErrorCode:
        if member_id is None and member_epoch < 0:
            return ErrorCode.NONE  # the admin client, or an older consumer
        member = data.members.get(member_id or "")
        if member is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return _epoch_error(member_epoch, member.member_epoch)


def _epoch_error(received: int, expected: int) -> ErrorCode:
    if received > expected:
        return ErrorCode.FENCED_MEMBER_EPOCH
    if received < expected:
        return ErrorCode.STALE_MEMBER_EPOCH
    return ErrorCode.NONE
