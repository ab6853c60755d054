"""Committed offsets: who may commit, fetch, delete, retention, and the round trip through a real Log."""

from __future__ import annotations

from groups_helpers import Env, join_request, run

from umbra.errors import ErrorCode
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.model import GroupState, OffsetAndMetadata


def om(offset: int, ts: int = 1_000_000, metadata: str = "") -> OffsetAndMetadata:
    return OffsetAndMetadata(offset, 3, metadata, ts)


async def stable_member(c: GroupCoordinator) -> tuple[str, int]:
    first = await c.join_group(join_request())
    joined = await c.join_group(join_request(member_id=first.member_id))
    await c.sync_group("g", joined.generation_id, joined.member_id, None, None, None, {})
    return joined.member_id, joined.generation_id


def test_simple_commit_fetch_and_restart_round_trip(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        result = c.commit_offsets("solo", -1, "", None, {("t", 0): om(5, metadata="m"), ("t", 1): om(7)})
        assert set(result.values()) == {ErrorCode.NONE}
        assert c.commit_offsets("solo", -1, "", None, {("t", 0): om(6)}) == {("t", 0): ErrorCode.NONE}
        assert c.fetch_offsets("solo", [("t", 0), ("t", 2)]) == {("t", 0): om(6), ("t", 2): None}
        assert c.fetch_offsets("nobody", None) == {}
        member, generation = await stable_member(c)
        assert c.commit_offsets("g", generation, member, None, {("u", 0): om(42)}) == {("u", 0): ErrorCode.NONE}
        await c.stop()
        env.logs[-1].close()

        restarted = await env.coordinator()
        assert restarted.fetch_offsets("solo", None) == {("t", 0): om(6), ("t", 1): om(7, metadata="")}
        assert restarted.fetch_offsets("g", None) == {("u", 0): om(42)}
        group = restarted.groups["g"]
        assert group.state is GroupState.EMPTY and group.generation_id == generation
        assert group.protocol_type == "consumer" and not group.members
        # The old member is gone: its commits are refused, and a new join starts the next generation.
        assert restarted.commit_offsets("g", generation, member, None, {("u", 0): om(1)}) == \
            {("u", 0): ErrorCode.UNKNOWN_MEMBER_ID}
        _, new_generation = await stable_member(restarted)
        assert new_generation == generation + 1

    run(scenario)


def test_commit_checks(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        tp = ("t", 0)
        assert c.commit_offsets("", -1, "", None, {tp: om(1)}) == {tp: ErrorCode.INVALID_GROUP_ID}
        assert c.commit_offsets("new", 3, "m", None, {tp: om(1)}) == {tp: ErrorCode.ILLEGAL_GENERATION}
        assert c.commit_offsets("new", -1, "", None, {tp: om(1, metadata="x" * 5000)}) == \
            {tp: ErrorCode.OFFSET_METADATA_TOO_LARGE}
        member, generation = await stable_member(c)
        assert c.commit_offsets("g", -1, "", None, {tp: om(1)}) == {tp: ErrorCode.UNKNOWN_MEMBER_ID}
        assert c.commit_offsets("g", generation + 1, member, None, {tp: om(1)}) == {tp: ErrorCode.ILLEGAL_GENERATION}
        assert c.commit_offsets("g", generation, "stranger", None, {tp: om(1)}) == {tp: ErrorCode.UNKNOWN_MEMBER_ID}
        assert c.commit_offsets("g", generation, member, None, {tp: om(1)}) == {tp: ErrorCode.NONE}

    run(scenario)


def test_delete_groups_and_offsets(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        c.commit_offsets("solo", -1, "", None, {("t", 0): om(5), ("t", 1): om(6)})
        await stable_member(c)
        c.commit_offsets("g", c.groups["g"].generation_id, next(iter(c.groups["g"].members)), None,
                         {("t", 0): om(1)})
        assert c.delete_groups(["solo", "g", "missing", ""]) == {
            "solo": ErrorCode.NONE, "g": ErrorCode.NON_EMPTY_GROUP, "missing": ErrorCode.GROUP_ID_NOT_FOUND,
            "": ErrorCode.INVALID_GROUP_ID}
        # The member of g subscribes to nothing parseable ("sub" is not a subscription): Kafka's NON_EMPTY_GROUP.
        assert c.delete_offsets("g", [("t", 0)])[0] is ErrorCode.NON_EMPTY_GROUP
        assert c.delete_offsets("missing", [("t", 0)])[0] is ErrorCode.GROUP_ID_NOT_FOUND
        c.commit_offsets("solo2", -1, "", None, {("t", 0): om(5), ("t", 1): om(6)})
        assert c.delete_offsets("solo2", [("t", 0)]) == (ErrorCode.NONE, {("t", 0): ErrorCode.NONE})
        env.logs[-1].close()
        restarted = await env.coordinator()
        assert "solo" not in restarted.groups
        assert restarted.fetch_offsets("solo2", None) == {("t", 1): om(6)}

    run(scenario)


def test_offset_delete_refuses_subscribed_topics(env: Env) -> None:
    subscription = b"\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\xff\xff\xff\xff"

    async def scenario() -> None:
        c = await env.coordinator()
        first = await c.join_group(join_request(protocols=[("range", subscription)]))
        joined = await c.join_group(join_request(member_id=first.member_id, protocols=[("range", subscription)]))
        await c.sync_group("g", 1, joined.member_id, None, None, None, {})
        c.commit_offsets("g", 1, joined.member_id, None, {("t", 0): om(1), ("u", 0): om(2)})
        error, results = c.delete_offsets("g", [("t", 0), ("u", 0)])
        assert error is ErrorCode.NONE
        assert results == {("t", 0): ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, ("u", 0): ErrorCode.NONE}
        assert c.fetch_offsets("g", None) == {("t", 0): om(1)}

    run(scenario)


def test_retention_expires_offsets_of_empty_groups_only(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        start = env.clock.now
        c.commit_offsets("solo", -1, "", None, {("t", 0): om(5, ts=start)})
        member, generation = await stable_member(c)
        c.commit_offsets("g", generation, member, None, {("t", 0): om(9, ts=start)})
        hour = 60 * 60_000
        env.clock.advance(hour - 1)
        assert c.expire_offsets(env.clock.now) == 0
        c.heartbeat("g", generation, member, None)
        env.clock.advance(1)
        assert c.expire_offsets(env.clock.now) == 1
        assert "solo" not in c.groups and c.fetch_offsets("g", None) == {("t", 0): om(9, ts=start)}
        env.logs[-1].close()
        restarted = await env.coordinator()
        assert "solo" not in restarted.groups

    run(scenario)


def test_list_and_describe(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        c.commit_offsets("solo", -1, "", None, {("t", 0): om(5)})
        await stable_member(c)
        listed = {g.group_id: g for g in c.list_groups()}
        assert listed["g"].state == "Stable" and listed["g"].protocol_type == "consumer"
        assert listed["solo"].state == "Empty" and listed["solo"].protocol_type == ""
        assert [g.group_id for g in c.list_groups(states=["stable"])] == ["g"]
        assert c.list_groups(types=["consumer"]) == []
        assert len(c.list_groups(types=["Classic"])) == 2

    run(scenario)


def test_garbage_in_the_offsets_log_is_skipped(env: Env) -> None:
    from umbra.records.records import build_batch

    async def scenario() -> None:
        log = env.open_log()
        log.append_as_leader(build_batch([(b"\x09junk", b"{}", (), 1), (b"\x01\x01\x00", b"x", (), 1)]),
                             leader_epoch=0, now_ms=1)
        log.close()
        c = await env.coordinator()
        assert c.groups == {}

    run(scenario)
