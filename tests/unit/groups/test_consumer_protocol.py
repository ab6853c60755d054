"""The consumer group protocol's state machine (KIP-848), pure: joins, epochs, reconciliation, leaving, fencing,
regex subscriptions, topic changes, expiry, and the group moving between the classic and consumer protocols."""

from __future__ import annotations

import asyncio

import pytest
from groups_helpers import ManualClock

from umbra.errors import ErrorCode
from umbra.groups.consumer import ConsumerGroups, HeartbeatError, HeartbeatRequest, HeartbeatResult
from umbra.groups.consumer_model import ConsumerGroupState, MemberState
from umbra.groups.membership import JoinRequest, Membership
from umbra.groups.model import Group, GroupState

SESSION_MS = 10_000
TOPICS = {"t": 4}


class Harness:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.groups: dict[str, Group] = {}
        self.protocol = ConsumerGroups(self.groups, clock=self.clock, heartbeat_interval_ms=500,
                                       session_timeout_ms=SESSION_MS)
        self.topics: dict[str, int] = dict(TOPICS)

    def beat(self, member_id: str, epoch: int, owned: dict[str, set[int]] | None = None, *,
             topics: tuple[str, ...] | None = None, regex: str | None = None, assignor: str | None = None,
             instance_id: str | None = None, group: str = "g") -> HeartbeatResult:
        joining = epoch == 0
        request = HeartbeatRequest(
            group_id=group, member_id=member_id, member_epoch=epoch, instance_id=instance_id,
            rebalance_timeout_ms=5000 if joining else -1,
            subscribed_topic_names=topics if topics is not None else (("t",) if joining and regex is None else None),
            subscribed_topic_regex=regex, server_assignor=assignor,
            owned={t: frozenset(p) for t, p in owned.items()} if owned is not None else ({} if joining else None))
        return self.protocol.heartbeat(request, self.topics)

    def error(self, member_id: str, epoch: int, **kwargs: object) -> int:
        with pytest.raises(HeartbeatError) as raised:
            self.beat(member_id, epoch, **kwargs)  # type: ignore[arg-type]
        return int(raised.value.code)

    @property
    def data(self):  # type: ignore[no-untyped-def]
        consumer = self.groups["g"].consumer
        assert consumer is not None
        return consumer


def parts(result: HeartbeatResult) -> set[int]:
    assert result.assignment is not None
    return set(result.assignment.get("t", frozenset()))


def test_a_member_joins_and_gets_every_partition() -> None:
    h = Harness()
    joined = h.beat("a", 0)
    assert (joined.member_id, joined.member_epoch, joined.heartbeat_interval_ms) == ("a", 1, 500)
    assert parts(joined) == {0, 1, 2, 3}
    assert h.data.state() is ConsumerGroupState.STABLE
    assert h.groups["g"].group_type == "consumer" and h.groups["g"].state is GroupState.STABLE
    steady = h.beat("a", 1)
    assert steady.assignment is None and steady.member_epoch == 1  # nothing changed: no assignment sent


def test_partitions_are_revoked_before_they_are_assigned_elsewhere() -> None:
    h = Harness()
    h.beat("a", 0)
    b = h.beat("b", 0)
    assert b.member_epoch == 2 and parts(b) == set()  # a still owns them all
    assert h.data.members["b"].state is MemberState.UNRELEASED_PARTITIONS
    a = h.beat("a", 1)
    assert a.member_epoch == 1, "it keeps its epoch until it has revoked"
    kept = parts(a)
    assert len(kept) == 2
    assert h.data.members["a"].state is MemberState.UNREVOKED_PARTITIONS
    assert h.data.state() is ConsumerGroupState.RECONCILING
    # b asks again before a released anything: still nothing.
    assert h.beat("b", 2).assignment is None
    # a reports owning only what it kept: it moves to epoch 2, and b gets the rest.
    a = h.beat("a", 1, {"t": kept})
    assert a.member_epoch == 2 and a.assignment is None
    b = h.beat("b", 2)
    assert parts(b) == {0, 1, 2, 3} - kept
    assert h.data.state() is ConsumerGroupState.STABLE


def test_leaving_gives_the_partitions_to_the_others() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    kept = parts(h.beat("a", 1))
    h.beat("a", 1, {"t": kept})
    h.beat("b", 2)
    left = h.beat("b", -1)
    assert left.member_epoch == -1
    a = h.beat("a", 2)
    assert a.member_epoch == 3 and parts(a) == {0, 1, 2, 3}


