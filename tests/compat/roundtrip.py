"""What the compatibility tests send, and how they check what comes back.

`make_records` builds a deterministic set of records spread over the partitions: keys (some null),
values (text, random bytes, empty, some null), headers (repeated keys, empty and binary values,
some records with none) and explicit CreateTime timestamps that are not monotonic.

`check_round_trip` compares what a consumer read against what was sent and what the producer's
acknowledgements said: every (partition, offset, key, value, headers, timestamp) must match, the
offsets of each partition must run 0, 1, 2, ... without gaps, and each partition must hold its
records in the order they were sent.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

RECORD_COUNT = 10_000
PARTITIONS = 3
ROUND_TRIP_TIMEOUT_SECONDS = 60.0

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class SentRecord:
    index: int
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True)
class ConsumedRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    create_time: bool  # timestamp type is CreateTime (not LogAppendTime)


def make_records(
    label: str,
    count: int = RECORD_COUNT,
    partitions: int = PARTITIONS,
    seed: int = 20_241_123,
    base_timestamp_ms: int | None = None,
) -> list[SentRecord]:
    """Deterministic records for one test; `label` makes keys and headers unique to the client."""
    rng = random.Random(f"{seed}-{label}")
    if base_timestamp_ms is None:
        # An hour in the past: well inside any default retention, and clearly not the broker's clock.
        base_timestamp_ms = int(time.time() * 1000) - 3_600_000
    records = []
    for index in range(count):
        key = None if index % 97 == 13 else f"{label}-key-{index:05d}".encode()
        if index % 101 == 50 and key is not None:  # aiokafka refuses a record with neither
            value: bytes | None = None
        elif index % 89 == 7:
            value = b""
        elif index % 2:
            value = (f"{label} value {index} " * (1 + index % 9)).encode()
        else:
            value = rng.randbytes(1 + index % 300)
        headers: Headers
        if index % 10 == 0:
            headers = ()
        else:
            headers = (
                ("index", str(index).encode()),
                ("client", label.encode()),
                ("repeated", b"first"),
                ("repeated", b"second"),
                ("binary", rng.randbytes(index % 5)),  # sometimes empty
            )
        timestamp_ms = base_timestamp_ms + (index * 7919) % 600_000  # spread over 10 min, not monotonic
        records.append(SentRecord(index, index % partitions, key, value, headers, timestamp_ms))
    return records


def normalise_headers(headers: Iterable[Sequence[Any]] | None) -> Headers:
    """Clients return headers as None, lists or tuples of pairs; compare them as tuples of (str, bytes)."""
    if not headers:
        return ()
    normalised = []
    for name, value in headers:
        if isinstance(name, bytes):
            name = name.decode()
        normalised.append((str(name), bytes(value) if value is not None else b""))
    return tuple(normalised)


def check_round_trip(
    sent: Sequence[SentRecord],
    consumed: Sequence[ConsumedRecord],
    acknowledged: dict[int, tuple[int, int]] | None,
    check_timestamps: bool = True,
) -> None:
    """Assert that `consumed` is exactly `sent`.

    `acknowledged` maps a sent record's index to the (partition, offset) its producer's delivery
    report gave. Without it (kcat), records are matched by their order within each partition.
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < 20:
            problems.append(text)

    if len(consumed) != len(sent):
        problem(f"consumed {len(consumed)} records, sent {len(sent)}")

    sent_by_partition: dict[int, list[SentRecord]] = defaultdict(list)
    for sent_record in sent:
        sent_by_partition[sent_record.partition].append(sent_record)
    consumed_by_partition: dict[int, list[ConsumedRecord]] = defaultdict(list)
    for consumed_record in consumed:
        consumed_by_partition[consumed_record.partition].append(consumed_record)

    for partition, partition_records in sorted(consumed_by_partition.items()):
        offsets = [record.offset for record in partition_records]
        if offsets != list(range(len(offsets))):
            first_bad = next(i for i, offset in enumerate(offsets) if offset != i)
            problem(
                f"partition {partition}: offsets are not 0..{len(offsets) - 1}; position {first_bad} has {offsets[first_bad]}"
            )

    if acknowledged is not None:
        if len(acknowledged) != len(sent):
            problem(f"{len(acknowledged)} delivery reports for {len(sent)} records")
        for partition, sent_records in sent_by_partition.items():
            acked_offsets = [acknowledged[r.index][1] for r in sent_records if r.index in acknowledged]
            if acked_offsets != sorted(acked_offsets):
                problem(f"partition {partition}: acknowledged offsets are not in send order")
        expected_at = {acknowledged[r.index]: r for r in sent if r.index in acknowledged}
        for got in consumed:
            expected = expected_at.get((got.partition, got.offset))
            if expected is None:
                problem(f"consumed partition {got.partition} offset {got.offset}, which no delivery report named")
                continue
            _compare(expected, got, check_timestamps, problem)
    else:
        for partition, expected_records in sent_by_partition.items():
            got_records = consumed_by_partition.get(partition, [])
            for expected, got in zip(expected_records, got_records, strict=False):
                _compare(expected, got, check_timestamps, problem)

    assert not problems, "round trip mismatch:\n  " + "\n  ".join(problems)


def _compare(expected: SentRecord, got: ConsumedRecord, check_timestamps: bool, problem: Callable[[str], None]) -> None:
    where = f"record {expected.index} (partition {got.partition} offset {got.offset})"
    if got.partition != expected.partition:
        problem(f"{where}: partition {got.partition}, sent to {expected.partition}")
    if got.key != expected.key:
        problem(f"{where}: key {_short(got.key)}, sent {_short(expected.key)}")
    if got.value != expected.value:
        problem(f"{where}: value {_short(got.value)}, sent {_short(expected.value)}")
    if got.headers != expected.headers:
        problem(f"{where}: headers {got.headers!r}, sent {expected.headers!r}")
    if check_timestamps:
        if not got.create_time:
            problem(f"{where}: timestamp type is not CreateTime")
        if got.timestamp_ms != expected.timestamp_ms:
            problem(f"{where}: timestamp {got.timestamp_ms}, sent {expected.timestamp_ms}")


def _short(data: bytes | None) -> str:
    if data is None:
        return "null"
    return repr(data[:40]) + (f"...({len(data)} bytes)" if len(data) > 40 else "")


def summarise(consumed: Sequence[ConsumedRecord]) -> str:
    per_partition: dict[int, int] = defaultdict(int)
    for record in consumed:
        per_partition[record.partition] += 1
    return ", ".join(f"p{p}={n}" for p, n in sorted(per_partition.items()))
