"""Every replicator of one link on this broker: routing to source leaders, positioning, the append path.

The engine sends each shadow partition to the :class:`SourceFetchLoop` of the source broker that leads it,
follows leadership as the source's metadata moves it, decides where new partitions start, checks the
shadow's end against sources that cannot show divergence themselves, and appends fetched batches on the
link's writer threads (each partition always on the same one, so its appends stay in order).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Container, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from umbra.client.errors import ClientError
from umbra.client.reconnect import Backoff
from umbra.client.settings import FetchSettings
from umbra.errors import ErrorCode, FencedLeaderEpoch, KafkaError, KafkaStorageError, NotLeaderOrFollower
from umbra.shadow.consistency import Consistency
from umbra.shadow.replicator import (
    PartitionReplicator,
    PlannedAppend,
    SourceFetchLoop,
    TopicPartition,
    error_name,
    present_batches_end,
)
from umbra.shadow.state import TaskState
from umbra.tasks import cancel_and_wait

if TYPE_CHECKING:
    from umbra.client.admin import ListedOffset
    from umbra.client.cluster import SourceCluster
    from umbra.client.fetch_response import FetchedPartition
    from umbra.shadow.host import HeldPartition
    from umbra.shadow.link import ShadowLink

log = logging.getLogger("umbra.shadow.engine")

EARLIEST, LATEST = -2, -1
LAG_PROBE_INTERVAL_S = 1.0
WRITER_THREADS = 4  # per link on this broker; a partition's writes all go to one of them
PREFERRED_REPLICA_TTL_S = 300.0  # as a Kafka consumer keeps a preferred read replica: metadata.max.age.ms
_REROUTE_ERRORS = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                   ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH,
                   ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.REPLICA_NOT_AVAILABLE, ErrorCode.KAFKA_STORAGE_ERROR,
                   ErrorCode.INCONSISTENT_TOPIC_ID}
# Answers that can mean the source topic is not the one replicated so far (deleted and recreated).
_IDENTITY_ERRORS = {ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_LEADER_EPOCH,
                    ErrorCode.OFFSET_OUT_OF_RANGE}


class ReplicationEngine:
    """Every replicator of one link on this broker, and the fetch loops that feed them."""

    def __init__(self, link: ShadowLink, source: SourceCluster) -> None:
        self.link = link
        self.source = source
        client = link.spec.source.client
        self.fetch_settings: FetchSettings = FetchSettings(client.fetch_max_wait_ms, client.fetch_min_bytes,
                                            client.fetch_max_bytes, client.fetch_partition_max_bytes,
                                            client.rack or "")
        self.replicators: dict[TopicPartition, PartitionReplicator] = {}
        self.loops: dict[int, tuple[SourceFetchLoop, asyncio.Task[None]]] = {}
        self._reroute = asyncio.Event()
        self._router: asyncio.Task[None] | None = None
        # Writer threads: the event loop keeps receiving while they append. Each partition is always on the same
        # one (assigned in turn), so its appends, truncations and start moves keep their order; different
        # partitions append in parallel (CRC checks and file writes release the GIL). With one thread, a burst of
        # responses (several sessions across a long round trip land together) queued behind each other, and the
        # receive buffers went cold in the queue: appending cost 2-4 times the CPU per byte.
        self._writers = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shadow-{link.spec.name}-writer-{i}")
                         for i in range(WRITER_THREADS)]
        self._writer_of: dict[TopicPartition, ThreadPoolExecutor] = {}
        self._writes: set[asyncio.Future[Any]] = set()  # work on the writer threads, awaited by drain_writes
        self._side_tasks: set[asyncio.Task[None]] = set()  # short jobs (out-of-range handling), owned here
        self.start_point_checks: Counter[str] = Counter()  # outcome -> count, since the link started here
        self._missing_leaders: set[int] = set()  # source leaders absent from the source's metadata
        self.consistency = Consistency(self)

    async def start(self) -> None:
        self._router = asyncio.create_task(self._route_loop(), name=f"shadow-{self.link.spec.name}-router")

    async def stop(self) -> None:
        tasks = [task for _, task in self.loops.values()] + list(self._side_tasks)
        if self._router is not None:
            tasks.append(self._router)
        await cancel_and_wait(tasks)
        await self.drain_writes()
        for writer in self._writers:
            writer.shutdown(wait=True)
        self.loops.clear()
        for rep in self.replicators.values():
            rep.stopped = True
            rep.set_state(TaskState.STOPPED)

    # --- membership ----------------------------------------------------
    def ensure(self, tp: TopicPartition, partition: HeldPartition, source_topic_id: uuid.UUID | None) -> None:
        """A replicator for ``tp`` at the partition's leader epoch (a new one if the epoch or log changed)."""
        rep = self.replicators.get(tp)
        if rep is not None and rep.partition is partition and not rep.stopped:
            return
        if rep is not None:
            rep.stopped = True
            self.detach(rep)
        clustered = self.link.broker.clustered
        self.replicators[tp] = PartitionReplicator(tp, partition, source_topic_id, trust_source_epochs=not clustered)
        self.request_reroute()

    def stop_partition(self, tp: TopicPartition) -> None:
        """This broker no longer leads ``tp`` (or it is not replicated any more): its replicator stops."""
        rep = self.replicators.pop(tp, None)
        if rep is not None:
            rep.stopped = True
            rep.set_state(TaskState.STOPPED)
            self.detach(rep)

    def stop_topic(self, topic: str) -> None:
        """Fence every replicator of ``topic``: after this returns, nothing more is written to it."""
        for tp in [tp for tp in self.replicators if tp[0] == topic]:
            rep = self.replicators.pop(tp)
            rep.stopped = True
            rep.set_state(TaskState.STOPPED)
            self.detach(rep)

    def detach(self, rep: PartitionReplicator) -> None:
        if rep.source_broker is not None and rep.source_broker in self.loops:
            self.loops[rep.source_broker][0].remove(rep.tp)
        rep.source_broker = None

    def request_reroute(self) -> None:
        self._reroute.set()

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(job, name=f"shadow-{self.link.spec.name}-{name}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def on_diverging(self, rep: PartitionReplicator, source_epoch: int, source_end: int) -> None:
        """A Fetch answered that the source's epoch ``source_epoch`` ends at ``source_end`` (KIP-595)."""
        self.detach(rep)
        rep.verified = False
        self._spawn(self.consistency.resolve(rep, source_epoch, source_end, "Fetch"), f"diverging-{rep.tp[0]}")

    def note_late_error(self, tp: TopicPartition, broker_id: int, error_code: int) -> None:
        rep = self.replicators.get(tp)
        if rep is not None:
            name = error_name(error_code)
            rep.note_error(name, f"source broker {broker_id} answered {name} for {tp[0]}-{tp[1]}")

    def sessions_granted(self) -> dict[int, bool | None]:
        """Per source broker with a fetch loop: whether it granted a fetch session (None: not known yet)."""
        return {broker_id: loop.fetcher.sessions_granted for broker_id, (loop, _) in self.loops.items()}

    # --- routing -------------------------------------------------------
    async def _route_loop(self) -> None:
        """Route on request; probe the source's offsets every second; retry unroutable partitions with backoff."""
        backoff = Backoff(initial_s=0.5, maximum_s=5.0)
        retry_at: float | None = None
        next_probe = time.monotonic() + LAG_PROBE_INTERVAL_S
        while True:
            deadline = next_probe if retry_at is None else min(next_probe, retry_at)
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    await self._reroute.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            if now >= next_probe:
                await self._probe_source_offsets()
                next_probe = time.monotonic() + LAG_PROBE_INTERVAL_S
            if not self._reroute.is_set() and (retry_at is None or now < retry_at):
                continue
            self._reroute.clear()
            try:
                unrouted = await self._route()
            except (ClientError, OSError, TimeoutError) as exc:  # the source cannot be asked: back off, retry
                self._route_failed(exc)
                unrouted = True
            except Exception as exc:  # a bug: the one place it is logged with its traceback; routing goes on
                log.exception("link %s: routing failed", self.link.spec.name)
                self._route_failed(exc)
                unrouted = True
            self.link.note_capabilities()
            if unrouted:
                # Partitions without a reachable leader: again soon, then less often while it lasts.
                retry_at = time.monotonic() + backoff.next_delay()
            else:
                backoff.reset()
                retry_at = None
            await asyncio.sleep(0.5)  # at most two metadata refreshes a second

    def _route_failed(self, exc: Exception) -> None:
        reason = f"source metadata unavailable: {exc or type(exc).__name__}"
        for rep in self.replicators.values():
            if rep.source_broker is None and rep.state is not TaskState.FAULTED:
                rep.set_state(TaskState.LINK_UNAVAILABLE, reason)

    async def _probe_source_offsets(self) -> None:
        """Ask the source for its high watermarks (and, where Fetch does not say, its log start offsets), so
        that status shows the lag between fetches too."""
        tps = [tp for tp, rep in self.replicators.items() if not rep.stopped and rep.positioned]
        if not tps:
            return
        try:
            latest = await self.source.list_offsets(tps, LATEST)
            earliest = {} if self.link.capabilities().fetch_log_start_offset is not False else \
                await self.source.list_offsets(tps, EARLIEST)
        except (ClientError, OSError, TimeoutError):  # a probe only; the fetch loops report unavailability
            return
        for tp, listed in latest.items():
            rep = self.replicators.get(tp)
            if rep is not None and listed.error_code == 0 and listed.offset > rep.source_high_watermark:
                rep.source_high_watermark = listed.offset
        for tp, listed in earliest.items():
            rep = self.replicators.get(tp)
            if rep is not None and listed.error_code == 0 and listed.offset > rep.source_log_start_offset:
                rep.source_log_start_offset = listed.offset

    async def _route(self) -> bool:
        """Send every replicator to the fetch loop of its source partition's leader. True if some could not be."""
        metadata = await self.source.refresh_metadata()
        capabilities = self.link.capabilities()
        unrouted = False
        moving: list[tuple[PartitionReplicator, int, int]] = []
        missing: dict[int, int] = {}  # leaders not in the source's metadata -> partitions they lead
        for rep in list(self.replicators.values()):
            if rep.waiting_for_storage:
                if rep.log.offline_reason is not None:
                    unrouted = True  # look again later
                    continue
                rep.waiting_for_storage, rep.verified = False, False
                rep.set_state(TaskState.STARTING, "storage online again")
                self.link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: storage online again; replication resumes")
            if rep.stopped or rep.state is TaskState.FAULTED:
                continue
            name = f"{rep.tp[0]}-{rep.tp[1]}"
            leader, epoch = metadata.leader_for(rep.tp), metadata.leader_epoch_for(rep.tp)
            if leader is None or leader not in metadata.brokers:
                if leader is not None:
                    missing[leader] = missing.get(leader, 0) + 1
                self.detach(rep)
                rep.set_state(TaskState.LINK_UNAVAILABLE, f"source partition {name} has no leader" if leader is None
                              else f"source broker {leader}, the leader of {name}, is not in the source's metadata "
                                   f"(down or unreachable)")
                unrouted = True
                continue
            if 0 <= epoch < rep.source_leader_epoch and capabilities.topic_ids is False:
                # Without topic ids, an epoch going back is how a recreated topic shows itself.
                self.link.record_event(f"{name}: the source's leader epoch went back from {rep.source_leader_epoch} "
                                       f"to {epoch}; checking the shadow's end against the source")
                self.detach(rep)
                rep.suspect, rep.verified = True, False
            if rep.source_leader == leader and rep.source_broker is not None and epoch != rep.source_leader_epoch:
                # A new leader epoch is a start point, as for Kafka's followers: the old leader may have
                # written what the new one never had.
                self.detach(rep)
                rep.verified = False
            target = self._fetch_from(rep, leader, metadata.brokers)
            if rep.source_broker == target:
                continue
            if rep.source_broker is not None:
                self.detach(rep)
            moving.append((rep, leader, epoch))
        for broker_id in sorted(missing.keys() - self._missing_leaders):
            count = missing[broker_id]
            self.link.record_event(f"source broker {broker_id} leads {count} shadowed partition{'s' * (count != 1)} "
                                   f"but is not in the source's metadata (down or unreachable): waiting for it or "
                                   f"for new leaders", logging.WARNING)
        for broker_id in sorted(self._missing_leaders - missing.keys()):
            self.link.record_event(f"source broker {broker_id} is no longer a missing leader")
        self._missing_leaders = set(missing)
        # New partitions are positioned together: two ListOffsets for all of them, not two per partition.
        await self._position_all([rep for rep, _, _ in moving if not rep.positioned])
        unchecked = [rep for rep, _, _ in moving if rep.positioned and not rep.verified]
        await self.consistency.check(unchecked, capabilities)
        for rep, leader, epoch in moving:
            if not rep.positioned or not rep.verified:
                unrouted = unrouted or rep.state is not TaskState.FAULTED
                continue
            self.detach(rep)
            offset = self._next_fetch_offset(rep)
            if rep.source_leader is not None and rep.source_leader != leader:
                rep.leader_changes += 1
                self.link.metrics.leader_changes.labels(self.link.spec.name).inc()
                at_epoch = f" at leader epoch {epoch}" if epoch >= 0 else ""
                self.link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: source leader moved from broker {rep.source_leader} "
                                       f"to broker {leader}{at_epoch}; fetching on from offset {offset}")
            rep.source_leader, rep.source_leader_epoch = leader, epoch
            self._loop_for(self._fetch_from(rep, leader, metadata.brokers)).add(rep, offset)
        return unrouted

    @staticmethod
    def _fetch_from(rep: PartitionReplicator, leader: int, brokers: Container[int]) -> int:
        """The source broker to fetch ``rep`` from: the replica the leader named as preferred (KIP-392, with
        ``source.client.rack``) while that lasts and the replica is there, else the leader."""
        preferred = rep.preferred_replica
        if preferred is not None and (time.monotonic() > rep.preferred_until or preferred not in brokers):
            rep.preferred_replica = preferred = None
        return preferred if preferred is not None else leader

    def _loop_for(self, broker_id: int) -> SourceFetchLoop:
        entry = self.loops.get(broker_id)
        if entry is None or entry[1].done():
            loop = SourceFetchLoop(self, broker_id)
            task = asyncio.create_task(loop.run(), name=f"shadow-{self.link.spec.name}-fetch-{broker_id}")
            entry = (loop, task)
            self.loops[broker_id] = entry
        return entry[0]

    def _next_fetch_offset(self, rep: PartitionReplicator) -> int:
        return max(rep.log.log_end_offset, rep.source_log_start_offset)

    async def _position_all(self, reps: list[PartitionReplicator]) -> None:
        """Decide where partitions start: where the shadow log ends, or ``start_at`` for a new empty one."""
        new = []
        for rep in reps:
            if rep.log.size_in_bytes > 0 or rep.log.log_end_offset > 0:
                rep.positioned = True
            else:
                new.append(rep)
        if not new:
            return
        tps = [rep.tp for rep in new]
        earliest = await self.source.list_offsets(tps, EARLIEST)
        latest = await self.source.list_offsets(tps, LATEST)
        start_at = self.link.spec.topics.start_at
        by_time = await self.source.list_offsets(tps, start_at.timestamp_ms) if start_at.kind == "timestamp" else {}
        for rep in new:
            first, last = earliest[rep.tp], latest[rep.tp]
            if first.error_code or last.error_code:
                rep.set_state(TaskState.LINK_UNAVAILABLE, "ListOffsets on the source failed: "
                                                          f"{ErrorCode(first.error_code or last.error_code).name}")
                continue
            await self._position(rep, first.offset, last.offset, by_time.get(rep.tp))

    async def _position(self, rep: PartitionReplicator, earliest: int, latest: int, found: ListedOffset | None
                        ) -> None:
        log_ = rep.log
        start_at = self.link.spec.topics.start_at
        rep.source_log_start_offset, rep.source_high_watermark = earliest, latest
        if start_at.kind == "latest" or earliest == latest:
            # Nothing at or above the source's high watermark exists yet, so no batch can straddle it.
            start = latest
            if start > 0:  # files are deleted and a checkpoint written: on its writer thread
                await asyncio.get_running_loop().run_in_executor(self.writer_for(rep.tp), log_.restart_at, start)
                self.link.broker.notifier.notify(rep.tp)
        elif start_at.kind == "timestamp":
            start = found.offset if found is not None and found.offset >= 0 else latest
            rep.source_log_start_offset = max(start, earliest)
        else:
            start = earliest
        rep.fresh = log_.log_end_offset < start
        rep.positioned = True
        log.debug("link %s: %s-%d starts at offset %d (%s)", self.link.spec.name, rep.tp[0], rep.tp[1], start,
                 start_at.kind)

    # --- the append path -------------------------------------------------
    def writer_for(self, tp: TopicPartition) -> ThreadPoolExecutor:
        """The writer thread of ``tp``: every write to its log goes there, in the order it is handed over."""
        writer = self._writer_of.get(tp)
        if writer is None:
            writer = self._writer_of[tp] = self._writers[len(self._writer_of) % len(self._writers)]
        return writer

    async def write_batches(self, work: list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]
                            ) -> dict[TopicPartition, KafkaError]:
        """Append the planned batches of one response on the partitions' writer threads; failures by partition."""
        shares: dict[ThreadPoolExecutor, list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]] = {}
        for item in work:
            if item[2] is not None:
                shares.setdefault(self.writer_for(item[0].tp), []).append(item)
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(writer, self._write_on_thread, share) for writer, share in shares.items()]
        errors: dict[TopicPartition, KafkaError] = {}
        for future in futures:
            self._track(future)
        for future in futures:  # shielded: a cancelled lane leaves its appends to finish (drain_writes waits)
            errors.update(await asyncio.shield(future))
        return errors

    @staticmethod
    def _write_on_thread(work: list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]
                         ) -> dict[TopicPartition, KafkaError]:
        errors: dict[TopicPartition, KafkaError] = {}
        for rep, fetched, planned in work:
            if planned is None or rep.stopped:  # fenced (failover): nothing more is written
                continue
            records = fetched.records[:planned.end]
            end = rep.log.log_end_offset
            if planned.first_base_offset < end:
                # Fetched again from another leader while the last append was still on this thread.
                records = records[present_batches_end(records, end):]
                if not records:
                    continue
            try:
                # Fenced: refused unless this broker still leads the partition at the replicator's epoch.
                rep.partition.append_replicated(records, end, rep.leader_epoch)
                rep.appended = True
                changed = False
                for epoch, base_offset in planned.epoch_starts:  # the source's epochs, as fetched
                    changed |= rep.source_epochs.assign(epoch, max(base_offset, end))
                if changed:
                    rep.source_epochs.persist()
            except KafkaError as exc:
                errors[rep.tp] = exc
        return errors

    def _track(self, write: asyncio.Future[Any]) -> None:
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    async def drain_writes(self) -> None:
        """Wait for appends already on the writer threads (after fencing, so that none can follow)."""
        while self._writes:
            await asyncio.wait(list(self._writes))

    def on_fetched(self, loop: SourceFetchLoop, rep: PartitionReplicator, fetched: FetchedPartition,
                   planned: PlannedAppend | None, append_error: KafkaError | None = None) -> None:
        link = self.link
        if fetched.error_code:
            if rep.preferred_replica == loop.broker_id:  # the preferred replica cannot serve it: the leader again
                rep.preferred_replica = None
            self._on_error(loop, rep, fetched)
            return
        if 0 <= fetched.preferred_read_replica != loop.broker_id:
            # KIP-392: the leader names a replica in our rack; fetch from it (until it fails, or for
            # PREFERRED_REPLICA_TTL_S, then ask the leader again).
            if rep.preferred_replica is None:
                link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: fetching from source broker "
                                  f"{fetched.preferred_read_replica}, the replica the leader prefers for rack "
                                  f"{link.spec.source.client.rack}")
            rep.preferred_replica = fetched.preferred_read_replica
            rep.preferred_until = time.monotonic() + PREFERRED_REPLICA_TTL_S
            self.detach(rep)
            self.request_reroute()
            return
        rep.source_high_watermark = fetched.high_watermark
        if fetched.log_start_offset >= 0:
            rep.source_log_start_offset = fetched.log_start_offset
        log_ = rep.log
        if append_error is not None:
            link.metrics.errors.labels(link.spec.name, append_error.code.name).inc()
            self.detach(rep)
            if isinstance(append_error, (NotLeaderOrFollower, FencedLeaderEpoch)):
                # Deposed: the write was refused. The new leader replicates on; this replicator is done.
                rep.stopped = True
                rep.set_state(TaskState.STOPPED, f"no longer the leader: {append_error}")
                link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: {append_error}; replication moves to the new leader")
                return
            if isinstance(append_error, KafkaStorageError):
                # The shadow's own disk: the partition waits until it is online again (umbra storage recover).
                rep.set_state(TaskState.FAULTED, f"storage offline: {append_error}")
                rep.waiting_for_storage = True
                link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: {append_error}; replication resumes once the "
                                  f"partition is back online", logging.ERROR)
                self.request_reroute()
            else:
                rep.set_state(TaskState.FAULTED, f"cannot append fetched batches: {append_error}")
            return
        if planned is not None and rep.appended:
            rep.appended = False
            # The high watermark moves as for any leader: to the lowest log end over the in-sync replicas.
            rep.partition.maybe_advance_high_watermark()
            link.broker.notifier.notify(rep.tp)
            rep.last_batch_monotonic = time.monotonic()
            link.metrics.bytes.labels(link.spec.name).inc(planned.end)
            link.metrics.batches.labels(link.spec.name).inc(planned.batches)
        # Follow the source's log start (retention, DeleteRecords); a new shadow partition starts where the
        # source's data does, mid-batch or not. Moving it deletes files: on its writer thread, after its appends.
        start = rep.source_log_start_offset
        if rep.fresh and planned is not None:
            rep.fresh = False
            start = max(planned.first_base_offset, start)
        if log_.log_start_offset < start <= log_.high_watermark and start > rep.start_requested:
            rep.start_requested = start
            self._track(asyncio.get_running_loop().run_in_executor(self.writer_for(rep.tp), _advance_start, rep, start))
        if rep.state is not TaskState.ACTIVE:
            rep.set_state(TaskState.ACTIVE)

    def _on_error(self, loop: SourceFetchLoop, rep: PartitionReplicator, fetched: FetchedPartition) -> None:
        link = self.link
        try:
            code = ErrorCode(fetched.error_code)
        except ValueError:
            code = ErrorCode.UNKNOWN_SERVER_ERROR
        link.metrics.errors.labels(link.spec.name, code.name).inc()
        name = f"{rep.tp[0]}-{rep.tp[1]}"
        error = error_name(fetched.error_code)
        rep.note_error(error, f"source broker {loop.broker_id} answered {error} for {name}")
        if code in _IDENTITY_ERRORS and self.link.capabilities().topic_ids is False:
            rep.suspect, rep.verified = True, False  # maybe recreated: check before fetching on
        if code in (ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH):
            # A new source epoch is a start point: a source whose Fetch has no diverging epoch (v9-v11) can only
            # show a lost tail through OffsetForLeaderEpoch, asked before fetching on.
            rep.verified = False
        if code is ErrorCode.OFFSET_OUT_OF_RANGE:
            self._spawn(self._out_of_range(loop, rep), f"out-of-range-{name}")
            loop.remove(rep.tp)
            return
        rep.set_state(TaskState.LINK_UNAVAILABLE, f"source answered {code.name} for {name}")
        # Out of the fetch session until the next routing pass: an error answered at once must not spin.
        self.detach(rep)
        delay = 0.2 if code in _REROUTE_ERRORS else 1.0
        asyncio.get_running_loop().call_later(delay, self.request_reroute)

    async def _out_of_range(self, loop: SourceFetchLoop, rep: PartitionReplicator) -> None:
        """The source no longer has (or does not yet have) the offset the shadow needs next."""
        link = self.link
        try:
            earliest = (await self.source.list_offsets([rep.tp], EARLIEST))[rep.tp]
            latest = (await self.source.list_offsets([rep.tp], LATEST))[rep.tp]
        except (TimeoutError, ClientError, OSError) as exc:
            rep.set_state(TaskState.LINK_UNAVAILABLE, f"ListOffsets on the source failed: {exc}")
            self.request_reroute()
            return
        if rep.stopped:
            return
        leo = rep.log.log_end_offset
        rep.source_log_start_offset, rep.source_high_watermark = earliest.offset, latest.offset
        if leo > latest.offset:
            # The source is behind the shadow: it lost data, or is another log. The start-point check decides.
            self.link.record_event(f"{rep.tp[0]}-{rep.tp[1]}: the shadow's log ends at {leo}, past the source's "
                                   f"high watermark {latest.offset}; checking where they part", logging.WARNING)
            rep.verified = False
        if leo < earliest.offset:
            # Retention on the source removed data the shadow never got: jump, record the gap, invent nothing.
            rep.gaps += 1
            rep.skipped_records += earliest.offset - leo
            link.metrics.gaps.labels(link.spec.name, rep.tp[0], str(rep.tp[1])).inc()
            log.warning("link %s: %s-%d: the source's log starts at %d, past the shadow's end %d; "
                        "skipping %d records", link.spec.name, rep.tp[0], rep.tp[1], earliest.offset, leo,
                        earliest.offset - leo)
        if rep.tp in self.replicators and self.replicators[rep.tp] is rep:
            rep.source_broker = None
            self.request_reroute()


def _advance_start(rep: PartitionReplicator, offset: int) -> None:
    """On the writer thread: move the shadow partition's log start offset (never after failover fencing)."""
    if rep.stopped:
        return
    try:
        rep.log.advance_log_start_offset(offset)
    except KafkaError as exc:  # moved below it meanwhile (a truncation), or the partition went offline
        log.info("%s-%d: log start offset not moved to %d: %s", rep.tp[0], rep.tp[1], offset, exc)
