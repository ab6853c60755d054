"""Kafka's ``__consumer_offsets`` schemas (umbra.groups.offsets_format), the records persistence writes with them,
and the start-up migration of records in umbra's former format (a small writer of that format is kept here)."""

from __future__ import annotations

import json
import struct

import pytest
from groups_helpers import Env, join_request, run, settle

from umbra.groups import offsets_format as kafka
from umbra.groups import persistence
from umbra.groups.model import Group, Member, OffsetAndMetadata
from umbra.records.records import build_batch

# --- bytes written from Kafka's message definitions, by hand --------------------------------------


def s16(text: str) -> bytes:
    return struct.pack(">h", len(text.encode())) + text.encode()


def test_offset_commit_key_and_value_bytes_are_kafkas() -> None:
    assert persistence.offset_key("g", "t", 7) == struct.pack(">h", 1) + s16("g") + s16("t") + struct.pack(">i", 7)
    value = persistence.offset_value(OffsetAndMetadata(42, 5, "meta", 1234))
    assert value == struct.pack(">hqi", 3, 42, 5) + s16("meta") + struct.pack(">q", 1234)
    # No metadata is stored as "" (Kafka's metadata field is not nullable).
    assert persistence.offset_value(OffsetAndMetadata(1, -1, None, 9)).endswith(s16("") + struct.pack(">q", 9))


def test_an_expire_timestamp_is_written_as_value_version_1() -> None:
    raw = kafka.encode_offset_commit_value(kafka.OffsetCommitValue(10, 3, "m", 100, expire_timestamp=200))
    assert raw == struct.pack(">hq", 1, 10) + s16("m") + struct.pack(">qq", 100, 200)
    assert kafka.decode_offset_commit_value(raw) == kafka.OffsetCommitValue(10, -1, "m", 100, 200)


def test_group_metadata_bytes_are_kafkas_v3() -> None:
    group = Group("grp", protocol_type="consumer", protocol_name="range", generation_id=4, leader_id="m1")
    group.members["m1"] = Member("m1", "inst", "client", "/127.0.0.1", 10000, 30000, "consumer",
                                 [("range", b"SUB")], assignment=b"ASSIGN")
    assert persistence.group_key("grp") == struct.pack(">h", 2) + s16("grp")
    expected = (struct.pack(">h", 3) + s16("consumer") + struct.pack(">i", 4) + s16("range") + s16("m1")
                + struct.pack(">qi", 555, 1) + s16("m1") + s16("inst") + s16("client") + s16("/127.0.0.1")
                + struct.pack(">ii", 30000, 10000) + struct.pack(">i", 3) + b"SUB" + struct.pack(">i", 6) + b"ASSIGN")
    assert persistence.group_value(group, 555) == expected
    stored = persistence.parse_group_value(expected)
    assert (stored.protocol_type, stored.generation_id, stored.protocol_name, stored.leader_id, stored.member_ids,
            stored.timestamp_ms) == ("consumer", 4, "range", "m1", ("m1",), 555)
    assert stored.members[0].subscription == b"SUB" and stored.members[0].rebalance_timeout == 30000


def test_an_empty_group_is_written_as_kafka_writes_one() -> None:
    raw = persistence.group_value(Group("g", protocol_type="consumer", generation_id=2), 7)
    assert raw == struct.pack(">h", 3) + s16("consumer") + struct.pack(">ihhqi", 2, -1, -1, 7, 0)
    assert persistence.group_value(Group("g", generation_id=1), 7)[2:4] == struct.pack(">h", 0)  # protocolType ""
    assert persistence.parse_group_value(persistence.group_value(Group("g", generation_id=1), 7)).protocol_type is None


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def compact(text: str | None) -> bytes:
    return uvarint(0) if text is None else uvarint(len(text.encode()) + 1) + text.encode()


