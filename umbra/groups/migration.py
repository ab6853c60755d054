"""KIP-848's online migration between the classic and the consumer group protocols
(``group.consumer.migration.policy``: ``disabled``, ``upgrade``, ``downgrade`` or ``bidirectional``).

*Upgrade.* A ConsumerGroupHeartbeat joining a non-empty classic group of the Kafka consumer (protocol type
"consumer") turns it into a consumer group. Its members stay, as members that keep speaking the classic protocol,
each with the partitions it owns (its assignment, and the owned partitions its subscription lists: a cooperative
member keeps them through a rebalance) and its member epoch set to the group's generation; the server assignor
takes over from the next epoch.

*Classic members in a consumer group.* Their generation id is their member epoch. A Heartbeat answers
REBALANCE_IN_PROGRESS when the member has something to reconcile; its JoinGroup then reconciles it at once with
the partitions its subscription says it still owns: a member that still owns partitions it must give up gets its
assignment without them and rejoins once it has revoked them (an eager member revokes everything before it
rejoins, a cooperative one rejoins after revoking), and a member only gets partitions no other member owns. So,
as for consumer-protocol members, a partition is never owned by two members. SyncGroup answers the member's
assignment as a ConsumerProtocolAssignment.

*Downgrade.* When the last consumer-protocol member leaves (or is fenced) and classic members remain, the group
becomes a classic group with them, at their generation, and a rebalance follows.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from umbra.errors import ErrorCode
from umbra.groups.consumer import CONSUMER_PROTOCOL_TYPE, ConsumerGroups
from umbra.groups.consumer_model import (
    ClassicProtocol,
    ConsumerGroupData,
    ConsumerMember,
    MemberState,
    TopicPartitions,
    flatten,
    group_by_topic,
)
from umbra.groups.embedded_protocol import (
    EmbeddedProtocolError,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
)
from umbra.groups.membership import JoinRequest, JoinResult, Membership, SyncResult
from umbra.groups.model import Group, GroupState, Member

log = logging.getLogger("umbra.groups")

DISABLED, UPGRADE, DOWNGRADE, BIDIRECTIONAL = "disabled", "upgrade", "downgrade", "bidirectional"
POLICIES = (DISABLED, UPGRADE, DOWNGRADE, BIDIRECTIONAL)


def _answer(waiter: asyncio.Future[object] | None, result: object) -> None:
    """Complete a JoinGroup / SyncGroup a classic member waits on (an asyncio future, see ``Member``)."""
    if waiter is not None and not waiter.done():
        waiter.set_result(result)


def _subscription(metadata: bytes) -> Subscription | None:
    try:
        return decode_subscription(metadata)
    except EmbeddedProtocolError:
        return None


def _merge(*assignments: TopicPartitions) -> TopicPartitions:
    return group_by_topic(set().union(*(flatten(a) for a in assignments)))


class GroupMigration:
    """Moves groups between the protocols as ``policy`` allows, and serves the classic APIs of classic members of
    consumer groups (it is ``Membership.bridge``)."""

    def __init__(self, consumer: ConsumerGroups, membership: Membership, policy: str,
                 clock: Callable[[], int]) -> None:
        policy = policy.lower()  # Kafka reads the policy case-insensitively
        if policy not in POLICIES:
            raise ValueError(f"unknown group consumer migration policy {policy!r}")
        self.policy = policy
        self._consumer = consumer
        self._membership = membership
        self._clock = clock
        if policy != DISABLED:
            membership.bridge = self
        if policy in (UPGRADE, BIDIRECTIONAL):
            consumer.upgrade = self.upgrade
        if policy in (DOWNGRADE, BIDIRECTIONAL):
            consumer.downgrade = self.downgrade

    # --- the conversions ----------------------------------------------------------------------------
    def upgrade(self, group: Group, now: int) -> bool:
        """Turn the classic group into a consumer group keeping its members; False (unchanged) when it is not
        the Kafka consumer's protocol or a member's metadata cannot be read."""
        if group.consumer is not None or group.protocol_type != CONSUMER_PROTOCOL_TYPE or not group.members:
            return False
        converted: list[ConsumerMember] = []
        epoch = max(group.generation_id, 1)  # epoch 0 means "joining" in the consumer protocol
        for member in group.members.values():
            name = group.protocol_name or member.protocols[0][0]
            subscription = _subscription(member.metadata_for(name))
            try:
                assigned = decode_assignment(member.assignment)
            except EmbeddedProtocolError:
                subscription = None
            if subscription is None:
                log.info("group %s: not upgraded: member %s's metadata is not the consumer protocol's",
                         group.group_id, member.member_id)
                return False
            # What it may still own: mid-rebalance its assignment is cleared, but a cooperative member keeps
            # its partitions and lists them in its subscription.
            owned = _merge(assigned, subscription.owned_partitions or {})
            converted.append(ConsumerMember(
                member.member_id, instance_id=member.group_instance_id, rack_id=subscription.rack_id,
                client_id=member.client_id, client_host=member.client_host,
                rebalance_timeout_ms=member.rebalance_timeout_ms,
                subscribed_topic_names=tuple(sorted(set(subscription.topics))), member_epoch=epoch,
                previous_member_epoch=epoch, assigned=owned, session_timeout_ms=member.session_timeout_ms,
                session_deadline_ms=now + member.session_timeout_ms,
                classic=ClassicProtocol(list(member.protocols), name)))
        data = ConsumerGroupData(group_epoch=epoch, assignment_epoch=epoch)
        for cm in converted:
            data.members[cm.member_id] = cm
            data.target[cm.member_id] = dict(cm.assigned)
            if cm.instance_id is not None:
                data.static_members[cm.instance_id] = cm.member_id
        for member in group.members.values():  # those mid-rebalance rejoin, into the consumer group
            _answer(member.join_waiter, JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
            _answer(member.sync_waiter, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
            member.join_waiter = member.sync_waiter = None
        group.members, group.static_members = {}, {}
        group.pending_members.clear()
        group.leader_id, group.protocol_name = None, None
        group.consumer = data
        group.state, group.state_since_ms = GroupState.STABLE, now
        log.info("group %s: a classic group with %d members becomes a consumer group (epoch %d)", group.group_id,
                 len(converted), epoch)
        return True

    def downgrade(self, group: Group, now: int) -> None:
        """Back to a classic group when only classic members are left (nothing happens otherwise)."""
        data = group.consumer
        if data is None or not data.members or any(m.classic is None for m in data.members.values()):
            return
        members = [Member(m.member_id, m.instance_id, m.client_id, m.client_host, m.session_timeout_ms,
                          m.rebalance_timeout_ms, CONSUMER_PROTOCOL_TYPE, list(m.classic.protocols),
                          assignment=encode_assignment(m.assigned), session_deadline_ms=m.session_deadline_ms)
                     for m in data.members.values() if m.classic is not None]
        probe = Group(group.group_id)
        for member in members:
            probe.add_member(member)
        if not probe.candidate_protocols():
            log.info("group %s: stays a consumer group: its classic members share no protocol", group.group_id)
            return
        # Their Heartbeat carries their epoch as the generation: with the generation at that epoch they hear
        # REBALANCE_IN_PROGRESS (and rejoin, committing first) rather than ILLEGAL_GENERATION (partitions lost).
        generation = max(m.member_epoch for m in data.members.values())
        group.consumer = None
        group.members, group.static_members, group.leader_id = {}, {}, None
        for member in members:
            group.add_member(member)
        group.protocol_type = CONSUMER_PROTOCOL_TYPE
        group.protocol_name = probe.select_protocol()
        group.generation_id = generation
        group.state, group.state_since_ms = GroupState.STABLE, now
        log.info("group %s: the consumer group with %d classic members becomes a classic group (generation %d)",
                 group.group_id, len(members), generation)
        self._membership.rebalance_after_downgrade(group, now)

    # --- classic members of a consumer group ----------------------------------------------------------
    def join(self, group: Group, req: JoinRequest, now: int) -> JoinResult:
        data = group.consumer
        assert data is not None
        if req.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)
        chosen = next(((name, sub) for name, metadata in req.protocols
                       if (sub := _subscription(metadata)) is not None), None)
        if chosen is None:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)
        protocol_name, subscription = chosen
        member_id = req.member_id
        member: ConsumerMember | None = None
        if not member_id:
            member_id = f"{(req.group_instance_id or req.client_id)[:200]}-{uuid.uuid4()}"
            known = data.static_members.get(req.group_instance_id) if req.group_instance_id is not None else None
            if known is not None:
                member = self._replace_static(data, known, member_id)
            elif req.require_known_member_id:
                group.pending_members[member_id] = now + req.session_timeout_ms
                return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id)
        elif member_id in group.pending_members:
            del group.pending_members[member_id]
        else:
            member = data.members.get(member_id)
            if member is None or member.classic is None:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id)
            if member.instance_id is not None and req.group_instance_id != member.instance_id:
                return JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id)
        if req.group_instance_id is not None and data.static_members.get(req.group_instance_id) not in (
                None, member_id):
            return JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id)
        bump = member is None
        if member is None:
            member = data.members[member_id] = ConsumerMember(member_id, instance_id=req.group_instance_id)
            if req.group_instance_id is not None:
                data.static_members[req.group_instance_id] = member_id
            log.info("group %s: member %s joins (classic protocol, in a consumer group)", group.group_id, member_id)
        topics = tuple(sorted(set(subscription.topics)))
        bump |= topics != member.subscribed_topic_names
        member.subscribed_topic_names = topics
        member.classic = ClassicProtocol(list(req.protocols), protocol_name)
        member.rack_id = subscription.rack_id
        member.client_id, member.client_host = req.client_id, req.client_host
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.session_deadline_ms = now + req.session_timeout_ms
        self._consumer.refresh(group, bump, now)
        # What its subscription lists is what it still owns: an eager member has revoked everything.
        self._consumer.reconcile(data, member, subscription.owned_partitions or {}, now)
        # No member leads: the server assigns, so every member sends an empty SyncGroup.
        return JoinResult(ErrorCode.NONE, member_id, member.member_epoch, CONSUMER_PROTOCOL_TYPE, protocol_name, "")

    @staticmethod
    def _replace_static(data: ConsumerGroupData, old_id: str, member_id: str) -> ConsumerMember:
        """A static member back under a new member id takes over the old one's place and partitions."""
        member = data.members.pop(old_id)
        member.member_id = member_id
        data.members[member_id] = member
        data.target[member_id] = data.target.pop(old_id, {})
        if member.instance_id is not None:
            data.static_members[member.instance_id] = member_id
        return member

    def _classic_member(self, group: Group, member_id: str,
                        group_instance_id: str | None) -> tuple[ConsumerMember | None, ErrorCode]:
        data = group.consumer
        assert data is not None
        member = data.members.get(member_id)
        if member is None or member.classic is None:
            return None, ErrorCode.UNKNOWN_MEMBER_ID
        if group_instance_id is not None and member.instance_id != group_instance_id:
            return None, ErrorCode.FENCED_INSTANCE_ID
        return member, ErrorCode.NONE

    def sync(self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None,
             protocol_type: str | None, protocol_name: str | None, now: int) -> SyncResult:
        member, error = self._classic_member(group, member_id, group_instance_id)
        if member is None or member.classic is None:
            return SyncResult(error)
        if generation_id != member.member_epoch:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        name = member.classic.protocol_name
        if ((protocol_type is not None and protocol_type != CONSUMER_PROTOCOL_TYPE)
                or (protocol_name is not None and protocol_name != name)):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        member.session_deadline_ms = now + member.session_timeout_ms
        return SyncResult(ErrorCode.NONE, CONSUMER_PROTOCOL_TYPE, name, encode_assignment(member.assigned))

    def heartbeat(self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None,
                  now: int) -> ErrorCode:
        member, error = self._classic_member(group, member_id, group_instance_id)
        if member is None:
            return error
        if generation_id != member.member_epoch:
            return ErrorCode.ILLEGAL_GENERATION
        member.session_deadline_ms = now + member.session_timeout_ms
        assert group.consumer is not None
        return ErrorCode.REBALANCE_IN_PROGRESS if must_rejoin(group.consumer, member) else ErrorCode.NONE

    def leave(self, group: Group, member_id: str, group_instance_id: str | None, now: int) -> ErrorCode:
        data = group.consumer
        assert data is not None
        if group_instance_id is not None:
            known = data.static_members.get(group_instance_id)
            if known is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if member_id and member_id != known:
                return ErrorCode.FENCED_INSTANCE_ID
            member_id = known
        if group.pending_members.pop(member_id, None) is not None:
            return ErrorCode.NONE
        member = data.members.get(member_id)
        if member is None or member.classic is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        self._consumer.remove_member(group, member_id, now, "left the group (classic protocol)")
        return ErrorCode.NONE


def must_rejoin(data: ConsumerGroupData, member: ConsumerMember) -> bool:
    """Whether a classic member has something to reconcile, which only its JoinGroup can do: partitions to
    revoke, a new epoch (its generation), or partitions it waits for that another member has released."""
    if member.state is MemberState.UNREVOKED_PARTITIONS or member.member_epoch != data.assignment_epoch:
        return True
    if member.state is MemberState.UNRELEASED_PARTITIONS:
        wanted = flatten(data.target.get(member.member_id, {})) - flatten(member.assigned)
        return bool(wanted - data.owned_by_others(member.member_id))
    return False
