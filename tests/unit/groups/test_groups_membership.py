"""The classic group state machine: join, sync, heartbeat, leave, expiry and static membership."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from groups_helpers import Env, join_request, run, settle

from umbra.errors import ErrorCode
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.model import GroupState


async def join_two_step(c: GroupCoordinator, **kwargs: object) -> object:
    """JoinGroup v4+: the first call only hands out a member id."""
    first = await c.join_group(join_request(**kwargs))  # type: ignore[arg-type]
    assert first.error is ErrorCode.MEMBER_ID_REQUIRED and first.member_id
    return await c.join_group(join_request(member_id=first.member_id, **kwargs))  # type: ignore[arg-type]


async def join_together(env: Env, c: GroupCoordinator, joins: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Joins of a new group collected by the initial rebalance delay (as with several real consumers)."""
    c.membership.initial_rebalance_delay_ms = 100
    tasks = [asyncio.create_task(join) for join in joins]
    await settle()
    env.clock.advance(100)
    await c.tick(env.clock.now)
    c.membership.initial_rebalance_delay_ms = 0
    return await asyncio.gather(*tasks)


async def stable_group_of(env: Env, c: GroupCoordinator, count: int) -> list[str]:
    """``count`` members joined concurrently and synced; returns member ids, leader first."""
    results = await join_together(env, c, [join_two_step(c) for _ in range(count)])
    assert all(r.error is ErrorCode.NONE for r in results)
    leader = next(r for r in results if r.members)
    assert len({r.generation_id for r in results}) == 1 and len(leader.members) == count
    ids = [leader.member_id] + [r.member_id for r in results if r is not leader]
    assignments = {member_id: f"assign-{member_id}".encode() for member_id in ids}
    syncs = await asyncio.gather(*(c.sync_group("g", leader.generation_id, m, None, "consumer", "range",
                                                assignments if m == leader.member_id else {}) for m in ids))
    assert [s.assignment for s in syncs] == [assignments[m] for m in ids]
    assert c.groups["g"].state is GroupState.STABLE
    return ids


