"""Group metadata and committed offsets as records in ``__consumer_offsets`` partition 0, in Kafka's format.

Keys and values follow Kafka's schemas (:mod:`umbra.groups.offsets_format`): OffsetCommitKey/Value for a
committed offset, GroupMetadataKey/Value for a group, a null value (tombstone) to delete either. Tools that
read the topic (Burrow, Kafka's console consumer with its offsets formatter) decode umbra's records as Kafka's.
The newest record of a key is the state, so the topic is compacted (``cleanup.policy=compact``); replay reads
whatever the cleaner left, in offset order, and gets the same state.

Records of older umbra versions (their own binary keys and JSON values, :mod:`umbra.groups.legacy_format`) are
still read, and :meth:`GroupLog.rewrite` replaces them with the same state in Kafka's format.

Appends happen before the coordinator answers, so an acknowledged commit survives kill -9.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from umbra.errors import KafkaError
from umbra.groups import legacy_format as legacy
from umbra.groups import offsets_format as kafka
from umbra.groups.model import Group, OffsetAndMetadata
from umbra.records.batch import iter_batch_headers
from umbra.records.records import build_batch, decode_batch

log = logging.getLogger("umbra.groups")

REPLAY_CHUNK_BYTES = 4 * 1024 * 1024
BATCH_TARGET_BYTES = 256 * 1024
# A group record larger than this is stored without the members' subscription and assignment bytes:
# a restart brings groups back Empty, so only the generation and protocol type are needed to restore it.
MAX_GROUP_VALUE_BYTES = 512 * 1024

# Bytes that do not match their schema (the record is skipped on replay, with a log line).
RecordFormatError = kafka.SchemaError


def offsets_topic_configs(segment_bytes: int) -> dict[str, str]:
    """Topic configs of ``__consumer_offsets`` (Kafka: compact, offsets.topic.segment.bytes)."""
    return {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes)}


# --- keys and values -------------------------------------------------------------------------------

# The keys of the two record types umbra reads: Kafka's, as the schema module decodes them.
OffsetKey = kafka.OffsetCommitKey
GroupKey = kafka.GroupMetadataKey


def offset_key(group_id: str, topic: str, partition: int) -> bytes:
    return kafka.encode_offset_commit_key(kafka.OffsetCommitKey(group_id, topic, partition))


def group_key(group_id: str) -> bytes:
    return kafka.encode_group_metadata_key(kafka.GroupMetadataKey(group_id))


def offset_value(value: OffsetAndMetadata) -> bytes:
    # Kafka's metadata is a non-null string: a commit without metadata stores "" (Kafka's NO_METADATA), which
    # is what the OffsetFetch handler answers for None anyway.
    return kafka.encode_offset_commit_value(kafka.OffsetCommitValue(
        value.offset, value.leader_epoch, value.metadata or "", value.commit_timestamp_ms))


def group_value(group: Group, now_ms: int) -> bytes:
    """The group as it stands after a rebalance (or an empty group's generation bump)."""
    value = _group_value(group, now_ms, with_bytes=True)
    if len(value) > MAX_GROUP_VALUE_BYTES:
        value = _group_value(group, now_ms, with_bytes=False)
    return value


def _group_value(group: Group, now_ms: int, *, with_bytes: bool) -> bytes:
    protocol = group.protocol_name
    members = tuple(kafka.MemberMetadata(
        m.member_id, m.group_instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms,
        m.session_timeout_ms, m.metadata_for(protocol) if protocol and with_bytes else b"",
        m.assignment if with_bytes else b"") for m in group.members.values())
    # Kafka's protocolType is a non-null string: "" stands for a group without one (read back as None).
    return kafka.encode_group_metadata_value(kafka.GroupMetadataValue(
        group.protocol_type or "", group.generation_id, protocol if members else None,
        group.leader_id if members else None, now_ms, members))


@dataclass(frozen=True, slots=True)
class StoredGroup:
    protocol_type: str | None
    generation_id: int
    protocol_name: str | None
    leader_id: str | None
    members: tuple[kafka.MemberMetadata, ...]
    timestamp_ms: int

    @property
    def member_ids(self) -> tuple[str, ...]:
        return tuple(m.member_id for m in self.members)


def parse_offset_value(raw: bytes) -> OffsetAndMetadata:
    value = kafka.decode_offset_commit_value(raw)
    return OffsetAndMetadata(value.offset, value.leader_epoch, value.metadata, value.commit_timestamp)


def parse_group_value(raw: bytes) -> StoredGroup:
    value = kafka.decode_group_metadata_value(raw)
    return StoredGroup(value.protocol_type or None, value.generation, value.protocol, value.leader, value.members,
                       max(value.current_state_timestamp, 0))


@dataclass(frozen=True, slots=True)
class OffsetRecord:
    key: OffsetKey
    value: OffsetAndMetadata | None  # None: a tombstone, the offset was deleted
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class GroupRecord:
    key: GroupKey
    value: StoredGroup | None  # None: a tombstone, the group was deleted
    legacy: bool = False


def decode_entry(key: bytes, value: bytes | None) -> OffsetRecord | GroupRecord | None:
    """One record of the offsets log; None for a Kafka record type umbra does not use (KIP-848, share and
    streams groups), which replay skips. Raises :class:`RecordFormatError` for bytes it cannot read."""
    if legacy.is_legacy_key(key):
        return _decode_legacy(key, value)
    decoded = kafka.decode_key(key)
    if isinstance(decoded, kafka.UnknownKey):
        return None
    if isinstance(decoded, kafka.OffsetCommitKey):
        return OffsetRecord(decoded, None if value is None else parse_offset_value(value))
    return GroupRecord(decoded, None if value is None else parse_group_value(value))


def is_legacy_key(key: bytes) -> bool:
    """A key in the format of older umbra versions (migrated on start-up)."""
    return legacy.is_legacy_key(key)


def _decode_legacy(key: bytes, value: bytes | None) -> OffsetRecord | GroupRecord:
    decoded = legacy.decode_legacy_key(key)
    if isinstance(decoded, str):
        if value is None:
            return GroupRecord(GroupKey(decoded), None, legacy=True)
        group = legacy.decode_legacy_group_value(value)
        return GroupRecord(GroupKey(decoded), StoredGroup(group.protocol_type, group.generation_id, None, None, (),
                                                          group.timestamp_ms), legacy=True)
    offset_key_ = OffsetKey(*decoded)
    if value is None:
        return OffsetRecord(offset_key_, None, legacy=True)
    offset = legacy.decode_legacy_offset_value(value)
    return OffsetRecord(offset_key_, OffsetAndMetadata(offset.offset, offset.leader_epoch, offset.metadata,
                                                       offset.commit_timestamp_ms), legacy=True)


def state_entries(groups: Iterable[Group]) -> tuple[list[Entry], int, int]:
    """Records that restate ``groups`` whole (every committed offset; a group record for each group with a
    generation or protocol type), for a rewrite of the log. Returns (entries, offsets, groups written)."""
    entries: list[Entry] = []
    offsets = written_groups = 0
    for group in groups:
        if group.protocol_type or group.generation_id:
            entries.append((group_key(group.group_id), group_value(group, group.state_since_ms)))
            written_groups += 1
        for (topic, partition), value in group.offsets.items():
            entries.append((offset_key(group.group_id, topic, partition), offset_value(value)))
            offsets += 1
    return entries, offsets, written_groups


# --- the log ---------------------------------------------------------------------------------------

Entry = tuple[bytes, bytes | None]  # key, value (None: tombstone)


class GroupLog:
    """Appends coordinator records to the offsets partition and replays them at start-up."""

    def __init__(self, partition_log: Any, notifier: Any = None, topic: str = "__consumer_offsets",
                 appender: Callable[[bytes, int], None] | None = None) -> None:
        self._log = partition_log
        self._notifier = notifier
        self._topic = topic
        # How records are appended: on a cluster, through the partition (its leader epoch; the high watermark
        # moves with the ISR); alone, straight to the log.
        self._appender = appender or self._append_alone

    def _append_alone(self, records: bytes, now_ms: int) -> None:
        self._log.append_as_leader(records, leader_epoch=0, now_ms=now_ms)
        self._log.high_watermark = self._log.log_end_offset

    def append(self, entries: Sequence[Entry], now_ms: int) -> None:
        """Write the entries as one batch; returns once the log holds them (raises if it cannot)."""
        if not entries:
            return
        # One append of several batches, each well below max.message.bytes: the log writes them together.
        batches: list[bytes] = []
        chunk: list[tuple[bytes, bytes | None, tuple[()], int]] = []
        chunk_bytes = 0
        for key, value in entries:
            size = len(key) + (len(value) if value is not None else 0) + 32
            if chunk and chunk_bytes + size > BATCH_TARGET_BYTES:
                batches.append(build_batch(chunk))
                chunk, chunk_bytes = [], 0
            chunk.append((key, value, (), now_ms))
            chunk_bytes += size
        batches.append(build_batch(chunk))
        self._appender(b"".join(batches), now_ms)
        if self._notifier is not None:
            self._notifier.notify((self._topic, 0))

    def rewrite(self, entries: Sequence[Entry], now_ms: int) -> int:
        """Replace everything in the log with ``entries`` (the whole current state), crash-safe: they are
        appended and flushed first, and only then is the log start offset moved past every older record
        (whole segments below it are deleted; what is left of the others can no longer be read). A crash
        before the move leaves the old records and the new ones, which replay to the same state.
        Returns the new log start offset."""
        first_new = self._log.log_end_offset
        self.append(entries, now_ms)
        self._log.flush()
        # On a cluster the high watermark follows the ISR: records above it cannot be dropped yet. Everything
        # below ``first_new`` is restated after it, so any start offset up to there loses nothing.
        start = min(first_new, self._log.high_watermark)
        if start > self._log.log_start_offset:
            self._log.advance_log_start_offset(start)
        return int(self._log.log_start_offset)

    def replay(self) -> Iterator[Entry]:
        """Every record from the log start to its end, oldest first."""
        position = self._log.log_start_offset
        end = self._log.log_end_offset
        while position < end:
            chunk = self._log.read(position, REPLAY_CHUNK_BYTES, max_offset=end, min_one_batch=True)
            if not chunk:
                break
            view = memoryview(chunk)
            advanced = False
            for header in iter_batch_headers(view):
                if header.next_offset <= position:
                    continue
                position = header.next_offset
                advanced = True
                if header.is_control:
                    continue
                try:
                    _, records = decode_batch(view, header.position)
                except KafkaError as exc:  # a batch we cannot read (CorruptMessage) must not stop the broker
                    log.error("skipping unreadable batch at offset %d of the offsets log: %s", header.base_offset, exc)
                    continue
                for record in records:
                    if record.key is not None:
                        yield record.key, record.value
            if not advanced:
                break