def test_every_value_version_is_read() -> None:
    v0 = struct.pack(">hq", 0, 5) + s16("a") + struct.pack(">q", 6)
    v2 = struct.pack(">hq", 2, 5) + s16("a") + struct.pack(">q", 6)
    v4 = struct.pack(">hqi", 4, 5, 9) + compact("a") + struct.pack(">q", 6) + uvarint(1) + uvarint(0) + uvarint(2) + b"xx"
    for raw, epoch in ((v0, -1), (v2, -1), (v4, 9)):
        assert kafka.decode_offset_commit_value(raw) == kafka.OffsetCommitValue(5, epoch, "a", 6)
    g0 = (struct.pack(">h", 0) + s16("consumer") + struct.pack(">i", 3) + s16("range") + s16("m")
          + struct.pack(">i", 1) + s16("m") + s16("c") + s16("h") + struct.pack(">ii", 100, 1) + b"S"
          + struct.pack(">i", 0))
    decoded = kafka.decode_group_metadata_value(g0)
    assert decoded.generation == 3 and decoded.current_state_timestamp == -1
    assert decoded.members[0].session_timeout == decoded.members[0].rebalance_timeout == 100
    g4 = (struct.pack(">h", 4) + compact("consumer") + struct.pack(">i", 8) + compact(None) + compact(None)
          + struct.pack(">q", 77) + uvarint(2) + compact("m") + compact(None) + compact("c") + compact("h")
          + struct.pack(">ii", 1, 2) + uvarint(1) + uvarint(1) + uvarint(0) + uvarint(0))
    decoded = kafka.decode_group_metadata_value(g4)
    assert (decoded.generation, decoded.protocol, decoded.current_state_timestamp) == (8, None, 77)
    assert decoded.members[0].member_id == "m" and decoded.members[0].session_timeout == 2


def test_unknown_record_types_are_skipped_and_bad_bytes_refused() -> None:
    assert persistence.decode_entry(struct.pack(">h", 3) + s16("g"), b"\x00\x00whatever") is None  # KIP-848
    for key in (b"\x00", struct.pack(">h", 1) + s16("g"), struct.pack(">h", 2) + s16("g") + b"x",
                struct.pack(">h", -1)):
        with pytest.raises(persistence.RecordFormatError):
            persistence.decode_entry(key, None)
    with pytest.raises(persistence.RecordFormatError):
        persistence.decode_entry(persistence.offset_key("g", "t", 0), struct.pack(">hq", 9, 1))
    with pytest.raises(persistence.RecordFormatError):
        persistence.decode_entry(persistence.offset_key("g", "t", 0), struct.pack(">hq", 3, 1))  # truncated


def test_tombstones_decode_as_deletions() -> None:
    offset = persistence.decode_entry(persistence.offset_key("g", "t", 1), None)
    assert isinstance(offset, persistence.OffsetRecord) and offset.value is None and not offset.legacy
    group = persistence.decode_entry(persistence.group_key("g"), None)
    assert isinstance(group, persistence.GroupRecord) and group.value is None


# --- the former format and the migration ----------------------------------------------------------


def legacy_str16(text: str) -> bytes:
    return struct.pack(">H", len(text.encode())) + text.encode()


def legacy_offset(group: str, topic: str, partition: int, offset: int | None, ts: int = 1000) -> tuple[bytes, bytes | None]:
    key = bytes((1, 1)) + legacy_str16(group) + legacy_str16(topic) + struct.pack(">i", partition)
    value = None if offset is None else json.dumps(
        {"v": 1, "offset": offset, "leader_epoch": 0, "metadata": "", "commit_timestamp_ms": ts}).encode()
    return key, value


def legacy_group(group: str, generation: int, ts: int = 1000) -> tuple[bytes, bytes]:
    return bytes((2, 1)) + legacy_str16(group), json.dumps(
        {"v": 1, "protocol_type": "consumer", "generation_id": generation, "protocol_name": "range",
         "leader_id": "m", "timestamp_ms": ts, "members": [{"member_id": "m"}]}).encode()


