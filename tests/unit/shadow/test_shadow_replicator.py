"""Pure pieces of the replication path: which fetched batches an append skips."""

from __future__ import annotations

from umbra.records.records import build_batch
from umbra.shadow.replicator import present_batches_end


def batch(base_offset: int, values: list[bytes]) -> bytes:
    return build_batch([(b"k", v, [], 1_000 + i) for i, v in enumerate(values)], base_offset=base_offset)


def test_batches_already_in_the_log_are_dropped_before_an_append() -> None:
    records = memoryview(batch(0, [b"a", b"b"]) + batch(2, [b"c"]) + batch(3, [b"d", b"e"]))
    first, second = len(batch(0, [b"a", b"b"])), len(batch(2, [b"c"]))
    assert present_batches_end(records, 0) == 0
    assert present_batches_end(records, 2) == first
    assert present_batches_end(records, 3) == first + second
    assert present_batches_end(records, 4) == first + second  # 3-4 straddles: left for the append to refuse
    assert present_batches_end(records, 9) == len(records)
