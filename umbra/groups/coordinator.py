"""The group coordinator: one per broker, coordinating every group.

It owns the groups, their committed offsets and the ``__consumer_offsets`` partition that stores both.
Membership transitions live in :mod:`umbra.groups.membership`; this module adds offsets, the admin
operations (list, describe, delete), start-up replay and periodic expiry.

Every change that must survive a crash is appended to the log before the caller is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from umbra.errors import ErrorCode, KafkaError
from umbra.groups import persistence as records
from umbra.groups.consumer import ConsumerGroups, HeartbeatRequest, HeartbeatResult
from umbra.groups.membership import JoinRequest, JoinResult, Membership, SyncResult, valid_group_id
from umbra.groups.migration import GroupMigration
from umbra.groups.model import Group, GroupState, OffsetAndMetadata
from umbra.groups.persistence import GroupLog, RecordFormatError
from umbra.tasks import cancel_and_wait

log = logging.getLogger("umbra.groups")

TopicPartition = tuple[str, int]
MAX_OFFSET_METADATA_CHARS = 4096  # Kafka: offset.metadata.max.bytes
RETENTION_CHECK_INTERVAL_MS = 60_000
GROUP_TYPE = "classic"
# When a deadline is due but ticking did not clear it (it should not happen), the timer falls back to this pace.
TIMER_FALLBACK_S = 0.5


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def storage_error_code(exc: BaseException) -> ErrorCode:
    """What a client is told when the offsets log refused a write (Kafka's mapping for coordinator appends)."""
    code = exc.code if isinstance(exc, KafkaError) else ErrorCode.UNKNOWN_SERVER_ERROR
    if code in (ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.INVALID_FETCH_SIZE):
        return ErrorCode.INVALID_COMMIT_OFFSET_SIZE
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.NOT_ENOUGH_REPLICAS,
                ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND, ErrorCode.REQUEST_TIMED_OUT):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    return ErrorCode.UNKNOWN_SERVER_ERROR


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = GROUP_TYPE


