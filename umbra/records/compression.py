"""Batch compression codecs: none (0), gzip (1), snappy (2), lz4 (3), zstd (4).

Snappy comes in two shapes inside Kafka batches: the Java client writes xerial framing
(``\\x82SNAPPY\\x00`` + version + compat, then blocks of ``int32 length | raw snappy``), other clients may write raw
snappy. We always write xerial framing (what the Java client reads most readily) and read both, plus
the official snappy framing format. lz4 is the LZ4 frame format; zstd frames may omit the content size.
"""

from __future__ import annotations

import struct

import cramjam
import lz4.frame
import zstandard

from umbra.errors import CorruptMessage, UnsupportedCompressionType
from umbra.records.crc import Buffer

NONE = 0
GZIP = 1
SNAPPY = 2
LZ4 = 3
ZSTD = 4
CODEC_NAMES = {NONE: "none", GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024  # the Java client's default block size
_SNAPPY_FRAMED_MAGIC = b"\xff\x06\x00\x00sNaPpY"
_INT32 = struct.Struct(">i")


def compress(codec: int, data: Buffer) -> bytes:
    """Compress ``data`` with Kafka codec id ``codec``."""
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(bytes(data)))
    if codec == SNAPPY:
        return _xerial_snappy_compress(data)
    if codec == LZ4:
        return bytes(lz4.frame.compress(bytes(data)))
    if codec == ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(bytes(data)))
    raise UnsupportedCompressionType(f"unknown compression codec {codec}")


def decompress(codec: int, data: Buffer) -> bytes:
    """Decompress ``data``; raises :class:`CorruptMessage` when the bytes are not valid for ``codec``."""
    if codec == NONE:
        return bytes(data)
    if codec not in CODEC_NAMES:
        raise UnsupportedCompressionType(f"unknown compression codec {codec}")
    try:
        if codec == GZIP:
            return bytes(cramjam.gzip.decompress(bytes(data)))
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data))
        if codec == LZ4:
            return bytes(lz4.frame.decompress(bytes(data)))
        reader = zstandard.ZstdDecompressor().stream_reader(bytes(data), read_across_frames=True)
        with reader:
            return bytes(reader.read())
    except CorruptMessage:
        raise
    except Exception as exc:  # every codec library has its own error type
        raise CorruptMessage(f"cannot decompress {CODEC_NAMES[codec]} data: {exc}") from exc


def _xerial_snappy_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(bytes(view[start : start + _XERIAL_BLOCK])))
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: bytes) -> bytes:
    if data.startswith(_XERIAL_MAGIC):
        return _xerial_snappy_decompress(data)
    if data.startswith(_SNAPPY_FRAMED_MAGIC):
        return bytes(cramjam.snappy.decompress(data))
    return bytes(cramjam.snappy.decompress_raw(data))


def _xerial_snappy_decompress(data: bytes) -> bytes:
    if len(data) < len(_XERIAL_HEADER):
        raise CorruptMessage("truncated xerial snappy header")
    position = len(_XERIAL_HEADER)
    parts: list[bytes] = []
    while position < len(data):
        if position + 4 > len(data):
            raise CorruptMessage("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(data, position)
        position += 4
        if length < 0 or position + length > len(data):
            raise CorruptMessage("xerial snappy block overruns the data")
        parts.append(bytes(cramjam.snappy.decompress_raw(data[position : position + length])))
        position += length
    return b"".join(parts)
