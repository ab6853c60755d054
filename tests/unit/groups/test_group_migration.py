"""KIP-848's online migration, pure: the embedded consumer protocol codec, a classic group upgraded by a
consumer-protocol member, classic members reconciling through rejoins, the downgrade, and the policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from groups_helpers import Env, ManualClock, join_request, settle

from umbra.config import BrokerConfig, ConfigError, build_config
from umbra.errors import ErrorCode
from umbra.groups.consumer import HeartbeatError, HeartbeatRequest, HeartbeatResult
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.embedded_protocol import (
    EmbeddedProtocolError,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from umbra.groups.model import GroupState, OffsetAndMetadata

TOPICS = {"t": 4}
SESSION_MS = 10_000
OFFSET = OffsetAndMetadata(5, -1, None, 0)


# --- the embedded protocol -------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(4))
def test_subscription_round_trip(version: int) -> None:
    data = encode_subscription(["t", "u"], {"t": frozenset({1, 0})}, version=version, generation_id=7,
                               rack_id="r1")
    sub = decode_subscription(data)
    assert (sub.version, sub.topics, sub.user_data) == (version, ("t", "u"), None)
    assert sub.owned_partitions == (None if version < 1 else {"t": frozenset({0, 1})})
    assert sub.generation_id == (7 if version >= 2 else -1)
    assert sub.rack_id == ("r1" if version >= 3 else None)


def test_assignment_round_trip_and_malformed_bytes() -> None:
    data = encode_assignment({"t": frozenset({3, 1}), "u": frozenset(), "v": frozenset({0})})
    assert decode_assignment(data) == {"t": frozenset({1, 3}), "v": frozenset({0})}
    assert decode_assignment(b"") == {}
    for bad in (b"\x00", b"\x00\x00\x7f\xff\xff\xff", data[:-6]):
        with pytest.raises(EmbeddedProtocolError):
            decode_assignment(bad)
    for bad in (b"sub", b"\x00\x01\x00\x00\x00\x02\x00\x01t"):
        with pytest.raises(EmbeddedProtocolError):
            decode_subscription(bad)


# --- a coordinator with a group of two classic members -------------------------------------------

def make_env(tmp_path: Path, policy: str = "bidirectional") -> Env:
    config = BrokerConfig(data_dir=tmp_path, group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=1000,
                          group_max_session_timeout_ms=60000, offsets_retention_minutes=60,
                          group_consumer_migration_policy=policy)
    return Env(tmp_path, ManualClock(), config)


def classic_join(member_id: str = "", owned: dict[str, frozenset[int]] | None = None,
                 protocol: str = "range") -> object:
    metadata = encode_subscription(["t"], owned or {}, version=1)
    return join_request(member_id=member_id, session=SESSION_MS, protocols=[(protocol, metadata)])


def beat(c: GroupCoordinator, member_id: str, epoch: int,
         owned: dict[str, frozenset[int]] | None = None) -> HeartbeatResult:
    joining = epoch == 0
    return c.consumer_heartbeat(HeartbeatRequest(
        group_id="g", member_id=member_id, member_epoch=epoch, rebalance_timeout_ms=5000 if joining else -1,
        subscribed_topic_names=("t",) if joining else None,
        owned=owned if owned is not None else ({} if joining else None)), TOPICS)


async def stable_classic_group(env: Env, c: GroupCoordinator) -> tuple[str, str]:
    """Two classic members of generation 1: the first owns t-0 and t-1, the second t-2 and t-3."""
    c.membership.initial_rebalance_delay_ms = 100
    ids = []
    for _ in range(2):
        first = await c.join_group(classic_join())  # type: ignore[arg-type]
        ids.append(first.member_id)
    tasks = [asyncio.create_task(c.join_group(classic_join(m))) for m in ids]  # type: ignore[arg-type]
    await settle()
    env.clock.advance(100)
    await c.tick(env.clock.now)
    joined = await asyncio.gather(*tasks)
    c.membership.initial_rebalance_delay_ms = 0
    assert [j.generation_id for j in joined] == [1, 1]
    leader = next(j.member_id for j in joined if j.members)
    assignments = {ids[0]: encode_assignment({"t": frozenset({0, 1})}),
                   ids[1]: encode_assignment({"t": frozenset({2, 3})})}
    follower = next(m for m in ids if m != leader)
    waiting = asyncio.create_task(c.sync_group("g", 1, follower, None, None, None, {}))
    await settle()
    assert (await c.sync_group("g", 1, leader, None, None, None, assignments)).error is ErrorCode.NONE
    assert (await waiting).error is ErrorCode.NONE
    assert c.groups["g"].state is GroupState.STABLE
    return ids[0], ids[1]


def owners(c: GroupCoordinator) -> dict[int, list[str]]:
    """Partition -> the members that own it (assigned or still revoking): never more than one."""
    data = c.groups["g"].consumer
    assert data is not None
    found: dict[int, list[str]] = {}
    for member in data.members.values():
        for source in (member.assigned, member.revoking):
            for p in source.get("t", ()):
                found.setdefault(p, []).append(member.member_id)
    assert all(len(held) == 1 for held in found.values()), found
    return found


def run_in(env: Env, scenario: object) -> None:
    try:
        asyncio.run(scenario)  # type: ignore[arg-type]
    finally:
        for log in env.logs:
            log.close()


def test_a_consumer_member_upgrades_a_classic_group_and_eager_members_reconcile_by_rejoining(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        a, b = await stable_classic_group(env, c)
        joined = beat(c, "n", 0)
        group = c.groups["g"]
        assert group.group_type == "consumer" and not group.members
        data = group.consumer
        assert data is not None
        assert data.members[a].classic is not None and data.members[a].member_epoch == 1
        assert data.members[a].assigned == {"t": frozenset({0, 1})}
        assert joined.member_epoch == 2 and joined.assignment == {}  # everything is still owned by a and b
        owners(c)
        # A classic member hears of the new epoch through its heartbeat, at its generation (= member epoch).
        assert c.heartbeat("g", 1, a, None) is ErrorCode.REBALANCE_IN_PROGRESS
        assert c.heartbeat("g", 2, a, None) is ErrorCode.ILLEGAL_GENERATION
        assert c.commit_offsets("g", 1, a, None, {("t", 0): OFFSET}, api_version=7) == {("t", 0): ErrorCode.NONE}
        assert c.commit_offsets("g", 2, a, None, {("t", 0): OFFSET}) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
        assert c.consumer.validate_commit(data, a, 1, 7) is ErrorCode.NONE  # classic commits: generation
        assert c.consumer.validate_commit(data, a, 0, 7) is ErrorCode.ILLEGAL_GENERATION
        # Eager: it revoked everything before rejoining, so it reconciles at once. The assignor takes one
        # partition from one of the two (which one depends on the member ids).
        giver, keeper = giver_and_keeper(c, a, b)
        given = data.members[giver].assigned["t"]
        rejoined = await c.join_group(classic_join(giver), TOPICS)  # type: ignore[arg-type]
        assert (rejoined.error, rejoined.generation_id, rejoined.protocol_name, rejoined.leader_id) == (
            ErrorCode.NONE, 2, "range", "")
        synced = await c.sync_group("g", 2, giver, None, "consumer", "range", {})
        assert synced.error is ErrorCode.NONE
        giver_parts = decode_assignment(synced.assignment)["t"]
        assert len(giver_parts) == 1 and giver_parts < given
        assert c.heartbeat("g", 2, giver, None) is ErrorCode.NONE
        # The consumer member gets what the giver released; the keeper holds its own until it rejoins.
        got = beat(c, "n", 2).assignment
        assert got is not None and got.get("t", frozenset()) == given - giver_parts
        owners(c)
        assert c.heartbeat("g", 1, keeper, None) is ErrorCode.REBALANCE_IN_PROGRESS
        assert (await c.join_group(classic_join(keeper), TOPICS)).generation_id == 2  # type: ignore[arg-type]
        keeper_parts = decode_assignment((await c.sync_group("g", 2, keeper, None, None, None, {})).assignment)["t"]
        beat(c, "n", 2)
        n_parts = data.members["n"].assigned["t"]
        assert sorted([*giver_parts, *keeper_parts, *n_parts]) == [0, 1, 2, 3]
        owners(c)
        assert {m.member_epoch for m in data.members.values()} == {2}

    run_in(env, scenario())


def giver_and_keeper(c: GroupCoordinator, a: str, b: str) -> tuple[str, str]:
    """Of the two classic members, the one whose target takes a partition away from it, and the other."""
    data = c.groups["g"].consumer
    assert data is not None
    giver = next(m for m in (a, b) if data.target[m] != data.members[m].assigned)
    return giver, (b if giver == a else a)


def test_a_cooperative_member_keeps_what_it_owns_until_it_revokes(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        a, b = await stable_classic_group(env, c)
        beat(c, "n", 0)
        giver, _keeper = giver_and_keeper(c, a, b)
        data = c.groups["g"].consumer
        assert data is not None
        owned = dict(data.members[giver].assigned)
        first = await c.join_group(classic_join(giver, owned, "cooperative-sticky"), TOPICS)  # type: ignore[arg-type]
        assert first.generation_id == 1, "it keeps its epoch until it has revoked"
        synced = await c.sync_group("g", 1, giver, None, None, None, {})
        kept = decode_assignment(synced.assignment).get("t", frozenset())
        assert kept < owned["t"] and len(kept) == 1
        assert c.heartbeat("g", 1, giver, None) is ErrorCode.REBALANCE_IN_PROGRESS
        assert beat(c, "n", 2).assignment is None, "not before the giver has revoked"
        owners(c)
        second = await c.join_group(classic_join(giver, {"t": kept}, "cooperative-sticky"), TOPICS)  # type: ignore[arg-type]
        assert second.generation_id == 2
        assert c.heartbeat("g", 2, giver, None) is ErrorCode.NONE
        assert beat(c, "n", 2).assignment == {"t": owned["t"] - kept}
        owners(c)

    run_in(env, scenario())


def test_the_last_consumer_member_leaving_downgrades_the_group(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        a, b = await stable_classic_group(env, c)
        beat(c, "n", 0)
        for member in (a, b):
            await c.join_group(classic_join(member), TOPICS)  # type: ignore[arg-type]
        assert c.heartbeat("g", 2, a, None) is ErrorCode.NONE
        assert beat(c, "n", -1).member_epoch == -1
        group = c.groups["g"]
        assert group.consumer is None and group.group_type == "classic"
        assert set(group.members) == {a, b} and group.state is GroupState.PREPARING_REBALANCE
        assert group.generation_id == 2 and group.protocol_name == "range"
        assert decode_assignment(group.members[a].assignment)["t"]  # what it owned, as the classic side sees it
        # At their generation they hear REBALANCE_IN_PROGRESS (not ILLEGAL_GENERATION: they may commit first).
        assert c.heartbeat("g", 2, a, None) is ErrorCode.REBALANCE_IN_PROGRESS
        assert c.commit_offsets("g", 2, a, None, {("t", 0): OFFSET}) == {("t", 0): ErrorCode.NONE}
        joins = [asyncio.create_task(c.join_group(classic_join(m))) for m in (a, b)]  # type: ignore[arg-type]
        results = await asyncio.gather(*joins)
        assert {r.generation_id for r in results} == {3} and all(r.error is ErrorCode.NONE for r in results)
        assert group.state is GroupState.COMPLETING_REBALANCE

    run_in(env, scenario())


def test_a_new_classic_member_joins_a_consumer_group(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        assert beat(c, "n", 0).assignment == {"t": frozenset({0, 1, 2, 3})}
        first = await c.join_group(classic_join(), TOPICS)  # type: ignore[arg-type]
        assert first.error is ErrorCode.MEMBER_ID_REQUIRED
        joined = await c.join_group(classic_join(first.member_id), TOPICS)  # type: ignore[arg-type]
        assert joined.error is ErrorCode.NONE and joined.generation_id == 2
        m = joined.member_id
        assert decode_assignment((await c.sync_group("g", 2, m, None, None, None, {})).assignment) == {}
        assert c.heartbeat("g", 2, m, None) is ErrorCode.NONE  # nothing released yet: no pointless rejoin
        kept = beat(c, "n", 1, {"t": frozenset({0, 1, 2, 3})}).assignment
        assert kept is not None and len(kept["t"]) == 2
        beat(c, "n", 1, dict(kept))  # it confirms the revocation
        assert c.heartbeat("g", 2, m, None) is ErrorCode.REBALANCE_IN_PROGRESS  # now they are free
        await c.join_group(classic_join(m), TOPICS)  # type: ignore[arg-type]
        got = decode_assignment((await c.sync_group("g", 2, m, None, None, None, {})).assignment)["t"]
        assert got == {0, 1, 2, 3} - kept["t"]
        owners(c)
        # It leaves with LeaveGroup; a member id the group does not know is refused.
        assert c.leave_group("g", [(m, None), ("stranger", None)]) == (
            ErrorCode.NONE, [ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID])
        assert c.groups["g"].group_type == "consumer" and list(c.groups["g"].consumer.members) == ["n"]  # type: ignore[union-attr]

    run_in(env, scenario())


def test_a_silent_classic_member_is_fenced_at_its_session_timeout(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        a, b = await stable_classic_group(env, c)
        beat(c, "n", 0)
        env.clock.advance(SESSION_MS - 1)
        assert c.heartbeat("g", 1, a, None) is ErrorCode.REBALANCE_IN_PROGRESS
        beat(c, "n", 2)
        env.clock.advance(1)
        await c.tick(env.clock.now)
        data = c.groups["g"].consumer
        assert data is not None and b not in data.members and a in data.members

    run_in(env, scenario())


@pytest.mark.parametrize("policy", ["disabled", "downgrade"])
def test_without_upgrade_a_heartbeat_to_a_classic_group_with_members_is_refused(tmp_path: Path, policy: str) -> None:
    env = make_env(tmp_path, policy)

    async def scenario() -> None:
        c = await env.coordinator()
        await stable_classic_group(env, c)
        with pytest.raises(HeartbeatError) as refused:
            beat(c, "n", 0)
        assert refused.value.code is ErrorCode.GROUP_ID_NOT_FOUND
        assert c.groups["g"].group_type == "classic"

    run_in(env, scenario())


@pytest.mark.parametrize("policy", ["disabled", "upgrade"])
def test_without_downgrade_the_group_stays_a_consumer_group(tmp_path: Path, policy: str) -> None:
    env = make_env(tmp_path, policy)

    async def scenario() -> None:
        c = await env.coordinator()
        beat(c, "n", 0)
        first = await c.join_group(classic_join(), TOPICS)  # type: ignore[arg-type]
        if policy == "disabled":
            assert first.error is ErrorCode.INCONSISTENT_GROUP_PROTOCOL
            return
        joined = await c.join_group(classic_join(first.member_id), TOPICS)  # type: ignore[arg-type]
        assert joined.error is ErrorCode.NONE
        beat(c, "n", -1)
        group = c.groups["g"]
        assert group.group_type == "consumer" and list(group.consumer.members) == [joined.member_id]  # type: ignore[union-attr]

    run_in(env, scenario())


def test_a_group_that_is_not_the_consumer_protocol_is_not_upgraded(tmp_path: Path) -> None:
    env = make_env(tmp_path)

    async def scenario() -> None:
        c = await env.coordinator()
        joined = await c.join_group(join_request(require_known_member_id=False, protocol_type="connect",
                                                 protocols=[("v1", b"x")]))
        assert joined.error is ErrorCode.NONE
        with pytest.raises(HeartbeatError) as refused:
            beat(c, "n", 0)
        assert refused.value.code is ErrorCode.GROUP_ID_NOT_FOUND

    run_in(env, scenario())


def test_the_policy_is_checked() -> None:
    assert build_config({"group_consumer_migration_policy": "Upgrade"}, {}).group_consumer_migration_policy == "Upgrade"
    assert BrokerConfig().group_consumer_migration_policy == "bidirectional"  # Kafka 4's default
    with pytest.raises(ConfigError):
        build_config({"group_consumer_migration_policy": "sideways"}, {})
