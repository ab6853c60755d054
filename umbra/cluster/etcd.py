"""The control plane in etcd: broker registrations under leases, and the controller elected there.

Keys live under ``/umbra/clusters/<cluster id>/``, so one etcd holds several clusters:

- ``brokers/<node id>``: the broker's registration (JSON of :class:`BrokerInfo`), kept after it dies, so
  status can show a registered broker as not alive;
- ``alive/<node id>``: the same, attached to the broker's lease: it disappears when the lease expires
  (``broker_session_timeout_ms`` without a keep-alive). Created with a compare-and-swap, so two live
  brokers cannot share a node id;
- ``controller``: the node id of the controller, attached to its lease and created only where none
  exists (compare-and-swap on the key's version). Its create revision is the controller epoch: it only grows;
- ``topics/<name>``: a topic (JSON of :class:`TopicMetadata`, with every partition's assignment: replicas,
  leader, leader epoch, ISR), created only where none exists. Every broker reads them with the members and
  applies them to its own view (:meth:`subscribe_topics`).

Every broker keeps its lease alive and re-reads the cluster every third of the session timeout; a broker
whose lease expired (etcd was unreachable longer than the timeout) registers again with a new lease. While
etcd cannot be reached, the broker keeps serving; its view says ``reachable: false``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import aetcd
import aetcd.exceptions

from umbra.cluster.control import (
    BrokerInfo,
    ClusterView,
    ControlPlaneError,
    DocumentListener,
    TopicsListener,
    assign_partitions,
    cancel_reassignment,
    elect_leaders,
    finish_reassignments,
    restore_preferred_leaders,
    start_reassignment,
)
from umbra.cluster.metadata import PartitionAssignment, TopicMetadata, validate_topic_name
from umbra.cluster.placement import check_replica_lists, elect_preferred, manual_assignments
from umbra.errors import (
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    NoReassignmentInProgress,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from umbra.tasks import cancel_and_wait

log = logging.getLogger("umbra.cluster.etcd")

# What a call to etcd can raise when etcd is down, slow or refuses: the client's errors, and a timeout.
_ETCD_ERRORS = (aetcd.exceptions.ClientError, asyncio.TimeoutError, OSError)


def cluster_prefix(cluster_id: str) -> bytes:
    return f"/umbra/clusters/{cluster_id}/".encode()


class EtcdControlPlane:
    def __init__(self, endpoints: list[tuple[str, int]], cluster_id: str, node_id: int,
                 session_timeout_ms: int, *, request_timeout_s: float = 5.0,
                 leader_rebalance_interval_ms: int | None = 300_000) -> None:
        self._endpoints = endpoints
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._ttl = max(1, round(session_timeout_ms / 1000))
        self._interval = max(0.2, self._ttl / 3)
        self._timeout = request_timeout_s
        self._prefix = cluster_prefix(cluster_id)
        self._client: aetcd.Client | None = None
        self._lease: Any = None  # aetcd.leases.Lease (untyped library)
        self._me: BrokerInfo | None = None
        self._view = ClusterView(cluster_id, None, 0, (), reachable=False)
        self._task: asyncio.Task[None] | None = None
        self._endpoint_index = 0
        self._topics: dict[str, TopicMetadata] = {}
        self._topic_revisions: dict[str, int] = {}  # etcd mod revision of each topic's key (compare-and-swap)
        self._topics_revision = -1  # etcd's revision of the topics last read
        self._topic_listeners: list[TopicsListener] = []
        self._topics_read_lock = asyncio.Lock()
        self._documents_read_lock = asyncio.Lock()
        self._shutting_down: set[int] = set()  # brokers in a controlled shutdown: not eligible to lead
        # Cluster-wide documents (``acls``, ``broker_configs``) under ``documents/<name>``: value and revision.
        self._documents: dict[str, tuple[Any, int]] = {}
        self._document_listeners: dict[str, list[DocumentListener]] = {}
        # auto.leader.rebalance.enable: how often the controller moves leaderships back to preferred replicas
        self._rebalance_interval_s = None if leader_rebalance_interval_ms is None else leader_rebalance_interval_ms / 1000
        self._next_rebalance = 0.0

    # --- the ControlPlane protocol -------------------------------------
    clustered = True

    @property
    def node_id(self) -> int:
        return self._node_id

    def subscribe_topics(self, listener: TopicsListener) -> None:
        self._topic_listeners.append(listener)

    async def create_topic(self, name: str, partitions: int, configs: dict[str, str], replication_factor: int,
                           internal: bool = False, replica_lists: Sequence[Sequence[int]] | None = None
                           ) -> TopicMetadata:
        validate_topic_name(name)
        self._require_client()
        await self._elect_and_read()  # assign over the brokers alive now, not at the last poll
        alive = [b.node_id for b in self._view.alive_brokers()]
        racks = {b.node_id: b.rack for b in self._view.alive_brokers()}
        if replica_lists is not None:  # the operator's placement, stored as given once its brokers are live
            check_replica_lists(replica_lists, alive)
            assignments = manual_assignments(replica_lists)
        elif replication_factor > len(alive):
            raise InvalidReplicationFactor(f"Replication factor: {replication_factor} larger than available "
                                           f"brokers: {len(alive)}.")
        else:
            start = sum(name.encode()) % max(len(alive), 1)  # topics start on different brokers
            assignments = tuple(assign_partitions(partitions, replication_factor, alive, start, racks))
        topic = TopicMetadata(name, uuid.uuid4(), len(assignments), MappingProxyType(dict(configs)), internal,
                              assignments)
        client = self._require_client()
        key = self._key("topics", name)
        ok, _ = await self._call(client.transaction(
            compare=[client.transactions.version(key) == 0],
            success=[client.transactions.put(key, json.dumps(topic.to_json()).encode())], failure=[]))
        if not ok:
            raise TopicAlreadyExists(f"Topic '{name}' already exists.")
        await self._read_topics()
        return topic

    async def delete_topic(self, name: str) -> TopicMetadata:
        topic = self._topics.get(name)
        client = self._require_client()
        deleted = await self._call(client.delete(self._key("topics", name)))
        if topic is None or not deleted:
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
        await self._read_topics()
        return topic

    async def update_isr(self, topic: str, index: int, leader_epoch: int, isr: tuple[int, ...]) -> bool:
        def change(a: PartitionAssignment) -> PartitionAssignment:
            if a.leader != self._node_id or a.leader_epoch != leader_epoch:
                raise _Deposed()  # the new leader owns the ISR
            return replace(a, isr=isr)

        try:
            await self._change_partition(topic, index, change)
        except (_Deposed, UnknownTopicOrPartition):
            return False  # not recorded: deposed (the new leader owns the ISR), or the topic is gone
        except _ETCD_ERRORS as exc:
            raise ControlPlaneError(f"etcd cannot be reached: {describe(exc)}") from None
        return True

    async def reserve_producer_ids(self, count: int, floor: int) -> int:
        reserved: list[int] = []

        def change(current: Any) -> int:  # the cluster's next producer id, a document like the others
            reserved[:] = [max(int(current or 0), floor)]
            return reserved[0] + count

        await self.update_document("producer_ids", change)
        return reserved[0]

    async def _put_topic(self, topic: TopicMetadata, revision: int) -> bool:
        client = self._require_client()
        key = self._key("topics", topic.name)
        ok, _ = await self._call(client.transaction(
            compare=[client.transactions.mod(key) == revision],
            success=[client.transactions.put(key, json.dumps(topic.to_json()).encode())], failure=[]))
        return bool(ok)

    async def reassign(self, topic: str, index: int, target: tuple[int, ...] | None) -> None:
        def change(a: PartitionAssignment) -> PartitionAssignment:
            if target is None:
                if not a.target:
                    raise NoReassignmentInProgress(f"{topic}-{index} has no reassignment in progress")
                return cancel_reassignment(a)
            registered = {b.node_id for b in self._view.brokers}
            unknown = [r for r in target if r not in registered]
            if unknown:
                raise InvalidReplicaAssignment(f"{topic}-{index}: broker {unknown[0]} of replicas {list(target)} "
                                               f"is not a registered broker (registered: {sorted(registered)})")
            if not target or len(set(target)) != len(target):
                raise InvalidReplicaAssignment(f"{topic}-{index}: replicas {list(target)} must be distinct brokers")
            return start_reassignment(replace(a, target=()) if a.target else a, target)

        await self._change_partition(topic, index, change)

    async def elect_preferred_leader(self, topic: str, index: int) -> None:
        alive = {b.node_id for b in self._view.alive_brokers()} - self._shutting_down
        try:
            await self._change_partition(topic, index, lambda a: elect_preferred(a, alive))
        except _ETCD_ERRORS as exc:
            raise ControlPlaneError(f"etcd cannot be reached: {describe(exc)}") from None
        log.info("controller: preferred replica elected leader of %s-%d", topic, index)

    def subscribe_document(self, name: str, listener: DocumentListener) -> None:
        self._document_listeners.setdefault(name, []).append(listener)

    def document(self, name: str) -> Any:
        known = self._documents.get(name)
        return known[0] if known is not None else None

    async def update_document(self, name: str, change: Callable[[Any], Any]) -> Any:
        try:
            return await self._update_document(name, change)
        except _ETCD_ERRORS as exc:  # callers (the ACL and user handlers) expect the control plane's own error
            raise ControlPlaneError(f"{name}: etcd cannot be reached: {describe(exc)}") from None

    async def _update_document(self, name: str, change: Callable[[Any], Any]) -> Any:
        client = self._require_client()
        key = self._key("documents", name)
        for _ in range(10):
            current = await self._call(client.get(key))
            value = json.loads(current.value) if current is not None else None
            new_value = change(value)
            compare = (client.transactions.version(key) == 0 if current is None
                       else client.transactions.mod(key) == current.mod_revision)
            ok, _ = await self._call(client.transaction(
                compare=[compare], success=[client.transactions.put(key, json.dumps(new_value).encode())], failure=[]))
            if ok:
                await self._read_documents()
                return new_value
        raise ControlPlaneError(f"{name}: too many concurrent changes; try again")

    async def _read_documents(self) -> None:
        async with self._documents_read_lock:  # in order, as the topics (see _read_topics)
            await self._read_documents_now()

    async def _read_documents_now(self) -> None:
        client = self._require_client()
        found = await self._call(client.get_prefix(self._key("documents", "")))
        for kv in found:
            name = kv.key.rsplit(b"/", 1)[1].decode()
            known = self._documents.get(name)
            if known is not None and known[1] == kv.mod_revision:
                continue
            try:
                value = json.loads(kv.value)
            except ValueError:
                log.warning("ignoring an unreadable cluster document %s", name)
                continue
            self._documents[name] = (value, kv.mod_revision)
            for listener in self._document_listeners.get(name, []):
                listener(value)

    async def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        await self._change_topic(name, lambda topic: replace(topic, configs=MappingProxyType(dict(configs))))

    async def add_partitions(self, name: str, count: int,
                             replica_lists: Sequence[Sequence[int]] | None = None) -> None:
        def grow(topic: TopicMetadata) -> TopicMetadata:
            alive = [b.node_id for b in self._view.alive_brokers()]
            first = topic.assignments[0] if topic.assignments else None  # a reassignment's target: the factor-to-be
            rf = len(first.target or first.replicas) if first is not None else 1
            if replica_lists is not None:
                if len(replica_lists) != count - topic.partitions:
                    raise InvalidReplicaAssignment(f"{count - topic.partitions} partitions are added but "
                                                   f"{len(replica_lists)} replica lists were given")
                check_replica_lists(replica_lists, alive, rf, topic.partitions)
                return replace(topic, partitions=count,
                               assignments=topic.assignments + manual_assignments(replica_lists))
            if rf > len(alive):
                raise InvalidReplicationFactor(f"{name} has replication factor {rf}; {len(alive)} brokers are alive")
            start = sum(name.encode()) % max(len(alive), 1) + topic.partitions
            racks = {b.node_id: b.rack for b in self._view.alive_brokers()}
            added = assign_partitions(count - topic.partitions, rf, alive, start, racks)
            return replace(topic, partitions=count, assignments=topic.assignments + tuple(added))

        await self._change_topic(name, grow)

    async def _change_partition(self, name: str, index: int,
                                change: Callable[[PartitionAssignment], PartitionAssignment]) -> None:
        def change_topic(topic: TopicMetadata) -> TopicMetadata:
            if not 0 <= index < len(topic.assignments):
                raise UnknownTopicOrPartition(f"{name}-{index} does not exist")
            assignments = list(topic.assignments)
            assignments[index] = change(assignments[index])
            return replace(topic, assignments=tuple(assignments))

        await self._change_topic(name, change_topic)

    async def _change_topic(self, name: str, change: Callable[[TopicMetadata], TopicMetadata]) -> None:
        for _ in range(5):  # compare-and-swap on the topic's key
            current = self._topics.get(name)
            revision = self._topic_revisions.get(name)
            if current is None or revision is None:
                raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
            if await self._put_topic(change(current), revision):
                await self._read_topics()
                return
            await self._read_topics()
        raise ControlPlaneError(f"{name}: too many concurrent changes; try again")

    async def _elect_leaders(self) -> None:
        """The controller moves the leadership of partitions whose leader died or is shutting down (brokers
        learn it from etcd)."""
        alive = {b.node_id for b in self._view.alive_brokers()} - self._shutting_down
        changed = False
        for name, topic in list(self._topics.items()):
            finished = finish_reassignments(topic, alive)
            revision = self._topic_revisions.get(name)
            if finished is not None and revision is not None and await self._put_topic(finished, revision):
                changed = True
                log.info("controller: reassignment of %s finished", name)
                continue  # its leaders are looked at on the next poll
            elected = elect_leaders(topic, alive)
            if elected is not None and revision is not None and await self._put_topic(elected, revision):
                changed = True
                moved = [p for p, (old, new) in enumerate(zip(topic.assignments, elected.assignments, strict=True))
                         if old.leader != new.leader]
                log.info("controller: new leaders for %s partitions %s", name, moved)
        if changed:
            await self._read_topics()

    async def prepare_shutdown(self, timeout_s: float) -> None:
        if self._client is None or self._lease is None:
            return
        try:
            await self._call(self._client.put(self._key("shutting_down", self._node_id), b"1", lease=self._lease.id))
        except _ETCD_ERRORS as exc:
            log.warning("controlled shutdown: cannot reach etcd (%s); leaderships move when the lease expires",
                        describe(exc))
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                await self._elect_and_read()
                if self.is_controller():
                    await self._elect_leaders()
                await self._read_topics()
            except _ETCD_ERRORS as exc:
                log.warning("controlled shutdown: etcd stopped answering: %s", describe(exc))
                return
            movable = self._leaderships_others_could_take()
            if not movable:
                log.info("controlled shutdown: no partition led here that another in-sync replica could lead")
                return
            if asyncio.get_running_loop().time() > deadline:
                log.warning("controlled shutdown: still leading %d partition(s) after %.0f s; stopping anyway",
                            movable, timeout_s)
                return
            await asyncio.sleep(min(self._interval, 0.5))

    def _leaderships_others_could_take(self) -> int:
        alive = {b.node_id for b in self._view.alive_brokers()} - self._shutting_down
        return sum(1 for topic in self._topics.values() for a in topic.assignments
                   if a.leader == self._node_id and any(r in alive for r in a.isr if r != self._node_id))

    async def _maybe_restore_preferred_leaders(self) -> None:
        if self._rebalance_interval_s is None:
            return
        now = asyncio.get_running_loop().time()
        if now < self._next_rebalance:
            return
        self._next_rebalance = now + self._rebalance_interval_s
        alive = {b.node_id for b in self._view.alive_brokers()} - self._shutting_down
        changed = False
        for name, topic in list(self._topics.items()):
            restored = restore_preferred_leaders(topic, alive)
            revision = self._topic_revisions.get(name)
            if restored is not None and revision is not None and await self._put_topic(restored, revision):
                changed = True
                log.info("controller: leadership of %s back to preferred replicas", name)
        if changed:
            await self._read_topics()

    def _require_client(self) -> aetcd.Client:
        if self._client is None:
            raise ControlPlaneError("etcd is not reachable")
        return self._client

    def view(self) -> ClusterView:
        return self._view

    def is_controller(self) -> bool:
        return self._view.reachable and self._view.controller == self._node_id

    async def refresh(self) -> ClusterView:
        try:
            await self._elect_and_read()
        except _ETCD_ERRORS as exc:
            raise ControlPlaneError(f"etcd cannot be reached: {describe(exc)}") from None
        return self._view

    async def start(self, me: BrokerInfo) -> None:
        self._me = me
        try:
            await self._connect()
            await self._register()
            await self._elect_and_read()
            await self._read_documents()  # before the topics: a new shadow topic is read-only from the start
            await self._read_topics()
        except _ETCD_ERRORS as exc:
            await self._close_client()
            endpoints = ",".join(f"http://{h}:{p}" for h, p in self._endpoints)
            raise ControlPlaneError(f"cannot register with etcd at {endpoints}: {describe(exc)}") from None
        log.info("registered in cluster %s (etcd); controller: %s", self._cluster_id, self._view.controller)
        self._task = asyncio.create_task(self._run(), name="control-plane")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        if self._client is not None and self._lease is not None:
            try:  # leave at once: the controllership and the alive key go with the lease
                async with asyncio.timeout(self._timeout):
                    await self._lease.revoke()
            except _ETCD_ERRORS as exc:
                log.warning("could not revoke the lease in etcd (it expires by itself): %s", describe(exc))
        await self._close_client()

    # --- etcd ----------------------------------------------------------
    async def _connect(self) -> None:
        errors = []
        for attempt in range(len(self._endpoints)):
            host, port = self._endpoints[(self._endpoint_index + attempt) % len(self._endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=int(self._timeout) or 1)
            try:
                async with asyncio.timeout(self._timeout):
                    await client.connect()
                async with asyncio.timeout(self._timeout):
                    await client.status()
            except _ETCD_ERRORS as exc:
                errors.append(f"{host}:{port}: {describe(exc)}")
                await _close_quietly(client)
                continue
            self._client = client
            self._endpoint_index = (self._endpoint_index + attempt) % len(self._endpoints)
            return
        raise aetcd.exceptions.ConnectionFailedError("; ".join(errors))

    async def _close_client(self) -> None:
        if self._client is not None:
            await _close_quietly(self._client)
            self._client = None

    def _key(self, *parts: object) -> bytes:
        return self._prefix + "/".join(str(p) for p in parts).encode()

    async def _call(self, coro: Any) -> Any:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation (the loop would run on)
        async with asyncio.timeout(self._timeout):
            return await coro

    async def _register(self) -> None:
        client, me = self._client, self._me
        assert client is not None and me is not None
        self._lease = await self._call(client.lease(self._ttl))
        body = json.dumps(me.to_json()).encode()
        alive = self._key("alive", me.node_id)
        # A broker restarted right after a crash finds its previous process's registration still there until
        # that lease expires: it waits for it. A registration that outlives two session timeouts is kept alive
        # by another live broker with the same node id.
        deadline = asyncio.get_running_loop().time() + 2 * self._ttl + 1
        waited = False
        while True:
            ok, _ = await self._call(client.transaction(
                compare=[client.transactions.version(alive) == 0],
                success=[client.transactions.put(alive, body, lease=self._lease.id),
                         client.transactions.put(self._key("brokers", me.node_id), body)],
                failure=[]))
            if ok:
                return
            if asyncio.get_running_loop().time() > deadline:
                await _revoke_quietly(self._lease)
                raise ControlPlaneError(f"node id {me.node_id} is already registered and alive in cluster "
                                        f"{self._cluster_id!r}: give each broker its own --node-id")
            if not waited:
                waited = True
                log.warning("node id %d is still registered in cluster %s, by a previous process of this broker "
                            "or another broker; waiting up to %d s for that registration to expire",
                            me.node_id, self._cluster_id, 2 * self._ttl + 1)
            await asyncio.sleep(self._interval)

    async def _elect_and_read(self) -> None:
        client = self._client
        assert client is not None
        controller_key = self._key("controller")
        won, _ = await self._call(client.transaction(
            compare=[client.transactions.version(controller_key) == 0],
            success=[client.transactions.put(controller_key, str(self._node_id).encode(), lease=self._lease.id)],
            failure=[]))
        if won:
            log.info("this broker (node %d) is the controller of cluster %s", self._node_id, self._cluster_id)
        registered = await self._call(client.get_prefix(self._key("brokers", "")))
        alive = await self._call(client.get_prefix(self._key("alive", "")))
        current = await self._call(client.get(controller_key))
        alive_ids = {int(kv.key.rsplit(b"/", 1)[1]) for kv in alive}
        leaving = await self._call(client.get_prefix(self._key("shutting_down", "")))
        self._shutting_down = {int(kv.key.rsplit(b"/", 1)[1]) for kv in leaving}
        brokers = []
        for kv in registered:
            try:
                brokers.append(BrokerInfo.from_json(json.loads(kv.value), alive=False))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable broker registration at %s", kv.key.decode(errors="replace"))
        brokers = [replace(b, alive=b.node_id in alive_ids) for b in sorted(brokers, key=lambda b: b.node_id)]
        controller, epoch = None, self._view.controller_epoch
        if current is not None:
            controller, epoch = int(current.value), int(current.create_revision)
        previous, changes = self._view.controller, self._view.controller_changes
        if controller != previous and previous is not None:
            changes += 1
            log.info("controller of cluster %s: %s -> %s (epoch %d)", self._cluster_id, previous, controller, epoch)
        self._view = ClusterView(self._cluster_id, controller, epoch, tuple(brokers), controller_changes=changes)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if self._client is None:
                    await self._connect()
                reply = await self._call(self._lease.refresh())
                if reply is None or reply.TTL <= 0:  # expired while etcd was out of reach: join again
                    log.warning("the lease in etcd expired; registering again")
                    await self._register()
                await self._elect_and_read()
                # Documents before topics: the shadow-topic state of a new shadow topic is in etcd before the
                # topic, so this broker never serves the topic as an ordinary, writable one.
                await self._read_documents()
                await self._read_topics()
                if self.is_controller():
                    await self._elect_leaders()
                    await self._maybe_restore_preferred_leaders()
            except ControlPlaneError as exc:  # our node id taken meanwhile by another live broker
                log.error("%s", exc)
                self._mark_unreachable()
            except _ETCD_ERRORS as exc:
                if self._view.reachable:
                    log.warning("etcd unreachable, serving on with the last cluster view: %s", describe(exc))
                self._mark_unreachable()
                await self._close_client()
                self._endpoint_index += 1

    async def _read_topics(self) -> None:
        """The cluster's topics; listeners hear of every change (by etcd revision of the topic keys).

        One read at a time, each applied before the next starts: two concurrent reads (the poll, and one after
        a change this broker made) could otherwise apply in the wrong order, and the broker would serve the
        older topics (a topic's new partitions gone again) until the next poll."""
        async with self._topics_read_lock:
            await self._read_topics_now()

    async def _read_topics_now(self) -> None:
        client = self._require_client()
        found = await self._call(client.get_prefix(self._key("topics", "")))
        revision = max((kv.mod_revision for kv in found), default=0) * 1_000_000 + len(found)
        if revision == self._topics_revision:
            return
        topics, revisions = {}, {}
        for kv in found:
            try:
                topic = TopicMetadata.from_json(json.loads(kv.value))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable topic at %s", kv.key.decode(errors="replace"))
                continue
            topics[topic.name] = topic
            revisions[topic.name] = kv.mod_revision
        self._topics, self._topics_revision, self._topic_revisions = topics, revision, revisions
        for listener in list(self._topic_listeners):
            await listener(dict(topics))

    def _mark_unreachable(self) -> None:
        self._view = replace(self._view, reachable=False)


class _Deposed(Exception):
    """An ISR change from a leader that no longer leads at its epoch."""


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def _close_quietly(client: aetcd.Client) -> None:
    try:
        async with asyncio.timeout(2.0):
            await client.close()
    except _ETCD_ERRORS:
        pass


async def _revoke_quietly(lease: Any) -> None:
    try:
        async with asyncio.timeout(2.0):
            await lease.revoke()
    except _ETCD_ERRORS:
        pass


async def change_cluster_document(endpoints: list[tuple[str, int]], cluster_id: str, name: str,
                                  change: Callable[[Any], Any] | None, *, timeout_s: float = 5.0) -> tuple[Any, int]:
    """From outside the cluster (``umbra user --etcd``), without registering: compare-and-swap the cluster
    document ``name`` with ``change`` (None: only read it). Returns the document and how many brokers ever
    registered in the cluster (none suggests a mistyped cluster id). ControlPlaneError if etcd cannot be reached."""
    plane = EtcdControlPlane(endpoints, cluster_id, -1, 10_000, request_timeout_s=timeout_s,
                             leader_rebalance_interval_ms=None)
    try:
        await plane._connect()
        client = plane._require_client()
        registered = len(list(await plane._call(client.get_prefix(plane._key("brokers", "")))))
        if change is not None:
            return await plane.update_document(name, change), registered
        found = await plane._call(client.get(plane._key("documents", name)))
    except _ETCD_ERRORS as exc:
        urls = ",".join(f"http://{h}:{p}" for h, p in endpoints)
        raise ControlPlaneError(f"etcd at {urls} cannot be reached: {describe(exc)}") from None
    finally:
        await plane._close_client()
    try:
        return (json.loads(found.value) if found is not None else None), registered
    except ValueError as exc:
        raise ControlPlaneError(f"the cluster document {name} in etcd is not JSON: {exc}") from None
