"""The broker core: storage, metadata, the Kafka listener and their background tasks.

It is built, together with the group coordinator, the shadow-link manager and the admin server, in one place:
:mod:`umbra.app`. It never imports those layers; they reach it through the small Protocols they declare.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from umbra.admin.metrics import BrokerMetrics
from umbra.cluster.configs import TopicMutation, log_config_for
from umbra.cluster.control import ControlPlane, ControlPlaneError, LocalControlPlane
from umbra.cluster.metadata import MetadataStore, TopicMetadata
from umbra.config import BrokerConfig
from umbra.errors import (
    CorruptMessage,
    InvalidTopic,
    KafkaError,
    KafkaStorageError,
    NotController,
    PolicyViolation,
    UnknownTopicOrPartition,
)
from umbra.security.acls import (
    AclBinding,
    AclFilter,
    AclStore,
    acls_from_document,
    acls_to_document,
    plan_add,
    plan_delete,
)
from umbra.server.authz import BrokerAuthorizer
from umbra.server.fetch_sessions import FetchSessionCache
from umbra.server.handlers import load_all
from umbra.server.listeners import ConnectionFactory, Listeners
from umbra.server.memory import ConnectionLimits, RequestMemoryPool
from umbra.server.notify import AppendNotifier
from umbra.server.ports import TopicGuard
from umbra.server.producer_ids import ProducerIdManager
from umbra.server.replica_fetcher import CONNECTION as REPLICA_CONNECTION
from umbra.server.replica_fetcher import Followed, ReplicaFetchers
from umbra.server.replicas import Partition, ReplicaManager
from umbra.server.sendfile import shutdown_executor as shutdown_sendfile_executor
from umbra.storage.cleaner import CleanResult, LogCleaner
from umbra.storage.config import LogConfig
from umbra.storage.log import Log
from umbra.storage.manager import LogManager, remove_directories
from umbra.tasks import cancel_and_wait

if TYPE_CHECKING:
    from umbra.groups.coordinator import GroupCoordinator

log = logging.getLogger("umbra.broker")

OFFSETS_TOPIC = "__consumer_offsets"
PRODUCER_ID_BLOCK = 1000
ISR_WRITE_BACKOFF_S = 0.1  # a failed ISR write is retried, doubling up to ISR_WRITE_BACKOFF_MAX_S
ISR_WRITE_BACKOFF_MAX_S = 2.0


def now_ms() -> int:
    return int(time.time() * 1000)


class Closable(Protocol):
    def close(self) -> None: ...


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.metadata = MetadataStore(config.data_dir, config.cluster_id)
        self.logs = LogManager(config.data_dir)
        self.producer_ids = ProducerIdManager(config.data_dir)
        self.acls = AclStore(config.data_dir)
        self.authorizer = BrokerAuthorizer.from_config(config.authorization, self.acls)  # None: disabled
        self.notifier = AppendNotifier()
        self.request_memory = RequestMemoryPool(config.queued_max_request_bytes)
        self.connection_limits = ConnectionLimits(config.max_connections, config.max_connections_per_ip)
        self.leader_epoch = self.metadata.bump_leader_epoch()  # every partition's, until the control plane assigns them
        self.replicas = ReplicaManager(self.node_id, self.leader_epoch, self.metadata.topic, self.get_log,
                                       replica_lag_time_max_ms=config.replica_lag_time_max_ms,
                                       on_isr_change=self._isr_changed)
        inter = config.inter_broker
        self.fetchers = ReplicaFetchers(self.node_id, self._kafka_address_of, self.get_log, self.notifier.notify,
                                        replace(REPLICA_CONNECTION, tls=inter.tls, sasl=inter.sasl))
        self._isr_updates: set[asyncio.Task[bool]] = set()
        self._isr_locks: dict[tuple[str, int], asyncio.Lock] = {}  # one ISR write at a time per partition
        self._cluster_producer_ids: list[int] | None = None  # [next, end) of the block reserved in etcd
        self._coordinating: tuple[int, int] | None = None  # (this node, epoch) while it leads the offsets topic
        self.started_ms = now_ms()
        self.listeners = Listeners(config.listeners)
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._connections: set[Closable] = set()
        self._background: list[asyncio.Task[None]] = []
        self.groups: GroupCoordinator | None = None  # set by the composition root once it has loaded
        self.control: ControlPlane = LocalControlPlane(self.metadata.cluster_id, self.node_id)  # or etcd's (app)
        self.topic_guard: TopicGuard | None = None  # the shadow-link layer's rules for its topics
        self.fetch_sessions = FetchSessionCache()
        self.metrics = BrokerMetrics()
        self.cleaner = LogCleaner()
        self._uncleanable: dict[str, int] = {}  # log -> its end offset when the cleaner could not decode it
        self._housekeeping_busy = threading.Lock()  # held while flushes/retention run on a worker thread
        self._closing_logs = False
        self.listen_port = config.listeners[0].address.port  # the first listener's (the bound one once serving)
        load_all()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def advertised_endpoint(self, listener: str | None = None) -> tuple[str, int]:
        """Host and port clients of ``listener`` (by name; None: the first) should connect to (the actual port
        when listening on port 0). Kafka answers each client with the address of the listener it came in on."""
        advertised = self.listeners.advertised(listener)
        return advertised.host, advertised.port

    # --- topics and partitions ---------------------------------------
    def log_config(self, topic: TopicMetadata) -> LogConfig:
        return log_config_for(self.config, topic.configs, self.metadata.broker_configs())

    def get_log(self, topic: str, partition: int) -> Log:
        """The log of a partition that exists in metadata, opened or created on demand."""
        meta = self.metadata.topic(topic)
        if meta is None or not 0 <= partition < meta.partitions:
            raise UnknownTopicOrPartition(f"{topic}-{partition} does not exist on this broker")
        existing = self.logs.get(topic, partition)
        if existing is not None:
            return existing
        return self.logs.create(topic, partition, self.log_config(meta))

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None,
                     internal: bool = False, *, open_logs: bool = True) -> TopicMetadata:
        """Register a topic. Its logs are opened here, or, with ``open_logs=False``, by ``open_topic_logs``
        (off the event loop) or on first use (``get_log``)."""
        meta = self.metadata.create_topic(name, partitions, configs, internal)
        if open_logs:
            self._open_topic_logs(meta)
        return meta

    def add_partitions(self, name: str, count: int, *, open_logs: bool = True) -> TopicMetadata:
        meta = self.metadata.set_partition_count(name, count)
        if open_logs:
            self._open_topic_logs(meta)
        return meta

    async def open_topic_logs(self, meta: TopicMetadata) -> None:
        """Create (or open) every partition log of a topic on a worker thread: each takes a few filesystem
        calls (1.4 ms here, more when the file system is busy), so 1,000 partitions would stall the event
        loop, and every client with it, for seconds. Partitions used meanwhile are opened by ``get_log``."""
        await asyncio.to_thread(self._open_topic_logs, meta)
        if self.metadata.topic(meta.name) is None:  # deleted while the thread created its logs
            for p in range(meta.partitions):
                self.logs.delete_partition(meta.name, p)

    def _open_topic_logs(self, meta: TopicMetadata) -> None:
        for p in range(meta.partitions):
            current = self.metadata.topic(meta.name)
            if current is None or current.topic_id != meta.topic_id:
                return
            try:
                self.get_log(meta.name, p)
            except UnknownTopicOrPartition:
                return

    async def delete_topic(self, name: str) -> TopicMetadata:
        """Delete a topic: gone from metadata and from reads and writes at once; its files are removed on a
        worker thread (1,000 partitions take seconds)."""
        meta = self.metadata.delete_topic(name)
        self.replicas.forget_topic(name)
        doomed = [path for p in range(meta.partitions) if (path := self.logs.detach_partition(name, p))]
        await asyncio.to_thread(remove_directories, doomed)
        return meta

    def topic_configs_changed(self, name: str) -> None:
        meta = self.metadata.require_topic(name)
        config = self.log_config(meta)
        for p in range(meta.partitions):
            log_ = self.logs.get(name, p)
            if log_ is not None:
                log_.update_config(config)

    def broker_configs_changed(self) -> None:
        for meta in self.metadata.topics():
            self.topic_configs_changed(meta.name)

    def topic_policy(self, topic: TopicMetadata, mutation: TopicMutation, changed: frozenset[str]) -> None:
        """Admin changes to a topic: internal topics refuse them all; shadow topics have their own rules."""
        if topic.internal:
            raise PolicyViolation(f"topic {topic.name!r} is internal: its configs and partitions are managed by umbra")
        if self.topic_guard is not None:
            self.topic_guard.topic_policy(topic, mutation, changed)

    def check_writable(self, topic: TopicMetadata) -> None:
        """Raise if producers may not write to ``topic`` (internal topics, and shadow topics until failed over)."""
        if topic.internal:
            raise InvalidTopic(f"topic {topic.name!r} is internal and cannot be written by clients")
        if self.topic_guard is not None:
            self.topic_guard.check_produce(topic)

    # --- a cluster on etcd: topics live in the control plane ------------
    @property
    def clustered(self) -> bool:
        return self.control.clustered

    def require_controller(self) -> None:
        """Topic creation and deletion on a cluster go through the controller (clients send them there)."""
        view = self.control.view()
        if not view.reachable:
            raise NotController("the control plane (etcd) cannot be reached: topics can be neither created nor "
                                "deleted until it is back (existing topics keep serving)")
        if not self.control.is_controller():
            raise NotController(f"broker {self.node_id} is not the controller (broker {view.controller} is)")

    async def create_cluster_topic(self, name: str, partitions: int, configs: dict[str, str],
                                   replication_factor: int, internal: bool = False) -> TopicMetadata:
        return await self.control.create_topic(name, partitions, configs, replication_factor, internal)

    async def allocate_producer_id(self) -> int:
        """An id for a new idempotent producer. On a cluster, ids come in blocks reserved in etcd, so no two
        brokers ever hand out the same one (a leader change must not meet a stranger's sequence numbers)."""
        if not self.clustered:
            return self.producer_ids.next_id()
        if self._cluster_producer_ids is None or self._cluster_producer_ids[0] >= self._cluster_producer_ids[1]:
            floor = max((log_.max_producer_id for log_ in self.logs.all_logs()), default=-1) + 1
            start = await self.control.reserve_producer_ids(PRODUCER_ID_BLOCK, floor)
            self._cluster_producer_ids = [start, start + PRODUCER_ID_BLOCK]
        producer_id = self._cluster_producer_ids[0]
        self._cluster_producer_ids[0] += 1
        return producer_id

    def drop_producer_id_block(self) -> None:
        """Forget the producer ids reserved in etcd but not handed out yet: the next InitProducerId reserves a
        block above the cluster's current floor (a shadow failover raised it above every replicated id)."""
        self._cluster_producer_ids = None

    async def producer_id_barrier(self, floor: int) -> None:
        """New producer ids, on every broker of the cluster, are at or above ``floor`` from now on (this
        broker's at once; the others' once they drop their blocks: the shadow failover asks them to)."""
        if not self.clustered:
            self.producer_ids.ensure_above(floor - 1)
            return
        await self.control.reserve_producer_ids(0, floor)
        self.drop_producer_id_block()

    # --- topics created and changed by a layer (shadow links), on a cluster through the control plane -------
    async def create_topic_with_defaults(self, name: str, partitions: int, configs: dict[str, str]) -> TopicMetadata:
        """A topic with this broker's defaults: on a cluster, assigned over the live brokers with
        ``default_replication_factor`` (at most as many as are alive); on one broker, here, its logs opened on a
        worker thread."""
        if not self.clustered:
            meta = self.create_topic(name, partitions, configs, open_logs=False)
            await self.open_topic_logs(meta)
            return meta
        alive = len((await self.control.refresh()).alive_brokers())  # not the last poll's: brokers just joined
        replication = max(1, min(self.config.default_replication_factor, alive))
        if replication < self.config.default_replication_factor:
            log.warning("creating %s with replication factor %d: only %d brokers are alive (default_replication_"
                        "factor is %d)", name, replication, alive, self.config.default_replication_factor)
        await self.control.create_topic(name, partitions, configs, replication)
        return self.metadata.require_topic(name)

    async def grow_topic(self, name: str, count: int) -> TopicMetadata:
        if not self.clustered:
            meta = self.add_partitions(name, count, open_logs=False)
            await self.open_topic_logs(meta)
            return meta
        await self.control.add_partitions(name, count)
        return self.metadata.require_topic(name)

    async def change_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        if self.clustered:
            await self.control.set_topic_configs(name, configs)  # every broker applies them when it reads them
            return
        self.metadata.set_topic_configs(name, configs)
        self.topic_configs_changed(name)

    async def change_acls(self, add: Sequence[AclBinding], remove: Sequence[AclFilter]) -> None:
        """Add and remove ACLs: on a cluster, in its ACL document (compare-and-swap), else in this store."""
        if not self.clustered:
            if add:
                self.acls.add(add)
            if remove:
                self.acls.delete(remove)
            return

        def change(document: Any) -> Any:
            _, updated = plan_add(acls_from_document(document), add)
            _, updated = plan_delete(updated, remove)
            return acls_to_document(updated)

        self.acls.replace_all(acls_from_document(await self.control.update_document("acls", change)))

    @property
    def coordinates_groups(self) -> bool:
        """This broker is the group coordinator (the leader of ``__consumer_offsets`` on a cluster)."""
        return self.groups is not None and (not self.clustered or self._coordinating is not None)

    def _kafka_address_of(self, node_id: int) -> tuple[str, int] | None:
        """Where followers reach broker ``node_id``: its address on the inter-broker listener."""
        for member in self.control.view().alive_brokers():
            if member.node_id == node_id:
                address = member.address_for(self.config.inter_broker.listener)
                if address is None:
                    return None
                host, _, port = address.rpartition(":")
                return host, int(port)
        return None

    def _isr_changed(self, partition: Partition, isr: tuple[int, ...]) -> None:
        """A leader's ISR shrank or grew: recorded in the control plane (Kafka's AlterPartition)."""
        log.info("%s-%d: ISR is now %s", partition.topic, partition.index, list(isr))
        before = partition.state.isr
        if len(isr) < len(before):
            self.metrics.isr_shrinks.inc(len(before) - len(isr))
        elif len(isr) > len(before):
            self.metrics.isr_expands.inc(len(isr) - len(before))
        if not self.clustered:
            partition.isr_committed(isr)
            return
        task = asyncio.get_running_loop().create_task(self._record_isr(partition))
        self._isr_updates.add(task)
        task.add_done_callback(self._isr_updates.discard)

    async def _record_isr(self, partition: Partition) -> bool:
        """One write at a time per partition, each of the ISR as it is when the write starts: concurrent
        compare-and-swaps of a quick shrink and expand could land in either order and leave the control plane
        with an ISR the leader no longer has (and, the leader seeing no change, never corrects)."""
        lock = self._isr_locks.setdefault((partition.topic, partition.index), asyncio.Lock())
        async with lock:
            backoff = ISR_WRITE_BACKOFF_S
            while True:  # until recorded or deposed: the high watermark waits for the dropped replicas meanwhile
                state = partition.state
                try:
                    recorded = await self.control.update_isr(partition.topic, partition.index, state.leader_epoch,
                                                             state.isr)
                except ControlPlaneError as exc:
                    log.warning("%s-%d: recording ISR %s failed, retrying in %.1f s: %s", partition.topic,
                                partition.index, list(state.isr), backoff, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, ISR_WRITE_BACKOFF_MAX_S)
                    continue
                if recorded:
                    partition.isr_committed(state.isr)
                return recorded

    async def apply_cluster_topics(self, topics: dict[str, TopicMetadata]) -> None:
        """The control plane's topics replace this broker's view: logs of partitions this broker leads are
        opened (on a worker), those of topics gone are removed."""
        if OFFSETS_TOPIC not in topics and self.metadata.topic(OFFSETS_TOPIC) is not None:
            topics = {**topics, OFFSETS_TOPIC: self.metadata.require_topic(OFFSETS_TOPIC)}  # until it is created there
        changed, gone = self.metadata.apply_cluster_topics(topics)
        moved_away = []
        for meta in changed:
            self.topic_configs_changed(meta.name)  # configs may have changed: the open logs take them
            for p in range(meta.partitions):
                replicas = self.replicas.state(meta.name, p).replicas
                if self.node_id in replicas:
                    await asyncio.to_thread(self._open_partition, meta.name, p)
                    if self.replicas.state(meta.name, p).leader == self.node_id:
                        self.replicas.leader_partition(meta.name, p)  # picks up a changed replica set
                elif meta.assignments and self.logs.get(meta.name, p) is not None:
                    moved_away.append((meta.name, p))  # reassigned elsewhere: this copy goes
        followed = {}
        for meta in self.metadata.topics():
            for p, a in enumerate(meta.assignments):
                if self.node_id in a.replicas and a.leader != self.node_id:
                    followed[(meta.name, p)] = Followed(a.leader, a.leader_epoch, meta.topic_id)
        self.fetchers.update(followed)
        doomed = [path for meta in gone for p in range(meta.partitions)
                  if (path := self.logs.detach_partition(meta.name, p))]
        doomed += [path for name, p in moved_away if (path := self.logs.detach_partition(name, p))]
        for meta in gone:
            self.replicas.forget_topic(meta.name)
        if doomed:
            await asyncio.to_thread(remove_directories, doomed)
        await self._follow_offsets_leadership()

    def apply_cluster_acls(self, document: Any) -> None:
        """The cluster's ACLs (one document in etcd) replace this broker's copy."""
        try:
            self.acls.replace_all(acls_from_document(document))
        except (KafkaError, KeyError, TypeError, ValueError) as exc:
            log.error("cannot take the cluster's ACLs: %s", exc)

    def apply_cluster_broker_configs(self, document: Any) -> None:
        """The cluster's dynamic broker configs (one document in etcd) replace this broker's."""
        configs = {str(k): str(v) for k, v in (document or {}).items()}
        if configs != dict(self.metadata.broker_configs()):
            self.metadata.set_broker_configs(configs)
            self.broker_configs_changed()

    async def _follow_offsets_leadership(self) -> None:
        """The group coordinator is the leader of ``__consumer_offsets``: a broker that becomes it rebuilds
        the groups from its copy of the log (a follower's copy, until now)."""
        offsets = self.metadata.topic(OFFSETS_TOPIC)
        if self.groups is None or offsets is None or not offsets.assignments:
            return
        state = offsets.assignments[0]
        leading = (state.leader, state.leader_epoch) if state.leader == self.node_id else None
        if leading == self._coordinating:
            return
        self._coordinating = leading
        if leading is not None:
            log.info("this broker is the group coordinator now (__consumer_offsets epoch %d)", state.leader_epoch)
            await self.groups.reload()
        else:
            await self.groups.stop()  # answer waiting joins: clients find the new coordinator

    async def offsets_replicated(self, timeout_s: float = 10.0) -> bool:
        """Whether everything the group coordinator wrote is in every in-sync replica of ``__consumer_offsets``
        (waits up to ``timeout_s``): an offset commit is acknowledged then, so a coordinator that dies right
        after cannot take it with it. Always true on a single broker."""
        if not self.clustered:
            return True
        try:
            partition = self.replicas.leader_partition(OFFSETS_TOPIC, 0)
        except KafkaError:
            return False
        return await partition.wait_for_high_watermark(partition.log.log_end_offset, timeout_s)

    def append_offsets(self, records: bytes, now_ms: int) -> None:
        """The group coordinator's writes on a cluster: through the offsets partition (its epoch, its ISR)."""
        self.replicas.leader_partition(OFFSETS_TOPIC, 0).append_as_leader(records, now_ms)

    def _open_partition(self, topic: str, partition: int) -> None:
        try:
            self.get_log(topic, partition)
        except UnknownTopicOrPartition:
            pass  # deleted meanwhile

    def coordinator_address(self, listener: str | None = None) -> tuple[int, str, int] | None:
        """(node id, host, port) of the group coordinator on ``listener`` (the client's; None: the first): the
        leader of ``__consumer_offsets``; None while it is not known (a cluster that has not created it yet,
        or whose leader is not registered or has no such listener)."""
        if not self.clustered:
            host, port = self.advertised_endpoint(listener)
            return self.node_id, host, port
        offsets = self.metadata.topic(OFFSETS_TOPIC)
        if offsets is None or not offsets.assignments:  # not created in the cluster yet: clients retry
            return None
        leader = self.replicas.state(OFFSETS_TOPIC, 0).leader
        for member in self.control.view().alive_brokers():
            if member.node_id == leader:
                found = member.address_for(listener)
                if found is None:
                    return None
                address, _, port_text = found.rpartition(":")
                return leader, address, int(port_text)
        return None

    def auto_create(self, name: str) -> TopicMetadata | None:
        if not self.config.auto_create_topics or name.startswith("__") or self.clustered:
            return None
        try:
            return self.create_topic(name, self.config.num_partitions)
        except (KafkaError, OSError) as exc:  # an invalid name, or a race with another creator
            log.info("auto-creating topic %r failed: %s", name, exc)
            return self.metadata.topic(name)

    # --- lifecycle (driven by umbra.app, in this order) ---------------
    def open_logs(self) -> None:
        """Open every partition log (start-up: nothing is served yet, so this may block)."""
        configs = {t.name: self.log_config(t) for t in self.metadata.topics()}
        default = log_config_for(self.config, {}, self.metadata.broker_configs())
        self.logs.open_all(lambda topic: configs.get(topic, default))
        for meta in self.metadata.topics():
            for p in range(meta.partitions):
                self.get_log(meta.name, p)
        for log_ in self.logs.all_logs():
            self.producer_ids.ensure_above(log_.max_producer_id)

    def offsets_log(self, offsets_topic_configs: dict[str, str]) -> Log:
        """The ``__consumer_offsets`` log: created (compacted), or its configs brought up to date (data dirs
        from before compaction have it as ``cleanup.policy=delete``; its records replay the same either way)."""
        meta = self.metadata.topic(OFFSETS_TOPIC)
        if meta is None:
            self.create_topic(OFFSETS_TOPIC, 1, offsets_topic_configs, internal=True)
        elif dict(meta.configs) != offsets_topic_configs:
            log.info("%s configs %s -> %s", OFFSETS_TOPIC, dict(meta.configs), offsets_topic_configs)
            self.metadata.set_topic_configs(OFFSETS_TOPIC, offsets_topic_configs)
            self.topic_configs_changed(OFFSETS_TOPIC)
        return self.get_log(OFFSETS_TOPIC, 0)

    async def serve(self, connection_factory: ConnectionFactory) -> None:
        """Open every listener, and start the housekeeping and the log cleaner."""
        await self.listeners.open(connection_factory, self)
        self.listen_port = self.listeners.bound[0].port
        self._background.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.config.log_cleaner_enabled:
            self._background.append(asyncio.create_task(self._log_cleaner(), name="log-cleaner"))

    def spawn_connection_task(self, coro: Coroutine[Any, Any, None], connection: Closable) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._connection_tasks.add(task)
        self._connections.add(connection)

        def done(t: asyncio.Task[None]) -> None:
            self._connection_tasks.discard(t)
            self._connections.discard(connection)
            if not t.cancelled() and t.exception() is not None:
                log.error("connection task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def _housekeeping(self) -> None:
        """Retention and time-based flushes, on a worker thread: fsyncs and deleting segment files can take
        long enough to stall every client if they ran on the event loop (logs take their own locks)."""
        last_retention, last_checkpoint = 0.0, now_ms()
        while True:
            await asyncio.sleep(0.5)
            now = now_ms()
            retention_due = now - last_retention >= self.config.log_retention_check_interval_ms
            if retention_due:
                last_retention = now
            checkpoint_due = now - last_checkpoint >= self.config.log_flush_offset_checkpoint_interval_ms
            if checkpoint_due:
                last_checkpoint = now
            await asyncio.to_thread(self._flush_and_retain, now, retention_due, checkpoint_due)
            view = self.control.view()  # brokers whose session ended leave every ISR this broker leads at once
            self.replicas.shrink_isrs(now, frozenset(b.node_id for b in view.brokers if not b.alive)
                                      if view.reachable else frozenset())
            if self.groups is not None and (not self.clustered or self._coordinating is not None):
                await self.groups.tick(now)  # on a cluster, only the coordinator expires sessions and offsets

    def _flush_and_retain(self, now: int, retention_due: bool, checkpoint_due: bool) -> None:
        with self._housekeeping_busy:  # shutdown waits for it before closing the logs
            if not self._closing_logs:
                self._flush_and_retain_locked(now, retention_due, checkpoint_due)

    def _flush_and_retain_locked(self, now: int, retention_due: bool, checkpoint_due: bool) -> None:
        for log_ in self.logs.all_logs():
            try:
                log_.maybe_flush(now)
            except KafkaStorageError:
                pass  # the partition went offline, and said so
            if checkpoint_due:
                log_.checkpoint_recovery_point()
        if retention_due:
            self.logs.enforce_retention_all(now)

    async def _log_cleaner(self) -> None:
        """Compaction: one log at a time on a worker thread, then a pause (``log_cleaner_interval_ms``)."""
        while True:
            await asyncio.sleep(self.config.log_cleaner_interval_ms / 1000)
            for log_ in self.logs.all_logs():
                if not log_.config.compacts:
                    continue
                if self._uncleanable.get(log_.name) == log_.log_end_offset:
                    continue
                try:
                    result = await asyncio.to_thread(self.cleaner.clean_log, log_, now_ms())
                except CorruptMessage as exc:  # a stored batch it cannot decode (a bomb, damaged bytes)
                    self._uncleanable[log_.name] = log_.log_end_offset
                    log.error("log cleaner cannot clean %s: %s; it tries again once the log changes", log_.name, exc)
                    continue
                except Exception:  # a bug: said with its traceback, and the cleaner goes on with the next log
                    log.exception("log cleaner failed on %s", log_.name)
                    continue
                if result is not None and result.segments_written:
                    self._count_cleaning(result)

    def _count_cleaning(self, result: CleanResult) -> None:
        self.metrics.log_cleaner_passes.labels(result.topic).inc()
        self.metrics.log_cleaner_records_removed.labels(result.topic).inc(result.records_removed)
        self.metrics.log_cleaner_bytes_read.inc(result.bytes_read)
        self.metrics.log_cleaner_bytes_written.inc(result.bytes_written)

    def _stop_housekeeping(self) -> None:
        """Wait for a flush/retention run already on its worker thread; none starts after this."""
        with self._housekeeping_busy:
            self._closing_logs = True

    async def stop_serving(self) -> None:
        """Close the listener and every connection, and stop the background tasks (storage stays open)."""
        self.cleaner.stop()
        await self.fetchers.stop()
        await cancel_and_wait(list(self._isr_updates))
        self.listeners.close()
        for connection in list(self._connections):
            connection.close()
        await cancel_and_wait([*self._background, *self._connection_tasks])
        await asyncio.to_thread(self.cleaner.wait_idle)  # a pass on its worker thread stops at its next batch
        shutdown_sendfile_executor()  # its workers gave up when their connections closed
        await asyncio.to_thread(self._stop_housekeeping)

    def close_storage(self) -> None:
        self.logs.flush_all()
        self.logs.close_all()
        self.metadata.close()
