"""The classic group membership protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and session expiry.

One ``Membership`` owns the transitions of every group's state machine::

    Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance --leader sync--> Stable
      ^                    ^                                            |                              |
      +--- last member ----+------------ leave / expiry / new member ---+------------------------------+

JoinGroup and SyncGroup calls wait on futures that a later request (or ``tick``) completes. Everything
else answers at once. All of it runs on one event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from umbra.errors import ErrorCode, KafkaError
from umbra.groups.model import Group, GroupState, Member

log = logging.getLogger("umbra.groups")

# Limits on client input that Kafka leaves to the request size; they keep one client from exhausting memory.
MAX_GROUP_ID_BYTES = 32767
MAX_PROTOCOLS = 64


@dataclass(slots=True)
class JoinResult:
    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    # (member_id, group_instance_id, metadata): only for the leader.
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = True


class ClassicInConsumerGroup(Protocol):
    """The classic APIs of a member of a consumer group (KIP-848's online migration, ``migration.py``)."""

    def join(self, group: Group, req: JoinRequest, now: int) -> JoinResult: ...

    def sync(self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None,
             protocol_type: str | None, protocol_name: str | None, now: int) -> SyncResult: ...

    def heartbeat(self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None,
                  now: int) -> ErrorCode: ...

    def leave(self, group: Group, member_id: str, group_instance_id: str | None, now: int) -> ErrorCode: ...


def valid_group_id(group_id: str | None) -> bool:
    return bool(group_id) and len(group_id.encode("utf-8")) <= MAX_GROUP_ID_BYTES  # type: ignore[union-attr]


def _resolve(future: asyncio.Future[object] | None, result: object) -> None:
    if future is not None and not future.done():
        future.set_result(result)


class Membership:
    """Group membership transitions. ``persist_group(group)`` writes the group's metadata record (may raise)."""

    def __init__(self, groups: dict[str, Group], *, clock: Callable[[], int], persist_group: Callable[[Group], None],
                 initial_rebalance_delay_ms: int, min_session_timeout_ms: int, max_session_timeout_ms: int) -> None:
        self.groups = groups
        self._clock = clock
        self._persist_group = persist_group
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        # Set (by ``migration.py``) when classic members may be in a consumer group: its classic APIs go there.
        self.bridge: ClassicInConsumerGroup | None = None

    # --- JoinGroup -------------------------------------------------------------------------------
    async def join(self, req: JoinRequest) -> JoinResult:
        now = self._clock()
        if not valid_group_id(req.group_id):
            return JoinResult(ErrorCode.INVALID_GROUP_ID, req.member_id)
        if not self.min_session_timeout_ms <= req.session_timeout_ms <= self.max_session_timeout_ms:
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, req.member_id)
        if not req.protocol_type or not req.protocols or len(req.protocols) > MAX_PROTOCOLS:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)
        group = self.groups.get(req.group_id)
        if group is not None and group.consumer is not None:
            if group.consumer.members or group.pending_members:
                if self.bridge is None:  # the migration policy is "disabled"
                    return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)
                return self.bridge.join(group, req, now)
            log.info("group %s: an empty consumer group becomes a classic group", req.group_id)
            group.consumer = None
            group.protocol_type = None
        if group is None:
            if req.member_id:
                return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id)
            group = self.groups[req.group_id] = Group(req.group_id, state_since_ms=now)
        names = [name for name, _ in req.protocols]
        known = group.members.get(req.member_id)
        sole_member = known is not None and len(group.members) == 1
        if not sole_member and not group.supports_protocols(req.protocol_type, names):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, req.member_id)

        if not req.member_id:
            new_id = self._new_member_id(req.client_id, req.group_instance_id)
            if req.group_instance_id is not None:
                old_id = group.static_member_id(req.group_instance_id)
                if old_id is not None:
                    return await self._replace_static_member(group, old_id, new_id, req, now)
                return await self._add_member_and_rebalance(group, new_id, req, now)
            if req.require_known_member_id:
                group.pending_members[new_id] = now + req.session_timeout_ms
                return JoinResult(ErrorCode.MEMBER_ID_REQUIRED, new_id)
            return await self._add_member_and_rebalance(group, new_id, req, now)

        if req.member_id in group.pending_members:
            del group.pending_members[req.member_id]
            return await self._add_member_and_rebalance(group, req.member_id, req, now)
        if group.is_fenced_instance(req.member_id, req.group_instance_id):
            return JoinResult(ErrorCode.FENCED_INSTANCE_ID, req.member_id)
        member = group.members.get(req.member_id)
        if member is None:
            return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, req.member_id)
        if member.group_instance_id is not None and req.group_instance_id != member.group_instance_id:
            return JoinResult(ErrorCode.FENCED_INSTANCE_ID, req.member_id)
        member.session_deadline_ms = now + req.session_timeout_ms
        changed = member.protocols != req.protocols
        self._update_member(member, req)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return await self._await_join(group, member, now)
        if group.is_(GroupState.COMPLETING_REBALANCE) and not changed:
            return self._join_result(group, member)  # a repeated join: the response was probably lost
        if group.is_(GroupState.STABLE) and not changed and member.member_id != group.leader_id:
            return self._join_result(group, member)
        self._prepare_rebalance(group, now, f"member {member.member_id} rejoined")
        return await self._await_join(group, member, now)

    def _new_member_id(self, client_id: str, group_instance_id: str | None) -> str:
        prefix = group_instance_id if group_instance_id is not None else client_id
        return f"{prefix[:200]}-{uuid.uuid4()}"

    def _update_member(self, member: Member, req: JoinRequest) -> None:
        member.protocols = list(req.protocols)
        member.session_timeout_ms = req.session_timeout_ms
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.client_id = req.client_id
        member.client_host = req.client_host

    async def _add_member_and_rebalance(self, group: Group, member_id: str, req: JoinRequest, now: int) -> JoinResult:
        member = Member(member_id, req.group_instance_id, req.client_id, req.client_host, req.session_timeout_ms,
                        req.rebalance_timeout_ms, req.protocol_type, list(req.protocols),
                        session_deadline_ms=now + req.session_timeout_ms)
        group.add_member(member)
        if group.is_(GroupState.PREPARING_REBALANCE) and group.initial_delay_until_ms is not None:
            # A new group still collecting its first members: give later joiners a moment more.
            group.initial_delay_until_ms = min(now + self.initial_rebalance_delay_ms, group.initial_delay_limit_ms)
        elif not group.is_(GroupState.PREPARING_REBALANCE):
            self._prepare_rebalance(group, now, f"new member {member_id} joined")
        return await self._await_join(group, member, now)

    async def _replace_static_member(self, group: Group, old_id: str, new_id: str, req: JoinRequest,
                                     now: int) -> JoinResult:
        old = group.members[old_id]
        _resolve(old.join_waiter, JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_id))
        _resolve(old.sync_waiter, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        member = Member(new_id, req.group_instance_id, req.client_id, req.client_host, req.session_timeout_ms,
                        req.rebalance_timeout_ms, req.protocol_type, list(req.protocols), assignment=old.assignment,
                        session_deadline_ms=now + req.session_timeout_ms)
        was_leader = group.leader_id == old_id
        self._swap_member(group, old, member)
        if group.is_(GroupState.STABLE) and old.protocols == member.protocols:
            try:
                self._persist_group(group)
            except (KafkaError, OSError) as exc:
                log.warning("group %s: could not store the new member id of %s: %s", group.group_id,
                            req.group_instance_id, exc)
                self._swap_member(group, member, old)
                if was_leader:
                    group.leader_id = old_id
                return JoinResult(ErrorCode.UNKNOWN_SERVER_ERROR, "")
            result = self._join_result(group, member)
            result.skip_assignment = result.leader_id == new_id
            return result
        if not group.is_(GroupState.PREPARING_REBALANCE):
            self._prepare_rebalance(group, now, f"static member {req.group_instance_id} rejoined with changes")
        return await self._await_join(group, member, now)

    @staticmethod
    def _swap_member(group: Group, old: Member, new: Member) -> None:
        members = {}
        for member_id, member in group.members.items():  # keep the order: it decides the next leader
            members[new.member_id if member_id == old.member_id else member_id] = new if member is old else member
        group.members = members
        if new.group_instance_id is not None:
            group.static_members[new.group_instance_id] = new.member_id
        if group.leader_id == old.member_id:
            group.leader_id = new.member_id

    async def _await_join(self, group: Group, member: Member, now: int) -> JoinResult:
        future: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        _resolve(member.join_waiter, JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_waiter = future
        self.maybe_complete_join(group, now)
        return await future

    def _join_result(self, group: Group, member: Member) -> JoinResult:
        protocol = group.protocol_name or ""
        members = []
        if member.member_id == group.leader_id:
            members = [(m.member_id, m.group_instance_id, m.metadata_for(protocol)) for m in group.members.values()]
        return JoinResult(ErrorCode.NONE, member.member_id, group.generation_id, group.protocol_type,
                          group.protocol_name, group.leader_id or "", members)

    # --- rebalance ---------------------------------------------------------------------------------
    def _prepare_rebalance(self, group: Group, now: int, reason: str) -> None:
        if group.is_(GroupState.COMPLETING_REBALANCE):
            for member in group.members.values():
                _resolve(member.sync_waiter, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
                member.sync_waiter = None
        timeout = group.max_rebalance_timeout_ms()
        was_empty = group.is_(GroupState.EMPTY)
        group.state = GroupState.PREPARING_REBALANCE
        group.state_since_ms = now
        group.rebalance_deadline_ms = now + timeout
        if was_empty:
            group.initial_delay_until_ms = now + min(self.initial_rebalance_delay_ms, timeout)
            group.initial_delay_limit_ms = now + timeout
        else:
            group.initial_delay_until_ms = None
        log.info("group %s: preparing rebalance (generation %d): %s", group.group_id, group.generation_id, reason)

    def maybe_complete_join(self, group: Group, now: int) -> None:
        if not group.is_(GroupState.PREPARING_REBALANCE):
            return
        if group.initial_delay_until_ms is not None:
            if now >= group.initial_delay_until_ms:
                self._complete_join(group, now)
        elif group.all_members_joined() or now >= group.rebalance_deadline_ms:
            self._complete_join(group, now)

    def _complete_join(self, group: Group, now: int) -> None:
        group.initial_delay_until_ms = None
        for member in [m for m in group.members.values() if not m.awaiting_join]:
            log.info("group %s: removing member %s, which did not rejoin in time", group.group_id, member.member_id)
            group.remove_member(member.member_id)
        group.pending_members.clear()
        if group.leader_id not in group.members:
            group.leader_id = next(iter(group.members), None)
        group.generation_id += 1
        group.state_since_ms = now
        if not group.members:
            group.state = GroupState.EMPTY
            group.protocol_name = None
            group.leader_id = None
            self._persist_quietly(group)
            log.info("group %s: empty at generation %d", group.group_id, group.generation_id)
            return
        group.state = GroupState.COMPLETING_REBALANCE
        group.protocol_name = group.select_protocol()
        group.rebalance_deadline_ms = now + group.max_rebalance_timeout_ms()
        log.info("group %s: generation %d with %d members, protocol %s, leader %s", group.group_id,
                 group.generation_id, len(group.members), group.protocol_name, group.leader_id)
        for member in group.members.values():
            member.assignment = b""
            member.session_deadline_ms = now + member.session_timeout_ms
            waiter, member.join_waiter = member.join_waiter, None
            _resolve(waiter, self._join_result(group, member))

    def _persist_quietly(self, group: Group) -> None:
        try:
            self._persist_group(group)
        except (KafkaError, OSError) as exc:  # the in-memory state stays right; only a restart would see the older record
            log.warning("group %s: could not store group metadata: %s", group.group_id, exc)

    # --- SyncGroup ---------------------------------------------------------------------------------
    async def sync(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: dict[str, bytes]) -> SyncResult:
        now = self._clock()
        if not valid_group_id(group_id):
            return SyncResult(ErrorCode.INVALID_GROUP_ID)
        group = self.groups.get(group_id)
        if group is None:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if group.consumer is not None and self.bridge is not None:
            return self.bridge.sync(group, generation_id, member_id, group_instance_id, protocol_type, protocol_name,
                                    now)
        if group.is_fenced_instance(member_id, group_instance_id):
            return SyncResult(ErrorCode.FENCED_INSTANCE_ID)
        member = group.members.get(member_id)
        if member is None:
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        if generation_id != group.generation_id:
            return SyncResult(ErrorCode.ILLEGAL_GENERATION)
        if ((protocol_type is not None and protocol_type != group.protocol_type)
                or (protocol_name is not None and protocol_name != group.protocol_name)):
            return SyncResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL)
        if group.is_(GroupState.PREPARING_REBALANCE):
            return SyncResult(ErrorCode.REBALANCE_IN_PROGRESS)
        if not group.is_(GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return SyncResult(ErrorCode.UNKNOWN_MEMBER_ID)
        member.session_deadline_ms = now + member.session_timeout_ms
        if group.is_(GroupState.STABLE):
            return SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment)
        future: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        _resolve(member.sync_waiter, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_waiter = future
        if member_id == group.leader_id:
            self._complete_sync(group, assignments, now)
        return await future

    def _complete_sync(self, group: Group, assignments: dict[str, bytes], now: int) -> None:
        for member in group.members.values():
            member.assignment = assignments.get(member.member_id, b"")
        try:
            self._persist_group(group)
        except (KafkaError, OSError) as exc:
            log.warning("group %s: could not store the assignment: %s", group.group_id, exc)
            for member in group.members.values():
                member.assignment = b""
                _resolve(member.sync_waiter, SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
                member.sync_waiter = None
            self._prepare_rebalance(group, now, "storing the assignment failed")
            return
        group.state = GroupState.STABLE
        group.state_since_ms = now
        for member in group.members.values():
            waiter, member.sync_waiter = member.sync_waiter, None
            _resolve(waiter, SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name, member.assignment))

    # --- Heartbeat ---------------------------------------------------------------------------------
    def heartbeat(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None) -> ErrorCode:
        now = self._clock()
        if not valid_group_id(group_id):
            return ErrorCode.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.consumer is not None and self.bridge is not None:
            return self.bridge.heartbeat(group, generation_id, member_id, group_instance_id, now)
        if group.is_fenced_instance(member_id, group_instance_id):
            return ErrorCode.FENCED_INSTANCE_ID
        member = group.members.get(member_id)
        if member is None or group.is_(GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        member.session_deadline_ms = now + member.session_timeout_ms
        if group.is_(GroupState.PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    # --- LeaveGroup --------------------------------------------------------------------------------
    def leave(self, group_id: str, leaving: list[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        """Remove members given as (member_id, group_instance_id). Returns the group error and one per member."""
        now = self._clock()
        if not valid_group_id(group_id):
            return ErrorCode.INVALID_GROUP_ID, [ErrorCode.INVALID_GROUP_ID] * len(leaving)
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(leaving)
        errors = []
        for member_id, group_instance_id in leaving:
            if group.consumer is not None and self.bridge is not None:  # checked for each: a leave may downgrade
                errors.append(self.bridge.leave(group, member_id, group_instance_id, now))
                continue
            if group_instance_id is not None:
                known = group.static_member_id(group_instance_id)
                if known is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                if member_id and member_id != known:
                    errors.append(ErrorCode.FENCED_INSTANCE_ID)
                    continue
                member_id = known
            if member_id in group.pending_members:
                del group.pending_members[member_id]
                self.maybe_complete_join(group, now)
                errors.append(ErrorCode.NONE)
                continue
            if member_id not in group.members:
                errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                continue
            self.remove_member(group, member_id, now, "left the group")
            errors.append(ErrorCode.NONE)
        return ErrorCode.NONE, errors

    def remove_member(self, group: Group, member_id: str, now: int, reason: str) -> None:
        member = group.remove_member(member_id)
        if member is None:
            return
        log.info("group %s: member %s %s", group.group_id, member_id, reason)
        _resolve(member.join_waiter, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
        _resolve(member.sync_waiter, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        if group.is_(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, now, f"member {member_id} {reason}")
        self.maybe_complete_join(group, now)

    def rebalance_after_downgrade(self, group: Group, now: int) -> None:
        """The group has just become classic again with the consumer group's classic members: they rejoin."""
        self._prepare_rebalance(group, now, "the group moved back to the classic protocol")

    # --- time --------------------------------------------------------------------------------------
    def tick(self, now: int) -> None:
        """Expire sessions, pending member ids and rebalance deadlines."""
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending_members.items()):
                if now >= deadline:
                    del group.pending_members[member_id]
            for member in list(group.members.values()):
                if member.awaiting_join or member.awaiting_sync:
                    continue  # a member waiting on us is alive; the rebalance deadline bounds the wait
                if now >= member.session_deadline_ms:
                    self.remove_member(group, member.member_id, now, "session timed out")
            if group.is_(GroupState.COMPLETING_REBALANCE) and now >= group.rebalance_deadline_ms:
                # The leader never sent its assignment: drop the members that did not sync, and start over.
                for member in [m for m in group.members.values() if not m.awaiting_sync]:
                    self.remove_member(group, member.member_id, now, "did not sync in time")
            self.maybe_complete_join(group, now)

    def next_deadline(self) -> int | None:
        """The earliest time at which ``tick`` has something to do (the coordinator's timer sleeps until then)."""
        deadlines: list[int] = []
        for group in self.groups.values():
            deadlines += group.pending_members.values()
            deadlines += [m.session_deadline_ms for m in group.members.values()
                          if not (m.awaiting_join or m.awaiting_sync)]
            if group.is_(GroupState.PREPARING_REBALANCE):
                delay = group.initial_delay_until_ms
                deadlines.append(delay if delay is not None else group.rebalance_deadline_ms)
            elif group.is_(GroupState.COMPLETING_REBALANCE):
                deadlines.append(group.rebalance_deadline_ms)
        return min(deadlines, default=None)
