"""A remote (source) cluster: bootstrap, cached metadata, one connection per broker, admin reads.

Requests go to the broker that can answer them: ListOffsets to partition leaders, OffsetFetch to the
group coordinator, the rest to any live broker. Fetching is done by :class:`BrokerFetcher`\\ s, which
this class builds with their own dedicated connections (see :meth:`SourceCluster.fetcher_for`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from umbra.client import admin
from umbra.client import versions as api
from umbra.client.admin import (
    AclBinding,
    AclFilter,
    CommittedOffset,
    ConfigEntry,
    EpochEndOffset,
    GroupListing,
    ListedOffset,
)
from umbra.client.connection import BrokerConnection
from umbra.client.errors import ClientConnectionError, ClientResponseError, ClientTimeout
from umbra.client.fetch_response import FetchedPartition, decode_fetch_response
from umbra.client.fetch_session import PartitionPosition, sessionless_plan
from umbra.client.fetcher import BrokerFetcher, fetch_request_fields, fetch_version_for, name_fetched_partitions
from umbra.client.messages import response_header_size
from umbra.client.metadata import ClusterMetadata, TopicPartition, metadata_request, snapshot_from_response
from umbra.client.reconnect import ReconnectingConnection
from umbra.client.settings import ConnectionSettings, FetchSettings, SaslSettings, TlsSettings
from umbra.errors import ErrorCode

_RETRY_WITH_FRESH_METADATA = (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                              ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.FENCED_LEADER_EPOCH,
                              ErrorCode.UNKNOWN_LEADER_EPOCH)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"bootstrap server {address!r} is not host:port")
    return host.strip("[]"), int(port)


class SourceCluster:
    def __init__(self, bootstrap_servers: list[str], client_id: str = "umbra-shadow", *,
                 tls: TlsSettings | None = None, sasl: SaslSettings | None = None,
                 connection_settings: ConnectionSettings | None = None) -> None:
        if not bootstrap_servers:
            raise ValueError("at least one bootstrap server is needed")
        self.bootstrap = [parse_address(a) for a in bootstrap_servers]
        base = connection_settings or ConnectionSettings()
        self.connection_settings = ConnectionSettings(
            client_id=client_id, connect_timeout_s=base.connect_timeout_s, request_timeout_s=base.request_timeout_s,
            socket_buffer_bytes=base.socket_buffer_bytes, max_response_bytes=base.max_response_bytes,
            read_buffer_bytes=base.read_buffer_bytes, tls=tls, sasl=sasl)
        self._metadata = ClusterMetadata()
        self._links: dict[int, ReconnectingConnection] = {}
        self._bootstrap_links: dict[tuple[str, int], ReconnectingConnection] = {}
        self._closed = False
        # The versions negotiated by the latest connection to each broker ("host:port" before its id is known).
        self._versions: dict[str, dict[int, int]] = {}
        self._remembered: dict[str, BrokerConnection] = {}

    @property
    def metadata(self) -> ClusterMetadata:
        """The last metadata snapshot (empty until the first :meth:`refresh_metadata`)."""
        return self._metadata

    # -- connections ------------------------------------------------------------------------------

    def _remember(self, connection: BrokerConnection) -> BrokerConnection:
        node_id = connection.node_id
        label = str(node_id) if node_id is not None else f"{connection.host}:{connection.port}"
        if self._remembered.get(label) is not connection:
            self._remembered[label] = connection
            self._versions[label] = dict(connection.versions)
        return connection

    def negotiated_versions(self) -> dict[str, dict[int, int]]:
        """Broker id (or bootstrap "host:port") -> API key -> the version requests to it are sent at.

        A bootstrap connection is listed under its broker's id once the metadata names that address.
        """
        ids = {f"{host}:{port}": str(node_id) for node_id, (host, port) in self._metadata.brokers.items()}
        result: dict[str, dict[int, int]] = {}
        for label, versions in self._versions.items():
            if label in ids and ids[label] in self._versions:
                continue  # the broker's own connection says the same
            result[ids.get(label, label)] = dict(versions)
        return result

    async def supports(self, api_key: int) -> bool:
        """Whether the source answers ``api_key`` at a version this client can use (asked of any broker)."""
        return (await self._any_connection()).supports(api_key)

    async def _link(self, broker_id: int, host: str, port: int) -> ReconnectingConnection:
        link = self._links.get(broker_id)
        if link is None or (link.host, link.port) != (host, port):
            if link is not None:
                await link.close()  # the broker moved
            link = ReconnectingConnection(host, port, self.connection_settings, node_id=broker_id)
            self._links[broker_id] = link
        return link

    async def connection_for(self, broker_id: int) -> BrokerConnection:
        """The live connection to ``broker_id``, reconnecting (with backoff after failures) if needed."""
        self._check_open()
        address = self._metadata.brokers.get(broker_id)
        if address is None:
            await self.refresh_metadata()
            address = self._metadata.brokers.get(broker_id)
            if address is None:  # down, or not yet registered: unreachable for now
                raise ClientConnectionError(f"broker {broker_id} is not in the source cluster's metadata")
        return self._remember(await (await self._link(broker_id, *address)).get())

    async def _any_connection(self) -> BrokerConnection:
        """A live connection to some broker: connected ones first, then known brokers, then bootstrap."""
        self._check_open()
        for link in self._links.values():
            if link.connected:
                return self._remember(await link.get())
        candidates: list[ReconnectingConnection] = []
        brokers = list(self._metadata.brokers.items())
        random.shuffle(brokers)
        candidates += [await self._link(broker_id, host, port) for broker_id, (host, port) in brokers]
        for address in self.bootstrap:
            if address not in self._bootstrap_links:
                self._bootstrap_links[address] = ReconnectingConnection(*address, self.connection_settings)
            candidates.append(self._bootstrap_links[address])
        # Brokers that just refused a connection come last: asking them first would wait out their backoff.
        candidates.sort(key=lambda link: link.backing_off)
        failures = []
        for link in candidates:
            try:
                return self._remember(await link.get())
            except (ClientConnectionError, ClientTimeout) as exc:
                failures.append(str(exc))
        raise ClientConnectionError("no source broker is reachable: " + "; ".join(failures))

    def fetcher_for(self, broker_id: int, settings: FetchSettings | None = None) -> BrokerFetcher:
        """A new fetcher for ``broker_id`` with its own connection (made on its first fetch)."""
        link: ReconnectingConnection | None = None

        async def connect() -> BrokerConnection:
            nonlocal link
            address = self._metadata.brokers.get(broker_id)
            if address is None:
                raise ClientConnectionError(f"broker {broker_id} is not in the source cluster's metadata")
            if link is None or (link.host, link.port) != address:
                if link is not None:
                    await link.close()
                link = ReconnectingConnection(*address, self.connection_settings, node_id=broker_id)
            return self._remember(await link.get())

        async def close() -> None:
            if link is not None:
                await link.close()

        return BrokerFetcher(connect, settings, broker_id=broker_id,
                             request_timeout_s=self.connection_settings.request_timeout_s, on_close=close)

    async def close(self) -> None:
        self._closed = True
        for link in [*self._links.values(), *self._bootstrap_links.values()]:
            await link.close()
        self._links.clear()
        self._bootstrap_links.clear()

    async def __aenter__(self) -> SourceCluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientConnectionError("the source cluster client is closed")

    async def _request_any(self, api_key: int, build: Any) -> tuple[Any, int]:
        connection = await self._any_connection()
        version = connection.version(api_key)
        return await connection.request(api_key, build(version), version=version), version

    # -- metadata ---------------------------------------------------------------------------------

    async def refresh_metadata(self, topics: Iterable[str] | None = None) -> ClusterMetadata:
        """Fetch Metadata (all topics, or just ``topics``, merged into the snapshot) and return the snapshot."""
        names = None if topics is None else list(topics)
        response, version = await self._request_any(api.METADATA, lambda _v: metadata_request(names))
        snapshot = snapshot_from_response(response, version)
        self._metadata = snapshot if names is None else self._metadata.merged(snapshot, names)
        # Bootstrap connections stay open: another task may have a request in flight on one, and once brokers
        # are known they are only tried after the brokers themselves (see _any_connection).
        return self._metadata

    # -- one-off reads ----------------------------------------------------------------------------

    async def fetch_at(self, offsets: dict[TopicPartition, int], partition_max_bytes: int
                       ) -> dict[TopicPartition, FetchedPartition]:
        """One sessionless Fetch per leader for the data at ``offsets``, with no long poll.

        For checks, not for replication: the remote keeps no session for these requests. Partitions
        with no known leader are left out. Each entry's ``records`` is a view into its response frame.
        """
        by_leader: dict[int, dict[TopicPartition, PartitionPosition]] = {}
        for tp, offset in offsets.items():
            leader = self._metadata.leader_for(tp)
            if leader is None:
                continue
            topic = self._metadata.topics[tp[0]]
            by_leader.setdefault(leader, {})[tp] = PartitionPosition(offset, topic.topic_id,
                                                                     self._metadata.leader_epoch_for(tp))
        settings = FetchSettings(fetch_max_wait_ms=0, fetch_min_bytes=0,
                                 fetch_max_bytes=max(partition_max_bytes, 1 << 20),
                                 fetch_partition_max_bytes=partition_max_bytes)
        result: dict[TopicPartition, FetchedPartition] = {}
        for leader, positions in by_leader.items():
            connection = await self.connection_for(leader)
            version = fetch_version_for(connection, positions.values())
            plan = sessionless_plan(positions)
            frame = await connection.request_frame(api.FETCH, fetch_request_fields(plan, settings), version=version)
            view = memoryview(frame)
            response = decode_fetch_response(view[response_header_size(api.FETCH, version, view):], version)
            if response.error_code != ErrorCode.NONE:
                raise ClientResponseError(response.error_code, f"Fetch from broker {leader}")
            result.update(name_fetched_partitions(response.partitions, plan))
        return result

    # -- admin reads ------------------------------------------------------------------------------

    async def list_offsets(self, tps: Iterable[TopicPartition], timestamp: int) -> dict[TopicPartition, ListedOffset]:
        """Offsets for ``timestamp`` (EARLIEST_TIMESTAMP, LATEST_TIMESTAMP or ms), asked of each leader.

        Per-partition errors are returned as ``error_code``; leadership errors are retried once with
        fresh metadata first.
        """
        wanted = list(tps)
        if any(self._metadata.leader_for(tp) is None for tp in wanted):
            await self.refresh_metadata()
        result = await self._list_offsets_once(wanted, timestamp)
        retry = [tp for tp, listed in result.items() if listed.error_code in _RETRY_WITH_FRESH_METADATA]
        if retry:
            await self.refresh_metadata()
            result.update(await self._list_offsets_once(retry, timestamp))
        return result

    async def _list_offsets_once(self, tps: list[TopicPartition], timestamp: int
                                 ) -> dict[TopicPartition, ListedOffset]:
        by_leader: dict[int, list[TopicPartition]] = {}
        result: dict[TopicPartition, ListedOffset] = {}
        for tp in tps:
            leader = self._metadata.leader_for(tp)
            if leader is None:
                known = tp[0] in self._metadata.topics
                code = ErrorCode.LEADER_NOT_AVAILABLE if known else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                result[tp] = ListedOffset(int(code), -1, -1, -1)
            else:
                by_leader.setdefault(leader, []).append(tp)
        for leader, leader_tps in by_leader.items():
            try:
                connection = await self.connection_for(leader)
                version = connection.version(api.LIST_OFFSETS)
                response = await connection.request(api.LIST_OFFSETS,
                                                    admin.list_offsets_request(leader_tps, timestamp), version=version)
            except (ClientConnectionError, ClientTimeout):
                # One unreachable leader does not hide the others' answers.
                result.update({tp: ListedOffset(int(ErrorCode.LEADER_NOT_AVAILABLE), -1, -1, -1) for tp in leader_tps})
                continue
            result.update(admin.parse_list_offsets(response, version))
        return result

    async def offsets_for_leader_epochs(self, epochs: dict[TopicPartition, int]
                                        ) -> dict[TopicPartition, EpochEndOffset]:
        """Where each partition's ``epochs[tp]`` ends on its leader (OffsetForLeaderEpoch, KIP-101/KIP-320),
        naming the leader epoch the metadata knows. An unreachable leader's partitions come back with
        LEADER_NOT_AVAILABLE."""
        by_leader: dict[int, dict[TopicPartition, tuple[int, int]]] = {}
        result: dict[TopicPartition, EpochEndOffset] = {}
        for tp, epoch in epochs.items():
            leader = self._metadata.leader_for(tp)
            if leader is None:
                result[tp] = EpochEndOffset(int(ErrorCode.LEADER_NOT_AVAILABLE), -1, -1)
            else:
                by_leader.setdefault(leader, {})[tp] = (self._metadata.leader_epoch_for(tp), epoch)
        for leader, asked in by_leader.items():
            try:
                connection = await self.connection_for(leader)
                version = connection.version(api.OFFSET_FOR_LEADER_EPOCH)
                response = await connection.request(api.OFFSET_FOR_LEADER_EPOCH,
                                                    admin.offset_for_leader_epoch_request(asked), version=version)
            except (ClientConnectionError, ClientTimeout):
                result.update({tp: EpochEndOffset(int(ErrorCode.LEADER_NOT_AVAILABLE), -1, -1) for tp in asked})
                continue
            result.update(admin.parse_offset_for_leader_epoch(response))
        return result

    async def describe_configs(self, topics: Iterable[str], *, include_defaults: bool = False
                               ) -> dict[str, dict[str, ConfigEntry]]:
        """{topic: {config name: entry}} for every config not at its default (all with ``include_defaults``).

        Each entry carries its source: DYNAMIC_TOPIC_CONFIG for topic-level overrides. Topics the
        source does not know are left out.
        """
        names = list(topics)
        if not names:
            return {}
        response, _ = await self._request_any(api.DESCRIBE_CONFIGS, lambda _v: admin.describe_configs_request(names))
        return admin.parse_describe_configs(response, include_defaults)

    async def list_groups(self) -> list[GroupListing]:
        """Every consumer group, asked of every broker (each lists the groups it coordinates)."""
        if not self._metadata.brokers:
            await self.refresh_metadata()
        groups: dict[str, GroupListing] = {}
        for broker_id in sorted(self._metadata.brokers):
            connection = await self.connection_for(broker_id)
            version = connection.version(api.LIST_GROUPS)
            response = await connection.request(api.LIST_GROUPS, admin.list_groups_request(), version=version)
            for group in admin.parse_list_groups(response, version):
                groups[group.group_id] = group
        return list(groups.values())

    async def find_coordinator(self, group: str) -> BrokerConnection:
        response, version = await self._request_any(
            api.FIND_COORDINATOR, lambda v: admin.find_coordinator_request(group, v))
        node_id, host, port = admin.parse_find_coordinator(response, version)
        return self._remember(await (await self._link(node_id, host, port)).get())

    async def offset_fetch(self, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, CommittedOffset]:
        """The group's committed offsets for ``tps``, asked of its coordinator.

        The partitions are always named: OffsetFetch v1 cannot ask for "everything", and some brokers
        (librdkafka's mock) answer nothing to that question.
        """
        wanted = list(tps)
        if not wanted:
            return {}
        connection = await self.find_coordinator(group)
        version = connection.version(api.OFFSET_FETCH)
        response = await connection.request(api.OFFSET_FETCH, admin.offset_fetch_request(group, wanted, version),
                                            version=version)
        return admin.parse_offset_fetch(response, version, group)

    async def describe_acls(self, acl_filter: AclFilter | None = None) -> list[AclBinding]:
        """ACL bindings matching ``acl_filter`` (default: all of them)."""
        request = admin.describe_acls_request(acl_filter or AclFilter())
        response, _ = await self._request_any(api.DESCRIBE_ACLS, lambda _v: request)
        return admin.parse_describe_acls(response)
