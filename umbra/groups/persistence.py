"""Group metadata and committed offsets as records in ``__consumer_offsets`` partition 0.

Record keys are small versioned binary strings, so the newest record of a key wins and the topic is compacted
(``cleanup.policy=compact``: the log cleaner keeps just that one); values are versioned JSON, and a null value
(tombstone) deletes the key. Replay reads whatever the cleaner left, in offset order, so it gives the same state.

    key   = kind:uint8 | version:uint8 | group:str16 [| topic:str16 | partition:int32]
    value = JSON {"v": 1, ...} | null

Appends happen before the coordinator answers, so an acknowledged commit survives kill -9.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from umbra.errors import KafkaError
from umbra.groups.model import Group, OffsetAndMetadata
from umbra.records.batch import iter_batch_headers
from umbra.records.records import build_batch, decode_batch

log = logging.getLogger("umbra.groups")

KIND_OFFSET = 1
KIND_GROUP = 2
KEY_VERSION = 1
VALUE_VERSION = 1
REPLAY_CHUNK_BYTES = 4 * 1024 * 1024
BATCH_TARGET_BYTES = 256 * 1024
# A group record larger than this is stored without the members' subscription and assignment bytes:
# a restart brings groups back Empty, so only the generation and protocol type are needed to restore it.
MAX_GROUP_VALUE_BYTES = 512 * 1024


def offsets_topic_configs(segment_bytes: int) -> dict[str, str]:
    """Topic configs of ``__consumer_offsets`` (Kafka: compact, offsets.topic.segment.bytes)."""
    return {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes)}


class RecordFormatError(ValueError):
    """A record in the offsets log that this version cannot read (it is skipped, with a log line)."""


# --- keys ------------------------------------------------------------------------------------------

def _str16(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise RecordFormatError("string longer than 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


def _read_str16(buf: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise RecordFormatError("truncated key")
    (length,) = struct.unpack_from(">H", buf, pos)
    pos += 2
    if pos + length > len(buf):
        raise RecordFormatError("truncated key")
    return buf[pos : pos + length].decode("utf-8"), pos + length


def offset_key(group_id: str, topic: str, partition: int) -> bytes:
    return bytes((KIND_OFFSET, KEY_VERSION)) + _str16(group_id) + _str16(topic) + struct.pack(">i", partition)


def group_key(group_id: str) -> bytes:
    return bytes((KIND_GROUP, KEY_VERSION)) + _str16(group_id)


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group_id: str


def parse_key(key: bytes) -> OffsetKey | GroupKey:
    if len(key) < 2 or key[1] != KEY_VERSION:
        raise RecordFormatError(f"unknown key version in {key[:8]!r}")
    try:
        group_id, pos = _read_str16(key, 2)
        if key[0] == KIND_GROUP:
            return GroupKey(group_id)
        if key[0] == KIND_OFFSET:
            topic, pos = _read_str16(key, pos)
            if pos + 4 != len(key):
                raise RecordFormatError("bad offset key length")
            (partition,) = struct.unpack_from(">i", key, pos)
            return OffsetKey(group_id, topic, partition)
    except UnicodeDecodeError as exc:
        raise RecordFormatError(f"key is not UTF-8: {exc}") from None
    raise RecordFormatError(f"unknown key kind {key[0]}")


# --- values ----------------------------------------------------------------------------------------

def offset_value(value: OffsetAndMetadata) -> bytes:
    return json.dumps({"v": VALUE_VERSION, "offset": value.offset, "leader_epoch": value.leader_epoch,
                       "metadata": value.metadata, "commit_timestamp_ms": value.commit_timestamp_ms},
                      separators=(",", ":")).encode()


def parse_offset_value(raw: bytes) -> OffsetAndMetadata:
    data = _load(raw)
    return OffsetAndMetadata(int(data["offset"]), int(data["leader_epoch"]), data["metadata"],
                             int(data["commit_timestamp_ms"]))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def group_value(group: Group, now_ms: int) -> bytes:
    """The group as it stands after a rebalance (or an empty group's generation bump)."""
    value = _group_value(group, now_ms, with_bytes=True)
    if len(value) > MAX_GROUP_VALUE_BYTES:
        value = _group_value(group, now_ms, with_bytes=False)
    return value


def _group_value(group: Group, now_ms: int, *, with_bytes: bool) -> bytes:
    protocol = group.protocol_name if with_bytes else None
    members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                "client_host": m.client_host, "session_timeout_ms": m.session_timeout_ms,
                "rebalance_timeout_ms": m.rebalance_timeout_ms,
                "subscription": _b64(m.metadata_for(protocol) if protocol else b""),
                "assignment": _b64(m.assignment if with_bytes else b"")} for m in group.members.values()]
    return json.dumps({"v": VALUE_VERSION, "protocol_type": group.protocol_type, "generation_id": group.generation_id,
                       "protocol_name": group.protocol_name, "leader_id": group.leader_id, "timestamp_ms": now_ms,
                       "members": members}, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class StoredGroup:
    protocol_type: str | None
    generation_id: int
    protocol_name: str | None
    leader_id: str | None
    member_ids: tuple[str, ...]
    timestamp_ms: int


def parse_group_value(raw: bytes) -> StoredGroup:
    data = _load(raw)
    members = tuple(str(m["member_id"]) for m in data.get("members", ()))
    return StoredGroup(data.get("protocol_type"), int(data["generation_id"]), data.get("protocol_name"),
                       data.get("leader_id"), members, int(data.get("timestamp_ms", 0)))


def _load(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordFormatError(f"value is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != VALUE_VERSION:
        raise RecordFormatError("unknown value version")
    return data


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
