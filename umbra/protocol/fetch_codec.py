"""Hand-written Fetch response encoder: the broker's hottest path.

The schema codec builds an object tree and copies every record set into one
buffer; this encoder packs the small fields with ``struct`` and hands back a
list of pieces in which the record sets are the log's own bytes, uncopied, for
``transport.writelines``. A record set may also be an opaque piece that only
knows its size (a storage ``FileRegion``, which the connection sends from the
file with ``os.sendfile``), or a list of such parts. It encodes Fetch v4-v17
exactly as the schema codec does (a unit test compares them byte for byte; v17's response is v16's, its
request adds only a follower's directory id, KIP-853, which the schema codec decodes).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

_I32 = struct.Struct(">i")
_I32_I16_I32 = struct.Struct(">ihi")
_PARTITION_V4 = struct.Struct(">ihqq")  # index, error, high watermark, last stable offset
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... and log start offset
_NULL_ARRAY = _I32.pack(-1)
_LEADER = struct.Struct(">ii")
_EPOCH_END = struct.Struct(">iq")


class SizedPiece(Protocol):
    """Record-set bytes the transport sends itself (e.g. from a file): here only their size matters."""

    def __len__(self) -> int: ...


Piece = bytes | memoryview | SizedPiece
RecordSet = Piece | list[Piece]


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: str, flexible: bool) -> bytes:
    data = value.encode()
    return (_uvarint(len(data) + 1) if flexible else struct.pack(">h", len(data))) + data


@dataclass(slots=True)
class FetchPartitionData:
    partition_index: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: RecordSet  # a list: the parts of one record set, in order
    diverging_epoch: tuple[int, int] | None = None  # (epoch, end offset), v12+ (KIP-595)
    current_leader: tuple[int, int] | None = None  # (leader id, leader epoch), v12+, on leadership errors (KIP-951)


@dataclass(slots=True)
class FetchTopicData:
    name: str
    topic_id: uuid.UUID
    partitions: list[FetchPartitionData]


def encode_fetch_response(version: int, correlation_id: int, throttle_time_ms: int, error_code: int,
                          session_id: int, topics: Sequence[FetchTopicData]) -> list[Piece]:
    """The framed response (size, header, body) as pieces for ``writelines``; record sets are passed
    through as they are (parts of a list record set become pieces of their own)."""
    flexible = version >= 12
    head = bytearray()
    head += _I32.pack(correlation_id)
    if flexible:
        head.append(0)  # response header v1: no tagged fields
    if version >= 7:
        head += _I32_I16_I32.pack(throttle_time_ms, error_code, session_id)
    else:
        head += _I32.pack(throttle_time_ms)
    head += _uvarint(len(topics) + 1) if flexible else _I32.pack(len(topics))
    pieces: list[Piece] = []
    current = head
    for topic in topics:
        if version >= 13:
            current += topic.topic_id.bytes
        else:
            current += _string(topic.name, flexible)
        current += _uvarint(len(topic.partitions) + 1) if flexible else _I32.pack(len(topic.partitions))
        for p in topic.partitions:
            if version >= 5:
                current += _PARTITION_V5.pack(p.partition_index, p.error_code, p.high_watermark,
                                              p.last_stable_offset, p.log_start_offset)
            else:
                current += _PARTITION_V4.pack(p.partition_index, p.error_code, p.high_watermark,
                                              p.last_stable_offset)
            # aborted transactions: null (no transactions are written)
            current += b"\x00" if flexible else _NULL_ARRAY
            if version >= 11:
                current += _I32.pack(-1)  # preferred read replica
            records = p.records
            size = sum(len(part) for part in records) if isinstance(records, list) else len(records)
            current += _uvarint(size + 1) if flexible else _I32.pack(size)
            if size:
                pieces.append(bytes(current))
                if isinstance(records, list):
                    pieces.extend(part for part in records if len(part))
                else:
                    pieces.append(records)
                current = bytearray()
            if flexible:  # partition tagged fields, in tag order
                tags = (p.diverging_epoch is not None) + (p.current_leader is not None)
                current += _uvarint(tags)
                if p.diverging_epoch is not None:  # tag 0: DivergingEpoch {epoch int32, end offset int64, no tags}
                    current += b"\x00" + _uvarint(_EPOCH_END.size + 1) + _EPOCH_END.pack(*p.diverging_epoch) + b"\x00"
                if p.current_leader is not None:  # tag 1: CurrentLeader {leader id int32, leader epoch int32, no tags}
                    current += b"\x01" + _uvarint(_LEADER.size + 1) + _LEADER.pack(*p.current_leader) + b"\x00"
        if flexible:
            current.append(0)  # topic tagged fields
    if flexible:
        current.append(0)  # response tagged fields
    pieces.append(bytes(current))
    total = sum(len(piece) for piece in pieces)
    pieces.insert(0, _I32.pack(total))
    return pieces
