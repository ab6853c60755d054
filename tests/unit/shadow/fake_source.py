"""An in-process fake of the source cluster a shadow link replicates from.

:class:`FakeSource` is the cluster: brokers (ids 1, 2, ...) each leading the partitions it is given (broker 1
by default), each partition a real umbra ``Log`` in a directory of the test's, with the leader epoch it is led
at. A test produces to it, moves its log start (retention, DeleteRecords), makes it lose its tail and move on at
a new leader epoch (a crash, an unclean election), and edits its ACLs.

:class:`FakeSourceClient` stands in for :class:`umbra.client.cluster.SourceCluster`, the client a link builds
through ``ShadowLinkManager.connect_source`` each time it starts. It implements what ``umbra.shadow`` calls:
``refresh_metadata``, ``negotiated_versions``, ``supports``, ``fetcher_for`` (a :class:`FakeFetcher` with the
``BrokerFetcher`` calls the fetch loops make), ``fetch_at``, ``list_offsets``, ``offsets_for_leader_epochs``,
``describe_configs``, ``list_groups``, ``offset_fetch``, ``describe_acls`` and ``close``. Answers follow what
umbra's own handlers answer (``umbra/server/handlers/fetch.py``, ``offsets_admin.py``), at the API versions the
fake is told it negotiated: below Fetch v5 no log start offset, below v9 no leader-epoch fencing, below v12 no
diverging epoch; below Metadata v7 no leader epochs, below v10 no topic ids.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from umbra.client import versions as api
from umbra.client.admin import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AclBinding,
    CommittedOffset,
    ConfigEntry,
    EpochEndOffset,
    GroupListing,
    ListedOffset,
)
from umbra.client.errors import ClientConnectionError
from umbra.client.fetch_response import FetchedPartition
from umbra.client.fetcher import FetchResult
from umbra.client.metadata import ClusterMetadata, PartitionInfo, TopicInfo
from umbra.client.settings import FetchSettings
from umbra.errors import ErrorCode, OffsetOutOfRange
from umbra.records.records import build_batch
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

TopicPartition = tuple[str, int]
_EMPTY = memoryview(b"")

# Versions as a current Kafka negotiates them with umbra's client: leader epochs, diverging epochs, topic ids.
MODERN_VERSIONS: dict[int, int] = {
    api.API_VERSIONS: 3, api.FETCH: 16, api.LIST_OFFSETS: 8, api.METADATA: 12, api.OFFSET_FETCH: 8,
    api.FIND_COORDINATOR: 4, api.LIST_GROUPS: 4, api.DESCRIBE_ACLS: 3, api.DESCRIBE_CONFIGS: 4,
    api.OFFSET_FOR_LEADER_EPOCH: 4}
# Kafka 1.1: fetch sessions and log start offsets, but no leader epochs in Fetch or Metadata, no topic ids and
# no OffsetForLeaderEpoch this client can use: divergence is found by batch CRC.
NO_EPOCH_VERSIONS: dict[int, int] = {
    api.API_VERSIONS: 1, api.FETCH: 7, api.LIST_OFFSETS: 2, api.METADATA: 5, api.OFFSET_FETCH: 3,
    api.FIND_COORDINATOR: 1, api.LIST_GROUPS: 1, api.DESCRIBE_ACLS: 1, api.DESCRIBE_CONFIGS: 1}
# Leader epochs (Fetch v9+, Metadata v7+, OffsetForLeaderEpoch) and topic ids, but Fetch below v12: the source
# fences stale leader epochs but never answers a diverging epoch (KIP-595), so only start-point checks
# (OffsetForLeaderEpoch) can find a divergence.
EPOCHS_WITHOUT_DIVERGING_EPOCH_VERSIONS: dict[int, int] = {**MODERN_VERSIONS, api.FETCH: 11}


@dataclass
class FakePartition:
    log: Log
    leader_epoch: int
    leader: int = 1  # the id of the broker that leads it


@dataclass
class FakePosition:
    """What one Fetch asks for one partition (as the real fetch session holds it)."""

    fetch_offset: int
    topic_id: uuid.UUID | None = None
    current_leader_epoch: int = -1
    last_fetched_epoch: int = -1


class FakeSource:
    """The source cluster: partitions as real Logs, ACLs, and counts of the requests it answered."""

    def __init__(self, directory: Path, *, versions: dict[int, int] | None = None,
                 fence_leader_epochs: bool = True) -> None:
        self.directory = directory
        self.versions = dict(MODERN_VERSIONS if versions is None else versions)
        # False: a Fetch naming a stale current_leader_epoch is answered anyway (its KIP-595 check still runs).
        self.fence_leader_epochs = fence_leader_epochs
        self.partitions: dict[TopicPartition, FakePartition] = {}
        self.topic_ids: dict[str, uuid.UUID] = {}
        self.acls: list[AclBinding] = []
        self.calls: Counter[str] = Counter()  # API name -> requests answered
        self.fetches: list[dict[TopicPartition, int]] = []  # the offsets of every replication Fetch, in order
        # What each answered: partition -> (fetch offset, bytes of records), in order.
        self.answered: list[dict[TopicPartition, tuple[int, int]]] = []
        self.clients: list[FakeSourceClient] = []
        # The round trip the fetchers report (None: not measured), as if the source were that far away.
        self.round_trip_s: float | None = None
        self._changed = asyncio.Event()

    # --- what a test does to the source ---------------------------------------------------------
    def create_topic(self, name: str, partitions: int, leader_epoch: int = 0, leaders: tuple[int, ...] = ()
                     ) -> None:
        """``leaders[p]`` leads partition ``p`` (broker 1 where not given)."""
        self.topic_ids[name] = uuid.uuid4()
        for p in range(partitions):
            log = Log.open(self.directory / f"{name}-{p}", name, p, LogConfig())
            self.partitions[(name, p)] = FakePartition(log, leader_epoch, leaders[p] if p < len(leaders) else 1)
        self.notify()

    @property
    def brokers(self) -> list[int]:
        return sorted({1} | {part.leader for part in self.partitions.values()})

    def produce(self, topic: str, partition: int, values: list[bytes], *, per_batch: int = 2) -> int:
        """Append ``values`` as the leader would, ``per_batch`` records a batch; returns the first offset."""
        part = self.partitions[(topic, partition)]
        first = part.log.log_end_offset
        now = int(time.time() * 1000)
        for i in range(0, len(values), per_batch):
            chunk = values[i:i + per_batch]
            batch = build_batch([(b"k", v, [], now + j) for j, v in enumerate(chunk)])
            part.log.append_as_leader(batch, leader_epoch=part.leader_epoch, now_ms=now)
        part.log.high_watermark = part.log.log_end_offset  # a single replica: acknowledged at once
        self.notify()
        return first

    def delete_records(self, tp: TopicPartition, offset: int) -> None:
        """Retention or DeleteRecords: offsets below ``offset`` are gone."""
        self.partitions[tp].log.advance_log_start_offset(offset)
        self.notify()

    def lose_tail(self, tp: TopicPartition, offset: int) -> None:
        """The leader lost everything from ``offset`` (an unflushed tail, an unclean election); a new leader
        epoch begins, as at every election."""
        part = self.partitions[tp]
        part.log.truncate_to(offset)
        part.log.high_watermark = part.log.log_end_offset
        part.leader_epoch += 1
        self.notify()

    def log(self, tp: TopicPartition) -> Log:
        return self.partitions[tp].log

    def notify(self) -> None:
        """Wake every long-polling Fetch (as an append does on a real broker)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def connect(self, spec: Any) -> FakeSourceClient:
        """``ShadowLinkManager.connect_source``: a new client for each time a link starts."""
        client = FakeSourceClient(self)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for part in self.partitions.values():
            part.log.close()

    # --- answers, as umbra's handlers give them ----------------------------------------------------
    def answer_fetch(self, tp: TopicPartition, position: FakePosition, max_bytes: int, version: int,
                     broker_id: int | None = None) -> FetchedPartition:
        """The answer of broker ``broker_id`` (None: the partition's leader) for one partition of a Fetch."""
        part = self.partitions.get(tp)
        if part is None or broker_id not in (None, part.leader):
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if part is None else ErrorCode.NOT_LEADER_OR_FOLLOWER
            return FetchedPartition(tp[0], None, tp[1], int(code), -1, -1, -1, _EMPTY,
                                    fetch_offset=position.fetch_offset)
        log = part.log
        answer = FetchedPartition(tp[0], None, tp[1], 0, log.high_watermark, log.high_watermark,
                                  log.log_start_offset if version >= api.FETCH_LOG_START_OFFSET else -1, _EMPTY,
                                  fetch_offset=position.fetch_offset)
        asked_epoch = position.current_leader_epoch
        if self.fence_leader_epochs and version >= api.FETCH_LEADER_EPOCH and 0 <= asked_epoch != part.leader_epoch:
            answer.error_code = int(ErrorCode.FENCED_LEADER_EPOCH if asked_epoch < part.leader_epoch
                                    else ErrorCode.UNKNOWN_LEADER_EPOCH)
            return answer
        if version >= api.FETCH_DIVERGING_EPOCH and position.last_fetched_epoch >= 0:
            end_epoch, end_offset = log.end_offset_for_leader_epoch(position.last_fetched_epoch, part.leader_epoch)
            if end_epoch >= 0 and (end_epoch < position.last_fetched_epoch or end_offset < position.fetch_offset):
                answer.diverging_epoch = (end_epoch, end_offset)
                return answer
        try:
            records = log.read(position.fetch_offset, max_bytes, max_offset=log.high_watermark)
        except OffsetOutOfRange:
            answer.error_code = int(ErrorCode.OFFSET_OUT_OF_RANGE)
            return answer
        answer.records = memoryview(bytes(records))
        return answer

    def list_offset(self, tp: TopicPartition, timestamp: int) -> ListedOffset:
        part = self.partitions.get(tp)
        if part is None:
            return ListedOffset(int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), -1, -1, -1)
        log = part.log
        if timestamp == LATEST_TIMESTAMP:
            return ListedOffset(0, log.high_watermark, -1, part.leader_epoch)
        if timestamp == EARLIEST_TIMESTAMP:
            return ListedOffset(0, log.log_start_offset, -1, part.leader_epoch)
        found = log.offset_for_timestamp(timestamp)
        offset, at = found if found is not None else (-1, -1)
        return ListedOffset(0, offset, at, part.leader_epoch)

    def metadata(self) -> ClusterMetadata:
        with_epochs = self.versions[api.METADATA] >= api.METADATA_LEADER_EPOCH
        with_ids = self.versions[api.METADATA] >= api.METADATA_TOPIC_IDS
        partitions: dict[str, dict[int, PartitionInfo]] = {}
        for (topic, p), part in self.partitions.items():
            partitions.setdefault(topic, {})[p] = PartitionInfo(
                part.leader, part.leader_epoch if with_epochs else -1, (part.leader,))
        topics = {name: TopicInfo(name, self.topic_ids[name] if with_ids else None, MappingProxyType(parts))
                  for name, parts in partitions.items()}
        brokers = {broker_id: (f"fake-source-{broker_id}", 9092) for broker_id in self.brokers}
        return ClusterMetadata("fake-source", 1, MappingProxyType(brokers), MappingProxyType(topics))

    async def changed(self, timeout_s: float) -> None:
        """Return at the next change, or after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass


class FakeSourceClient:
    """What a link sees of the fake source: the calls ``umbra.shadow`` makes on a ``SourceCluster``."""

    def __init__(self, source: FakeSource) -> None:
        self.source = source
        self.closed = False
        self.fetchers: list[FakeFetcher] = []
        self._metadata = ClusterMetadata()

    def _request(self, api_key: int) -> int:
        if self.closed:
            raise ClientConnectionError("the source cluster client is closed")
        self.source.calls[api.API_NAMES[api_key]] += 1
        return self.source.versions[api_key]

    @property
    def metadata(self) -> ClusterMetadata:
        return self._metadata

    def negotiated_versions(self) -> dict[str, dict[int, int]]:
        return {str(broker_id): dict(self.source.versions) for broker_id in self.source.brokers}

    async def supports(self, api_key: int) -> bool:
        return api_key in self.source.versions

    async def refresh_metadata(self, topics: Any = None) -> ClusterMetadata:
        self._request(api.METADATA)
        self._metadata = self.source.metadata()
        return self._metadata

    def fetcher_for(self, broker_id: int, settings: FetchSettings | None = None) -> FakeFetcher:
        fetcher = FakeFetcher(self, broker_id, settings or FetchSettings())
        self.fetchers.append(fetcher)
        return fetcher

    async def fetch_at(self, offsets: dict[TopicPartition, int], partition_max_bytes: int
                       ) -> dict[TopicPartition, FetchedPartition]:
        version = self._request(api.FETCH)
        return {tp: self.source.answer_fetch(tp, FakePosition(offset, None, self._metadata.leader_epoch_for(tp)),
                                             partition_max_bytes, version)
                for tp, offset in offsets.items() if tp in self.source.partitions}

    async def list_offsets(self, tps: Any, timestamp: int) -> dict[TopicPartition, ListedOffset]:
        self._request(api.LIST_OFFSETS)
        return {tp: self.source.list_offset(tp, timestamp) for tp in tps}

    async def offsets_for_leader_epochs(self, epochs: dict[TopicPartition, int]
                                        ) -> dict[TopicPartition, EpochEndOffset]:
        self._request(api.OFFSET_FOR_LEADER_EPOCH)
        result = {}
        for tp, epoch in epochs.items():
            part = self.source.partitions.get(tp)
            if part is None:
                result[tp] = EpochEndOffset(int(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION), -1, -1)
            else:
                result[tp] = EpochEndOffset(0, *part.log.end_offset_for_leader_epoch(epoch, part.leader_epoch))
        return result

    async def describe_configs(self, topics: Any, *, include_defaults: bool = False
                               ) -> dict[str, dict[str, ConfigEntry]]:
        self._request(api.DESCRIBE_CONFIGS)
        return {}

    async def list_groups(self) -> list[GroupListing]:
        self._request(api.LIST_GROUPS)
        return []

    async def offset_fetch(self, group: str, tps: Any) -> dict[TopicPartition, CommittedOffset]:
        self._request(api.OFFSET_FETCH)
        return {}

    async def describe_acls(self, acl_filter: Any = None) -> list[AclBinding]:
        self._request(api.DESCRIBE_ACLS)
        return list(self.source.acls)

    def sibling(self) -> FakeFetcher:
        return self.client.fetcher_for(self.broker_id, self.settings)

    async def close(self) -> None:
        self.closed = True


class FakeFetcher:
    """``BrokerFetcher`` against the fake: each Fetch is a full one over a granted session, long-polling up
    to ``fetch_max_wait_ms`` until some partition has data, an error or a diverging epoch."""

    def __init__(self, client: FakeSourceClient, broker_id: int, settings: FetchSettings) -> None:
        self.client = client
        self.broker_id = broker_id
        self.settings = settings
        self.positions: dict[TopicPartition, FakePosition] = {}
        self.sessions_granted: bool | None = None
        self.version: int | None = None
        self.probe_round_trip = False
        self.closed = False
        self.records_fetched = 0  # bytes of records this fetcher's Fetches were answered

    @property
    def round_trip_s(self) -> float | None:
        """What a BrokerFetcher's probe would measure: the source's ``round_trip_s``."""
        return self.client.source.round_trip_s

    def sibling(self) -> FakeFetcher:
        return self.client.fetcher_for(self.broker_id, self.settings)

    async def close(self) -> None:
        self.closed = True

    def add_partition(self, tp: TopicPartition, fetch_offset: int, topic_id: uuid.UUID | None = None,
                      current_leader_epoch: int = -1, last_fetched_epoch: int = -1) -> None:
        self.positions[tp] = FakePosition(fetch_offset, topic_id, current_leader_epoch, last_fetched_epoch)

    def remove_partition(self, tp: TopicPartition) -> None:
        self.positions.pop(tp, None)

    def set_offset(self, tp: TopicPartition, offset: int, last_fetched_epoch: int | None = None) -> None:
        position = self.positions[tp]
        position.fetch_offset = offset
        if last_fetched_epoch is not None:
            position.last_fetched_epoch = last_fetched_epoch

    def set_leader_epoch(self, tp: TopicPartition, current_leader_epoch: int) -> None:
        self.positions[tp].current_leader_epoch = current_leader_epoch

    def fetch_offset(self, tp: TopicPartition) -> int:
        return self.positions[tp].fetch_offset

    @property
    def partitions(self) -> list[TopicPartition]:
        return list(self.positions)

    async def fetch(self) -> FetchResult:
        source = self.client.source
        version = self.client._request(api.FETCH)
        # The request: the positions as they are now; later changes go into the next request.
        asked = {tp: FakePosition(p.fetch_offset, p.topic_id, p.current_leader_epoch, p.last_fetched_epoch)
                 for tp, p in self.positions.items()}
        source.fetches.append({tp: p.fetch_offset for tp, p in asked.items()})
        deadline = time.monotonic() + self.settings.fetch_max_wait_ms / 1000
        while True:
            answers = {tp: source.answer_fetch(tp, p, self.settings.fetch_partition_max_bytes, version,
                                               self.broker_id)
                       for tp, p in asked.items()}
            ready = any(len(a.records) or a.error_code or a.diverging_epoch is not None for a in answers.values())
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0:
                break
            await source.changed(remaining)
            if self.client.closed:
                raise ClientConnectionError("the source cluster client is closed")
        source.answered.append({tp: (a.fetch_offset, len(a.records)) for tp, a in answers.items()})
        self.records_fetched += sum(len(a.records) for a in answers.values())
        self.version = version
        self.sessions_granted = version >= api.FETCH_SESSIONS
        return FetchResult(answers, {tp: p.fetch_offset for tp, p in asked.items()}, 1, 0, 0, version)
