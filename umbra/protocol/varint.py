"""Unsigned varints and tagged-field buffers of the flexible protocol versions (KIP-482)."""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


class VarintError(ValueError):
    """A varint or tagged-field buffer is truncated or malformed."""


def read_uvarint(buf: Buffer, pos: int) -> tuple[int, int]:
    """The unsigned varint (at most 5 bytes, a uint32) at ``pos``, and the position after it."""
    value = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise VarintError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise VarintError("varint longer than 5 bytes")


def skip_tagged_fields(buf: Buffer, pos: int) -> int:
    """Skip a tagged-field buffer (unknown tags are never an error); the position after it."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise VarintError("tagged field runs past the end of the message")
    return pos
