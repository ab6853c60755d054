"""validate_record_set never fails with anything but a KafkaError on arbitrary input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from umbra.errors import KafkaError
from umbra.records.batch import validate_record_set
from umbra.records.records import build_batch

_VALID = build_batch([(b"k", b"v", [], 1)])


def _check(data: bytes) -> None:
    try:
        headers = validate_record_set(data)
    except KafkaError:
        return
    assert sum(h.size_in_bytes for h in headers) == len(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.binary(max_size=20))
def test_mutated_valid_batch(position: int, byte: int, tail: bytes) -> None:
    data = bytearray(_VALID)
    data[position] = byte
    _check(bytes(data) + tail)
