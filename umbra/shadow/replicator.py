"""Partition replicators: fetch from the source partition's leader, append at the source's offsets.

One :class:`SourceFetchLoop` per source broker owns a fetcher (one fetch session)
for every shadow partition whose source leader is that broker. Each shadow
partition's state is a :class:`PartitionReplicator`, keyed by (partition,
shadow leader epoch). The bytes of each batch are written verbatim, except the
partition leader epoch; nothing is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from umbra.client.errors import ClientError
from umbra.client.settings import FetchSettings
from umbra.errors import ErrorCode, KafkaError
from umbra.records.batch import iter_batch_headers
from umbra.shadow.state import TaskState

if TYPE_CHECKING:
    from umbra.client.admin import ListedOffset
    from umbra.client.cluster import SourceCluster
    from umbra.client.fetch_response import FetchedPartition
    from umbra.client.fetcher import FetchResult
    from umbra.shadow.link import ShadowLink
    from umbra.storage.log import Log

log = logging.getLogger("umbra.shadow.replicator")

TopicPartition = tuple[str, int]
EARLIEST, LATEST = -2, -1
LAG_PROBE_INTERVAL_S = 1.0
_REROUTE_ERRORS = {ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                   ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.FENCED_LEADER_EPOCH, ErrorCode.UNKNOWN_LEADER_EPOCH,
                   ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.REPLICA_NOT_AVAILABLE, ErrorCode.KAFKA_STORAGE_ERROR,
                   ErrorCode.INCONSISTENT_TOPIC_ID}


class PlannedAppend(NamedTuple):
    end: int  # bytes of complete batches at the start of the record set
    batches: int
    first_base_offset: int
    next_offset: int  # the offset after the last complete batch: where the next fetch starts


def plan_append(fetched: FetchedPartition) -> PlannedAppend | None:
    """Walk the batch headers (no record is decoded) to find the complete batches of a fetched record set."""
    if fetched.error_code or not len(fetched.records):
        return None
    end = batches = 0
    first_base = next_offset = -1
    for header in iter_batch_headers(fetched.records):
        if first_base < 0:
            first_base = header.base_offset
        end = header.position + header.size_in_bytes
        next_offset = header.next_offset
        batches += 1
    return PlannedAppend(end, batches, first_base, next_offset) if batches else None


class PartitionReplicator:
    """What one shadow partition knows about its replication, at one shadow leader epoch."""

    def __init__(self, tp: TopicPartition, log_: Log, leader_epoch: int, source_topic_id: uuid.UUID | None) -> None:
        self.tp = tp
        self.log = log_
        self.leader_epoch = leader_epoch
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
        self.source_broker: int | None = None
        # The fetch offset the next accepted response must answer: where the next append starts.
        self.append_position = -1
        self.appended = False  # set by the writer thread when the last planned append went through

    @property
    def key(self) -> tuple[TopicPartition, int]:
        return self.tp, self.leader_epoch

    @property
    def lag(self) -> int:
        if self.source_high_watermark < 0:
            return 0
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
                "source_broker": self.source_broker}


class SourceFetchLoop:
    """Fetches, over one fetch session, every shadow partition led by one source broker."""

    def __init__(self, engine: ReplicationEngine, broker_id: int) -> None:
        self.engine = engine
        self.broker_id = broker_id
        self.fetcher = engine.source.fetcher_for(broker_id, engine.fetch_settings)
        self.replicators: dict[TopicPartition, PartitionReplicator] = {}
        self.state = TaskState.STARTING
        self.reason = ""
        self._wakeup = asyncio.Event()
        self._backoff = 0.1

    def add(self, rep: PartitionReplicator, offset: int) -> None:
        rep.append_position = offset
        self.replicators[rep.tp] = rep
        rep.source_broker = self.broker_id
        self.fetcher.add_partition(rep.tp, offset, rep.source_topic_id)
        self._wakeup.set()

    def remove(self, tp: TopicPartition) -> None:
        if self.replicators.pop(tp, None) is not None:
            self.fetcher.remove_partition(tp)

    async def run(self) -> None:
        pending: asyncio.Task[FetchResult] | None = None
        try:
            while True:
                if not self.replicators:
                    self.state = TaskState.ACTIVE
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if pending is None:
                    pending = asyncio.ensure_future(self.fetcher.fetch())
                try:
                    result = await pending
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # unreachable source, or anything unexpected: report, back off, go on
                    pending = None
                    if not isinstance(exc, (ClientError, OSError, TimeoutError)):
                        log.exception("link %s: fetch from source broker %d failed", self.engine.link.spec.name,
                                      self.broker_id)
                    self._unavailable(f"source broker {self.broker_id}: {exc or type(exc).__name__}")
                    await asyncio.sleep(self._backoff * random.uniform(0.8, 1.2))
                    self._backoff = min(self._backoff * 2, 5.0)
                    self.engine.request_reroute()
                    continue
                self._backoff = 0.1
                self.state, self.reason = TaskState.ACTIVE, ""
                # Pipelining: the next offsets are known from this response's batch headers, so the next
                # fetch goes out now and the source prepares it while this response is appended.
                work = []
                for tp, fetched in result.partitions.items():
                    rep = self.replicators.get(tp)
                    if rep is None or rep.stopped:
                        continue
                    if fetched.fetch_offset != rep.append_position:
                        continue  # answers a position this partition has since left (re-routed, repositioned)
                    planned = plan_append(fetched)
                    if planned is not None:
                        rep.append_position = planned.next_offset
                        self.fetcher.set_offset(tp, planned.next_offset)
                    work.append((rep, fetched, planned))
                pending = asyncio.ensure_future(self.fetcher.fetch())
                # CRC checks and file writes release the GIL: they run on the link's writer thread while
                # this thread receives the next response.
                try:
                    errors = await self.engine.write_batches(work)
                    for rep, fetched, planned in work:
                        if not rep.stopped and self.replicators.get(rep.tp) is rep:
                            self.engine.on_fetched(self, rep, fetched, planned, errors.get(rep.tp))
                except Exception as exc:  # a bug or a failing disk: never kill the loop; re-route from the logs
                    log.exception("link %s: appending a response from source broker %d failed",
                                  self.engine.link.spec.name, self.broker_id)
                    for rep, _, _ in work:
                        self.remove(rep.tp)
                        rep.source_broker = None
                        rep.set_state(TaskState.LINK_UNAVAILABLE, f"append failed: {exc}")
                    self.engine.request_reroute()
                # Drop every view of this response now: its receive buffer can then take the next one.
                result = work = fetched = rep = planned = None  # type: ignore[assignment]
        finally:
            if pending is not None:
                pending.cancel()

    def _unavailable(self, reason: str) -> None:
        if self.state is not TaskState.LINK_UNAVAILABLE:
            log.warning("link %s: %s", self.engine.link.spec.name, reason)
        self.state, self.reason = TaskState.LINK_UNAVAILABLE, reason
        self.engine.link.metrics.errors.labels(self.engine.link.spec.name, "LINK_UNAVAILABLE").inc()
        for rep in self.replicators.values():
            rep.set_state(TaskState.LINK_UNAVAILABLE, reason)


class ReplicationEngine:
    """Every replicator of one link on this broker, and the fetch loops that feed them."""

    def __init__(self, link: ShadowLink, source: SourceCluster) -> None:
        self.link = link
        self.source = source
        client = link.spec.source.client
        self.fetch_settings: FetchSettings = FetchSettings(client.fetch_max_wait_ms, client.fetch_min_bytes,
                                            client.fetch_max_bytes, client.fetch_partition_max_bytes)
        self.replicators: dict[TopicPartition, PartitionReplicator] = {}
        self.loops: dict[int, tuple[SourceFetchLoop, asyncio.Task[None]]] = {}
        self._reroute = asyncio.Event()
        self._router: asyncio.Task[None] | None = None
        # One writer thread per link: appends stay in order, and the event loop keeps receiving meanwhile.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shadow-{link.spec.name}-writer")
        self._writes: set[asyncio.Future[dict[TopicPartition, KafkaError]]] = set()

    async def start(self) -> None:
        self._router = asyncio.create_task(self._route_loop(), name=f"shadow-{self.link.spec.name}-router")

    async def stop(self) -> None:
        tasks = [task for _, task in self.loops.values()]
        if self._router is not None:
            tasks.append(self._router)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.drain_writes()
        self._writer.shutdown(wait=True)
        self.loops.clear()
        for rep in self.replicators.values():
            rep.stopped = True
            rep.set_state(TaskState.STOPPED)

    # --- membership ----------------------------------------------------
    def ensure(self, tp: TopicPartition, log_: Log, leader_epoch: int, source_topic_id: uuid.UUID | None) -> None:
        rep = self.replicators.get(tp)
        if rep is not None and rep.leader_epoch == leader_epoch and not rep.stopped:
            return
        if rep is not None:
            self._detach(rep)
        self.replicators[tp] = PartitionReplicator(tp, log_, leader_epoch, source_topic_id)
        self.request_reroute()

    def stop_topic(self, topic: str) -> None:
        """Fence every replicator of ``topic``: after this returns, nothing more is written to it."""
        for tp in [tp for tp in self.replicators if tp[0] == topic]:
            rep = self.replicators.pop(tp)
            rep.stopped = True
            rep.set_state(TaskState.STOPPED)
            self._detach(rep)

    def _detach(self, rep: PartitionReplicator) -> None:
        if rep.source_broker is not None and rep.source_broker in self.loops:
            self.loops[rep.source_broker][0].remove(rep.tp)
        rep.source_broker = None

    def request_reroute(self) -> None:
        self._reroute.set()

    # --- routing -------------------------------------------------------
    async def _route_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._reroute.wait(), LAG_PROBE_INTERVAL_S)
            except TimeoutError:
                await self._probe_source_high_watermarks()
                continue
            self._reroute.clear()
            try:
                await self._route()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable source, or anything unexpected: report, back off, go on
                if not isinstance(exc, (ClientError, OSError, TimeoutError)):
                    log.exception("link %s: routing failed", self.link.spec.name)
                reason = f"source metadata unavailable: {exc or type(exc).__name__}"
                for rep in self.replicators.values():
                    if rep.source_broker is None:
                        rep.set_state(TaskState.LINK_UNAVAILABLE, reason)
                await asyncio.sleep(1.0)
                self._reroute.set()
                continue
            await asyncio.sleep(0.5)  # at most two metadata refreshes a second

    async def _probe_source_high_watermarks(self) -> None:
        """Ask the source for its current high watermarks, so status shows the lag between fetches too."""
        tps = [tp for tp, rep in self.replicators.items() if not rep.stopped and rep.positioned]
        if not tps:
            return
        try:
            latest = await self.source.list_offsets(tps, LATEST)
        except Exception:  # a probe only; the fetch loops report unavailability
            return
        for tp, listed in latest.items():
            rep = self.replicators.get(tp)
            if rep is not None and listed.error_code == 0 and listed.offset > rep.source_high_watermark:
                rep.source_high_watermark = listed.offset

    async def _route(self) -> None:
        metadata = await self.source.refresh_metadata()
        unrouted = False
        moving: list[tuple[PartitionReplicator, int]] = []
        for rep in list(self.replicators.values()):
            if rep.stopped:
                continue
            leader = metadata.leader_for(rep.tp)
            if leader is None:
                self._detach(rep)
                rep.set_state(TaskState.LINK_UNAVAILABLE, f"source partition {rep.tp[0]}-{rep.tp[1]} has no leader")
                unrouted = True
            elif rep.source_broker != leader:
                moving.append((rep, leader))
        # New partitions are positioned together: two ListOffsets for all of them, not two per partition.
        await self._position_all([rep for rep, _ in moving if not rep.positioned])
        for rep, leader in moving:
            if not rep.positioned:
                unrouted = True
                continue
            self._detach(rep)
            self._loop_for(leader).add(rep, self._next_fetch_offset(rep))
        if unrouted:
            self._reroute.set()

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
            self._position(rep, first.offset, last.offset, by_time.get(rep.tp))

    def _position(self, rep: PartitionReplicator, earliest: int, latest: int, found: ListedOffset | None) -> None:
        log_ = rep.log
        start_at = self.link.spec.topics.start_at
        rep.source_log_start_offset, rep.source_high_watermark = earliest, latest
        if start_at.kind == "latest" or earliest == latest:
            # Nothing at or above the source's high watermark exists yet, so no batch can straddle it.
            start = latest
            if start > 0:
                log_.restart_at(start)
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
    async def write_batches(self, work: list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]
                            ) -> dict[TopicPartition, KafkaError]:
        """Append the planned batches of one response on the writer thread; failures by partition."""
        if not any(planned is not None for _, _, planned in work):
            return {}
        future = asyncio.get_running_loop().run_in_executor(self._writer, self._write_on_thread, work)
        self._writes.add(future)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._writes.discard(future)
            else:
                future.add_done_callback(self._writes.discard)

    @staticmethod
    def _write_on_thread(work: list[tuple[PartitionReplicator, FetchedPartition, PlannedAppend | None]]
                         ) -> dict[TopicPartition, KafkaError]:
        errors: dict[TopicPartition, KafkaError] = {}
        for rep, fetched, planned in work:
            if planned is None or rep.stopped:  # fenced (failover): nothing more is written
                continue
            try:
                rep.log.append_at_offsets(fetched.records[:planned.end], expected_start_offset=rep.log.log_end_offset,
                                          leader_epoch=rep.leader_epoch)
                rep.appended = True
            except KafkaError as exc:
                errors[rep.tp] = exc
        return errors

    async def drain_writes(self) -> None:
        """Wait for appends already on the writer thread (after fencing, so that none can follow)."""
        while self._writes:
            await asyncio.wait(list(self._writes))

    def on_fetched(self, loop: SourceFetchLoop, rep: PartitionReplicator, fetched: FetchedPartition,
                   planned: PlannedAppend | None, append_error: KafkaError | None = None) -> None:
        link = self.link
        if fetched.error_code:
            self._on_error(loop, rep, fetched)
            return
        rep.source_high_watermark = fetched.high_watermark
        if fetched.log_start_offset >= 0:
            rep.source_log_start_offset = fetched.log_start_offset
        log_ = rep.log
        if append_error is not None:
            rep.set_state(TaskState.FAULTED, f"cannot append fetched batches: {append_error}")
            link.metrics.errors.labels(link.spec.name, append_error.code.name).inc()
            loop.remove(rep.tp)
            return
        if planned is not None and rep.appended:
            rep.appended = False
            log_.high_watermark = log_.log_end_offset
            link.broker.notifier.notify(rep.tp)
            rep.last_batch_monotonic = time.monotonic()
            link.metrics.bytes.labels(link.spec.name).inc(planned.end)
            link.metrics.batches.labels(link.spec.name).inc(planned.batches)
            if rep.fresh:
                # A new shadow partition starts where the source's data does, mid-batch or not.
                rep.fresh = False
                start = max(planned.first_base_offset, rep.source_log_start_offset)
                if log_.log_start_offset < start <= log_.high_watermark:
                    log_.advance_log_start_offset(start)
        source_start = rep.source_log_start_offset
        if log_.log_start_offset < source_start <= log_.high_watermark:
            log_.advance_log_start_offset(source_start)  # follow the source's retention and DeleteRecords
        if rep.state is not TaskState.ACTIVE:
            rep.set_state(TaskState.ACTIVE)

    def _on_error(self, loop: SourceFetchLoop, rep: PartitionReplicator, fetched: FetchedPartition) -> None:
        link = self.link
        try:
            code = ErrorCode(fetched.error_code)
        except ValueError:
            code = ErrorCode.UNKNOWN_SERVER_ERROR
        link.metrics.errors.labels(link.spec.name, code.name).inc()
        if code is ErrorCode.OFFSET_OUT_OF_RANGE:
            asyncio.get_running_loop().create_task(self._out_of_range(loop, rep))
            loop.remove(rep.tp)
            return
        rep.set_state(TaskState.LINK_UNAVAILABLE, f"source answered {code.name} for {rep.tp[0]}-{rep.tp[1]}")
        # Out of the fetch session until the next routing pass: an error answered at once must not spin.
        self._detach(rep)
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
            rep.set_state(TaskState.FAULTED, f"the shadow log ends at {leo}, above the source's high watermark "
                                             f"{latest.offset}: the source lost data or was recreated")
            return
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