class GroupCoordinator:
    def __init__(self, offsets_log: Any, config: Any, notifier: Any = None,
                 clock: Callable[[], int] | None = None,
                 appender: Callable[[bytes, int], None] | None = None, precise_expiry: bool | None = None) -> None:
        self.config = config
        self.groups: dict[str, Group] = {}
        self._clock = clock or _wall_clock_ms
        # Sessions and rebalance deadlines expire on time through a timer task the coordinator owns (the broker's
        # housekeeping tick is 0.5 s apart). Off by default with an injected clock: such tests tick by hand.
        self._precise_expiry = clock is None if precise_expiry is None else precise_expiry
        self._timer: asyncio.Task[None] | None = None
        self._timer_wakeup = asyncio.Event()
        self._timer_target_ms: int | None = None
        self._store = GroupLog(offsets_log, notifier, appender=appender)
        self._retention_ms = int(config.offsets_retention_minutes) * 60_000
        self._next_retention_check_ms = 0
        self.membership = Membership(
            self.groups, clock=self._clock, persist_group=self._persist_group,
            initial_rebalance_delay_ms=int(config.group_initial_rebalance_delay_ms),
            min_session_timeout_ms=int(config.group_min_session_timeout_ms),
            max_session_timeout_ms=int(config.group_max_session_timeout_ms))
        self.consumer = ConsumerGroups(
            self.groups, clock=self._clock,
            heartbeat_interval_ms=int(getattr(config, "group_consumer_heartbeat_interval_ms", 5000)),
            session_timeout_ms=int(getattr(config, "group_consumer_session_timeout_ms", 45000)))
        # KIP-848's online migration between the protocols (it hooks itself into both sides).
        self.migration = GroupMigration(
            self.consumer, self.membership, str(getattr(config, "group_consumer_migration_policy", "bidirectional")),
            self._clock)

    def now_ms(self) -> int:
        return self._clock()

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Rebuild groups and offsets from the log. Groups come back Empty; their members must rejoin.
        Records an older umbra wrote in its own format are then rewritten in Kafka's (see persistence)."""
        loaded = skipped = ignored = legacy = 0
        for key, value in self._store.replay():
            try:
                record = records.decode_entry(key, value)
            except RecordFormatError as exc:
                skipped += 1
                legacy += records.is_legacy_key(key)
                log.warning("skipping an unreadable record in the offsets log: %s", exc)
                continue
            if record is None:
                ignored += 1  # a Kafka record type this coordinator does not use (KIP-848, share groups...)
                continue
            self._apply(record)
            loaded += 1
            legacy += record.legacy
        log.info("group coordinator loaded %d records (%d skipped, %d of other group types): %d groups", loaded,
                 skipped, ignored, len(self.groups))
        if legacy:
            self._migrate_legacy_records()

    def _migrate_legacy_records(self) -> None:
        """Restate every group and offset in Kafka's format, then drop the older records (crash-safe: see
        GroupLog.rewrite). A failure (not the partition leader yet, disk full) leaves the log as it was: the
        next start or reload tries again, and the state replays the same meanwhile."""
        entries, offsets, groups = records.state_entries(self.groups.values())
        try:
            self._store.rewrite(entries, self._clock())
        except (KafkaError, OSError) as exc:
            log.warning("could not migrate __consumer_offsets to Kafka's format (will retry): %s", exc)
            return
        log.info("migrated %d offset records and %d groups of __consumer_offsets to Kafka's format", offsets, groups)

    def _apply(self, record: records.OffsetRecord | records.GroupRecord) -> None:
        if isinstance(record, records.OffsetRecord):
            key = record.key
            tp = (key.topic, key.partition)
            if record.value is None:
                group = self.groups.get(key.group_id)
                if group is not None:
                    group.offsets.pop(tp, None)
                    self._forget_if_unused(group)
                return
            group = self.groups.setdefault(key.group_id, Group(key.group_id))
            group.offsets[tp] = record.value
            return
        group_id = record.key.group_id
        if record.value is None:
            group = self.groups.get(group_id)
            if group is not None:
                fresh = Group(group_id, offsets=group.offsets)
                self.groups[group_id] = fresh
                self._forget_if_unused(fresh)
            return
        stored = record.value
        group = self.groups.setdefault(group_id, Group(group_id))
        group.protocol_type = stored.protocol_type
        group.generation_id = stored.generation_id
        group.state_since_ms = stored.timestamp_ms

    def _forget_if_unused(self, group: Group) -> None:
        if not group.offsets and not group.members and group.generation_id == 0:
            self.groups.pop(group.group_id, None)

    async def reload(self) -> None:
        """This broker became the coordinator (the leader of the offsets partition moved here): forget what it
        knew and rebuild every group from the log, which followed the old coordinator's writes."""
        await self.stop()
        self.groups.clear()  # in place: the membership logic holds this dict
        await self.start()

    async def stop(self) -> None:
        """Answer every waiting JoinGroup / SyncGroup so no handler hangs on shutdown, and stop the timer."""
        timer, self._timer = self._timer, None
        if timer is not None:
            await cancel_and_wait([timer])
        for group in self.groups.values():
            for member in group.members.values():
                for waiter, result in ((member.join_waiter, JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE)),
                                       (member.sync_waiter, SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))):
                    if waiter is not None and not waiter.done():
                        waiter.set_result(result)
                member.join_waiter = member.sync_waiter = None

    async def tick(self, now_ms: int | None = None) -> None:
        now = self._clock() if now_ms is None else now_ms
        self._expire(now, retention=True)

    def _expire(self, now: int, *, retention: bool = False) -> None:
        """Expire sessions and rebalance deadlines that are due (and, with ``retention``, old offsets). The one
        place a failure of expiry is logged with its traceback: housekeeping and the timer keep running whatever
        one group's state is."""
        try:
            self.membership.tick(now)
            self.consumer.tick(now)
            if retention and now >= self._next_retention_check_ms:
                self._next_retention_check_ms = now + RETENTION_CHECK_INTERVAL_MS
                self.expire_offsets(now)
        except Exception:
            log.exception("group expiry failed")

    # --- the expiry timer --------------------------------------------------------------------------------
    def _wake_timer(self, deadline_ms: int | None = None) -> None:
        """A deadline may be earlier than the one the timer sleeps until (None: any may be): let it look again."""
        if not self._precise_expiry:
            return
        if self._timer is None or self._timer.done():
            self._timer_wakeup = asyncio.Event()  # of this loop: tests run coordinators on several loops
            self._timer = asyncio.get_running_loop().create_task(self._run_timer(), name="group-expiry")
        elif deadline_ms is None or self._timer_target_ms is None or deadline_ms < self._timer_target_ms:
            self._timer_wakeup.set()

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.membership.next_deadline(), self.consumer.next_deadline()) if d is not None]
        return min(deadlines, default=None)

    async def _run_timer(self) -> None:
        """Sleep until the earliest session, join or sync deadline, expire what is due, and again; a request that
        brings an earlier deadline wakes it. Owned by the coordinator: ``stop`` cancels it."""
        while True:
            self._expire(self._clock())
            deadline = self.next_deadline()
            self._timer_target_ms = deadline
            self._timer_wakeup.clear()
            delay = None if deadline is None else (deadline - self._clock()) / 1000
            if delay is not None and delay <= 0:
                delay = TIMER_FALLBACK_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: on 3.11 it can lose a cancellation (gh-86296)
                    await self._timer_wakeup.wait()

    # --- membership (see membership.py) ------------------------------------------------------------
    async def join_group(self, request: JoinRequest, topics: Mapping[str, int] | None = None) -> JoinResult:
        """``topics`` (name -> partitions): what a classic member of a consumer group may be assigned."""
        if topics is not None:
            self.consumer.set_topics(topics)
        self._wake_timer()
        try:
            return await self.membership.join(request)
        finally:
            self._wake_timer()

    async def sync_group(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                         protocol_type: str | None, protocol_name: str | None,
                         assignments: dict[str, bytes]) -> SyncResult:
        try:
            return await self.membership.sync(group_id, generation_id, member_id, group_instance_id, protocol_type,
                                              protocol_name, assignments)
        finally:
            self._wake_timer()

    def consumer_heartbeat(self, request: HeartbeatRequest, topics: Mapping[str, int]) -> HeartbeatResult:
        """ConsumerGroupHeartbeat (KIP-848): raises HeartbeatError. ``topics``: name -> partitions."""
        try:
            return self.consumer.heartbeat(request, topics)
        finally:
            group = self.groups.get(request.group_id)
            member = group.consumer.members.get(request.member_id) if group and group.consumer else None
            if member is not None:
                self._wake_timer(min(member.session_deadline_ms, member.revocation_deadline_ms or 1 << 62))
            elif request.member_epoch == 0:
                self._wake_timer()  # a v0 join: the coordinator named the member

    def heartbeat(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None) -> ErrorCode:
        return self.membership.heartbeat(group_id, generation_id, member_id, group_instance_id)

    def leave_group(self, group_id: str, members: list[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        try:
            return self.membership.leave(group_id, members)
        finally:
            self._wake_timer()

    def _persist_group(self, group: Group) -> None:
        now = self._clock()
        self._store.append([(records.group_key(group.group_id), records.group_value(group, now))], now)

    # --- offsets -----------------------------------------------------------------------------------
    def commit_offsets(self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
                       offsets: dict[TopicPartition, OffsetAndMetadata],
                       api_version: int = 9) -> dict[TopicPartition, ErrorCode]:
        """Validate the committer, then store ``offsets``. Returns an error code per partition.
        ``generation_id`` is the member epoch for a consumer-protocol group."""
        error = self._check_committer(group_id, generation_id, member_id, group_instance_id, api_version)
        if error is not ErrorCode.NONE:
            return dict.fromkeys(offsets, error)
        results: dict[TopicPartition, ErrorCode] = {}
        accepted: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, value in offsets.items():
            if value.metadata is not None and len(value.metadata) > MAX_OFFSET_METADATA_CHARS:
                results[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                accepted[tp] = value
        if accepted:
            now = self._clock()
            try:
                self._store.append([(records.offset_key(group_id, topic, partition), records.offset_value(value))
                                    for (topic, partition), value in accepted.items()], now)
            except (KafkaError, OSError) as exc:
                log.warning("group %s: could not store %d offsets: %s", group_id, len(accepted), exc)
                code = storage_error_code(exc)
                results.update(dict.fromkeys(accepted, code))
                self._forget_if_unused(self.groups[group_id])
                return results
            self.groups[group_id].offsets.update(accepted)
            results.update(dict.fromkeys(accepted, ErrorCode.NONE))
        return results

    def _check_committer(self, group_id: str, generation_id: int, member_id: str,
                         group_instance_id: str | None, api_version: int) -> ErrorCode:
        """Kafka's order: the member and its generation first, then the group's state, so that a member with a
        stale generation hears ILLEGAL_GENERATION (it must rejoin) rather than REBALANCE_IN_PROGRESS."""
        if not valid_group_id(group_id):
            return ErrorCode.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                return ErrorCode.ILLEGAL_GENERATION
            # A consumer that assigns partitions itself and uses the group only to store offsets.
            self.groups[group_id] = Group(group_id, state_since_ms=self._clock())
            return ErrorCode.NONE
        if group.consumer is not None:
            return self.consumer.validate_commit(group.consumer, member_id, generation_id, api_version)
        if generation_id < 0 and group.is_(GroupState.EMPTY):
            return ErrorCode.NONE
        member = None
        if generation_id >= 0 or member_id or group_instance_id is not None:
            if group_instance_id is not None:
                known = group.static_member_id(group_instance_id)
                if known is None:
                    return ErrorCode.UNKNOWN_MEMBER_ID
                if known != member_id:
                    return ErrorCode.FENCED_INSTANCE_ID
            member = group.members.get(member_id)
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        elif not group.is_(GroupState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID  # no member id nor generation: only an empty group takes it
        if group.is_(GroupState.COMPLETING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        if member is not None:
            member.session_deadline_ms = self._clock() + member.session_timeout_ms
        return ErrorCode.NONE

    def check_offset_fetcher(self, group_id: str, member_id: str | None, member_epoch: int) -> ErrorCode:
        """OffsetFetch v9+ from a consumer-protocol member: its member id and epoch must be current."""
        group = self.groups.get(group_id)
        if group is None or group.consumer is None:
            return ErrorCode.NONE  # as Kafka: a classic group does not check the fetcher
        return self.consumer.validate_fetch(group.consumer, member_id, member_epoch)

    def fetch_offsets(self, group_id: str,
                      partitions: Iterable[TopicPartition] | None) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """Committed offsets of ``partitions`` (None: every partition with one). Missing ones map to None."""
        if not valid_group_id(group_id):
            raise KafkaError(f"invalid group id {group_id!r}", ErrorCode.INVALID_GROUP_ID)
        group = self.groups.get(group_id)
        stored = group.offsets if group is not None else {}
        if partitions is None:
            return dict(stored)
        return {tp: stored.get(tp) for tp in partitions}

    def expire_offsets(self, now: int) -> int:
        """Drop offsets of empty groups older than the retention; drop such groups once nothing is left."""
        expired = 0
        for group in list(self.groups.values()):
            if not group.is_(GroupState.EMPTY) or group.pending_members:
                continue
            if not group.offsets and now - group.state_since_ms < RETENTION_CHECK_INTERVAL_MS:
                continue  # just emptied (or created by a lone MEMBER_ID_REQUIRED): let it be a while
            since = group.state_since_ms if group.protocol_type else 0
            old = [tp for tp, value in group.offsets.items()
                   if max(value.commit_timestamp_ms, since) + self._retention_ms <= now]
            delete_group = len(old) == len(group.offsets)
            if not old and not delete_group:
                continue
            entries = [(records.offset_key(group.group_id, topic, partition), None) for topic, partition in old]
            if delete_group:
                entries.append((records.group_key(group.group_id), None))
            try:
                self._store.append(entries, now)
            except (KafkaError, OSError) as exc:
                log.warning("group %s: could not expire offsets: %s", group.group_id, exc)
                continue
            for tp in old:
                del group.offsets[tp]
            expired += len(old)
            if delete_group:
                del self.groups[group.group_id]
        if expired:
            log.info("expired %d committed offsets", expired)
        return expired

    def delete_offsets(self, group_id: str, partitions: list[TopicPartition]) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
        if not valid_group_id(group_id):
            return ErrorCode.INVALID_GROUP_ID, {}
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND, {}
        subscribed: set[str] = set()
        if not group.is_(GroupState.EMPTY):
            topics = group.subscribed_topics()
            if topics is None:  # not a consumer group, or metadata we cannot read: it cannot be checked
                return ErrorCode.NON_EMPTY_GROUP, {}
            subscribed = topics
        results = {tp: (ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC if tp[0] in subscribed else ErrorCode.NONE)
                   for tp in partitions}
        doomed = [tp for tp, code in results.items() if code is ErrorCode.NONE and tp in group.offsets]
        now = self._clock()
        try:
            self._store.append([(records.offset_key(group_id, t, p), None) for t, p in doomed], now)
        except (KafkaError, OSError) as exc:
            log.warning("group %s: could not delete offsets: %s", group_id, exc)
            return storage_error_code(exc), {}
        for tp in doomed:
            del group.offsets[tp]
        return ErrorCode.NONE, results

    # --- admin -------------------------------------------------------------------------------------
    def list_groups(self, states: Iterable[str] = (), types: Iterable[str] = ()) -> list[ListedGroup]:
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        return [ListedGroup(g.group_id, g.protocol_type or "", g.state_name(), g.group_type)
                for g in self.groups.values()
                if (not wanted_states or g.state_name().lower() in wanted_states)
                and (not wanted_types or g.group_type in wanted_types)]

    def describe_group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def delete_groups(self, group_ids: Iterable[str]) -> dict[str, ErrorCode]:
        results: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            if not valid_group_id(group_id):
                results[group_id] = ErrorCode.INVALID_GROUP_ID
                continue
            group = self.groups.get(group_id)
            if group is None:
                results[group_id] = ErrorCode.GROUP_ID_NOT_FOUND
                continue
            if not group.is_(GroupState.EMPTY):
                results[group_id] = ErrorCode.NON_EMPTY_GROUP
                continue
            now = self._clock()
            entries: list[records.Entry] = [(records.offset_key(group_id, t, p), None) for t, p in group.offsets]
            entries.append((records.group_key(group_id), None))
            try:
                self._store.append(entries, now)
            except (KafkaError, OSError) as exc:
                log.warning("group %s: could not delete: %s", group_id, exc)
                results[group_id] = storage_error_code(exc)
                continue
            group.state = GroupState.DEAD
            del self.groups[group_id]
            results[group_id] = ErrorCode.NONE
        return results
