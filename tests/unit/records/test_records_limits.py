"""Decompression never allocates past its limit, and produced records are validated as Kafka's LogValidator does."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Callable

import cramjam
import lz4.frame
import pytest
import zstandard

from umbra.errors import CorruptMessage
from umbra.records import compression
from umbra.records.batch import HEADER_SIZE, validate_record_set, write_crc
from umbra.records.records import build_batch, decode_batch, encode_varint
from umbra.records.validation import validate_records

LIMIT = 1 << 20
BOMB = bytes(32 << 20)  # 32 MiB of zeros: each codec squeezes it into a few kilobytes


def _framed_snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress(data))


def _xerial(data: bytes) -> bytes:
    return compression._xerial_snappy_compress(data)


BOMBS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "gzip": (compression.GZIP, lambda d: _gzip(d)),
    "snappy-raw": (compression.SNAPPY, lambda d: bytes(cramjam.snappy.compress_raw(d))),
    "snappy-xerial": (compression.SNAPPY, _xerial),
    "snappy-framed": (compression.SNAPPY, _framed_snappy),
    "lz4": (compression.LZ4, lambda d: bytes(lz4.frame.compress(d))),
    "zstd": (compression.ZSTD, lambda d: zstandard.ZstdCompressor().compress(d)),
    "zstd-no-content-size": (compression.ZSTD,
                             lambda d: zstandard.ZstdCompressor(write_content_size=False).compress(d)),
}


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_decompression_bomb_fails_without_allocating_it(name: str) -> None:
    codec, compress = BOMBS[name]
    bomb = compress(BOMB)
    assert len(bomb) < 2 << 20
    assert compression.decompress(codec, compress(bytes(1000)), LIMIT) == bytes(1000)  # within the limit: fine
    tracemalloc.start()
    try:
        with pytest.raises(CorruptMessage, match="more than"):
            compression.decompress(codec, bomb, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT + 4 * len(bomb), f"{name}: {peak} bytes allocated for a {LIMIT}-byte limit"


def test_decode_batch_applies_the_limit() -> None:
    batch = build_batch([(b"k", bytes(2 << 20), [], 1)], compression=compression.ZSTD)
    assert decode_batch(batch, max_decompressed=4 << 20)[1][0].value == bytes(2 << 20)
    with pytest.raises(CorruptMessage):
        decode_batch(batch, max_decompressed=1 << 20)


# -- record validation ------------------------------------------------------------------------------------

def _records(count: int = 5) -> list[tuple[bytes, bytes, list[tuple[str, bytes]], int]]:
    return [(b"k%d" % i, b"value %d" % i, [("h", b"x")], 1_000 + i) for i in range(count)]


def _resealed(batch: bytearray) -> bytearray:
    """The batch with a correct CRC over whatever its bytes now are."""
    write_crc(batch, 0)
    return batch


def _check(batch: bytes | bytearray, limit: int = LIMIT) -> None:
    validate_records(batch, validate_record_set(batch), limit)


@pytest.mark.parametrize("codec", sorted(compression.CODEC_NAMES))
def test_well_formed_batches_pass(codec: int) -> None:
    _check(build_batch(_records(), compression=codec))
    _check(build_batch(_records(1), compression=codec))


def _corrupt_length() -> bytearray:
    batch = bytearray(build_batch(_records()))
    batch[HEADER_SIZE] = 0x7E  # the first record's length varint: 63, far more than the record holds
    return _resealed(batch)


def _wrong_count(count: int) -> bytearray:
    batch = bytearray(build_batch(_records()))
    struct.pack_into(">i", batch, 57, count)
    return _resealed(batch)


def _wrong_offset_delta() -> bytearray:
    """Two records whose offset deltas are 0 and 5."""
    records = []
    for delta in (0, 5):
        body = b"\x00" + encode_varint(0) + encode_varint(delta) + encode_varint(1) + b"k" + encode_varint(1) + b"v" \
            + encode_varint(0)
        records.append(encode_varint(len(body)) + body)
    batch = bytearray(build_batch(_records(2)))
    batch[HEADER_SIZE:] = b"".join(records)
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    return _resealed(batch)


def _corrupt_inside_compression() -> bytearray:
    plain = bytearray(build_batch(_records()))
    plain[HEADER_SIZE] = 0x7E
    compressed = compression.compress(compression.ZSTD, bytes(plain[HEADER_SIZE:]))
    batch = bytearray(plain[:HEADER_SIZE]) + compressed
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    struct.pack_into(">h", batch, 21, compression.ZSTD)
    return _resealed(batch)


@pytest.mark.parametrize(("name", "make"), [
    ("record length overruns", _corrupt_length),
    ("count says more than it holds", lambda: _wrong_count(9)),
    ("count says fewer: trailing bytes", lambda: _wrong_count(2)),
    ("offset deltas skip", _wrong_offset_delta),
    ("malformed inside a compressed batch", _corrupt_inside_compression),
])
def test_valid_crc_malformed_records_are_refused(name: str, make: Callable[[], bytearray]) -> None:
    batch = make()
    validate_record_set(batch)  # the CRC is right: only a record walk finds the problem
    with pytest.raises(CorruptMessage):
        _check(batch)


def test_a_compressed_bomb_is_refused_by_validation() -> None:
    batch = build_batch([(b"k", bytes(8 << 20), [], 1)], compression=compression.ZSTD)
    assert len(batch) < 1 << 20
    with pytest.raises(CorruptMessage, match="more than"):
        _check(batch, limit=1 << 20)
