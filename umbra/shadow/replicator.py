"""Partition replicators and the per-source-broker fetch loops that feed them.

One :class:`SourceFetchLoop` per source broker owns a fetcher (one fetch session)
for every shadow partition whose source leader is that broker. Each shadow
partition's state is a :class:`PartitionReplicator`, keyed by (partition,
shadow leader epoch). The bytes of each batch are written verbatim, except the
partition leader epoch; nothing is decoded. :mod:`umbra.shadow.engine` routes
partitions to loops and appends what they fetch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from umbra.client.errors import ClientError, ClientResponseError
from umbra.client.fetcher import InFlight, plan_in_flight
from umbra.errors import ErrorCode
from umbra.records.batch import iter_batch_headers
from umbra.shadow.divergence import open_source_epochs
from umbra.shadow.state import TaskState

if TYPE_CHECKING:
    from umbra.client.fetch_response import FetchedPartition
    from umbra.client.fetcher import BrokerFetcher, FetchResult
    from umbra.shadow.engine import ReplicationEngine
    from umbra.shadow.host import HeldPartition

log = logging.getLogger("umbra.shadow.replicator")

TopicPartition = tuple[str, int]


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"ERROR_{code}"


class PlannedAppend(NamedTuple):
    end: int  # bytes of complete batches at the start of the record set
    batches: int
    first_base_offset: int
    next_offset: int  # the offset after the last complete batch: where the next fetch starts
    # The source's leader epochs, as the batches carry them (before the shadow stamps its own):
    epoch_starts: tuple[tuple[int, int], ...]  # (epoch, base offset) wherever the epoch changes
    last_epoch: int  # the epoch of the last batch: the next Fetch's last_fetched_epoch


def plan_append(fetched: FetchedPartition) -> PlannedAppend | None:
    """Walk the batch headers (no record is decoded) to find the complete batches of a fetched record set."""
    if fetched.error_code or not len(fetched.records):
        return None
    end = batches = 0
    first_base = next_offset = epoch = -1
    epoch_starts: list[tuple[int, int]] = []
    for header in iter_batch_headers(fetched.records):
        if first_base < 0:
            first_base = header.base_offset
        if header.partition_leader_epoch != epoch:
            epoch = header.partition_leader_epoch
            epoch_starts.append((epoch, header.base_offset))
        end = header.position + header.size_in_bytes
        next_offset = header.next_offset
        batches += 1
    return PlannedAppend(end, batches, first_base, next_offset, tuple(epoch_starts), epoch) if batches else None


def present_batches_end(records: memoryview, log_end_offset: int) -> int:
    """Bytes of the whole batches at the start of ``records`` that end at or below ``log_end_offset``.

    A partition moved to another source leader while an append was still in flight fetches those batches
    twice; the copies are dropped here. A batch that straddles the log end is left in, for the append to
    refuse: the same source offsets in other batches mean the source diverged.
    """
    present = 0
    for header in iter_batch_headers(records):
        if header.next_offset > log_end_offset:
            break
        present = header.end_position
    return present


class PartitionReplicator:
    """What one shadow partition knows about its replication, at one shadow leader epoch."""

    def __init__(self, tp: TopicPartition, partition: HeldPartition, source_topic_id: uuid.UUID | None, *,
                 trust_source_epochs: bool = True) -> None:
        self.tp = tp
        self.partition = partition  # appends go through it, fenced by the leader epoch it was led at
        self.log = log_ = partition.log
        self.leader_epoch = partition.leader_epoch
        self.source_topic_id = source_topic_id
        self.state = TaskState.STARTING
        self.reason = ""
        self.source_log_start_offset = -1
        self.source_high_watermark = -1
        self.last_batch_monotonic: float | None = None
        self.gaps = 0
        self.skipped_records = 0
        self.stopped = False
        self.positioned = False  # the start position (start_at, resume) has been decided
        self.fresh = False  # the log was empty when replication started: adopt the source's start offset
        self.source_broker: int | None = None  # the source broker this partition is fetched from now
        self.source_leader: int | None = None  # the last source leader it was fetched from (kept across errors)
        self.source_leader_epoch = -1
        self.preferred_replica: int | None = None  # KIP-392: a source follower in our rack to fetch from
        self.preferred_until = 0.0
        self.leader_changes = 0
        self.source_errors: Counter[str] = Counter()
        self.last_source_error = ""
        # The shadow's end was checked against the source (needed where the source has no leader epochs).
        self.verified = False
        # Something hinted that the source partition is no longer the one replicated (no topic ids to tell).
        self.suspect = False
        self.start_point_check: str | None = None  # the last check's outcome (see umbra.shadow.startpoint)
        self.source_epochs = open_source_epochs(log_)  # the source's leader epochs of the batches held
        if not trust_source_epochs and self.source_epochs.latest_epoch >= 0:
            # On a cluster, this copy may hold batches another leader replicated since this broker last
            # wrote the file: the start point is checked by CRC, and the epochs are recorded afresh from here.
            self.source_epochs.clear()
            self.source_epochs.persist()
        self.start_requested = -1  # the log start offset last handed to the writer thread
        self.waiting_for_storage = False  # FAULTED by a storage error of the shadow's own: resumes when online
        self.truncations = 0
        self.truncated_records = 0
        self.last_truncation: dict[str, Any] | None = None
        # The fetch offset the next accepted response must answer: where the next append starts.
        self.append_position = -1
        self.appended = False  # set by the writer thread when the last planned append went through

    @property
    def key(self) -> tuple[TopicPartition, int]:
        return self.tp, self.leader_epoch

    @property
    def lag(self) -> int | None:
        """Records behind the source; None while the source's high watermark is not known yet."""
        if self.source_high_watermark < 0:
            return None
        return max(self.source_high_watermark - self.log.high_watermark, 0)

    def set_state(self, state: TaskState, reason: str = "") -> None:
        self.state, self.reason = state, reason

    def status(self) -> dict[str, Any]:
        ago = None if self.last_batch_monotonic is None else int((time.monotonic() - self.last_batch_monotonic) * 1000)
        return {"topic": self.tp[0], "partition": self.tp[1], "state": str(self.state), "reason": self.reason,
                "source_log_start_offset": self.source_log_start_offset,
                "source_high_watermark": self.source_high_watermark,
                "shadow_log_start_offset": self.log.log_start_offset,
                "shadow_high_watermark": self.log.high_watermark, "lag": self.lag, "ms_since_last_batch": ago,
                "gaps": self.gaps, "skipped_records": self.skipped_records, "leader_epoch": self.leader_epoch,
                "source_broker": self.source_broker, "source_leader": self.source_leader,
                "source_leader_epoch": self.source_leader_epoch,
                "source_leader_changes": self.leader_changes, "source_errors": dict(self.source_errors),
                "last_source_error": self.last_source_error, "start_point_check": self.start_point_check,
                "truncations": self.truncations, "truncated_records": self.truncated_records,
                "last_truncation": self.last_truncation}

    def note_error(self, code: str, detail: str) -> None:
        self.source_errors[code] += 1
        self.last_source_error = detail


