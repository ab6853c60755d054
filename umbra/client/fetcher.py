"""Fetchers: Fetch requests in a fetch session, raw record bytes out, and how many to keep in flight.

The fetcher never moves a fetch offset on its own. Its owner (a replicator) appends what it got and
then calls :meth:`BrokerFetcher.set_offset`; until then every fetch asks for the same offset again.
It owns a dedicated connection, so long-polling fetches never queue admin requests behind them.

A session has one Fetch in flight, so a source broker far away is fetched over several fetchers, each
with its own session: :func:`plan_in_flight` says how many and how large, from the round trip a fetcher
measures (:attr:`BrokerFetcher.round_trip_s`) and the rate its owner sees.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from umbra import __version__
from umbra.client import versions as api
from umbra.client.connection import BrokerConnection
from umbra.client.errors import ClientConnectionError, ClientError, ClientResponseError
from umbra.client.fetch_response import FetchedPartition, decode_fetch_response
from umbra.client.fetch_session import NO_SESSION, FetchRequestPlan, FetchSession, PartitionPosition, TopicPartition
from umbra.client.messages import response_header_size
from umbra.client.settings import FetchSettings
from umbra.errors import ErrorCode

ConnectionSource = Callable[[], Awaitable[BrokerConnection]]
_SESSION_ERRORS = (ErrorCode.FETCH_SESSION_ID_NOT_FOUND, ErrorCode.INVALID_FETCH_SESSION_EPOCH)
_ZERO_UUID = uuid.UUID(int=0)
ROUND_TRIP_PROBE_INTERVAL_S = 10.0
_ROUND_TRIP_SAMPLES = 5  # the round trip is the lowest of the last few probes: a busy event loop only adds
_PROBE_FIELDS = {"client_software_name": "umbra", "client_software_version": __version__}
MAX_FETCHES_IN_FLIGHT = 8  # fetch sessions per source broker
# One Fetch in flight leaves the pipe empty for a round trip per response. That costs under 3 % while a full
# response takes 32 round trips or more to arrive (a LAN); past that, fetches overlap.
_ONE_FETCH_MIN_ROUND_TRIPS = 32


@dataclass(slots=True)
class FetchResult:
    """The outcome of one Fetch. ``partitions`` holds only what the response named.

    In an incremental session the remote leaves out partitions with nothing new. Each entry's
    ``records`` is a raw memoryview into the response frame, and ``fetch_offset`` is the offset that
    was asked for.
    """

    partitions: dict[TopicPartition, FetchedPartition]
    fetch_offsets: dict[TopicPartition, int]
    session_id: int
    epoch: int
    throttle_time_ms: int
    version: int

    @property
    def was_full(self) -> bool:
        return self.epoch == 0


class BrokerFetcher:
    def __init__(self, connect: ConnectionSource, settings: FetchSettings | None = None, *,
                 broker_id: int | None = None, request_timeout_s: float = 30.0,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self._connect = connect
        self._on_close = on_close
        self.settings = settings or FetchSettings()
        self.broker_id = broker_id
        self.request_timeout_s = request_timeout_s
        self.session = FetchSession()
        self._uses_topic_ids: bool | None = None
        # Whether the remote granted a fetch session to the last full request; None until one was answered.
        self.sessions_granted: bool | None = None
        self.version: int | None = None  # the Fetch version of the last request
        self._in_flight = asyncio.Lock()  # one fetch at a time: each request names the offsets the last one ended at
        self._connection_requests = [0]  # requests in flight on the connection, over this fetcher and its siblings
        # Set by an owner that sizes its fetches by the round trip: an ApiVersions probe (at the version the
        # handshake settled on) goes out just ahead of a Fetch every ROUND_TRIP_PROBE_INTERVAL_S, when nothing
        # else is in flight on the connection; the remote answers it at once, before it reads the Fetch.
        self.probe_round_trip = False
        self.round_trip_s: float | None = None
        self._round_trips: deque[float] = deque(maxlen=_ROUND_TRIP_SAMPLES)
        self._next_probe = 0.0

    def __repr__(self) -> str:
        return f"<BrokerFetcher broker={self.broker_id} partitions={len(self.session.partitions)}>"

    def sibling(self) -> BrokerFetcher:
        """Another fetch session over this fetcher's connection, with a Fetch of its own in flight.

        The remote answers a connection's requests one after another, in order (Kafka does, and so does
        umbra), so the siblings' responses follow each other on the wire instead of sharing it: while one
        arrives, the next requests are already there. Closing a sibling ends its session, not the connection.
        """
        sibling = BrokerFetcher(self._connect, self.settings, broker_id=self.broker_id,
                                request_timeout_s=self.request_timeout_s)
        sibling._connection_requests = self._connection_requests
        return sibling

    async def close(self) -> None:
        """Close the fetcher's connection (if its owner gave a way to). The remote session expires."""
        self.session.reset(forget_session_id=True)
        if self._on_close is not None:
            await self._on_close()

    # -- partitions -------------------------------------------------------------------------------

    def add_partition(self, tp: TopicPartition, fetch_offset: int, topic_id: uuid.UUID | None = None,
                      current_leader_epoch: int = -1, last_fetched_epoch: int = -1) -> None:
        self.session.add_partition(tp, fetch_offset, topic_id, current_leader_epoch, last_fetched_epoch)

    def remove_partition(self, tp: TopicPartition) -> None:
        self.session.remove_partition(tp)

    def set_offset(self, tp: TopicPartition, offset: int, last_fetched_epoch: int | None = None) -> None:
        self.session.set_offset(tp, offset, last_fetched_epoch)

    def set_leader_epoch(self, tp: TopicPartition, current_leader_epoch: int) -> None:
        """The source leader epoch the next requests name for ``tp`` (Fetch v9+, KIP-320)."""
        self.session.set_leader_epoch(tp, current_leader_epoch)

    def fetch_offset(self, tp: TopicPartition) -> int:
        return self.session.fetch_offset(tp)

    @property
    def partitions(self) -> list[TopicPartition]:
        return self.session.partitions

    # -- fetching ---------------------------------------------------------------------------------

    async def fetch(self) -> FetchResult:
        """Issue one Fetch and return its partitions.

        A session error resets the session and is retried once at once as a full fetch. Raises
        ClientConnectionError or ClientTimeout (the session is reset), or ClientResponseError for
        any other top-level error code.
        """
        async with self._in_flight:
            for attempt in range(2):
                result = await self._fetch_once()
                if isinstance(result, FetchResult):
                    return result
                if result not in _SESSION_ERRORS or attempt == 1:
                    raise ClientResponseError(result, f"Fetch from broker {self.broker_id}")
            raise AssertionError("unreachable")

    async def _fetch_once(self) -> FetchResult | int:
        connection = await self._connect()
        version = self.version = self._choose_version(connection)
        plan = self.session.build_request()
        fields = fetch_request_fields(plan, self.settings)
        timeout = self.request_timeout_s + self.settings.fetch_max_wait_ms / 1000
        probe: asyncio.Task[None] | None = None
        self._connection_requests[0] += 1
        try:
            if self.probe_round_trip and time.monotonic() >= self._next_probe and self._connection_requests[0] == 1:
                probe = asyncio.ensure_future(self._time_round_trip(connection))
                await asyncio.sleep(0)  # the probe task writes its request now, ahead of the Fetch
            frame = await connection.request_frame(api.FETCH, fields, version=version, timeout=timeout)
        except BaseException:
            # Lost, timed out or cancelled: the remote may or may not have applied this epoch.
            self.session.on_request_lost()
            raise
        finally:
            self._connection_requests[0] -= 1
            if probe is not None and not probe.done():  # answered before the Fetch, unless the Fetch failed first
                probe.cancel()
        view = memoryview(frame)
        try:
            response = decode_fetch_response(view[response_header_size(api.FETCH, version, view):], version)
        except ClientConnectionError:
            self.session.on_request_lost()
            await connection.close()
            raise
        self.session.on_response(plan, response.error_code, response.session_id)
        if response.error_code != ErrorCode.NONE:
            return response.error_code
        if plan.is_full:
            # A remote that supports Fetch sessions grants one in answer to a full request (KIP-227).
            self.sessions_granted = version >= api.FETCH_SESSIONS and response.session_id != NO_SESSION
        return FetchResult(name_fetched_partitions(response.partitions, plan), plan.offsets, response.session_id,
                           plan.epoch, response.throttle_time_ms, version)

    async def _time_round_trip(self, connection: BrokerConnection) -> None:
        self._next_probe = time.monotonic() + ROUND_TRIP_PROBE_INTERVAL_S
        started = time.monotonic()
        try:
            await connection.request_frame(api.API_VERSIONS, _PROBE_FIELDS, version=connection.version(api.API_VERSIONS),
                                           timeout=self.request_timeout_s)
        except ClientError:
            return  # the Fetch behind it, on the same connection, reports what went wrong
        self._round_trips.append(time.monotonic() - started)
        self.round_trip_s = min(self._round_trips)

    def _choose_version(self, connection: BrokerConnection) -> int:
        version = fetch_version_for(connection, self.session.positions().values())
        uses_topic_ids = version >= api.FETCH_TOPIC_IDS
        if self._uses_topic_ids is not None and uses_topic_ids != self._uses_topic_ids:
            self.session.reset()  # a session cannot switch between names and ids
        self._uses_topic_ids = uses_topic_ids
        return version


