"""The follower side of replication: one fetch loop per leader broker, for the partitions this broker follows.

A follower fetches like a consumer but with its broker id as ``replica_id``, so the leader reads up to its log
end and counts the fetch offset as the follower's log end (the ISR). Fetched batches are appended at their
offsets with the leader's epochs kept. Each fetch names the epoch of the follower's last batch
(``last_fetched_epoch``); a leader whose log diverged there answers ``diverging_epoch`` (KIP-595), and the
follower truncates to where that epoch ends before fetching on: a deposed leader's records that never reached
the ISR are dropped this way (KIP-101, KIP-279). The follower's high watermark is the leader's, capped at its
own log end.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from umbra.client import versions as api
from umbra.client.connection import BrokerConnection
from umbra.client.errors import ClientError
from umbra.client.fetch_response import decode_fetch_response
from umbra.client.fetch_session import PartitionPosition, sessionless_plan
from umbra.client.fetcher import fetch_request_fields, name_fetched_partitions
from umbra.client.messages import response_header_size
from umbra.client.settings import ConnectionSettings, FetchSettings
from umbra.errors import ErrorCode, KafkaError
from umbra.storage.log import Log, LogEndOffsetMismatch
from umbra.tasks import cancel_and_wait

log = logging.getLogger("umbra.replication")

FETCH_VERSION = 12  # last_fetched_epoch and diverging_epoch; topics by name
SETTINGS = FetchSettings(fetch_max_wait_ms=500, fetch_min_bytes=1, fetch_max_bytes=16 << 20,
                         fetch_partition_max_bytes=4 << 20)
CONNECTION = ConnectionSettings(client_id="umbra-replica-fetcher", connect_timeout_s=5.0, request_timeout_s=10.0)
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Followed:
    """A partition this broker follows: its leader and the epoch it leads at."""

    leader: int
    leader_epoch: int
    topic_id: uuid.UUID | None


class ReplicaFetchers:
    """Every fetch loop of this broker (one per leader), re-planned whenever the cluster's assignments change."""

    def __init__(self, node_id: int, address_of: Callable[[int], tuple[str, int] | None],
                 open_log: Callable[[str, int], Log], on_appended: Callable[[TopicPartition], None],
                 connection: ConnectionSettings = CONNECTION) -> None:
        self.node_id = node_id
        self._address_of = address_of
        self.connection = connection  # TLS and SASL of the inter-broker listener, when it has them
        self._open_log = open_log
        self._on_appended = on_appended
        self._loops: dict[int, _LeaderLoop] = {}

    def update(self, followed: dict[TopicPartition, Followed]) -> None:
        by_leader: dict[int, dict[TopicPartition, Followed]] = {}
        for tp, entry in followed.items():
            by_leader.setdefault(entry.leader, {})[tp] = entry
        for leader in list(self._loops):
            if leader not in by_leader:
                self._loops.pop(leader).stop()
        for leader, partitions in by_leader.items():
            loop = self._loops.get(leader)
            if loop is None:
                loop = self._loops[leader] = _LeaderLoop(self, leader)
            loop.partitions = partitions

    def followed(self) -> dict[TopicPartition, Followed]:
        return {tp: entry for loop in self._loops.values() for tp, entry in loop.partitions.items()}

    async def stop(self) -> None:
        loops, self._loops = list(self._loops.values()), {}
        await cancel_and_wait([loop.task for loop in loops])


class _LeaderLoop:
    def __init__(self, owner: ReplicaFetchers, leader: int) -> None:
        self.owner = owner
        self.leader = leader
        self.partitions: dict[TopicPartition, Followed] = {}
        self._connection: BrokerConnection | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"replica-fetcher-{leader}")

    def stop(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        backoff = 0.1
        try:
            while True:
                try:
                    await self._fetch_once()
                    backoff = 0.1
                except (ClientError, OSError, TimeoutError) as exc:
                    log.info("fetching from leader %d: %s; retrying in %.1fs", self.leader, exc, backoff)
                    await self._close()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
        finally:
            await self._close()

    async def _close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def _connect(self) -> BrokerConnection:
        if self._connection is None:
            address = self.owner._address_of(self.leader)
            if address is None:
                raise ClientError(f"leader {self.leader} is not registered (or not alive)")
            connection = BrokerConnection(*address, self.owner.connection, node_id=self.leader)
            await connection.connect()
            self._connection = connection
        return self._connection

    async def _fetch_once(self) -> None:
        partitions = dict(self.partitions)
        if not partitions:
            await asyncio.sleep(0.2)
            return
        logs: dict[TopicPartition, Log] = {}
        positions: dict[TopicPartition, PartitionPosition] = {}
        for tp, entry in partitions.items():
            logs[tp] = log_ = self.owner._open_log(*tp)
            positions[tp] = PartitionPosition(log_.log_end_offset, entry.topic_id, entry.leader_epoch,
                                              log_.epoch_cache.latest_epoch)
        plan = sessionless_plan(positions)
        fields = fetch_request_fields(plan, SETTINGS)
        fields["replica_id"] = self.owner.node_id
        connection = await self._connect()
        frame = await connection.request_frame(api.FETCH, fields, version=FETCH_VERSION)
        view = memoryview(frame)
        response = decode_fetch_response(view[response_header_size(api.FETCH, FETCH_VERSION, view):], FETCH_VERSION)
        if response.error_code != ErrorCode.NONE:
            raise ClientError(f"Fetch from leader {self.leader} answered error {response.error_code}")
        backoff_needed = False
        for tp, fetched in name_fetched_partitions(response.partitions, plan).items():
            target = logs.get(tp)
            if target is None or self.partitions.get(tp) != partitions[tp]:
                continue  # reassigned meanwhile
            log_ = target
            if fetched.error_code != ErrorCode.NONE:
                backoff_needed = True  # a leadership change on its way through the control plane
                continue
            try:
                if fetched.diverging_epoch is not None:
                    epoch, end = fetched.diverging_epoch
                    if end < log_.log_end_offset:
                        log.warning("%s-%d: the leader's epoch %d ends at %d; truncating the follower's log from %d",
                                    tp[0], tp[1], epoch, end, log_.log_end_offset)
                        await asyncio.to_thread(log_.truncate_to, end)
                    continue
                if len(fetched.records):
                    log_.append_at_offsets(fetched.records, expected_start_offset=fetched.fetch_offset,
                                           leader_epoch=None)
                high_watermark = min(fetched.high_watermark, log_.log_end_offset)
                if high_watermark > log_.high_watermark:
                    log_.high_watermark = high_watermark
                self.owner._on_appended(tp)
            except LogEndOffsetMismatch:
                continue  # the log moved meanwhile (a truncation): fetch again from its end
            except KafkaError as exc:
                log.warning("%s-%d: cannot append what leader %d sent: %s", tp[0], tp[1], self.leader, exc)
                backoff_needed = True
        if backoff_needed:
            await asyncio.sleep(0.2)