def write(env: Env, entries: list[tuple[bytes, bytes | None]]) -> None:
    log = env.open_log()
    log.append_as_leader(build_batch([(k, v, (), 1) for k, v in entries]), leader_epoch=0, now_ms=1)
    log.high_watermark = log.log_end_offset
    log.close()


def test_legacy_records_are_migrated_on_start(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        write(env, [legacy_offset("g", "t", 0, 5), legacy_offset("g", "t", 1, 9), legacy_offset("g", "t", 0, 6),
                    legacy_offset("gone", "t", 0, 1), legacy_offset("gone", "t", 0, None), legacy_group("g", 3, 2000),
                    (struct.pack(">h", 5) + s16("kip848"), b"\x00\x00")])
        with caplog.at_level("INFO", logger="umbra.groups"):
            c = await env.coordinator()
        assert "migrated 2 offset records and 1 groups of __consumer_offsets to Kafka's format" in caplog.text
        assert c.fetch_offsets("g", None) == {("t", 0): OffsetAndMetadata(6, 0, "", 1000),
                                              ("t", 1): OffsetAndMetadata(9, 0, "", 1000)}
        assert "gone" not in c.groups
        assert (c.groups["g"].generation_id, c.groups["g"].protocol_type, c.groups["g"].state_since_ms) == (
            3, "consumer", 2000)
        log = env.logs[-1]
        assert log.log_start_offset == 7  # every older record is below the log start
        replayed = list(persistence.GroupLog(log).replay())
        assert len(replayed) == 3 and not any(persistence.is_legacy_key(k) for k, _ in replayed)
        for key, value in replayed:
            assert persistence.decode_entry(key, value) is not None
        log.close()
        caplog.clear()
        with caplog.at_level("INFO", logger="umbra.groups"):
            again = await env.coordinator()  # nothing left to migrate, the same state
        assert "migrated" not in caplog.text
        assert again.fetch_offsets("g", None) == c.fetch_offsets("g", None)
        assert again.groups["g"].generation_id == 3

    run(scenario)


def test_a_crash_between_rewrite_and_cleanup_loses_nothing(env: Env) -> None:
    """Old records followed by their restatement (what a kill -9 before the log start moves leaves): replay
    gives the same state, and the next start finishes the migration."""
    async def scenario() -> None:
        old = [legacy_offset("g", "t", 0, 5), legacy_group("g", 2)]
        restated = [(persistence.offset_key("g", "t", 0), persistence.offset_value(OffsetAndMetadata(5, 0, "", 1000))),
                    (persistence.group_key("g"), persistence.group_value(Group("g", protocol_type="consumer",
                                                                              generation_id=2), 1000))]
        write(env, old + restated)
        c = await env.coordinator()
        assert c.fetch_offsets("g", None) == {("t", 0): OffsetAndMetadata(5, 0, "", 1000)}
        assert c.groups["g"].generation_id == 2
        assert env.logs[-1].log_start_offset == 4

    run(scenario)


def test_commits_and_groups_round_trip_through_kafkas_format(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        first = await c.join_group(join_request("g"))
        joined = await c.join_group(join_request("g", first.member_id))
        await c.sync_group("g", joined.generation_id, joined.member_id, None, None, None, {joined.member_id: b"A"})
        await settle()
        c.commit_offsets("solo", -1, "", None, {("t", 0): OffsetAndMetadata(3, 1, None, env.clock.now)})
        log = env.logs[-1]
        for key, value in persistence.GroupLog(log).replay():
            assert not persistence.is_legacy_key(key)
            assert persistence.decode_entry(key, value) is not None
        generation = c.groups["g"].generation_id
        assert generation >= 1
        log.close()
        restarted = await env.coordinator()
        assert restarted.fetch_offsets("solo", None) == {("t", 0): OffsetAndMetadata(3, 1, "", env.clock.now)}
        assert restarted.groups["g"].generation_id == generation

    run(scenario)
