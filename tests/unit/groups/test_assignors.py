"""The consumer group protocol's server-side assignors: uniform (balanced, sticky) and range."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from umbra.groups.assignors import AssignmentSpec, range_assign, uniform_assign


def spec(subscriptions: dict[str, set[str]], counts: dict[str, int],
         previous: dict[str, dict[str, frozenset[int]]] | None = None) -> AssignmentSpec:
    return AssignmentSpec({m: frozenset(t) for m, t in subscriptions.items()}, counts, previous or {})


def sizes(assignment: dict[str, dict[str, frozenset[int]]]) -> dict[str, int]:
    return {m: sum(len(p) for p in topics.values()) for m, topics in assignment.items()}


def owners(assignment: dict[str, dict[str, frozenset[int]]]) -> dict[tuple[str, int], list[str]]:
    found: dict[tuple[str, int], list[str]] = {}
    for member, topics in assignment.items():
        for topic, parts in topics.items():
            for p in parts:
                found.setdefault((topic, p), []).append(member)
    return found


def test_uniform_balances_one_topic() -> None:
    result = uniform_assign(spec({"a": {"t"}, "b": {"t"}, "c": {"t"}}, {"t": 7}))
    assert sorted(sizes(result).values()) == [2, 2, 3]
    assert set(owners(result)) == {("t", p) for p in range(7)}


def test_uniform_is_sticky_when_a_member_joins() -> None:
    before = uniform_assign(spec({"a": {"t"}, "b": {"t"}}, {"t": 6}))
    after = uniform_assign(spec({"a": {"t"}, "b": {"t"}, "c": {"t"}}, {"t": 6}, before))
    assert sizes(after) == {"a": 2, "b": 2, "c": 2}
    # a and b only give partitions up: nothing moves between them.
    assert after["a"]["t"] <= before["a"]["t"] and after["b"]["t"] <= before["b"]["t"]


def test_uniform_leaves_unsubscribed_topics_alone() -> None:
    result = uniform_assign(spec({"a": {"t"}, "b": {"u"}}, {"t": 3, "u": 2}))
    assert result == {"a": {"t": frozenset({0, 1, 2})}, "b": {"u": frozenset({0, 1})}}


def test_range_gives_contiguous_ranges_in_member_order() -> None:
    result = range_assign(spec({"b": {"t", "u"}, "a": {"t", "u"}}, {"t": 5, "u": 2}))
    assert result == {"a": {"t": frozenset({0, 1, 2}), "u": frozenset({0})},
                      "b": {"t": frozenset({3, 4}), "u": frozenset({1})}}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.sets(st.sampled_from("tuv"), min_size=1), min_size=1),
       st.fixed_dictionaries({"t": st.integers(0, 9), "u": st.integers(0, 9), "v": st.integers(0, 9)}))
def test_every_subscribed_partition_has_exactly_one_subscribed_owner(subscriptions: dict[str, set[str]],
                                                                     counts: dict[str, int]) -> None:
    for assign in (uniform_assign, range_assign):
        result = assign(spec(subscriptions, counts))
        found = owners(result)
        wanted = {(t, p) for t, n in counts.items() if any(t in s for s in subscriptions.values()) for p in range(n)}
        assert set(found) == wanted
        assert all(len(o) == 1 and found[tp][0] in subscriptions and tp[0] in subscriptions[o[0]]
                   for tp, o in found.items())
    # With one topic everyone subscribes to, uniform is within one partition.
    same = {m: {"t"} for m in subscriptions}
    assert max(sizes(uniform_assign(spec(same, counts))).values()) - min(
        sizes(uniform_assign(spec(same, counts))).values()) <= 1
