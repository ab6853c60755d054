"""Batch compression codecs: none (0), gzip (1), snappy (2), lz4 (3), zstd (4).

Snappy comes in two shapes inside Kafka batches: the Java client writes xerial framing
(``\\x82SNAPPY\\x00`` + version + compat, then blocks of ``int32 length | raw snappy``), other clients may write raw
snappy. We always write xerial framing (what the Java client reads most readily) and read both, plus
the official snappy framing format. lz4 is the LZ4 frame format; zstd frames may omit the content size.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from umbra.errors import CorruptMessage, UnsupportedCompressionType
from umbra.protocol.varint import VarintError, read_uvarint
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
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# What a batch may decompress to unless the caller says otherwise (the log's limit scales with
# max.message.bytes: see LogConfig.max_decompressed_bytes).
DEFAULT_DECOMPRESSED_LIMIT = 64 * 1024 * 1024


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


def decompress(codec: int, data: Buffer, limit: int = DEFAULT_DECOMPRESSED_LIMIT) -> bytes:
    """Decompress ``data``; raises :class:`CorruptMessage` when the bytes are not valid for ``codec``, or when
    they would decompress to more than ``limit`` bytes (a decompression bomb: nothing past the limit is
    ever allocated)."""
    if codec == NONE:
        return bytes(data)
    if codec not in CODEC_NAMES:
        raise UnsupportedCompressionType(f"unknown compression codec {codec}")
    try:
        if codec == GZIP:
            out = _gzip_decompress(bytes(data), limit)
        elif codec == SNAPPY:
            out = _snappy_decompress(bytes(data), limit)
        elif codec == LZ4:
            out = bytes(lz4.frame.LZ4FrameDecompressor().decompress(bytes(data), max_length=limit + 1))
        else:
            reader = zstandard.ZstdDecompressor().stream_reader(bytes(data), read_across_frames=True)
            with reader:
                out = bytes(reader.read(limit + 1))
    except CorruptMessage:
        raise
    except Exception as exc:  # every codec library has its own error type
        raise CorruptMessage(f"cannot decompress {CODEC_NAMES[codec]} data: {exc}") from exc
    if len(out) > limit:
        raise CorruptMessage(f"{CODEC_NAMES[codec]} data decompresses to more than {limit} bytes")
    return out


def _gzip_decompress(data: bytes, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while data:  # a gzip stream may hold several members
        member = zlib.decompressobj(wbits=_GZIP_WBITS)
        parts.append(member.decompress(data, limit + 1 - total))
        total += len(parts[-1])
        if total > limit:
            break
        if not member.eof:
            raise CorruptMessage("truncated gzip data")
        data = member.unused_data
    return b"".join(parts)


def _xerial_snappy_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(bytes(view[start : start + _XERIAL_BLOCK])))
        parts.append(_INT32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_decompress(data: bytes, limit: int) -> bytes:
    if data.startswith(_XERIAL_MAGIC):
        return _xerial_snappy_decompress(data, limit)
    if data.startswith(_SNAPPY_FRAMED_MAGIC):
        _check_framed_snappy_size(data, limit)
        return bytes(cramjam.snappy.decompress(data))
    return _raw_snappy_decompress(data, limit)


def _raw_snappy_decompress(data: bytes, limit: int) -> bytes:
    """Raw snappy starts with its uncompressed length: checked before anything is allocated."""
    size, _ = _uvarint(data, 0)
    if size > limit:
        raise CorruptMessage(f"snappy data decompresses to {size} bytes, more than {limit}")
    return bytes(cramjam.snappy.decompress_raw(data))


def _check_framed_snappy_size(data: bytes, limit: int) -> None:
    """The framing format's chunks each say how much they hold; their sum must stay within ``limit``."""
    position, total = len(_SNAPPY_FRAMED_MAGIC), 0
    while position + 4 <= len(data):
        kind, length = data[position], int.from_bytes(data[position + 1 : position + 4], "little")
        body = position + 4
        if kind == 0x00:  # compressed: masked CRC, then raw snappy (its length first)
            total += _uvarint(data, body + 4)[0]
        elif kind == 0x01:  # uncompressed: masked CRC, then the bytes
            total += max(length - 4, 0)
        if total > limit:
            raise CorruptMessage(f"snappy data decompresses to more than {limit} bytes")
        position = body + length


def _uvarint(data: bytes, position: int) -> tuple[int, int]:
    try:
        return read_uvarint(data, position)
    except VarintError as exc:
        raise CorruptMessage(f"snappy length: {exc}") from None


def _xerial_snappy_decompress(data: bytes, limit: int) -> bytes:
    if len(data) < len(_XERIAL_HEADER):
        raise CorruptMessage("truncated xerial snappy header")
    position, total = len(_XERIAL_HEADER), 0
    parts: list[bytes] = []
    while position < len(data):
        if position + 4 > len(data):
            raise CorruptMessage("truncated xerial snappy block length")
        (length,) = _INT32.unpack_from(data, position)
        position += 4
        if length < 0 or position + length > len(data):
            raise CorruptMessage("xerial snappy block overruns the data")
        parts.append(_raw_snappy_decompress(data[position : position + length], limit - total))
        total += len(parts[-1])
        position += length
    return b"".join(parts)
