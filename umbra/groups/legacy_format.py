"""Readers of the records umbra wrote to ``__consumer_offsets`` before it used Kafka's schemas.

Only read, at start-up, so that a data dir from an older umbra is migrated (see ``persistence.migrate``);
nothing writes this format any more. The layout was:

    key   = kind:uint8 (1 offset, 2 group) | version:uint8 (1) | group:str16 [| topic:str16 | partition:int32]
    value = JSON {"v": 1, ...} | null

Read as Kafka's int16 key version, these keys are 257 and 513, which no Kafka record type uses, so the two
formats cannot be confused.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from umbra.groups.offsets_format import SchemaError

LEGACY_KIND_OFFSET = 1
LEGACY_KIND_GROUP = 2
LEGACY_VERSION = 1


@dataclass(frozen=True, slots=True)
class LegacyOffset:
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_timestamp_ms: int


@dataclass(frozen=True, slots=True)
class LegacyGroup:
    protocol_type: str | None
    generation_id: int
    timestamp_ms: int


def is_legacy_key(key: bytes) -> bool:
    return len(key) >= 2 and key[1] == LEGACY_VERSION and key[0] in (LEGACY_KIND_OFFSET, LEGACY_KIND_GROUP)


def _read_str16(buf: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise SchemaError("truncated legacy key")
    (length,) = struct.unpack_from(">H", buf, pos)
    pos += 2
    if pos + length > len(buf):
        raise SchemaError("truncated legacy key")
    try:
        return buf[pos : pos + length].decode("utf-8"), pos + length
    except UnicodeDecodeError as exc:
        raise SchemaError(f"legacy key is not UTF-8: {exc}") from None


def decode_legacy_key(key: bytes) -> tuple[str, str, int] | str:
    """(group, topic, partition) for an offset key, the group id for a group key."""
    if not is_legacy_key(key):
        raise SchemaError(f"not a legacy key: {key[:8]!r}")
    group_id, pos = _read_str16(key, 2)
    if key[0] == LEGACY_KIND_GROUP:
        if pos != len(key):
            raise SchemaError("bad legacy group key length")
        return group_id
    topic, pos = _read_str16(key, pos)
    if pos + 4 != len(key):
        raise SchemaError("bad legacy offset key length")
    (partition,) = struct.unpack_from(">i", key, pos)
    return group_id, topic, int(partition)


def _load(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"legacy value is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != LEGACY_VERSION:
        raise SchemaError("unknown legacy value version")
    return data


def _int(data: dict[str, object], name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(f"legacy value field {name!r} is not an integer")
    return value


def _optional_str(data: dict[str, object], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"legacy value field {name!r} is not a string")
    return value


def decode_legacy_offset_value(raw: bytes) -> LegacyOffset:
    data = _load(raw)
    return LegacyOffset(_int(data, "offset"), _int(data, "leader_epoch"), _optional_str(data, "metadata"),
                        _int(data, "commit_timestamp_ms"))


def decode_legacy_group_value(raw: bytes) -> LegacyGroup:
    """What replay used of a legacy group record (groups came back Empty: members were not restored)."""
    data = _load(raw)
    return LegacyGroup(_optional_str(data, "protocol_type"), _int(data, "generation_id"),
                       _int(data, "timestamp_ms", 0))
