"""Record encode/decode, codecs, and interop with kafka-python's own RecordBatch code."""

from __future__ import annotations

import types

import cramjam
import kafka.codec
import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from umbra.errors import CorruptMessage, UnsupportedCompressionType
from umbra.records import compression
from umbra.records.records import build_batch, decode_batch, decode_varint, encode_varint

CODECS = [0, 1, 2, 3, 4]
RECORDS = [
    (b"key-0", b"value-0" * 50, [("h1", b"x"), ("h2", None)], 1_700_000_000_000),
    (None, b"no key", [], 1_700_000_000_005),
    (b"no value", None, [("only", b"")], 1_699_999_999_000),
    (b"", b"", [], 1_700_000_000_010),
]


@pytest.fixture(autouse=True)
def kafka_python_snappy(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-snappy is not installed; give kafka-python a raw-snappy stand-in backed by cramjam."""
    if kafka.codec.has_snappy():
        return
    shim = types.SimpleNamespace(
        compress=lambda data: bytes(cramjam.snappy.compress_raw(bytes(data))),
        decompress=lambda data: bytes(cramjam.snappy.decompress_raw(bytes(data))),
    )
    monkeypatch.setattr(kafka.codec, "snappy", shim)


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 64, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)])
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize("codec", CODECS)
def test_codec_round_trip(codec: int) -> None:
    data = b"hello kafka " * 10_000
    assert compression.decompress(codec, compression.compress(codec, data)) == data
    assert compression.decompress(codec, compression.compress(codec, b"")) == b""


def test_snappy_accepts_raw_and_framed() -> None:
    data = b"abc" * 50_000
    assert compression.compress(2, data).startswith(b"\x82SNAPPY\x00")
    assert compression.decompress(2, bytes(cramjam.snappy.compress_raw(data))) == data
    assert compression.decompress(2, bytes(cramjam.snappy.compress(data))) == data


def test_zstd_without_content_size() -> None:
    import zstandard

    data = b"z" * 100_000
    chunker = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    frame = chunker.compress(data) + chunker.flush()
    assert compression.decompress(4, frame) == data


def test_codec_errors() -> None:
    with pytest.raises(UnsupportedCompressionType):
        compression.compress(5, b"x")
    with pytest.raises(UnsupportedCompressionType):
        compression.decompress(7, b"x")
    for codec in (1, 2, 3, 4):
        with pytest.raises(CorruptMessage):
            compression.decompress(codec, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x7f\xff\xff\xff")


@pytest.mark.parametrize("codec", CODECS)
def test_build_then_decode(codec: int) -> None:
    batch = build_batch(RECORDS, base_offset=10, compression=codec)
    header, records = decode_batch(batch)
    assert header.compression == codec
    assert [r.offset for r in records] == [10, 11, 12, 13]
    assert [(r.key, r.value, r.headers, r.timestamp) for r in records] == [
        (k, v, list(h), ts) for k, v, h, ts in RECORDS
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_reads_our_batches(codec: int) -> None:
    batch = build_batch(RECORDS, base_offset=5, compression=codec, producer_id=3, producer_epoch=1, base_sequence=0)
    theirs = MemoryRecords(batch).next_batch()
    assert theirs.validate_crc()
    assert (theirs.base_offset, theirs.producer_id, theirs.base_sequence) == (5, 3, 0)
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs]
    assert got == [(5 + i, ts, k, v, list(h)) for i, (k, v, h, ts) in enumerate(RECORDS)]


@pytest.mark.parametrize("codec", CODECS)
def test_we_read_kafka_python_batches(codec: int) -> None:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=9,
                                        producer_epoch=0, base_sequence=4, batch_size=1 << 20)
    for i, (key, value, headers, timestamp) in enumerate(RECORDS):
        builder.append(i, timestamp=timestamp, key=key, value=value, headers=list(headers))
    batch = bytes(builder.build())
    header, records = decode_batch(batch)
    assert (header.compression, header.producer_id, header.base_sequence, header.record_count) == (codec, 9, 4, 4)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in records] == [
        (i, ts, k, v, list(h)) for i, (k, v, h, ts) in enumerate(RECORDS)
    ]
    from umbra.records.batch import validate_record_set

    assert validate_record_set(batch)[0].record_count == 4
