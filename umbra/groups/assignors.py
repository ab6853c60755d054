"""Server-side partition assignors of the consumer group protocol (KIP-848): ``uniform`` and ``range``.

Pure functions: members with their subscriptions (and the current target, for stickiness) in, a target
assignment out. The names are Kafka's (``group.consumer.assignors``); ``uniform`` is the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# member id -> topic -> partitions
Assignment = dict[str, dict[str, frozenset[int]]]


@dataclass(frozen=True, slots=True)
class AssignmentSpec:
    """What an assignor needs: each member's subscribed topics (regexes already resolved), each topic's
    partition count, and the previous target assignment (to move as few partitions as it can)."""

    subscriptions: Mapping[str, frozenset[str]]
    partition_counts: Mapping[str, int]
    previous: Mapping[str, Mapping[str, frozenset[int]]]


def _finish(owned: Mapping[str, Mapping[str, set[int]]]) -> Assignment:
    return {member: {topic: frozenset(parts) for topic, parts in topics.items() if parts}
            for member, topics in owned.items()}


def uniform_assign(spec: AssignmentSpec) -> Assignment:
    """Balanced and sticky: every member gets within one partition of every other member subscribed to the same
    topics, and a partition stays with its previous owner unless balance requires moving it."""
    members = sorted(spec.subscriptions)
    owned: dict[str, dict[str, set[int]]] = {m: {} for m in members}
    counts = dict.fromkeys(members, 0)
    partitions = sorted((topic, p) for topic, count in spec.partition_counts.items()
                        if any(topic in spec.subscriptions[m] for m in members) for p in range(count))
    wanted = set(partitions)
    holder: dict[tuple[str, int], str] = {}
    for member in members:  # stickiness: keep what the previous target gave, if still subscribed and existing
        for topic, parts in spec.previous.get(member, {}).items():
            if topic not in spec.subscriptions[member]:
                continue
            for p in parts:
                if (topic, p) in wanted and (topic, p) not in holder:
                    holder[(topic, p)] = member
                    owned[member].setdefault(topic, set()).add(p)
                    counts[member] += 1
    unassigned = [tp for tp in partitions if tp not in holder]
    for topic, p in unassigned:
        eligible = [m for m in members if topic in spec.subscriptions[m]]
        chosen = min(eligible, key=lambda m: (counts[m], m))
        holder[(topic, p)] = chosen
        owned[chosen].setdefault(topic, set()).add(p)
        counts[chosen] += 1
    _balance(spec, members, owned, counts)
    return _finish(owned)


def _balance(spec: AssignmentSpec, members: list[str], owned: dict[str, dict[str, set[int]]],
             counts: dict[str, int]) -> None:
    """Move partitions from the most loaded members to less loaded ones that subscribe to them, while that
    narrows the gap by more than one. Each move lowers the sum of squared counts, so this ends."""
    moved = True
    while moved:
        moved = False
        for giver in sorted(members, key=lambda m: (-counts[m], m)):
            for topic in sorted(owned[giver]):
                takers = [m for m in members if topic in spec.subscriptions[m] and counts[m] + 1 < counts[giver]]
                if not takers or not owned[giver][topic]:
                    continue
                taker = min(takers, key=lambda m: (counts[m], m))
                p = max(owned[giver][topic])
                owned[giver][topic].discard(p)
                owned[taker].setdefault(topic, set()).add(p)
                counts[giver] -= 1
                counts[taker] += 1
                moved = True
                break
            if moved:
                break


def range_assign(spec: AssignmentSpec) -> Assignment:
    """Kafka's range assignment, per topic: its subscribers in member id order each take a contiguous range,
    the first ``partitions % subscribers`` of them one partition more (so co-partitioned topics line up)."""
    owned: dict[str, dict[str, set[int]]] = {m: {} for m in spec.subscriptions}
    for topic, count in sorted(spec.partition_counts.items()):
        subscribers = sorted(m for m, topics in spec.subscriptions.items() if topic in topics)
        if not subscribers:
            continue
        quota, extra = divmod(count, len(subscribers))
        start = 0
        for index, member in enumerate(subscribers):
            size = quota + (1 if index < extra else 0)
            owned[member][topic] = set(range(start, start + size))
            start += size
    return _finish(owned)


ASSIGNORS = {"uniform": uniform_assign, "range": range_assign}
DEFAULT_ASSIGNOR = "uniform"