class _Lane:
    """One fetch session of a loop, on its own connection, over a share of its partitions: one Fetch in flight."""

    def __init__(self, fetcher: BrokerFetcher) -> None:
        self.fetcher = fetcher
        self.partitions: set[TopicPartition] = set()
        self.wakeup = asyncio.Event()
        self.retired = False  # hands its partitions to the other lanes, then closes
        self.backoff = 0.1


class SourceFetchLoop:
    """Fetches every shadow partition led by one source broker: over one fetch session, or, when the source is
    far away, over several, so that the bytes in flight cover the bandwidth-delay product
    (:func:`umbra.client.fetcher.plan_in_flight`).

    Each partition is in one session (a lane) at a time, and only its lane's answers are appended, at the
    partition's append position: appends stay in offset order. A partition changes lanes only between two of
    its lane's requests, so no request for it is lost or answered twice.
    """

    PLAN_INTERVAL_S = 0.5  # how long the rate is measured before the fetches in flight are planned again
    CAUGHT_UP_AFTER_S = 5.0  # with nothing more on the source for this long, back to one fetch session

    def __init__(self, engine: ReplicationEngine, broker_id: int) -> None:
        self.engine = engine
        self.broker_id = broker_id
        self.replicators: dict[TopicPartition, PartitionReplicator] = {}
        self.state = TaskState.STARTING
        self.reason = ""
        self.errors: Counter[str] = Counter()
        self._lanes: list[_Lane] = []
        self._lanes.append(self._new_lane())
        self.fetcher = self._lanes[0].fetcher  # the first session, never retired: it measures the round trip
        self.fetcher.probe_round_trip = True
        self._lane_of: dict[TopicPartition, _Lane] = {}
        self._moving: dict[TopicPartition, _Lane] = {}  # to hand over at their lane's next request
        self._last_epochs: dict[TopicPartition, int] = {}  # the epoch of the last batch below the append position
        self.in_flight = InFlight(1, engine.fetch_settings.fetch_max_bytes)
        self._group: asyncio.TaskGroup | None = None
        self._window_started = time.monotonic()
        self._planned = False  # no plan made yet (the first comes with the first data)
        self._window_bytes = 0
        self._behind_at = -self.CAUGHT_UP_AFTER_S  # when a response last left data on the source

    def _new_lane(self) -> _Lane:
        if not self._lanes:  # the first: a connection of its own
            return _Lane(self.engine.source.fetcher_for(self.broker_id, self.engine.fetch_settings))
        return _Lane(self._lanes[0].fetcher.sibling())  # the others' requests are pipelined on it

    def add(self, rep: PartitionReplicator, offset: int) -> None:
        if rep.tp in self._lane_of:
            self.remove(rep.tp)
        rep.append_position = offset
        self.replicators[rep.tp] = rep
        rep.source_broker = self.broker_id
        self._last_epochs[rep.tp] = rep.source_epochs.latest_epoch
        self._join(min((lane for lane in self._lanes if not lane.retired), key=lambda lane: len(lane.partitions)),
                   rep)

    def remove(self, tp: TopicPartition) -> None:
        if self.replicators.pop(tp, None) is not None:
            lane = self._lane_of.pop(tp)
            lane.partitions.discard(tp)
            lane.fetcher.remove_partition(tp)
            self._moving.pop(tp, None)
            self._last_epochs.pop(tp, None)

    def _join(self, lane: _Lane, rep: PartitionReplicator) -> None:
        lane.fetcher.add_partition(rep.tp, rep.append_position, rep.source_topic_id, rep.source_leader_epoch,
                                   self._last_epochs[rep.tp])
        lane.partitions.add(rep.tp)
        self._lane_of[rep.tp] = lane
        lane.wakeup.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._run_lane(self._lanes[0]))
        finally:
            self._group = None

    async def _run_lane(self, lane: _Lane) -> None:
        pending: asyncio.Task[FetchResult] | None = None
        try:
            while True:
                if pending is None:
                    self._hand_over(lane)
                    if not lane.partitions:  # the state stays what the last fetch made it
                        if lane.retired:
                            return
                        lane.wakeup.clear()
                        await lane.wakeup.wait()
                        continue
                    pending = asyncio.ensure_future(lane.fetcher.fetch())
                try:
                    result = await pending
                except (ClientError, OSError, TimeoutError) as exc:  # an unreachable or refusing source
                    pending = None
                    await self._fetch_failed(lane, exc)
                    continue
                except Exception as exc:  # a bug: the one place it is logged with its traceback; the loop goes on
                    pending = None
                    log.exception("link %s: fetch from source broker %d failed", self.engine.link.spec.name,
                                  self.broker_id)
                    await self._fetch_failed(lane, exc)
                    continue
                pending = None
                lane.backoff = 0.1
                if self.state is TaskState.LINK_UNAVAILABLE:
                    self.engine.link.record_event(f"source broker {self.broker_id} answers again")
                self.state, self.reason = TaskState.ACTIVE, ""
                work = self._accept(lane, result)
                self._plan_in_flight()
                # Pipelining: the next offsets are known from this response's batch headers, so the next
                # fetch goes out now and the source prepares it while this response is appended.
                self._hand_over(lane)
                if lane.partitions:
                    pending = asyncio.ensure_future(lane.fetcher.fetch())
                # CRC checks and file writes release the GIL: they run on the link's writer threads while
                # this thread receives the next response.
                try:
                    errors = await self.engine.write_batches(work)
                    for rep, fetched, planned in work:
                        if not rep.stopped and self.replicators.get(rep.tp) is rep:
                            self.engine.on_fetched(self, rep, fetched, planned, errors.get(rep.tp))
                except Exception as exc:  # a bug (storage errors come back per partition): logged with its
                    # traceback, here only; the loop goes on, its partitions re-routed from the shadow's logs
                    log.exception("link %s: appending a response from source broker %d failed",
                                  self.engine.link.spec.name, self.broker_id)
                    for rep, _, _ in work:
                        self.remove(rep.tp)
                        rep.source_broker = None
                        rep.set_state(TaskState.LINK_UNAVAILABLE, f"append failed: {exc}")
                    self.engine.request_reroute()
                # Drop every view of this response now: its receive buffer can then take the next one.
                result = work = None  # type: ignore[assignment]
        finally:
            if pending is not None:
                pending.cancel()
            if lane.retired:
                self._lanes.remove(lane)
            await lane.fetcher.close()

    def _accept(self, lane: _Lane, result: FetchResult
                ) -> list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]:
        """What of ``result`` to append: this lane's partitions, at their append positions."""
        work = []
        for tp, fetched in result.partitions.items():
            rep = self.replicators.get(tp)
            if rep is None or rep.stopped:
                if fetched.error_code:  # answers a request sent before the partition left: count it
                    self.engine.note_late_error(tp, self.broker_id, fetched.error_code)
                continue
            if self._lane_of.get(tp) is not lane:
                continue  # answers a request sent before the partition moved to another lane (or left and came back)
            if fetched.fetch_offset != rep.append_position:
                continue  # answers a position this partition has since left (re-routed, repositioned)
            if fetched.diverging_epoch is not None:  # KIP-595: the source's log parts from ours
                self.engine.on_diverging(rep, *fetched.diverging_epoch)
                continue
            planned = plan_append(fetched)
            position = fetched.fetch_offset
            if planned is not None:
                rep.append_position = position = planned.next_offset
                lane.fetcher.set_offset(tp, planned.next_offset, planned.last_epoch)
                self._last_epochs[tp] = planned.last_epoch
                self._window_bytes += planned.end
            if not fetched.error_code and position < fetched.high_watermark:
                self._behind_at = time.monotonic()  # the source has more: the rate seen is what the fetches allow
            work.append((rep, fetched, planned))
        return work

    def _plan_in_flight(self) -> None:
        """Every PLAN_INTERVAL_S: the lanes and fetch sizes for the rate seen and the round trip measured. The
        first plan comes with the first data, once the round trip is known: a catch-up across a long link is
        spread over several sessions from its second request, not after a measuring interval at one."""
        now = time.monotonic()
        elapsed = now - self._window_started
        first = not self._planned and self._window_bytes > 0 and self.fetcher.round_trip_s is not None
        if elapsed < self.PLAN_INTERVAL_S and not first:
            return
        self._planned = True
        rate = self._window_bytes / elapsed
        self._window_started, self._window_bytes = now, 0
        settings = self.engine.fetch_settings
        if now - self._behind_at > self.CAUGHT_UP_AFTER_S:  # caught up: one session is enough for any round trip
            plan = InFlight(1, settings.fetch_max_bytes)
        else:  # behind: never fewer lanes (moving partitions back and forth would cost a request each)
            plan = plan_in_flight(settings, len(self.replicators), rate, self.fetcher.round_trip_s,
                                  at_least=self.in_flight.fetches)
        if plan == self.in_flight:
            return
        if plan.fetches != self.in_flight.fetches:
            log.info("link %s: source broker %d: %d fetch session%s of up to %d bytes (%.1f MB/s, round trip %s)",
                     self.engine.link.spec.name, self.broker_id, plan.fetches, "s" * (plan.fetches != 1),
                     plan.max_bytes, rate / 1e6, "not measured" if self.fetcher.round_trip_s is None
                     else f"{self.fetcher.round_trip_s * 1000:.1f} ms")
        self.in_flight = plan
        lanes = [lane for lane in self._lanes if not lane.retired]
        while len(lanes) < plan.fetches and self._group is not None:
            lane = self._new_lane()
            self._lanes.append(lane)
            lanes.append(lane)
            self._group.create_task(self._run_lane(lane))
        for lane in lanes[plan.fetches:]:
            lane.retired = True
            lane.wakeup.set()
        lanes = lanes[:plan.fetches]
        # With several sessions on one connection, the source answers their requests in order: a request that
        # long-polls would hold up the ones behind it, so none waits (a caught-up loop soon has one session).
        wait_ms = settings.fetch_max_wait_ms if plan.fetches == 1 else 0
        # A partition has one request in flight at a time: across a long round trip the per-partition cap, not
        # the session's, would bound it (10 MiB per round trip is 160 MB/s at 50 ms), so a planned session
        # may fill its request from one partition.
        partition_max = settings.fetch_partition_max_bytes if plan.fetches == 1 else max(
            settings.fetch_partition_max_bytes, plan.max_bytes)
        for lane in self._lanes:
            lane.fetcher.settings = replace(settings, fetch_max_bytes=plan.max_bytes, fetch_max_wait_ms=wait_ms,
                                            fetch_partition_max_bytes=partition_max)
        # Even shares (the larger ones to the lanes holding most); the moves happen at each lane's next request.
        self._moving.clear()
        count, extra = divmod(len(self._lane_of), len(lanes))
        by_size = sorted(lanes, key=lambda lane: -len(lane.partitions))
        shares = {lane: count + (i < extra) for i, lane in enumerate(by_size)}
        spare = [tp for lane in self._lanes for tp in sorted(lane.partitions)[shares.get(lane, 0):]]
        for lane in lanes:
            room = max(shares[lane] - len(lane.partitions), 0)
            self._moving.update((tp, lane) for tp in spare[:room])
            spare = spare[room:]

    def _hand_over(self, lane: _Lane) -> None:
        """Move the partitions planned to leave ``lane``; it has no request in flight, so none is lost or doubled."""
        for tp in [tp for tp in lane.partitions if tp in self._moving]:
            target = self._moving.pop(tp)
            lane.partitions.discard(tp)
            lane.fetcher.remove_partition(tp)
            self._join(target, self.replicators[tp])

    async def _fetch_failed(self, lane: _Lane, exc: Exception) -> None:
        """Report, back off (0.1 s doubling to 5 s, jittered), and have the partitions re-routed."""
        code = exc.code.name if isinstance(exc, ClientResponseError) and isinstance(exc.code, ErrorCode) \
            else type(exc).__name__
        self.errors[code] += 1
        self._unavailable(f"source broker {self.broker_id}: {exc or type(exc).__name__}", lane)
        await asyncio.sleep(lane.backoff * random.uniform(0.8, 1.2))
        lane.backoff = min(lane.backoff * 2, 5.0)
        self.engine.request_reroute()

    def _unavailable(self, reason: str, lane: _Lane) -> None:
        if self.state is not TaskState.LINK_UNAVAILABLE:
            self.engine.link.record_event(reason, logging.WARNING)
        self.state, self.reason = TaskState.LINK_UNAVAILABLE, reason
        self.engine.link.metrics.errors.labels(self.engine.link.spec.name, "LINK_UNAVAILABLE").inc()
        for tp in lane.partitions:
            self.replicators[tp].set_state(TaskState.LINK_UNAVAILABLE, reason)

    def status(self) -> dict[str, Any]:
        round_trip = self.fetcher.round_trip_s
        return {"task": f"fetch-from-source-broker-{self.broker_id}", "state": str(self.state),
                "reason": self.reason, "partitions": len(self.replicators), "errors": dict(self.errors),
                "fetch_version": self.fetcher.version, "fetch_sessions": self.fetcher.sessions_granted,
                "fetches_in_flight": self.in_flight.fetches, "fetch_max_bytes": self.in_flight.max_bytes,
                "round_trip_ms": None if round_trip is None else round(round_trip * 1000, 1)}
