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
from typing import TYPE_CHECKING, Any, NamedTuple

from umbra.client.errors import ClientError, ClientResponseError
from umbra.errors import ErrorCode
from umbra.records.batch import iter_batch_headers
from umbra.shadow.divergence import open_source_epochs
from umbra.shadow.state import TaskState

if TYPE_CHECKING:
    from umbra.client.fetch_response import FetchedPartition
    from umbra.client.fetcher import FetchResult
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
                "source_broker": self.source_broker, "source_leader_epoch": self.source_leader_epoch,
                "source_leader_changes": self.leader_changes, "source_errors": dict(self.source_errors),
                "last_source_error": self.last_source_error, "start_point_check": self.start_point_check,
                "truncations": self.truncations, "truncated_records": self.truncated_records,
                "last_truncation": self.last_truncation}

    def note_error(self, code: str, detail: str) -> None:
        self.source_errors[code] += 1
        self.last_source_error = detail


class SourceFetchLoop:
    """Fetches, over one fetch session, every shadow partition led by one source broker."""

    def __init__(self, engine: ReplicationEngine, broker_id: int) -> None:
        self.engine = engine
        self.broker_id = broker_id
        self.fetcher = engine.source.fetcher_for(broker_id, engine.fetch_settings)
        self.replicators: dict[TopicPartition, PartitionReplicator] = {}
        self.state = TaskState.STARTING
        self.reason = ""
        self.errors: Counter[str] = Counter()
        self._wakeup = asyncio.Event()
        self._backoff = 0.1

    def add(self, rep: PartitionReplicator, offset: int) -> None:
        rep.append_position = offset
        self.replicators[rep.tp] = rep
        rep.source_broker = self.broker_id
        self.fetcher.add_partition(rep.tp, offset, rep.source_topic_id, rep.source_leader_epoch,
                                   rep.source_epochs.latest_epoch)
        self._wakeup.set()

    def remove(self, tp: TopicPartition) -> None:
        if self.replicators.pop(tp, None) is not None:
            self.fetcher.remove_partition(tp)

    async def run(self) -> None:
        pending: asyncio.Task[FetchResult] | None = None
        try:
            while True:
                if not self.replicators:  # the state stays what the last fetch made it
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if pending is None:
                    pending = asyncio.ensure_future(self.fetcher.fetch())
                try:
                    result = await pending
                except (ClientError, OSError, TimeoutError) as exc:  # an unreachable or refusing source
                    pending = None
                    await self._fetch_failed(exc)
                    continue
                except Exception as exc:  # a bug: the one place it is logged with its traceback; the loop goes on
                    pending = None
                    log.exception("link %s: fetch from source broker %d failed", self.engine.link.spec.name,
                                  self.broker_id)
                    await self._fetch_failed(exc)
                    continue
                self._backoff = 0.1
                if self.state is TaskState.LINK_UNAVAILABLE:
                    self.engine.link.record_event(f"source broker {self.broker_id} answers again")
                self.state, self.reason = TaskState.ACTIVE, ""
                # Pipelining: the next offsets are known from this response's batch headers, so the next
                # fetch goes out now and the source prepares it while this response is appended.
                work = []
                for tp, fetched in result.partitions.items():
                    rep = self.replicators.get(tp)
                    if rep is None or rep.stopped:
                        if fetched.error_code:  # answers a request sent before the partition left: count it
                            self.engine.note_late_error(tp, self.broker_id, fetched.error_code)
                        continue
                    if fetched.fetch_offset != rep.append_position:
                        continue  # answers a position this partition has since left (re-routed, repositioned)
                    if fetched.diverging_epoch is not None:  # KIP-595: the source's log parts from ours
                        self.engine.on_diverging(rep, *fetched.diverging_epoch)
                        continue
                    planned = plan_append(fetched)
                    if planned is not None:
                        rep.append_position = planned.next_offset
                        self.fetcher.set_offset(tp, planned.next_offset, planned.last_epoch)
                    work.append((rep, fetched, planned))
                pending = asyncio.ensure_future(self.fetcher.fetch())
                # CRC checks and file writes release the GIL: they run on the link's writer thread while
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
                result = work = fetched = rep = planned = None  # type: ignore[assignment]
        finally:
            if pending is not None:
                pending.cancel()

    async def _fetch_failed(self, exc: Exception) -> None:
        """Report, back off (0.1 s doubling to 5 s, jittered), and have the partitions re-routed."""
        code = exc.code.name if isinstance(exc, ClientResponseError) and isinstance(exc.code, ErrorCode) \
            else type(exc).__name__
        self.errors[code] += 1
        self._unavailable(f"source broker {self.broker_id}: {exc or type(exc).__name__}")
        await asyncio.sleep(self._backoff * random.uniform(0.8, 1.2))
        self._backoff = min(self._backoff * 2, 5.0)
        self.engine.request_reroute()

    def _unavailable(self, reason: str) -> None:
        if self.state is not TaskState.LINK_UNAVAILABLE:
            self.engine.link.record_event(reason, logging.WARNING)
        self.state, self.reason = TaskState.LINK_UNAVAILABLE, reason
        self.engine.link.metrics.errors.labels(self.engine.link.spec.name, "LINK_UNAVAILABLE").inc()
        for rep in self.replicators.values():
            rep.set_state(TaskState.LINK_UNAVAILABLE, reason)

    def status(self) -> dict[str, Any]:
        return {"task": f"fetch-from-source-broker-{self.broker_id}", "state": str(self.state),
                "reason": self.reason, "partitions": len(self.replicators), "errors": dict(self.errors),
                "fetch_version": self.fetcher.version, "fetch_sessions": self.fetcher.sessions_granted}