def test_fencing_and_unknown_members() -> None:
    h = Harness()
    h.beat("a", 0)
    assert h.error("a", 7) == ErrorCode.FENCED_MEMBER_EPOCH
    assert h.error("nobody", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.error("nobody", 1, group="no-such-group") == ErrorCode.UNKNOWN_MEMBER_ID
    # The previous epoch with a subset of the assignment is accepted (the response may have been lost).
    h.beat("b", 0)
    kept = parts(h.beat("a", 1))
    h.beat("a", 1, {"t": kept})
    assert h.beat("a", 1, {"t": kept}).member_epoch == 2
    assert h.error("a", 1, owned={"t": {0, 1, 2, 3}}) == ErrorCode.FENCED_MEMBER_EPOCH


def test_request_validation() -> None:
    h = Harness()
    assert h.error("a", 0, assignor="sticky") == ErrorCode.UNSUPPORTED_ASSIGNOR
    assert h.error("", 0) == ErrorCode.INVALID_REQUEST  # version 1: the consumer names itself
    assert h.error("a", -3) == ErrorCode.INVALID_REQUEST
    assert h.error("a", 0, regex="(unclosed") == ErrorCode.INVALID_REGULAR_EXPRESSION


def test_range_assignor_is_chosen_by_the_members() -> None:
    h = Harness()
    h.beat("a", 0, assignor="range")
    assert h.data.assignor_name == "range"
    assert h.beat("b", 0, assignor="range").member_epoch == 2
    assert h.data.target == {"a": {"t": frozenset({0, 1})}, "b": {"t": frozenset({2, 3})}}


def test_regex_subscription_follows_topics_created_and_deleted() -> None:
    h = Harness()
    h.topics = {"orders-1": 2, "other": 1}
    first = h.beat("a", 0, regex="orders-.*")
    assert first.assignment == {"orders-1": frozenset({0, 1})}
    h.topics["orders-2"] = 1
    grown = h.beat("a", 1)
    assert grown.member_epoch == 2 and grown.assignment == {"orders-1": frozenset({0, 1}), "orders-2": frozenset({0})}
    del h.topics["orders-1"]
    shrunk = h.beat("a", 2, {"orders-2": {0}})
    assert shrunk.member_epoch == 3 and shrunk.assignment == {"orders-2": frozenset({0})}


def test_regex_matches_only_topics_the_member_may_describe() -> None:
    h = Harness()
    h.topics = {"a-public": 1, "a-secret": 1}
    request = HeartbeatRequest(group_id="g", member_id="m", member_epoch=0, rebalance_timeout_ms=5000,
                               subscribed_topic_regex="a-.*", owned={},
                               may_describe=lambda topic: topic != "a-secret")
    assert h.protocol.heartbeat(request, h.topics).assignment == {"a-public": frozenset({0})}


def test_sessions_expire_and_slow_revokers_are_fenced() -> None:
    h = Harness()
    h.beat("a", 0)
    h.beat("b", 0)
    h.beat("a", 1)  # a must revoke two partitions within its rebalance timeout (5 s)
    assert h.protocol.next_deadline() == h.clock.now + 5000
    h.clock.advance(5000)
    h.beat("b", 2)  # b keeps its session
    h.protocol.tick(h.clock.now)
    assert set(h.data.members) == {"b"}
    assert parts(h.beat("b", 2)) == {0, 1, 2, 3}
    h.clock.advance(SESSION_MS)
    h.protocol.tick(h.clock.now)
    assert not h.data.members and h.groups["g"].state is GroupState.EMPTY


def test_a_static_member_comes_back_with_its_partitions() -> None:
    h = Harness()
    h.beat("a", 0, instance_id="i-1")
    assert h.beat("a", -2, instance_id="i-1").member_epoch == -2
    back = h.beat("a2", 0, instance_id="i-1")
    assert parts(back) == {0, 1, 2, 3} and set(h.data.members) == {"a2"}
    assert h.error("a3", 0, instance_id="i-1") == ErrorCode.UNRELEASED_INSTANCE_ID


def test_offset_commit_and_fetch_check_the_member_epoch() -> None:
    h = Harness()
    h.beat("a", 0)
    data = h.data
    assert h.protocol.validate_commit(data, "a", 1, 9) == ErrorCode.NONE
    assert h.protocol.validate_commit(data, "a", 0, 9) == ErrorCode.STALE_MEMBER_EPOCH
    assert h.protocol.validate_commit(data, "a", 2, 9) == ErrorCode.FENCED_MEMBER_EPOCH
    assert h.protocol.validate_commit(data, "a", 1, 8) == ErrorCode.UNSUPPORTED_VERSION
    assert h.protocol.validate_commit(data, "", -1, 9) == ErrorCode.UNKNOWN_MEMBER_ID  # not while it has members
    assert h.protocol.validate_fetch(data, None, -1) == ErrorCode.NONE
    assert h.protocol.validate_fetch(data, "a", 0) == ErrorCode.STALE_MEMBER_EPOCH


def test_groups_move_between_the_classic_and_consumer_protocols_only_when_empty() -> None:
    h = Harness()
    membership = Membership(h.groups, clock=h.clock, persist_group=lambda group: None, initial_rebalance_delay_ms=0,
                            min_session_timeout_ms=1000, max_session_timeout_ms=60000)
    join = JoinRequest("g", "", None, 10000, 10000, "consumer", [("range", b"")], require_known_member_id=False)

    async def classic_join() -> int:
        return int((await membership.join(join)).error)

    h.beat("a", 0)
    assert asyncio.run(classic_join()) == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    h.beat("a", -1)
    assert asyncio.run(classic_join()) == ErrorCode.NONE  # the empty consumer group became classic
    assert h.groups["g"].group_type == "classic"
    assert h.error("b", 0) == ErrorCode.GROUP_ID_NOT_FOUND  # a classic group with a member
