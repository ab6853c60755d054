"""kcat (the Debian package, built on the system librdkafka) against a real umbra broker.

kcat cannot set per-record timestamps when it produces: `-P` records get librdkafka's CreateTime
(now), which is checked to lie within the produce window. Timestamps set by a client are checked
through `-C` on records produced by confluent-kafka. kcat's `-f` output is text, so these records
use text keys, values and headers without the separators the format uses.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from confluent_client import produce_all
from harness import BrokerProcess, create_topic
from roundtrip import PARTITIONS, RECORD_COUNT, ConsumedRecord, SentRecord, check_round_trip

KCAT_TIMEOUT_SECONDS = 60.0
CONSUME_FORMAT = r"%p\t%o\t%T\t%k\t%s\t%h\n"  # partition, offset, timestamp, key, value, headers


def run_kcat(kcat: str, *args: str) -> str:
    result = subprocess.run(
        [kcat, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=KCAT_TIMEOUT_SECONDS,  # on expiry subprocess.run kills kcat before raising
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}\nstderr:\n{result.stderr.decode(errors='replace')[-4000:]}"
    )
    return result.stdout.decode()


def consume_with_kcat(kcat: str, bootstrap: str, topic: str) -> list[ConsumedRecord]:
    # kcat prints null and empty alike (even -Z's NULL covers empty values), so the text records
    # sent through kcat have no null keys or values; an empty field here means empty.
    output = run_kcat(kcat, "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-f", CONSUME_FORMAT)
    consumed = []
    for line in output.splitlines():
        partition, offset, timestamp, key, value, headers = line.split("\t")
        consumed.append(
            ConsumedRecord(
                partition=int(partition),
                offset=int(offset),
                key=key.encode(),
                value=value.encode(),
                headers=_parse_headers(headers),
                timestamp_ms=int(timestamp),
                create_time=True,  # kcat's -f has no timestamp-type field
            )
        )
    return consumed


def _parse_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    if not text:
        return ()
    pairs = []
    for item in text.split(","):
        name, _, value = item.partition("=")
        pairs.append((name, value.encode()))
    return tuple(pairs)


def text_records(label: str, count: int, headers: tuple[tuple[str, bytes], ...], timestamp_ms: int) -> list[SentRecord]:
    """Records kcat can print and parse back: no tabs, newlines, commas, '=' or ':' anywhere."""
    records = []
    for index in range(count):
        value = b"" if index % 89 == 7 else (f"{label} value {index} " * (1 + index % 9)).strip().encode()
        key = f"{label}-key-{index:05d}".encode()
        records.append(SentRecord(index, index % PARTITIONS, key, value, headers, timestamp_ms + index))
    return records


def test_metadata_lists_topic_and_partitions(broker: BrokerProcess, require_kcat: str) -> None:
    topic = "compat-kcat-metadata"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)

    metadata = json.loads(run_kcat(require_kcat, "-b", broker.bootstrap, "-L", "-J", "-t", topic))
    assert [t["topic"] for t in metadata["topics"]] == [topic]
    (described,) = metadata["topics"]
    assert "error" not in described, described
    assert sorted(p["partition"] for p in described["partitions"]) == list(range(PARTITIONS))
    broker_ids = {b["id"] for b in metadata["brokers"]}
    assert all(p["leader"] in broker_ids for p in described["partitions"]), metadata
    assert broker.bootstrap in {b["name"] for b in metadata["brokers"]}, metadata["brokers"]

    listing = run_kcat(require_kcat, "-b", broker.bootstrap, "-L")
    assert f'topic "{topic}" with {PARTITIONS} partitions' in listing, listing


def test_produce_with_keys_and_consume(broker: BrokerProcess, require_kcat: str, tmp_path: Path) -> None:
    topic = "compat-kcat-produce"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    headers = (("source", b"kcat"), ("run", tmp_path.name.encode()))
    records = text_records("kcat", RECORD_COUNT, headers, timestamp_ms=0)

    produced_after_ms = int(time.time() * 1000)
    for partition in range(PARTITIONS):
        lines = [(r.key or b"") + b":" + (r.value or b"") for r in records if r.partition == partition]
        input_file = tmp_path / f"partition-{partition}.txt"
        input_file.write_bytes(b"\n".join(lines) + b"\n")
        header_args = [arg for name, value in headers for arg in ("-H", f"{name}={value.decode()}")]
        run_kcat(
            require_kcat, "-b", broker.bootstrap, "-P", "-t", topic, "-p", str(partition),
            "-K:", *header_args, "-X", "acks=all", "-l", str(input_file),
        )  # fmt: skip
    produced_before_ms = int(time.time() * 1000)

    consumed = consume_with_kcat(require_kcat, broker.bootstrap, topic)

    check_round_trip(records, consumed, acknowledged=None, check_timestamps=False)
    late_or_early = [r for r in consumed if not produced_after_ms - 1000 <= r.timestamp_ms <= produced_before_ms + 1000]
    assert not late_or_early, f"timestamps outside the produce window: {late_or_early[:3]}"


def test_consume_records_with_client_timestamps(broker: BrokerProcess, require_kcat: str) -> None:
    topic = "compat-kcat-consume"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    headers = (("source", b"confluent"), ("repeated", b"first"), ("repeated", b"second"))
    records = text_records("kcat-consume", RECORD_COUNT, headers, timestamp_ms=int(time.time() * 1000) - 3_600_000)
    acknowledged = produce_all(broker.bootstrap, topic, records, {"compression.type": "snappy"})

    consumed = consume_with_kcat(require_kcat, broker.bootstrap, topic)

    check_round_trip(records, consumed, acknowledged)