# -- sans-I/O pieces, shared with one-off reads (SourceCluster.fetch_at) ------------------------------

@dataclass(frozen=True, slots=True)
class InFlight:
    """How many fetch sessions to keep towards one source broker, each with one Fetch of up to ``max_bytes``."""

    fetches: int
    max_bytes: int


def plan_in_flight(settings: FetchSettings, partitions: int, rate_bytes_s: float, round_trip_s: float | None,
                   at_least: int = 1) -> InFlight:
    """Enough bytes in flight towards one source broker for its bandwidth-delay product.

    A session has one Fetch in flight, so it moves at most ``max_bytes / (round trip + max_bytes / bandwidth)``:
    between two responses the pipe carries nothing for a round trip. While a full response takes at least
    32 round trips to arrive that is fine (one session). Beyond, the partitions are spread over
    MAX_FETCHES_IN_FLIGHT sessions (at most one per partition, and never fewer than ``at_least``), siblings on
    one connection (:meth:`BrokerFetcher.sibling`): their responses arrive one after another, and while one
    arrives the next requests are at the source already, if ``(fetches - 1) * max_bytes`` covers the
    bandwidth-delay product. Each asks for ``fetch_max_bytes / fetches`` (what one session had in flight,
    shared) or, where the bandwidth-delay product needs more, ``2 * BDP / (fetches - 1)``, never above
    ``fetch_max_bytes``. ``rate_bytes_s`` is the rate measured while the source had more to give: under too few
    bytes in flight it is the rate they allow, which raises the plan until the pipe is full.
    """
    largest = settings.fetch_max_bytes
    bdp = rate_bytes_s * (round_trip_s or 0.0)
    wanted = MAX_FETCHES_IN_FLIGHT if bdp * _ONE_FETCH_MIN_ROUND_TRIPS > largest else 1
    fetches = max(1, min(max(wanted, at_least), MAX_FETCHES_IN_FLIGHT, partitions))
    if fetches == 1:
        return InFlight(1, largest)
    return InFlight(fetches, min(largest, max(largest // fetches, math.ceil(2 * bdp / (fetches - 1)))))


def fetch_version_for(connection: BrokerConnection, positions: Iterable[PartitionPosition]) -> int:
    """The negotiated Fetch version, or v12 when some partition's topic id is unknown (name topics then)."""
    version = connection.version(api.FETCH)
    if version >= api.FETCH_TOPIC_IDS and any(p.topic_id in (None, _ZERO_UUID) for p in positions):
        version = api.FETCH_TOPIC_IDS - 1
    return version


def fetch_request_fields(plan: FetchRequestPlan, settings: FetchSettings) -> dict[str, Any]:
    """The fields of a Fetch request for ``plan``; fields the negotiated version lacks are dropped in encoding."""
    topics: dict[str, dict[str, Any]] = {}
    for (topic, partition), position in plan.partitions.items():
        entry = topics.setdefault(topic, {"topic": topic, "topic_id": position.topic_id, "partitions": []})
        entry["partitions"].append({
            "partition": partition, "current_leader_epoch": position.current_leader_epoch,
            "fetch_offset": position.fetch_offset, "last_fetched_epoch": position.last_fetched_epoch,
            "log_start_offset": -1,
            "partition_max_bytes": settings.fetch_partition_max_bytes})
    forgotten: dict[str, dict[str, Any]] = {}
    for (topic, partition), topic_id in plan.forgotten.items():
        forgotten.setdefault(topic, {"topic": topic, "topic_id": topic_id, "partitions": []})["partitions"].append(
            partition)
    return {"replica_id": -1, "max_wait_ms": settings.fetch_max_wait_ms, "min_bytes": settings.fetch_min_bytes,
            "max_bytes": settings.fetch_max_bytes, "isolation_level": 0, "session_id": plan.session_id,
            "session_epoch": plan.epoch, "topics": list(topics.values()),
            "forgotten_topics_data": list(forgotten.values()), "rack_id": settings.rack}


def name_fetched_partitions(fetched: list[FetchedPartition], plan: FetchRequestPlan
                            ) -> dict[TopicPartition, FetchedPartition]:
    """The response's partitions by (topic, partition), topic ids resolved to the names ``plan`` asked for.

    Each entry's ``fetch_offset`` is set to the offset the plan asked for (-1 if it did not ask).
    """
    names: dict[uuid.UUID, str] = {}
    if fetched and fetched[0].topic is None:  # v13+: topics are named by id
        names = {position.topic_id: tp[0] for tp, position in plan.positions.items() if position.topic_id is not None}
    result = {}
    for entry in fetched:
        if entry.topic is None and entry.topic_id is not None:
            entry.topic = names.get(entry.topic_id)
        if entry.topic is None:
            continue  # a topic id we never asked for
        tp = (entry.topic, entry.partition)
        entry.fetch_offset = plan.offsets.get(tp, -1)
        result[tp] = entry
    return result
