"""Client side of a KIP-227 fetch session (sans-I/O): which partitions each Fetch request names.

A full request (epoch 0) names every partition and asks the remote for a new session. Once the
remote answered with a session id, requests are incremental (epoch 1, 2, ...): they name only the
partitions that were added or whose fetch offset changed since the remote last heard of them, and
list removed partitions as forgotten. Any session error, top-level error or lost request resets the
session to a full request, because we can no longer know what the remote holds.

Epochs are handed out when a request is built, so several requests may be built and sent back to back
(pipelining) as long as their responses are applied in order with :meth:`FetchSession.on_response`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from umbra.errors import ErrorCode

TopicPartition = tuple[str, int]
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
NO_SESSION = 0
_MAX_EPOCH = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PartitionPosition:
    """What one request tells the remote about a partition."""

    fetch_offset: int
    topic_id: uuid.UUID | None
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1  # the epoch of the last batch the fetcher holds (Fetch v12+, KIP-595)


@dataclass(frozen=True, slots=True)
class FetchRequestPlan:
    session_id: int
    epoch: int
    partitions: dict[TopicPartition, PartitionPosition]  # to name in the request, in order
    forgotten: dict[TopicPartition, uuid.UUID | None]  # to list in forgotten_topics_data
    offsets: dict[TopicPartition, int]  # every partition's fetch offset as of this request
    positions: dict[TopicPartition, PartitionPosition]  # every partition of the session as of this request

    @property
    def is_full(self) -> bool:
        return self.epoch == INITIAL_EPOCH


class FetchSession:
    def __init__(self) -> None:
        self.session_id = NO_SESSION
        self.next_epoch = INITIAL_EPOCH
        self._wanted: dict[TopicPartition, PartitionPosition] = {}
        self._remote: dict[TopicPartition, PartitionPosition] = {}  # as of the last request built

    # -- what the owner wants fetched -------------------------------------------------------------

    def add_partition(self, tp: TopicPartition, fetch_offset: int, topic_id: uuid.UUID | None = None,
                      current_leader_epoch: int = -1, last_fetched_epoch: int = -1) -> None:
        self._wanted[tp] = PartitionPosition(fetch_offset, topic_id, current_leader_epoch, last_fetched_epoch)

    def remove_partition(self, tp: TopicPartition) -> None:
        self._wanted.pop(tp, None)

    def set_offset(self, tp: TopicPartition, fetch_offset: int, last_fetched_epoch: int | None = None) -> None:
        """Move ``tp``'s fetch offset (and, when given, the epoch of the last batch below it)."""
        position = self._require(tp)
        epoch = position.last_fetched_epoch if last_fetched_epoch is None else last_fetched_epoch
        if (position.fetch_offset, position.last_fetched_epoch) != (fetch_offset, epoch):
            self._wanted[tp] = replace(position, fetch_offset=fetch_offset, last_fetched_epoch=epoch)

    def set_leader_epoch(self, tp: TopicPartition, current_leader_epoch: int) -> None:
        position = self._require(tp)
        if position.current_leader_epoch != current_leader_epoch:
            self._wanted[tp] = replace(position, current_leader_epoch=current_leader_epoch)

    def _require(self, tp: TopicPartition) -> PartitionPosition:
        position = self._wanted.get(tp)
        if position is None:
            raise KeyError(f"{tp[0]}-{tp[1]} is not in this fetch session")
        return position

    def fetch_offset(self, tp: TopicPartition) -> int:
        return self._wanted[tp].fetch_offset

    def topic_id(self, tp: TopicPartition) -> uuid.UUID | None:
        return self._wanted[tp].topic_id

    @property
    def partitions(self) -> list[TopicPartition]:
        return list(self._wanted)

    def positions(self) -> dict[TopicPartition, PartitionPosition]:
        return dict(self._wanted)

    # -- requests and responses -------------------------------------------------------------------

    def reset(self, *, forget_session_id: bool = False) -> None:
        """Make the next request a full one. Keeping the id lets the remote close the old session at once."""
        if forget_session_id:
            self.session_id = NO_SESSION
        self.next_epoch = INITIAL_EPOCH
        self._remote = {}

    def build_request(self) -> FetchRequestPlan:
        offsets = {tp: position.fetch_offset for tp, position in self._wanted.items()}
        positions = dict(self._wanted)
        if self.next_epoch == INITIAL_EPOCH:
            plan = FetchRequestPlan(self.session_id, INITIAL_EPOCH, positions, {}, offsets, positions)
        else:
            changed = {tp: position for tp, position in self._wanted.items() if self._remote.get(tp) != position}
            forgotten = {tp: position.topic_id for tp, position in self._remote.items() if tp not in self._wanted}
            plan = FetchRequestPlan(self.session_id, self.next_epoch, changed, forgotten, offsets, positions)
            self.next_epoch = 1 if self.next_epoch >= _MAX_EPOCH else self.next_epoch + 1
        self._remote = dict(self._wanted)
        return plan

    def on_response(self, plan: FetchRequestPlan, error_code: int, session_id: int) -> None:
        """Apply the outcome of ``plan``'s request (responses must be applied in request order)."""
        if error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND:
            self.reset(forget_session_id=True)
        elif error_code != ErrorCode.NONE:
            self.reset()
        elif plan.is_full:
            self.session_id = session_id
            # With no session granted (id 0) every request stays a full one.
            self.next_epoch = 1 if session_id != NO_SESSION else INITIAL_EPOCH
            if session_id == NO_SESSION:
                self._remote = {}

    def on_request_lost(self) -> None:
        """The request failed in transit (timeout, broken connection): the remote's state is unknown."""
        self.reset()


def sessionless_plan(positions: dict[TopicPartition, PartitionPosition]) -> FetchRequestPlan:
    """A one-off Fetch outside any session (session id 0, epoch -1): the remote keeps no state for it."""
    offsets = {tp: position.fetch_offset for tp, position in positions.items()}
    return FetchRequestPlan(NO_SESSION, FINAL_EPOCH, dict(positions), {}, offsets, dict(positions))
