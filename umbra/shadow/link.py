"""One shadow link's runtime on this broker: the topic, consumer-offset and ACL syncers, and replication.

Every background task here is owned by the link and cancelled by :meth:`ShadowLink.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from umbra.client import versions as api
from umbra.client.admin import ConfigSource
from umbra.client.capabilities import SourceCapabilities
from umbra.client.cluster import SourceCluster
from umbra.client.errors import ClientError
from umbra.cluster.configs import validate_topic_configs
from umbra.cluster.control import ControlPlaneError
from umbra.errors import KafkaError
from umbra.groups.model import OffsetAndMetadata
from umbra.security.acls import AclBinding, AclFilter, PatternType, ResourceType
from umbra.shadow.engine import ReplicationEngine
from umbra.shadow.metrics import ShadowMetrics
from umbra.shadow.spec import LinkSpec
from umbra.shadow.state import LinkState, ShadowTopicState, TaskState
from umbra.tasks import cancel_and_wait

if TYPE_CHECKING:
    from umbra.shadow.manager import ShadowLinkManager

log = logging.getLogger("umbra.shadow")
EVENTS_KEPT = 50
# The fields of a partition's status that only a running replicator knows, for partitions without one.
IDLE_PARTITION_FIELDS: dict[str, Any] = {
    "leader_epoch": None, "source_broker": None, "source_leader": None, "source_leader_epoch": -1,
    "source_leader_changes": 0, "source_errors": {}, "last_source_error": "", "start_point_check": None,
    "truncations": 0, "truncated_records": 0, "last_truncation": None}

# One set of shadow metrics per broker registry; weakly held, so a registry's id reused after it is freed (a
# second broker in one process) never finds the old one's metrics.
_metrics: weakref.WeakKeyDictionary[Any, ShadowMetrics] = weakref.WeakKeyDictionary()


def _metrics_for(registry: Any) -> ShadowMetrics:
    if registry not in _metrics:
        _metrics[registry] = ShadowMetrics(registry)
    return _metrics[registry]


# Builds the client a link talks to its source with. The broker uses ``connect_source``; unit tests pass a fake.
SourceFactory = Callable[[LinkSpec], SourceCluster]


def connect_source(spec: LinkSpec) -> SourceCluster:
    """The client for ``spec``'s source cluster (it connects on first use)."""
    return SourceCluster(list(spec.source.bootstrap_servers), client_id=f"umbra-shadow-{spec.name}",
                         tls=spec.source.tls, sasl=spec.source.sasl)


async def probe_source(spec: LinkSpec, timeout_s: float = 10.0, connect: SourceFactory = connect_source) -> None:
    """Raise unless the source answers Metadata within ``timeout_s``."""
    source = connect(spec)
    try:
        async with asyncio.timeout(timeout_s):
            await source.refresh_metadata()
    except TimeoutError:
        raise ClientError(f"no answer within {timeout_s:.0f}s") from None
    finally:
        await source.close()


class SyncUnsupported(Exception):
    """The source cannot answer what a syncer needs (an older or partial Kafka implementation)."""


