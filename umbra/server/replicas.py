"""The replica manager: the partitions this broker holds, each with its log and its place in the replica set.

Handlers never take a log and stamp it themselves: they ask for a *leader partition* at the epoch the client
knows (:meth:`ReplicaManager.leader_partition`), which raises the error Kafka gives for each case, then append
and read through it. The partition stamps its leader epoch on appends and is the one place that moves the
high watermark (to the lowest log end offset of the in-sync replicas).

Today every partition has one replica, this broker, which leads it at the epoch the broker took at start-up
(bumped at every start, as a Kafka election would). The replica set, the ISR and the epochs are per partition,
so the control plane can assign them once partitions are replicated.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from umbra.cluster.metadata import TopicMetadata
from umbra.errors import (
    FencedLeaderEpoch,
    NotEnoughReplicas,
    NotLeaderOrFollower,
    UnknownLeaderEpoch,
    UnknownTopicOrPartition,
)
from umbra.records.crc import Buffer
from umbra.storage.log import AppendResult, Log


@dataclass(frozen=True, slots=True)
class PartitionState:
    """Who holds a partition: what Metadata reports (no log needed)."""

    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


FETCHED_RECENTLY_MS = 1_000  # a fetch this recent proves a follower alive, whatever the last view said


@dataclass(slots=True)
class FollowerProgress:
    """What the leader knows of one follower, from its fetches (Kafka's replica state on the leader)."""

    log_end_offset: int = -1  # a follower fetching at offset X holds everything below X
    last_caught_up_ms: int = -1  # the last time it had everything the leader had (-1: never)
    last_fetch_leader_end: int = -1  # the leader's log end when the follower last fetched
    last_fetch_ms: int = -1


IsrListener = Callable[["Partition", tuple[int, ...]], None]


class Partition:
    """One partition on this broker: its log, and its role in the replica set.

    As leader it tracks each follower's progress from its fetches (Kafka's ISR model): the high watermark is the
    lowest log end offset over the in-sync replicas, a follower that has not caught up for
    ``replica_lag_time_max_ms`` leaves the ISR, and one that catches up to the high watermark joins again. ISR
    changes go to ``on_isr_change`` (the control plane records them); with one replica, nothing changes.
    Until the control plane has recorded a change (``isr_committed``), the high watermark waits for the
    replicas of both ISRs (Kafka's "maximal ISR"): a follower dropped here but still in-sync in the control
    plane could be elected leader, so nothing it may lack is acknowledged before the drop is recorded.
    """

    def __init__(self, topic: str, index: int, log: Log, state: PartitionState, *, node_id: int | None = None,
                 replica_lag_time_max_ms: int = 30_000, on_isr_change: IsrListener | None = None,
                 current: Callable[[], PartitionState] | None = None) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self._state = state
        self._node_id = state.leader if node_id is None else node_id
        self._lag_max_ms = replica_lag_time_max_ms
        self._on_isr_change = on_isr_change
        started = int(time.time() * 1000)  # leadership begins: every follower counts as caught up now
        self._followers = {r: FollowerProgress(last_caught_up_ms=started) for r in state.replicas if r != self._node_id}
        self._lock = threading.Lock()
        self._hw_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._current = current  # who leads at which epoch now, as the control plane says (for fencing)
        self._committed_isr = state.isr  # the ISR the control plane holds (as it gave it to this leader)

    @property
    def state(self) -> PartitionState:
        return self._state

    @property
    def leader_epoch(self) -> int:
        return self._state.leader_epoch

    def check_leader_epoch(self, current_leader_epoch: int) -> None:
        """KIP-320: a client naming an older epoch is fenced, a newer one is ahead of this broker (retriable).
        ``-1`` skips the check (older clients)."""
        epoch = self._state.leader_epoch
        if current_leader_epoch < 0 or current_leader_epoch == epoch:
            return
        if current_leader_epoch < epoch:
            raise FencedLeaderEpoch(f"{self.topic}-{self.index}: leader epoch {current_leader_epoch} is older "
                                    f"than {epoch}")
        raise UnknownLeaderEpoch(f"{self.topic}-{self.index}: leader epoch {current_leader_epoch} is newer than "
                                 f"{epoch}")

    def check_min_insync(self, required: int) -> None:
        """acks=all needs at least ``required`` in-sync replicas (min.insync.replicas)."""
        if len(self._state.isr) < required:
            raise NotEnoughReplicas(f"{self.topic}-{self.index} needs {required} in-sync replicas "
                                    f"(min.insync.replicas) and has {len(self._state.isr)}")

    def append_as_leader(self, records: Buffer, now_ms: int) -> AppendResult:
        result = self.log.append_as_leader(records, leader_epoch=self._state.leader_epoch, now_ms=now_ms)
        self.maybe_advance_high_watermark()
        return result

    def check_still_leader(self) -> None:
        """Raise unless this broker still leads the partition at the epoch this object was made for: a
        leader deposed meanwhile (another leader, or a new epoch) gets NOT_LEADER_OR_FOLLOWER or
        FENCED_LEADER_EPOCH."""
        if self._current is None:
            return
        now = self._current()
        if now.leader != self._node_id:
            raise NotLeaderOrFollower(f"{self.topic}-{self.index} is led by broker {now.leader} now, not "
                                      f"{self._node_id}")
        if now.leader_epoch != self._state.leader_epoch:
            raise FencedLeaderEpoch(f"{self.topic}-{self.index}: leader epoch {self._state.leader_epoch} is "
                                    f"fenced by epoch {now.leader_epoch}")

    def append_replicated(self, records: Buffer, expected_start_offset: int, leader_epoch: int) -> AppendResult:
        """A shadow link's append of batches fetched from its source, at the source's offsets. Fenced: only
        while this broker still leads at ``leader_epoch`` (the epoch the replicator started under). A leader
        deposed with a fetched batch in hand gets the error and its log stays as it was. (A change of
        leadership that lands while an append that passed this check is being written orders after it, as
        in Kafka: the new leader's followers truncate what the old epoch wrote past the new leader's log.)"""
        if leader_epoch != self._state.leader_epoch:
            raise FencedLeaderEpoch(f"{self.topic}-{self.index}: replicator epoch {leader_epoch}, partition epoch "
                                    f"{self._state.leader_epoch}")
        self.check_still_leader()
        return self.log.append_at_offsets(records, expected_start_offset=expected_start_offset,
                                          leader_epoch=leader_epoch)

    # --- the ISR (leader side) -----------------------------------------
    def follower_progress(self, replica_id: int) -> FollowerProgress | None:
        return self._followers.get(replica_id)

    def record_follower_fetch(self, replica_id: int, fetch_offset: int, now_ms: int) -> None:
        """A follower fetched at ``fetch_offset``: it holds everything below it. It is caught up when it has
        what the leader had at its previous fetch (Kafka's rule: a steady stream of appends never makes a
        follower that keeps up look behind). A follower outside the ISR joins once it reaches the high
        watermark and is caught up."""
        progress = self._followers.get(replica_id)
        if progress is None:
            raise NotLeaderOrFollower(f"broker {replica_id} is not a replica of {self.topic}-{self.index}")
        leader_end = self.log.log_end_offset
        with self._lock:
            if fetch_offset >= leader_end:
                progress.last_caught_up_ms = now_ms
            elif progress.last_fetch_leader_end >= 0 and fetch_offset >= progress.last_fetch_leader_end:
                progress.last_caught_up_ms = max(progress.last_caught_up_ms, progress.last_fetch_ms)
            progress.log_end_offset = fetch_offset
            progress.last_fetch_leader_end = leader_end
            progress.last_fetch_ms = now_ms
            isr = self._state.isr
            joins = (replica_id not in isr and fetch_offset >= self.log.high_watermark
                     and progress.last_caught_up_ms >= 0 and now_ms - progress.last_caught_up_ms <= self._lag_max_ms)
        if joins:
            self._change_isr(tuple(sorted((*isr, replica_id))))
        self.maybe_advance_high_watermark()

    def update_replicas(self, replicas: tuple[int, ...]) -> None:
        """The replica set changed at the same epoch (a reassignment): new replicas are tracked from their
        first fetch (they join the ISR once caught up), removed ones are forgotten and leave the ISR."""
        with self._lock:
            for replica in replicas:
                if replica != self._node_id and replica not in self._followers:
                    self._followers[replica] = FollowerProgress()
            for replica in [r for r in self._followers if r not in replicas]:
                del self._followers[replica]
            isr = tuple(r for r in self._state.isr if r in replicas)
            self._state = PartitionState(self._state.leader, self._state.leader_epoch, replicas, isr)
            # A reassignment is itself recorded in the control plane: removed replicas leave both ISRs.
            self._committed_isr = tuple(r for r in self._committed_isr if r in replicas)
        self.maybe_advance_high_watermark()

    def isr_committed(self, isr: tuple[int, ...]) -> None:
        """The control plane recorded ``isr``: the high watermark no longer waits for replicas outside it."""
        with self._lock:
            self._committed_isr = isr
        self.maybe_advance_high_watermark()

    def maybe_shrink_isr(self, now_ms: int, dead: frozenset[int] = frozenset()) -> tuple[int, ...]:
        """Drop followers that have not caught up for ``replica_lag_time_max_ms``, and at once those in ``dead``
        (brokers whose session in the control plane ended: Kafka's controller drops them from every ISR, so
        the high watermark and acks=all do not wait for them). The control plane's view is a poll old: a
        follower in ``dead`` that fetched within ``FETCHED_RECENTLY_MS`` has restarted and stays. Returns
        those dropped."""
        with self._lock:
            isr = self._state.isr
            lagging = tuple(r for r in isr if r != self._node_id and (
                (p := self._followers.get(r)) is None
                or (r in dead and now_ms - p.last_fetch_ms > FETCHED_RECENTLY_MS)
                or now_ms - p.last_caught_up_ms > self._lag_max_ms))
        if lagging:
            self._change_isr(tuple(r for r in isr if r not in lagging))
            self.maybe_advance_high_watermark()  # fewer replicas to wait for
        return lagging

    def _change_isr(self, isr: tuple[int, ...]) -> None:
        if self._on_isr_change is not None:
            self._on_isr_change(self, isr)  # sees the ISR before the change in ``state``
        self._state = PartitionState(self._state.leader, self._state.leader_epoch, self._state.replicas, isr)

    def maybe_advance_high_watermark(self) -> None:
        """The high watermark is the lowest log end offset over the ISR (this broker's is its log end). It
        never moves back. Producers waiting for it (acks=all) are released."""
        with self._lock:
            ends = [self.log.log_end_offset]
            for replica in set(self._state.isr).union(self._committed_isr):
                if replica != self._node_id:
                    progress = self._followers.get(replica)
                    ends.append(progress.log_end_offset if progress is not None else -1)
            candidate = min(ends)
            if candidate > self.log.high_watermark:
                self.log.high_watermark = candidate
            high_watermark = self.log.high_watermark
            ready = [future for offset, future in self._hw_waiters if offset <= high_watermark]
            self._hw_waiters = [(o, f) for o, f in self._hw_waiters if o > high_watermark]
        for future in ready:
            if not future.done():
                future.get_loop().call_soon_threadsafe(_resolve, future)

    async def wait_for_high_watermark(self, offset: int, timeout_s: float) -> bool:
        """acks=all: wait until the high watermark reaches ``offset`` (every in-sync replica has the append);
        False on timeout."""
        with self._lock:
            if self.log.high_watermark >= offset:
                return True
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hw_waiters.append((offset, future))
        try:
            async with asyncio.timeout(timeout_s):
                await future
            return True
        except TimeoutError:
            with self._lock:
                self._hw_waiters = [(o, f) for o, f in self._hw_waiters if f is not future]
            return False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ReplicaManager:
    """The partitions of this broker, opened on first use."""

    def __init__(self, node_id: int, leader_epoch: int, topic_of: Callable[[str], TopicMetadata | None],
                 open_log: Callable[[str, int], Log], *, replica_lag_time_max_ms: int = 30_000,
                 on_isr_change: IsrListener | None = None) -> None:
        self.node_id = node_id
        self._lag_max_ms = replica_lag_time_max_ms
        self._on_isr_change = on_isr_change
        self._epoch = leader_epoch
        self._topic_of = topic_of
        self._open_log = open_log
        self._partitions: dict[tuple[str, int], Partition] = {}
        self._lock = threading.Lock()

    def state(self, topic: str, index: int) -> PartitionState:
        """Who holds ``topic-index`` (for Metadata; opens nothing): the control plane's assignment on a
        cluster, else this broker alone at the epoch it took at start-up."""
        meta = self._topic_of(topic)
        if meta is not None and 0 <= index < len(meta.assignments):
            a = meta.assignments[index]
            return PartitionState(a.leader, a.leader_epoch, a.replicas, a.isr)
        me = (self.node_id,)
        return PartitionState(self.node_id, self._epoch, me, me)

    def leader_partition(self, topic: str, index: int, current_leader_epoch: int = -1) -> Partition:
        """The partition, if this broker leads it at ``current_leader_epoch`` (``-1``: any); else the error
        Kafka answers: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH or
        UNKNOWN_LEADER_EPOCH."""
        meta = self._topic_of(topic)
        if meta is None or not 0 <= index < meta.partitions:
            raise UnknownTopicOrPartition(f"{topic}-{index} does not exist on this broker")
        state = self.state(topic, index)
        if state.leader != self.node_id:
            raise NotLeaderOrFollower(f"{topic}-{index} is led by broker {state.leader}, not {self.node_id}")
        partition = self._partition(topic, index, meta, state)
        partition.check_leader_epoch(current_leader_epoch)
        return partition

    def _partition(self, topic: str, index: int, meta: TopicMetadata, state: PartitionState) -> Partition:
        log = self._open_log(topic, index)  # the log manager's: a recreated topic has a new log
        key = (topic, index)
        with self._lock:
            existing = self._partitions.get(key)
            if existing is None or existing.log is not log or existing.state.leader_epoch != state.leader_epoch:
                existing = Partition(topic, index, log, state, node_id=self.node_id,
                                     replica_lag_time_max_ms=self._lag_max_ms, on_isr_change=self._on_isr_change,
                                     current=lambda: self.state(topic, index))
                self._partitions[key] = existing
                return existing
        if existing.state.replicas != state.replicas:
            existing.update_replicas(state.replicas)
        return existing

    def shrink_isrs(self, now_ms: int, dead: frozenset[int] = frozenset()) -> None:
        """Drop followers that fell behind ``replica_lag_time_max_ms`` from the ISR of every partition led here
        (housekeeping; partitions without followers cost a lookup)."""
        with self._lock:
            led = [p for p in self._partitions.values() if len(p.state.isr) > 1]
        for partition in led:
            partition.maybe_shrink_isr(now_ms, dead)

    def forget_topic(self, topic: str) -> None:
        """A deleted topic: its partitions go (their logs are the log manager's to remove)."""
        with self._lock:
            for key in [key for key in self._partitions if key[0] == topic]:
                del self._partitions[key]
