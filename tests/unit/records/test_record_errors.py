"""KIP-467: a compacted topic's keyless records are named by their index in the produced record set, and the
error is still an InvalidRecord (INVALID_RECORD) for everything that catches those."""

from __future__ import annotations

import pytest

from umbra.errors import ErrorCode, InvalidRecord
from umbra.records.batch import validate_record_set
from umbra.records.compression import GZIP
from umbra.records.records import build_batch
from umbra.records.validation import RecordError, RecordValidationError, keyless_records
from umbra.storage.compaction import require_keys

LIMIT = 1 << 20


def _batch(keys: list[bytes | None], compression: int = 0) -> bytes:
    return build_batch([(key, b"v", [], 1000 + i) for i, key in enumerate(keys)], compression=compression)


@pytest.mark.parametrize("compression", [0, GZIP])
def test_keyless_records_are_indexed_over_the_whole_record_set(compression: int) -> None:
    record_set = _batch([b"a", None, b"", None], compression) + _batch([None, b"b"], compression)
    # An empty key is a key (Kafka's hasKey); only a null one is missing.
    assert keyless_records(record_set, validate_record_set(record_set), LIMIT) == [1, 3, 4]
    keyed = _batch([b"a", b"b"], compression)
    assert keyless_records(keyed, validate_record_set(keyed), LIMIT) == []


def test_require_keys_names_each_keyless_record_in_kafkas_words() -> None:
    record_set = _batch([None, b"k", None, None, None])
    with pytest.raises(InvalidRecord) as raised:
        require_keys(record_set, validate_record_set(record_set), "orders-3", LIMIT)
    error = raised.value
    assert isinstance(error, RecordValidationError)
    assert error.code is ErrorCode.INVALID_RECORD
    expected = "Compacted topic cannot accept message without key in topic partition orders-3"
    assert error.record_errors == tuple(RecordError(i, expected) for i in (0, 2, 3, 4))
    assert str(error) == (
        "One or more records have been rejected due to 4 record errors in total, and only showing the first "
        f"three errors at most: [RecordError(batchIndex=0, message='{expected}'), "
        f"RecordError(batchIndex=2, message='{expected}'), RecordError(batchIndex=3, message='{expected}')]")
    keyed = _batch([b"k"])
    require_keys(keyed, validate_record_set(keyed), "orders-3", LIMIT)