class SyncTask:
    """A periodic syncer with a state for status: ACTIVE, LINK_UNAVAILABLE with the last error, or
    UNSUPPORTED when the source lacks the API it needs."""

    def __init__(self, name: str, interval_ms: int, work: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval_s = interval_ms / 1000
        self.work = work
        self.state = TaskState.STARTING
        self.reason = ""
        self.last_run_ms: int | None = None
        self._kick = asyncio.Event()

    def kick(self) -> None:
        self._kick.set()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self.work()
                self.state, self.reason, backoff = TaskState.ACTIVE, "", 0.5
                self.last_run_ms = int(time.time() * 1000)
                delay = self.interval_s
            except asyncio.CancelledError:
                raise
            except SyncUnsupported as exc:
                self.state, self.reason, delay = TaskState.UNSUPPORTED, str(exc), self.interval_s
            except (TimeoutError, ClientError, OSError) as exc:
                self.state, self.reason = TaskState.LINK_UNAVAILABLE, str(exc) or type(exc).__name__
                delay, backoff = min(backoff, self.interval_s), min(backoff * 2, 30.0)
            except Exception as exc:  # a bug or unexpected answer: report it, keep the broker up
                log.exception("shadow %s failed", self.name)
                self.state, self.reason = TaskState.FAULTED, f"{type(exc).__name__}: {exc}"
                delay = self.interval_s
            self._kick.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._kick.wait()
            except TimeoutError:
                pass

    def status(self) -> dict[str, Any]:
        return {"task": self.name, "state": str(self.state), "reason": self.reason, "last_run_ms": self.last_run_ms}


class ShadowLink:
    def __init__(self, manager: ShadowLinkManager, spec: LinkSpec, state: LinkState) -> None:
        self.manager = manager
        self.broker = manager.broker
        self.spec = spec
        self.state = state
        self.metrics = _metrics_for(self.broker.metrics.registry)
        self.source: SourceCluster | None = None
        self.engine: ReplicationEngine | None = None
        self.syncers: list[SyncTask] = []
        self._syncer_tasks: dict[str, asyncio.Task[None]] = {}
        self._was_controller = False
        self._reconciled: tuple[int, int, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.conflicts: dict[str, str] = {}
        # The source offsets last seen per partition, kept across pauses so status still shows the lag.
        self.last_source_offsets: dict[tuple[str, int], tuple[int, int]] = {}
        self._topic_sync_lock = asyncio.Lock()
        # What the source can do, as last seen (kept while the link is paused), and what was said of it.
        self._capabilities = SourceCapabilities.from_versions({})
        self._degraded_said: set[str] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)

    @property
    def running(self) -> bool:
        return self.state in (LinkState.ACTIVE, LinkState.FAILING_OVER)

    # --- lifecycle -----------------------------------------------------
    async def start(self) -> None:
        """Start replication (the engine: on every broker, for the shadow partitions it leads). The syncers
        start with this broker's roles (:meth:`set_roles`)."""
        controller = self.manager.is_controller
        if not self.running:
            if controller:
                self._set_topics_paused(self.state is LinkState.PAUSED)
            return
        if controller:
            self._set_topics_paused(False)
        self.source = self.manager.connect_source(self.spec)
        self.engine = ReplicationEngine(self, self.source)
        await self.engine.start()
        self._was_controller = False

    def set_roles(self, controller: bool, coordinator: bool) -> None:
        """The link controller's syncers (topics and configs, ACLs) run on the controller; the consumer-offset
        syncer where the groups are coordinated. Each starts and stops as this broker's roles change; a broker
        that becomes the controller finishes the failovers its predecessor left under way."""
        if not self.running or self.source is None:
            return
        wanted = {"topic-sync": (controller, self.spec.topics.sync_interval_ms, self.sync_topics_now),
                  "consumer-offset-sync": (coordinator and self.spec.consumer_offsets.enabled,
                                           self.spec.consumer_offsets.interval_ms, self.sync_offsets_now),
                  "acl-sync": (controller and self.spec.acls.enabled, self.spec.acls.interval_ms, self.sync_acls_now)}
        for name, (want, interval_ms, work) in wanted.items():
            running = self._syncer_tasks.get(name)
            if want and running is None:
                syncer = SyncTask(name, interval_ms, work)
                self.syncers.append(syncer)
                task = asyncio.create_task(syncer.run(), name=f"shadow-{self.spec.name}-{name}")
                self._syncer_tasks[name] = task
                self._tasks.append(task)
            elif not want and running is not None:
                running.cancel()
                del self._syncer_tasks[name]
                self.syncers = [s for s in self.syncers if s.name != name]
        if controller and not self._was_controller:
            pending = [t for t, e in self.manager.topics_of(self.spec.name).items()
                       if e["state"] == ShadowTopicState.FAILING_OVER]
            if pending:
                self.schedule_failover(sorted(pending))
        self._was_controller = controller

    def reconcile_replicators(self, fenced: set[str]) -> None:
        """A replicator for each ACTIVE shadow partition this broker leads, at its current leader epoch; none
        for any other (leadership moved away, the topic is paused, failed over, faulted or fenced)."""
        engine = self.engine
        if engine is None:
            return
        # Nothing to do unless the metadata (topics, leaders, shadow-topic states) or the fences changed.
        key = (self.broker.metadata.version, len(fenced), id(engine))
        if key == self._reconciled and not any(rep.stopped for rep in engine.replicators.values()):
            return
        self._reconciled = key
        replicas, node = self.broker.replicas, self.manager.node_id
        wanted: set[tuple[str, int]] = set()
        for topic, entry in self.manager.topics_of(self.spec.name).items():
            if entry["state"] != ShadowTopicState.ACTIVE or topic in fenced:
                continue
            meta = self.broker.metadata.topic(topic)
            if meta is None:
                continue
            source_id = uuid.UUID(entry["source_topic_id"]) if entry.get("source_topic_id") else None
            for partition in range(meta.partitions):
                if replicas.state(topic, partition).leader != node:
                    continue
                try:
                    held = replicas.leader_partition(topic, partition)
                except KafkaError:  # deposed or deleted meanwhile
                    continue
                wanted.add((topic, partition))
                engine.ensure((topic, partition), held, source_id)
        for tp in [tp for tp in engine.replicators if tp not in wanted]:
            engine.stop_partition(tp)

    async def stop(self) -> None:
        if self.engine is not None:
            for tp, rep in self.engine.replicators.items():
                if rep.source_high_watermark >= 0:
                    self.last_source_offsets[tp] = (rep.source_log_start_offset, rep.source_high_watermark)
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        self._syncer_tasks.clear()
        self.syncers = []
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self.source is not None:
            await self.source.close()
            self.source = None

    async def set_paused(self, paused: bool) -> None:
        if paused == (self.state is LinkState.PAUSED):
            return
        await self.stop()
        self.state = LinkState.PAUSED if paused else LinkState.ACTIVE
        await self.start()

    def _set_topics_paused(self, paused: bool) -> None:
        for topic, entry in self.manager.topics_of(self.spec.name).items():
            if paused and entry["state"] == ShadowTopicState.ACTIVE:
                self.manager.set_topic_state(topic, ShadowTopicState.PAUSED, "link paused")
            elif not paused and entry["state"] == ShadowTopicState.PAUSED:
                self.manager.set_topic_state(topic, ShadowTopicState.ACTIVE)

    # --- failover ------------------------------------------------------
    def schedule_failover(self, topics: list[str]) -> None:
        # Fence this broker's replicators now (synchronously): no write can land here after this point.
        self.manager.fence_here(self.spec.name, topics)
        self._tasks.append(asyncio.create_task(self._finish_failover(topics), name=f"shadow-{self.spec.name}-failover"))

    async def _finish_failover(self, topics: list[str]) -> None:
        backoff = 0.5
        while True:
            try:
                await self.manager.finish_failover(self, topics)
                return
            except ControlPlaneError as exc:  # etcd or a broker out of reach: the topics stay FAILING_OVER
                self.record_event(f"failover of {len(topics)} topic(s) not finished yet: {exc}; retrying",
                                  logging.WARNING)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    # --- topic sync ----------------------------------------------------
    async def sync_topics_now(self) -> None:
        async with self._topic_sync_lock:
            await self._sync_topics()

    async def _sync_topics(self) -> None:
        assert self.source is not None and self.engine is not None
        if self.state is LinkState.FAILED_OVER:
            return
        metadata = await self.source.refresh_metadata()
        selected = {name: info for name, info in metadata.topics.items()
                    if not info.is_internal and self.spec.selects_topic(name)}
        configs_synced = await self.source.supports(api.DESCRIBE_CONFIGS)
        source_configs = await self.source.describe_configs(sorted(selected)) if selected and configs_synced else {}
        broker, store = self.broker, self.manager.store
        for name, info in sorted(selected.items()):
            synced = self._synced_configs(name, source_configs.get(name, {}))
            entry = self.manager.topic_entry(name)
            meta = broker.metadata.topic(name)
            if meta is None:
                # The shadow entry first, in the cluster metadata too: the topic is read-only from its first
                # moment, on every broker.
                store.put_topic(name, {
                    "link": self.spec.name, "state": str(ShadowTopicState.ACTIVE), "reason": "",
                    "source_topic_id": str(info.topic_id) if info.topic_id else None,
                    "since_ms": int(time.time() * 1000)})
                await store.publish()
                meta = await broker.create_topic_with_defaults(name, len(info.partitions), synced)
                log.info("link %s: created shadow topic %s (%d partitions, configs %s)", self.spec.name, name,
                         len(info.partitions), synced)
            elif entry is None or entry.get("link") != self.spec.name:
                owner = "a topic of this cluster" if entry is None else f"a shadow of link {entry.get('link')!r}"
                self.conflicts[name] = f"not replicated: {name} already exists here as {owner}"
                continue
            else:
                state = ShadowTopicState(entry["state"])
                if state in (ShadowTopicState.FAILED_OVER, ShadowTopicState.FAILING_OVER, ShadowTopicState.FAULTED):
                    continue
                source_id = str(info.topic_id) if info.topic_id else None
                if entry.get("source_topic_id") and source_id and source_id != entry["source_topic_id"]:
                    self.fault_topic(name, f"the source topic was recreated (topic id {entry['source_topic_id']} "
                                      f"is now {source_id}); shadow data kept")
                    continue
                if state is ShadowTopicState.SOURCE_DELETED:  # it came back (a source without topic ids)
                    self.manager.set_topic_state(name, ShadowTopicState.PAUSED if self.state is LinkState.PAUSED
                                                 else ShadowTopicState.ACTIVE, "the source topic is back")
                if len(info.partitions) > meta.partitions:
                    log.info("link %s: %s grows from %d to %d partitions", self.spec.name, name, meta.partitions,
                             len(info.partitions))
                    meta = await broker.grow_topic(name, len(info.partitions))
                if configs_synced:
                    await self._apply_configs(name, dict(meta.configs), synced)
            self.conflicts.pop(name, None)
        for name, entry in self.manager.topics_of(self.spec.name).items():
            if entry["state"] in (ShadowTopicState.ACTIVE, ShadowTopicState.PAUSED) and name not in metadata.topics:
                self.fault_topic(name, "the source topic no longer exists; shadow data kept (readable, and it "
                                       "can be failed over)", ShadowTopicState.SOURCE_DELETED)
        self.reconcile_replicators(self.manager.fenced_topics)
        self._update_topic_gauges()

    def _synced_configs(self, topic: str, entries: dict[str, Any]) -> dict[str, str]:
        wanted = {k: e.value for k, e in entries.items()
                  if k in self.spec.topics.synced_properties and e.value is not None
                  and e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG}
        accepted = {}
        for key, value in wanted.items():
            try:
                validate_topic_configs({key: value})
                accepted[key] = value
            except KafkaError as exc:
                self.conflicts[f"{topic}:{key}"] = f"config {key}={value} not synced: {exc}"
        return accepted

    async def _apply_configs(self, topic: str, current: dict[str, str], synced: dict[str, str]) -> None:
        desired = {k: v for k, v in current.items() if k not in self.spec.topics.synced_properties}
        desired.update(synced)
        if desired != current:
            log.info("link %s: %s configs %s -> %s", self.spec.name, topic, current, desired)
            await self.broker.change_topic_configs(topic, desired)

    def fault_topic(self, topic: str, reason: str, state: ShadowTopicState = ShadowTopicState.FAULTED) -> None:
        """The shadow topic can no longer follow its source: FAULTED (or SOURCE_DELETED), replication stopped
        on this broker now and on the others once they read the state, data kept."""
        if self.engine is not None:
            self.engine.stop_topic(topic)
        self.manager.set_topic_state(topic, state, reason)

    def _update_topic_gauges(self) -> None:
        counts = dict.fromkeys((str(s) for s in ShadowTopicState), 0)
        for entry in self.manager.topics_of(self.spec.name).values():
            counts[entry["state"]] = counts.get(entry["state"], 0) + 1
        for state, count in counts.items():
            self.metrics.topics.labels(self.spec.name, state).set(count)

    # --- consumer offsets ------------------------------------------------
    async def sync_offsets_now(self) -> None:
        assert self.source is not None
        coordinator = self.broker.groups
        shadow_topics = {t for t, e in self.manager.topics_of(self.spec.name).items()
                         if e["state"] in (ShadowTopicState.ACTIVE, ShadowTopicState.PAUSED)}
        if not shadow_topics or coordinator is None:
            return
        counts = {topic: meta.partitions for topic in shadow_topics if (meta := self.broker.metadata.topic(topic))}
        partitions = [(topic, p) for topic, count in sorted(counts.items()) for p in range(count)]
        for group_id in await self._source_groups():
            if not self.spec.selects_group(group_id):
                continue
            group = coordinator.describe_group(group_id)
            if group is not None and group.members:
                continue  # consumers are active on the shadow: their commits win
            committed = await self.source.offset_fetch(group_id, partitions)
            current = coordinator.fetch_offsets(group_id, None) if group is not None else {}
            now = int(time.time() * 1000)
            updates: dict[tuple[str, int], OffsetAndMetadata] = {}
            for tp, offset in committed.items():
                if tp[0] not in shadow_topics or offset.offset < 0:
                    continue
                shadow_log = self.broker.logs.get(*tp)
                if shadow_log is None:  # not a replica here: its offsets wait for a coordinator that holds it
                    continue
                value = min(offset.offset, shadow_log.high_watermark)
                existing = current.get(tp)
                if existing is not None and existing.offset == value:
                    continue
                updates[tp] = OffsetAndMetadata(value, offset.leader_epoch, offset.metadata, now)
            if updates:
                coordinator.commit_offsets(group_id, -1, "", None, updates)

    async def _source_groups(self) -> list[str]:
        """The source's consumer groups: all of them (ListGroups), or, from a source without ListGroups,
        the groups the link names with literal include filters."""
        assert self.source is not None
        if await self.source.supports(api.LIST_GROUPS):
            return [listing.group_id for listing in await self.source.list_groups()]
        named = [f.name for f in self.spec.consumer_offsets.groups if f.action == "include" and f.pattern == "literal"]
        if not named:
            raise SyncUnsupported("the source has no ListGroups, so groups cannot be discovered; name them with "
                                  "literal filters in consumer_offsets.groups")
        return named

    # --- ACLs ----------------------------------------------------------
    def _acl_selected(self, resource_type: int, name: str, pattern_type: int) -> bool:
        if resource_type == ResourceType.TOPIC:
            return self.spec.selects_topic(name) if pattern_type == PatternType.LITERAL else any(
                f.action == "include" and (f.name.startswith(name) or name.startswith(f.name))
                for f in self.spec.topics.filters)
        if resource_type == ResourceType.GROUP:
            return self.spec.selects_group(name)
        return False

    async def sync_acls_now(self) -> None:
        """Create here the source's ACLs the link selects; delete those this syncer created that the source no
        longer has. ACLs this cluster has of its own are never deleted, even when the source had the same."""
        assert self.source is not None
        if not await self.source.supports(api.DESCRIBE_ACLS):
            raise SyncUnsupported("the source has no DescribeAcls: ACLs are not synced")
        source_acls = await self.source.describe_acls()
        wanted = set()
        for acl in source_acls:
            if self._acl_selected(acl.resource_type, acl.resource_name, acl.pattern_type):
                wanted.add(AclBinding.from_codes(acl.resource_type, acl.resource_name, acl.pattern_type,
                                                 acl.principal, acl.host, acl.operation, acl.permission_type))
        record = self.manager.record(self.spec.name)
        if record is None:
            return  # deleted meanwhile
        existing = set(self.broker.acls.all())
        to_add = sorted(wanted - existing, key=str)
        to_remove = sorted(record.created_acls - wanted, key=str)
        if to_add or to_remove:  # on a cluster, in its ACL document: every broker enforces the same list
            await self.broker.change_acls(to_add, [AclFilter.exactly(b) for b in to_remove])
        created = (record.created_acls - set(to_remove)) | set(to_add)
        if created != record.created_acls:
            self.manager.save_record(replace(record, created_acls=frozenset(created)))
            log.info("link %s: ACLs +%d -%d", self.spec.name, len(to_add), len(to_remove))

    # --- the source's capabilities, events ---------------------------------
    def capabilities(self) -> SourceCapabilities:
        """What the source can do, from the versions its brokers negotiated (the last known while paused)."""
        if self.source is not None:
            sessions = self.engine.sessions_granted() if self.engine is not None else {}
            self._capabilities = SourceCapabilities.from_versions(self.source.negotiated_versions(), sessions)
        return self._capabilities

    def note_capabilities(self) -> None:
        """Say once, in the log and the link's events, each way this link degrades for its source."""
        capabilities = self.capabilities()
        for capability, effect in capabilities.degraded().items():
            if capability not in self._degraded_said:
                self._degraded_said.add(capability)
                self.record_event(f"source capability missing: {effect}", logging.WARNING)
        for capability, value in capabilities.flags().items():
            if value is not None:
                self.metrics.degraded.labels(self.spec.name, capability).set(0 if value else 1)

    def record_event(self, event: str, level: int = logging.INFO) -> None:
        """Log ``event`` and keep it among the link's recent events, which status shows."""
        log.log(level, "link %s: %s", self.spec.name, event)
        self.events.append({"time_ms": int(time.time() * 1000), "level": logging.getLevelName(level),
                            "event": event})

    # --- status --------------------------------------------------------
    def refresh_metrics(self) -> None:
        if self.engine is not None:
            for tp, rep in self.engine.replicators.items():
                lag = rep.lag
                if lag is not None:
                    self.metrics.lag.labels(self.spec.name, tp[0], str(tp[1])).set(lag)
        self._update_topic_gauges()

    def local_status(self) -> dict[str, Any]:
        """What this broker knows of the link: its tasks, and the shadow partitions it leads (each entry names
        its ``broker``; ``writable`` says whether this broker, their leader, takes producers' writes now)."""
        node = self.manager.node_id
        topics = self.manager.topics_of(self.spec.name)
        partitions = []
        if self.engine is not None:
            for tp, rep in sorted(self.engine.replicators.items()):
                partitions.append({**rep.status(), "broker": node, "writable": False})
                if rep.source_high_watermark >= 0:
                    self.last_source_offsets[tp] = (rep.source_log_start_offset, rep.source_high_watermark)
        replicated = {(p["topic"], p["partition"]) for p in partitions}
        for topic, entry in sorted(topics.items()):
            meta = self.broker.metadata.topic(topic)
            for partition in range(meta.partitions if meta else 0):
                if (topic, partition) in replicated or self.broker.replicas.state(topic, partition).leader != node:
                    continue
                partitions.append({**self.idle_partition(topic, partition, entry), "broker": node,
                                   "writable": entry["state"] == ShadowTopicState.FAILED_OVER})
        tasks = [{**s.status(), "broker": node} for s in self.syncers]
        if self.engine is not None:
            tasks += [{**loop.status(), "broker": node} for _, (loop, _) in sorted(self.engine.loops.items())]
        self.note_capabilities()
        return {"broker": node, "tasks": tasks, "partitions": partitions, "conflicts": dict(self.conflicts),
                "source_capabilities": self._capabilities.to_json() if self.source is not None else None,
                "start_point_checks": dict(self.engine.start_point_checks) if self.engine is not None else {},
                "events": [{**e, "broker": node} for e in self.events]}

    def idle_partition(self, topic: str, partition: int, entry: dict[str, Any]) -> dict[str, Any]:
        """The status of a shadow partition no replicator runs for (paused, failed over, faulted, or led by a
        broker that did not answer), from what this broker has."""
        log_ = self.broker.logs.get(topic, partition)
        hw = log_.high_watermark if log_ is not None else -1
        source_start, source_hw = self.last_source_offsets.get((topic, partition), (-1, -1))
        lag = max(source_hw - hw, 0) if source_hw >= 0 and hw >= 0 else None
        if entry["state"] == ShadowTopicState.FAILED_OVER:
            source_start, source_hw, lag = -1, -1, 0  # an ordinary topic now: no source to lag behind
        return {"topic": topic, "partition": partition, "state": entry["state"], "reason": entry.get("reason", ""),
                "source_log_start_offset": source_start, "source_high_watermark": source_hw,
                "shadow_log_start_offset": log_.log_start_offset if log_ is not None else -1,
                "shadow_high_watermark": hw, "lag": lag, "ms_since_last_batch": None, "gaps": 0,
                "skipped_records": 0, **IDLE_PARTITION_FIELDS}

    def status(self, others: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The link's status: this broker's part and ``others``, the other brokers' (their ``local_status``)."""
        parts = [self.local_status(), *(others or [])]
        topics = self.manager.topics_of(self.spec.name)
        by_tp: dict[tuple[str, int], dict[str, Any]] = {}
        for part in parts:
            for entry in part.get("partitions", []):
                tp = (entry["topic"], entry["partition"])
                leader = self.broker.replicas.state(*tp).leader
                # Two brokers report a partition while its leadership moves: the current leader's wins.
                if tp not in by_tp or entry.get("broker") == leader:
                    by_tp[tp] = entry
        for topic, entry in sorted(topics.items()):
            meta = self.broker.metadata.topic(topic)
            for partition in range(meta.partitions if meta else 0):
                if (topic, partition) not in by_tp:  # its leader did not answer, or it has none
                    leader = self.broker.replicas.state(topic, partition).leader
                    by_tp[(topic, partition)] = {**self.idle_partition(topic, partition, entry),
                                                 "broker": leader, "writable": False}
        partitions = [by_tp[tp] for tp in sorted(by_tp) if tp[0] in topics]
        checks: Counter[str] = Counter()
        for part in parts:
            checks.update(part.get("start_point_checks", {}))
        events = sorted((e for part in parts for e in part.get("events", [])), key=lambda e: e["time_ms"])
        capabilities = next((c for c in (p.get("source_capabilities") for p in parts) if c), None)
        conflicts: dict[str, str] = {}
        for part in parts:
            conflicts.update(part.get("conflicts", {}))
        return {"name": self.spec.name, "state": str(self.state),
                "source": list(self.spec.source.bootstrap_servers),
                "topics": [{"topic": t, "state": e["state"], "reason": e.get("reason", "")}
                           for t, e in sorted(topics.items())],
                "tasks": [t for part in parts for t in part.get("tasks", [])], "conflicts": conflicts,
                "partitions": partitions,
                "total_lag": sum(p["lag"] or 0 for p in partitions),
                # False while some partition's source high watermark is unknown: total_lag leaves it out.
                "total_lag_complete": all(p["lag"] is not None for p in partitions),
                "brokers": sorted({p["broker"] for p in parts}),
                "source_capabilities": capabilities or self._capabilities.to_json(),
                "start_point_checks": dict(checks), "events": events[-EVENTS_KEPT:]}