def test_single_member_join_sync_heartbeat(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        joined = await join_two_step(c)
        assert joined.error is ErrorCode.NONE and joined.generation_id == 1
        assert joined.leader_id == joined.member_id and joined.protocol_name == "range"
        assert joined.members == [(joined.member_id, None, b"sub")]
        assert c.heartbeat("g", 1, joined.member_id, None) is ErrorCode.NONE  # CompletingRebalance
        synced = await c.sync_group("g", 1, joined.member_id, None, None, None, {joined.member_id: b"a"})
        assert synced.error is ErrorCode.NONE and synced.assignment == b"a"
        assert c.heartbeat("g", 1, joined.member_id, None) is ErrorCode.NONE
        assert c.heartbeat("g", 0, joined.member_id, None) is ErrorCode.ILLEGAL_GENERATION
        assert c.heartbeat("g", 1, "nobody", None) is ErrorCode.UNKNOWN_MEMBER_ID
        assert c.heartbeat("other", 1, joined.member_id, None) is ErrorCode.UNKNOWN_MEMBER_ID

    run(scenario)


def test_three_members_then_one_leaves_and_the_rest_rebalance(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        ids = await stable_group_of(env, c, 3)
        error, errors = c.leave_group("g", [(ids[1], None)])
        assert (error, errors) == (ErrorCode.NONE, [ErrorCode.NONE])
        assert c.groups["g"].state is GroupState.PREPARING_REBALANCE
        assert c.heartbeat("g", 1, ids[0], None) is ErrorCode.REBALANCE_IN_PROGRESS
        rejoins = await asyncio.gather(*(c.join_group(join_request(member_id=m)) for m in (ids[0], ids[2])))
        assert {r.generation_id for r in rejoins} == {2}
        assert sum(1 for r in rejoins if r.members) == 1
        assert len(c.groups["g"].members) == 2

    run(scenario)


def test_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        ids = await stable_group_of(env, c, 2)
        # The follower rejoins with new metadata (a new subscription): a rebalance starts, the leader is silent.
        waiting = asyncio.create_task(c.join_group(join_request(member_id=ids[1], protocols=[("range", b"new")])))
        await settle()
        assert not waiting.done()
        env.clock.advance(4999)
        await c.tick(env.clock.now)
        await settle()
        assert not waiting.done()
        env.clock.advance(1)
        await c.tick(env.clock.now)
        result = await waiting
        assert result.error is ErrorCode.NONE and result.generation_id == 2
        assert result.leader_id == ids[1] and [m[0] for m in result.members] == [ids[1]]
        assert list(c.groups["g"].members) == [ids[1]]

    run(scenario)


def test_session_timeout_expires_a_member_and_the_group_becomes_empty(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        [member] = await stable_group_of(env, c, 1)
        env.clock.advance(9999)
        await c.tick(env.clock.now)
        assert c.groups["g"].state is GroupState.STABLE
        env.clock.advance(1)
        await c.tick(env.clock.now)
        group = c.groups["g"]
        assert group.state is GroupState.EMPTY and not group.members and group.generation_id == 2
        assert c.heartbeat("g", 1, member, None) is ErrorCode.UNKNOWN_MEMBER_ID

    run(scenario)


def test_sync_errors(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        joined = await join_two_step(c)
        m = joined.member_id
        assert (await c.sync_group("g", 7, m, None, None, None, {})).error is ErrorCode.ILLEGAL_GENERATION
        assert (await c.sync_group("g", 1, "x", None, None, None, {})).error is ErrorCode.UNKNOWN_MEMBER_ID
        assert (await c.sync_group("nope", 1, m, None, None, None, {})).error is ErrorCode.UNKNOWN_MEMBER_ID
        assert (await c.sync_group("g", 1, m, None, "connect", None, {})).error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert (await c.sync_group("", 1, m, None, None, None, {})).error is ErrorCode.INVALID_GROUP_ID

    run(scenario)


def test_follower_sync_waits_for_the_leader(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        results = await join_together(env, c, [join_two_step(c), join_two_step(c)])
        leader = next(r for r in results if r.members)
        follower = next(r for r in results if not r.members)
        follower_sync = asyncio.create_task(c.sync_group("g", 1, follower.member_id, None, None, None, {}))
        await settle()
        assert not follower_sync.done()
        await c.sync_group("g", 1, leader.member_id, None, None, None, {follower.member_id: b"f"})
        assert (await follower_sync).assignment == b"f"

    run(scenario)


def test_join_validation(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        assert (await c.join_group(join_request(group=""))).error is ErrorCode.INVALID_GROUP_ID
        assert (await c.join_group(join_request(session=10))).error is ErrorCode.INVALID_SESSION_TIMEOUT
        assert (await c.join_group(join_request(session=2**31 - 1))).error is ErrorCode.INVALID_SESSION_TIMEOUT
        assert (await c.join_group(join_request(protocols=[]))).error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert (await c.join_group(join_request(protocol_type=""))).error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        assert (await c.join_group(join_request(member_id="ghost"))).error is ErrorCode.UNKNOWN_MEMBER_ID
        await stable_group_of(env, c, 1)
        other = await c.join_group(join_request(protocols=[("roundrobin", b"")], require_known_member_id=False))
        assert other.error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        huge = await join_two_step(c, group="big", protocols=[("range", b"x" * 2_000_000)])
        assert huge.error is ErrorCode.NONE
        synced = await c.sync_group("big", 1, huge.member_id, None, None, None, {huge.member_id: b"y" * 2_000_000})
        assert synced.error is ErrorCode.NONE  # stored without the member bytes, which would be too large

    run(scenario)


def test_protocol_selection_prefers_what_most_members_prefer(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        prefs = [[("a", b""), ("b", b"")], [("b", b""), ("a", b"")], [("b", b""), ("a", b""), ("c", b"")]]
        results = await join_together(env, c, [c.join_group(join_request(protocols=p, require_known_member_id=False))
                                                for p in prefs])
        assert {r.protocol_name for r in results} == {"b"}

    run(scenario)


def test_static_member_rejoin_replaces_member_id_without_rebalance(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        first = await c.join_group(join_request(instance="i-1"))  # static members skip MEMBER_ID_REQUIRED
        assert first.error is ErrorCode.NONE
        await c.sync_group("g", 1, first.member_id, "i-1", None, None, {first.member_id: b"mine"})
        again = await c.join_group(join_request(instance="i-1"))
        assert again.error is ErrorCode.NONE and again.member_id != first.member_id
        assert again.generation_id == 1 and again.skip_assignment and again.leader_id == again.member_id
        group = c.groups["g"]
        assert group.state is GroupState.STABLE and list(group.members) == [again.member_id]
        sync = await c.sync_group("g", 1, again.member_id, "i-1", None, None, {})
        assert sync.assignment == b"mine"
        assert c.heartbeat("g", 1, first.member_id, "i-1") is ErrorCode.FENCED_INSTANCE_ID
        assert (await c.join_group(join_request(member_id=first.member_id, instance="i-1"))).error \
            is ErrorCode.FENCED_INSTANCE_ID
        assert c.leave_group("g", [(first.member_id, "i-1")])[1] == [ErrorCode.FENCED_INSTANCE_ID]
        assert c.leave_group("g", [("", "i-9")])[1] == [ErrorCode.UNKNOWN_MEMBER_ID]
        assert c.leave_group("g", [("", "i-1")])[1] == [ErrorCode.NONE]
        assert c.groups["g"].state is GroupState.EMPTY

    run(scenario)


def test_static_member_rejoin_with_new_subscription_rebalances(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        first = await c.join_group(join_request(instance="i-1"))
        await c.sync_group("g", 1, first.member_id, "i-1", None, None, {})
        again = await c.join_group(join_request(instance="i-1", protocols=[("range", b"other")]))
        assert again.error is ErrorCode.NONE and again.generation_id == 2 and not again.skip_assignment

    run(scenario)


def test_pending_member_id_expires(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        first = await c.join_group(join_request())
        assert first.error is ErrorCode.MEMBER_ID_REQUIRED
        env.clock.advance(10_001)
        await c.tick(env.clock.now)
        assert (await c.join_group(join_request(member_id=first.member_id))).error is ErrorCode.UNKNOWN_MEMBER_ID

    run(scenario)


def test_leave_during_rebalance_completes_it(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        ids = await stable_group_of(env, c, 2)
        waiting = asyncio.create_task(c.join_group(join_request(member_id=ids[0])))  # the leader rejoins
        await settle()
        assert not waiting.done()
        c.leave_group("g", [(ids[1], None)])
        result = await waiting
        assert result.error is ErrorCode.NONE and result.generation_id == 2 and len(result.members) == 1

    run(scenario)


def test_stop_answers_waiting_joins(env: Env) -> None:
    async def scenario() -> None:
        c = await env.coordinator()
        ids = await stable_group_of(env, c, 2)
        waiting = asyncio.create_task(c.join_group(join_request(member_id=ids[0])))
        await settle()
        await c.stop()
        assert (await waiting).error is ErrorCode.COORDINATOR_NOT_AVAILABLE

    run(scenario)
