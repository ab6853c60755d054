"""The group and offset handlers at every advertised version, through the real codec (encode, decode, handle,
build and encode the response), plus hostile field values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from groups_helpers import Env, run

from umbra.errors import ErrorCode
from umbra.protocol.codec import SCHEMAS, RequestHeader, build_response
from umbra.server.handlers import API_HANDLERS, RequestContext, load_all

load_all()


@dataclass
class FakeTopic:
    partitions: int


class FakeMetadata:
    def topic(self, name: str) -> FakeTopic | None:
        return FakeTopic(3) if name == "t" else None


class FakeBroker:
    node_id = 1
    metadata = FakeMetadata()

    def __init__(self, groups: Any) -> None:
        self.groups = groups

    clustered = False  # a single broker: it is the group coordinator
    authorizer = None  # authorization disabled: every request is allowed

    def advertised_endpoint(self, listener: str | None = None) -> tuple[str, int]:
        return "127.0.0.1", 9092

    def coordinator_address(self, listener: str | None = None) -> tuple[int, str, int]:
        return self.node_id, "127.0.0.1", 9092

    async def offsets_replicated(self) -> bool:
        return True  # one replica of the offsets topic


async def call(broker: FakeBroker, api_key: int, version: int, **fields: Any) -> Any:
    """Encode a request, decode it as the server would, handle it, and encode the response."""
    request_cls = SCHEMAS[api_key].request
    handler = API_HANDLERS[api_key]
    assert handler.min_version <= version <= handler.max_version
    wire = request_cls(version=version, **fields).encode(version=version)
    request = request_cls.decode(wire, version=version)
    ctx = RequestContext(broker, RequestHeader(api_key, version, 1, "client"), "127.0.0.1:5555", 1)  # type: ignore[arg-type]
    result = await handler.handle(ctx, request)
    response = build_response(api_key, version, result) if isinstance(result, dict) else result
    encoded = response.encode(version=version)
    return SCHEMAS[api_key].response.decode(encoded, version=version)


def sub(cls: Any, name: str) -> Any:
    return getattr(cls, name)


async def join(broker: FakeBroker, version: int, group: str, **extra: Any) -> Any:
    req = SCHEMAS[11].request
    protocols = [req.JoinGroupRequestProtocol(name="range", metadata=b"\x00\x01\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff")]
    fields = {"group_id": group, "session_timeout_ms": 10000, "member_id": "", "protocol_type": "consumer",
              "protocols": protocols, **extra}
    if version >= 1:
        fields.setdefault("rebalance_timeout_ms", 5000)
    response = await call(broker, 11, version, **fields)
    if response.error_code == ErrorCode.MEMBER_ID_REQUIRED:
        response = await call(broker, 11, version, **{**fields, "member_id": response.member_id})
    return response


@pytest.mark.parametrize("version", range(10))
def test_join_sync_heartbeat_commit_fetch_leave_at_each_version(env: Env, version: int) -> None:
    async def scenario() -> None:
        broker = FakeBroker(await env.coordinator())
        joined = await join(broker, version, "g")
        assert joined.error_code == 0 and joined.generation_id == 1 and len(joined.members) == 1
        member = joined.member_id
        sync_cls = SCHEMAS[14].request
        sync_version = min(version, 5)
        synced = await call(broker, 14, sync_version, group_id="g", generation_id=1, member_id=member,
                            assignments=[sync_cls.SyncGroupRequestAssignment(member_id=member, assignment=b"a")])
        assert synced.error_code == 0 and synced.assignment == b"a"
        beat = await call(broker, 12, min(version, 4), group_id="g", generation_id=1, member_id=member)
        assert beat.error_code == 0

        commit_cls = SCHEMAS[8].request
        partition = commit_cls.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
            partition_index=1, committed_offset=10 + version, committed_metadata=None)
        missing = commit_cls.OffsetCommitRequestTopic.OffsetCommitRequestPartition(
            partition_index=9, committed_offset=1, committed_metadata=None)
        commit_fields: dict[str, Any] = {"group_id": "g", "topics": [
            commit_cls.OffsetCommitRequestTopic(name="t", partitions=[partition, missing])]}
        if version >= 1:
            commit_fields.update(generation_id_or_member_epoch=1, member_id=member)
        committed = await call(broker, 8, version, **commit_fields)
        codes = [p.error_code for p in committed.topics[0].partitions]
        # v0 commits carry no member: a simple commit into a non-empty group is refused.
        expected_first = ErrorCode.UNKNOWN_MEMBER_ID if version == 0 else ErrorCode.NONE
        assert codes == [expected_first, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]

        fetch_cls = SCHEMAS[9].request
        if version >= 8:
            group = fetch_cls.OffsetFetchRequestGroup(group_id="g", topics=None)
            fetched = await call(broker, 9, version, groups=[group])
            partitions = {p.partition_index: p.committed_offset for t in fetched.groups[0].topics for p in t.partitions}
        else:
            topics = [fetch_cls.OffsetFetchRequestTopic(name="t", partition_indexes=[1, 2])]
            fetched = await call(broker, 9, version, group_id="g", topics=topics)
            partitions = {p.partition_index: p.committed_offset for t in fetched.topics for p in t.partitions}
        if version == 0:
            assert partitions == {1: -1, 2: -1}
        else:
            assert partitions[1] == 10 + version and partitions.get(2, -1) == -1

        leave_version = min(version, 5)
        if leave_version >= 3:
            identity = SCHEMAS[13].request.MemberIdentity(member_id=member, group_instance_id=None)
            left = await call(broker, 13, leave_version, group_id="g", members=[identity])
            assert left.error_code == 0 and [m.error_code for m in left.members] == [0]
        else:
            left = await call(broker, 13, leave_version, group_id="g", member_id=member)
            assert left.error_code == 0
        assert broker.groups.groups["g"].members == {}

    run(scenario)


@pytest.mark.parametrize("version", range(7))
def test_find_coordinator(env: Env, version: int) -> None:
    async def scenario() -> None:
        broker = FakeBroker(await env.coordinator())
        if version >= 4:
            found = await call(broker, 10, version, key_type=0, coordinator_keys=["a", "", "b"])
            assert [(c.key, c.error_code, c.node_id, c.port) for c in found.coordinators] == [
                ("a", 0, 1, 9092), ("", ErrorCode.INVALID_REQUEST, -1, -1), ("b", 0, 1, 9092)]
            txn = await call(broker, 10, version, key_type=1, coordinator_keys=["tx"])
            assert txn.coordinators[0].error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED  # fatal: no retry
            assert "not supported" in txn.coordinators[0].error_message
        else:
            fields = {"key": "a"} if version == 0 else {"key": "a", "key_type": 0}
            found = await call(broker, 10, version, **fields)
            assert (found.error_code, found.node_id, found.host, found.port) == (0, 1, "127.0.0.1", 9092)

    run(scenario)


@pytest.mark.parametrize("version", range(7))
def test_describe_list_delete(env: Env, version: int) -> None:
    async def scenario() -> None:
        broker = FakeBroker(await env.coordinator())
        joined = await join(broker, 5, "busy")
        await call(broker, 14, 3, group_id="busy", generation_id=1, member_id=joined.member_id, assignments=[])
        broker.groups.commit_offsets("idle", -1, "", None, {})
        described = await call(broker, 15, version, groups=["busy", "missing"])
        busy, missing = described.groups
        assert (busy.error_code, busy.group_state, busy.protocol_data) == (0, "Stable", "range")
        assert [m.member_id for m in busy.members] == [joined.member_id]
        assert missing.error_code == (ErrorCode.GROUP_ID_NOT_FOUND if version >= 6 else 0)
        listed = await call(broker, 16, min(version, 5))
        assert "busy" in {g.group_id for g in listed.groups}
        if version >= 4:
            stable_only = await call(broker, 16, min(version, 5), states_filter=["Stable"])
            assert [g.group_id for g in stable_only.groups] == ["busy"]
        if version <= 2:
            deleted = await call(broker, 42, version, groups_names=["busy", "missing", "busy"])
            assert [(r.group_id, r.error_code) for r in deleted.results] == [
                ("busy", ErrorCode.NON_EMPTY_GROUP), ("missing", ErrorCode.GROUP_ID_NOT_FOUND)]

    run(scenario)


def test_offset_delete(env: Env) -> None:
    async def scenario() -> None:
        broker = FakeBroker(await env.coordinator())
        joined = await join(broker, 5, "g")
        await call(broker, 14, 3, group_id="g", generation_id=1, member_id=joined.member_id, assignments=[])
        req = SCHEMAS[47].request
        topic = req.OffsetDeleteRequestTopic(name="t", partitions=[
            req.OffsetDeleteRequestTopic.OffsetDeleteRequestPartition(partition_index=0)])
        response = await call(broker, 47, 0, group_id="g", topics=[topic])
        assert response.error_code == 0
        assert response.topics[0].partitions[0].error_code == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
        response = await call(broker, 47, 0, group_id="nope", topics=[topic])
        assert response.error_code == ErrorCode.GROUP_ID_NOT_FOUND

    run(scenario)


def test_hostile_values_get_error_codes(env: Env) -> None:
    async def scenario() -> None:
        broker = FakeBroker(await env.coordinator())
        assert (await join(broker, 9, "")).error_code == ErrorCode.INVALID_GROUP_ID
        assert (await join(broker, 9, "g", session_timeout_ms=-5)).error_code == ErrorCode.INVALID_SESSION_TIMEOUT
        assert (await join(broker, 9, "g", session_timeout_ms=2**31 - 1)).error_code == ErrorCode.INVALID_SESSION_TIMEOUT
        assert (await join(broker, 9, "g", member_id="forged")).error_code == ErrorCode.UNKNOWN_MEMBER_ID
        assert (await join(broker, 9, "g" * 40000)).error_code == ErrorCode.INVALID_GROUP_ID
        beat = await call(broker, 12, 4, group_id="g", generation_id=-7, member_id="x", group_instance_id="i")
        assert beat.error_code == ErrorCode.UNKNOWN_MEMBER_ID
        sync = await call(broker, 14, 5, group_id="zz", generation_id=2**31 - 1, member_id="", assignments=[])
        assert sync.error_code == ErrorCode.UNKNOWN_MEMBER_ID
        leave = await call(broker, 13, 5, group_id="g", members=[])
        assert leave.error_code == 0 and leave.members == []
        fetch = await call(broker, 9, 7, group_id="", topics=None)
        assert fetch.error_code == ErrorCode.INVALID_GROUP_ID

    run(scenario)
