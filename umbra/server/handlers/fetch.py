"""Fetch (1): long-polling reads of whole batches, with fetch sessions.

A fetch answers at once when it has ``min_bytes`` of data, an error, or
``max_wait_ms`` is 0; otherwise it waits for an append to one of its
partitions, up to ``max_wait_ms``. The first partition with data returns at
least one whole batch even when that is larger than ``max_bytes``; the batch
containing the fetch offset is returned whole.

With ``fetch_sendfile`` on, large record sets are ``FileRegion``s (sent by the
connection with ``os.sendfile``). They hold file descriptors: this handler closes
those of reads it discards, and hands the rest to the connection in the response.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from umbra.errors import ErrorCode, KafkaError
from umbra.protocol.fetch_codec import FetchPartitionData, FetchTopicData, Piece, encode_fetch_response
from umbra.security.acls import AclOperation
from umbra.server.fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH, FetchSession, SessionPartition
from umbra.server.handlers import RequestContext, handles
from umbra.storage.region import close_regions, record_set_size

TopicPartition = tuple[str, int]
_ZERO_UUID = uuid.UUID(int=0)


def _read_partition(ctx: RequestContext, tp: TopicPartition, state: SessionPartition, max_bytes: int,
                    leader_epoch: int, last_fetched_epoch: int, min_one: bool, replica_id: int = -1) -> dict[str, Any]:
    """One partition of a fetch. A consumer (``replica_id`` -1) reads up to the high watermark; a follower
    (its broker id) reads up to the log end, and its fetch offset tells the leader what it holds (the ISR)."""
    broker = ctx.broker
    entry: dict[str, Any] = {"partition_index": tp[1], "error_code": 0, "high_watermark": -1,
                             "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
                             "preferred_read_replica": -1, "records": b"", "size": 0, "diverging_epoch": None}
    try:
        partition = broker.replicas.leader_partition(tp[0], tp[1], leader_epoch)
        log = partition.log
        entry["high_watermark"] = log.high_watermark
        entry["last_stable_offset"] = log.last_stable_offset
        entry["log_start_offset"] = log.log_start_offset
        if last_fetched_epoch >= 0:
            # KIP-595: a fetcher whose last epoch ended earlier here than where it fetches has diverged. It is
            # told where that epoch ends, and gets no records until it truncated to there. A diverged follower's
            # fetch offset is not what it holds in common with the leader: it does not count for the ISR.
            end_epoch, end_offset = log.end_offset_for_leader_epoch(last_fetched_epoch, partition.leader_epoch)
            if end_epoch >= 0 and (end_epoch < last_fetched_epoch or end_offset < state.fetch_offset):
                entry["diverging_epoch"] = (end_epoch, end_offset)
                return entry
        if replica_id >= 0:
            partition.record_follower_fetch(replica_id, state.fetch_offset, int(time.time() * 1000))
            entry["high_watermark"] = log.high_watermark  # it may have moved with this fetch
        if max_bytes > 0 or min_one:
            records = log.read(state.fetch_offset, max(max_bytes, 0),
                               max_offset=log.high_watermark if replica_id < 0 else None,
                               min_one_batch=min_one, regions_ok=broker.config.fetch_sendfile)
            entry["records"] = records
            entry["size"] = record_set_size(records)
    except KafkaError as exc:
        entry["error_code"] = int(exc.code)
        if exc.code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH):
            # KIP-951: say who leads now, so the client need not ask Metadata first.
            held = broker.replicas.state(*tp)
            entry["current_leader"] = (held.leader, held.leader_epoch)
    return entry


def _denied_partition(tp: TopicPartition) -> dict[str, Any]:
    return {"partition_index": tp[1], "error_code": int(ErrorCode.TOPIC_AUTHORIZATION_FAILED), "high_watermark": -1,
            "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
            "preferred_read_replica": -1, "records": b"", "size": 0, "diverging_epoch": None}


def _changed(state: SessionPartition, entry: dict[str, Any]) -> bool:
    return bool(entry["size"] > 0) or entry["error_code"] != 0 or entry["diverging_epoch"] is not None or (
        entry["high_watermark"] != state.sent_high_watermark
        or entry["log_start_offset"] != state.sent_log_start_offset
        or entry["last_stable_offset"] != state.sent_last_stable_offset)


class _FetchPlan:
    """The partitions one fetch reads, in order, with their positions (from the request or its session)."""

    def __init__(self, ctx: RequestContext, request: Any) -> None:
        self.ctx = ctx
        self.version = ctx.api_version
        self.errors: list[tuple[TopicPartition, Any, int]] = []
        self.epochs: dict[TopicPartition, int] = {}
        self.last_fetched_epochs: dict[TopicPartition, int] = {}
        self.session: FetchSession | None = None
        self.incremental = False
        # A follower names its broker id (v15+: in replica_state); consumers send -1.
        replica_state = getattr(request, "replica_state", None) if self.version >= 15 else None
        self.replica_id = int(getattr(replica_state if replica_state is not None else request, "replica_id", -1))
        self.partitions: dict[TopicPartition, SessionPartition] = {}
        self._build(request)
        self.denied = self._denied_topics()

    def _topic_name(self, topic: Any) -> tuple[str | None, Any]:
        if self.version >= 13:
            meta = self.ctx.broker.metadata.topic_by_id(topic.topic_id)
            return (meta.name if meta else None), topic.topic_id
        return topic.topic, None

    def _build(self, request: Any) -> None:
        sessions = self.ctx.broker.fetch_sessions
        session_id = request.session_id if self.version >= 7 else 0
        epoch = request.session_epoch if self.version >= 7 else FINAL_EPOCH
        requested: dict[TopicPartition, SessionPartition] = {}
        for topic in request.topics:
            name, topic_id = self._topic_name(topic)
            for p in topic.partitions:
                if name is None:
                    self.errors.append(((str(topic_id), p.partition), topic_id, int(ErrorCode.UNKNOWN_TOPIC_ID)))
                    continue
                tp = (name, p.partition)
                requested[tp] = SessionPartition(p.fetch_offset, p.partition_max_bytes, topic_id)
                if self.version >= 9:
                    self.epochs[tp] = p.current_leader_epoch
                if self.version >= 12 and p.last_fetched_epoch >= 0:
                    self.last_fetched_epochs[tp] = p.last_fetched_epoch
        if epoch == FINAL_EPOCH:
            if session_id:
                sessions.remove(session_id)
            self.partitions = requested
            return
        if epoch == INITIAL_EPOCH:
            if session_id:
                sessions.remove(session_id)
            self.session = sessions.create()
            self.session.partitions.update(requested)
            self.partitions = self.session.partitions
            return
        self.session = sessions.get(session_id, epoch)
        self.incremental = True
        for forgotten in request.forgotten_topics_data or []:
            name = forgotten.topic
            if self.version >= 13:
                meta = self.ctx.broker.metadata.topic_by_id(forgotten.topic_id)
                if meta is None:
                    continue
                name = meta.name
            for p in forgotten.partitions:
                self.session.partitions.pop((name, p), None)
        for tp, state in requested.items():
            old = self.session.partitions.get(tp)
            if old is not None:
                old.fetch_offset, old.max_bytes, old.topic_id = state.fetch_offset, state.max_bytes, state.topic_id
            else:
                self.session.partitions[tp] = state
        self.partitions = self.session.partitions

    def _denied_topics(self) -> frozenset[str]:
        """Authorize: a consumer needs READ on each topic; a follower CLUSTER_ACTION on the cluster, without
        which (as in Kafka) every partition it asks for is TOPIC_AUTHORIZATION_FAILED."""
        topics = (tp[0] for tp in self.partitions)
        if self.replica_id >= 0:
            return frozenset() if self.ctx.authorized_cluster(AclOperation.CLUSTER_ACTION) else frozenset(topics)
        return self.ctx.denied_topics(AclOperation.READ, topics)

    def read(self, max_bytes: int) -> tuple[list[tuple[TopicPartition, SessionPartition, dict[str, Any]]], int]:
        results: list[tuple[TopicPartition, SessionPartition, dict[str, Any]]] = []
        remaining = max_bytes
        total = 0
        try:
            for tp, state in self.partitions.items():
                if self.denied and tp[0] in self.denied:
                    results.append((tp, state, _denied_partition(tp)))
                    continue
                entry = _read_partition(self.ctx, tp, state, min(state.max_bytes, remaining),
                                        self.epochs.get(tp, -1), self.last_fetched_epochs.get(tp, -1),
                                        min_one=(total == 0), replica_id=self.replica_id)
                size = entry["size"]
                total += size
                remaining -= size
                results.append((tp, state, entry))
        except BaseException:
            _close_results(results)
            raise
        return results, total


def _close_results(results: list[tuple[TopicPartition, SessionPartition, dict[str, Any]]]) -> None:
    for _, _, entry in results:
        close_regions(entry["records"])


def _has_errors(results: list[tuple[TopicPartition, SessionPartition, dict[str, Any]]]) -> bool:
    """Anything to answer at once: an error, or a divergence the fetcher must act on."""
    return any(entry["error_code"] or entry["diverging_epoch"] is not None for _, _, entry in results)


@handles(1, "Fetch", 4, 17)
async def handle_fetch(ctx: RequestContext, request: Any) -> dict[str, Any] | list[Piece]:
    broker = ctx.broker
    version = ctx.api_version
    try:
        plan = _FetchPlan(ctx, request)
    except KafkaError as exc:
        return {"throttle_time_ms": 0, "error_code": int(exc.code), "session_id": 0, "responses": []}
    max_bytes = request.max_bytes if version >= 3 else 2**31 - 1
    deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
    while True:
        results, total = plan.read(max_bytes)
        remaining = deadline - time.monotonic()
        if total >= request.min_bytes or remaining <= 0 or _has_errors(results) or plan.errors or not results:
            break
        _close_results(results)
        await broker.notifier.wait(plan.partitions.keys(), remaining)
    try:
        return _respond(ctx, plan, results)
    except BaseException:
        _close_results(results)
        raise


def _respond(ctx: RequestContext, plan: _FetchPlan,
             results: list[tuple[TopicPartition, SessionPartition, dict[str, Any]]]) -> list[Piece]:
    broker = ctx.broker
    topics: dict[str, FetchTopicData] = {}
    sent_data: list[TopicPartition] = []
    for tp, state, entry in results:
        if plan.incremental and not _changed(state, entry):
            continue
        state.sent_high_watermark = entry["high_watermark"]
        state.sent_log_start_offset = entry["log_start_offset"]
        state.sent_last_stable_offset = entry["last_stable_offset"]
        records = entry["records"]
        if entry["size"]:
            sent_data.append(tp)
            broker.metrics.fetched_bytes.inc(entry["size"])
        topic = topics.get(tp[0])
        if topic is None:
            topic_id = state.topic_id if isinstance(state.topic_id, uuid.UUID) else _ZERO_UUID
            topic = topics[tp[0]] = FetchTopicData(tp[0], topic_id, [])
        topic.partitions.append(FetchPartitionData(tp[1], entry["error_code"], entry["high_watermark"],
                                                   entry["last_stable_offset"], entry["log_start_offset"], records,
                                                   entry["diverging_epoch"], entry.get("current_leader")))
    for (name, partition), topic_id, code in plan.errors:
        topic = topics.get(name)
        if topic is None:
            topic = topics[name] = FetchTopicData(name, topic_id or _ZERO_UUID, [])
        topic.partitions.append(FetchPartitionData(partition, code, -1, -1, -1, b""))
    if plan.session is not None:
        # Partitions that just got data go to the back, so a byte budget cannot starve the others.
        for tp in sent_data:
            plan.session.partitions.move_to_end(tp)
        if plan.incremental:
            plan.session.next_epoch()
    session_id = plan.session.session_id if plan.session else 0
    return encode_fetch_response(ctx.api_version, ctx.header.correlation_id, 0, 0, session_id,
                                 list(topics.values()))

