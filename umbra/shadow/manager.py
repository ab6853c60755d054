"""Shadow links on this broker: create, update, pause, fail over, delete; read-only shadow topics.

Links and shadow-topic states are cluster metadata (:class:`umbra.shadow.store.ShadowStore`: the metadata
store, and on a cluster two documents in etcd), so they survive restarts and every broker sees them. Each
link's runtime (syncers and replicators) lives in :class:`umbra.shadow.link.ShadowLink`; this module owns the
lifecycle and the rules: shadow topics refuse producer writes, deletes, partition changes and edits of synced
configs until they are failed over.

On a cluster, every broker runs a runtime for every link, with the replicators of the shadow partitions it
leads (started when it becomes their leader, stopped when it is not any more: :meth:`ShadowLinkManager.reconcile`).
The link controller, the admin operations and the topic and ACL syncers run on the controller broker only, and
move with it; the consumer-offset syncer runs on the group coordinator, where the offsets are committed. A
failover is one operation of the controller: it fences the replicators of the topics on every broker, raises
the producer-id floor of the cluster above every replicated id, and then marks the topics failed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from umbra.client.errors import ClientError
from umbra.cluster.configs import TopicMutation
from umbra.cluster.control import ControlPlaneError
from umbra.cluster.metadata import TopicMetadata
from umbra.errors import ErrorCode, KafkaError, PolicyViolation
from umbra.shadow.host import PeerUnavailable
from umbra.shadow.link import ShadowLink, SourceFactory, connect_source
from umbra.shadow.records import LinkRecord
from umbra.shadow.spec import LinkSpec, SpecError, parse_link_spec
from umbra.shadow.state import LinkState, ShadowTopicState
from umbra.shadow.store import ShadowStore
from umbra.tasks import cancel_and_wait

if TYPE_CHECKING:
    from umbra.cluster.control import ControlPlane
    from umbra.shadow.host import Peers, ShadowHost

RECONCILE_INTERVAL_S = 0.25
FENCE_TIMEOUT_S = 60.0

log = logging.getLogger("umbra.shadow")


class LinkError(Exception):
    """A refused admin operation; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ShadowTopicReadOnly(KafkaError):
    # INVALID_TOPIC_EXCEPTION is permanent in every client: a producer fails fast instead of retrying.
    code = ErrorCode.INVALID_TOPIC_EXCEPTION


class ShadowLinkManager:
    def __init__(self, broker: ShadowHost, connect_source: SourceFactory = connect_source, *,
                 control: ControlPlane | None = None, peers: Peers | None = None) -> None:
        self.broker = broker
        self.control = control if control is not None else broker.control
        self.peers = peers  # the other brokers of the cluster (None on a single broker)
        self.connect_source = connect_source  # how each link builds its source client (tests pass a fake)
        self.store = ShadowStore(broker.metadata, self.control)
        self.links: dict[str, ShadowLink] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Topics whose replicators a failover fenced on this broker: never replicated here again, even before
        # this broker reads their new state from the cluster.
        self._fenced: set[str] = set()

    @property
    def node_id(self) -> int:
        return self.control.node_id

    @property
    def fenced_topics(self) -> set[str]:
        return self._fenced

    @property
    def is_controller(self) -> bool:
        """The link controller runs here: on a single broker always, on a cluster on the controller."""
        return self.control.is_controller()

    # --- lifecycle -----------------------------------------------------
    async def start(self) -> None:
        await self.reconcile()
        self._task = asyncio.create_task(self._reconcile_loop(), name="shadow-links")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for link in list(self.links.values()):  # first: a failover under way stops where it is (and resumes
            await link.stop()  # at the next start), before any other task gets to run
        if task is not None:
            await cancel_and_wait([task])

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL_S)
            try:
                await self.reconcile()
                if self.store.unpublished and self.is_controller:
                    await self.store.publish()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: logged with its traceback; the links go on and the next pass retries
                log.exception("shadow links: reconciling failed")

    async def reconcile(self) -> None:
        """Bring this broker's link runtimes in line with the stored links (another broker, or the previous
        controller, may have changed them), each link's syncers with this broker's roles, and its replicators
        with the shadow partitions this broker leads."""
        async with self._lock:
            records = self.store.links()
            for name in [n for n in self.links if n not in records]:
                await self.links.pop(name).stop()
            for name in records:
                try:
                    record = self.record(name)
                except (SpecError, ValueError, KeyError) as exc:
                    if name not in self.links:
                        log.error("stored shadow link %s is invalid and stays stopped: %s", name, exc)
                    continue
                assert record is not None
                link = self.links.get(name)
                if link is not None and (link.spec != record.spec or link.state is not record.state):
                    await link.stop()
                    link = None
                if link is None:
                    link = ShadowLink(self, record.spec, record.state)
                    self.links[name] = link
                    await link.start()
            controller, coordinator = self.is_controller, self.broker.coordinates_groups
            for link in self.links.values():
                link.set_roles(controller, coordinator)
                link.reconcile_replicators(self._fenced)

    # --- shadow-topic state ------------------------------------------
    def topic_entry(self, topic: str) -> dict[str, Any] | None:
        return self.store.topic(topic)

    def topic_state(self, topic: str) -> ShadowTopicState | None:
        entry = self.topic_entry(topic)
        return ShadowTopicState(entry["state"]) if entry else None

    def set_topic_state(self, topic: str, state: ShadowTopicState, reason: str = "") -> None:
        entry = self.topic_entry(topic)
        if entry is None:
            return
        if entry.get("state") != state or entry.get("reason", "") != reason:
            if entry.get("state") != state:
                log.info("shadow topic %s: %s -> %s %s", topic, entry.get("state"), state, reason)
            entry.update(state=str(state), reason=reason, since_ms=int(time.time() * 1000))
            self.store.put_topic(topic, entry)

    def topics_of(self, link_name: str) -> dict[str, dict[str, Any]]:
        return {t: e for t, e in self.store.topics().items() if e.get("link") == link_name}

    # --- the read-only rules -----------------------------------------
    def check_produce(self, topic: TopicMetadata) -> None:
        entry = self.topic_entry(topic.name)
        if entry is not None and ShadowTopicState(entry["state"]).read_only:
            raise ShadowTopicReadOnly(
                f"topic {topic.name!r} is a read-only shadow of link {entry['link']!r} (state {entry['state']}); "
                f"fail it over first: umbra shadow failover {entry['link']} --topic {topic.name}")

    def topic_policy(self, topic: TopicMetadata, mutation: TopicMutation, changed: frozenset[str]) -> None:
        entry = self.topic_entry(topic.name)
        if entry is None or not ShadowTopicState(entry["state"]).read_only:
            return
        link = self.links.get(entry["link"])
        if mutation is TopicMutation.ALTER_CONFIGS:
            synced = set(link.spec.topics.synced_properties) if link else set()
            touched = sorted(changed & synced)
            if not touched:
                return
            what = f"change {', '.join(touched)} (synced from the source)"
        else:
            what = mutation.value
        raise PolicyViolation(f"cannot {what} on topic {topic.name!r}: it is a shadow of link {entry['link']!r}; "
                              f"fail it over first")

    # --- admin operations --------------------------------------------
    def _require(self, name: str) -> ShadowLink:
        link = self.links.get(name)
        if link is None:
            raise LinkError(404, f"shadow link {name!r} does not exist")
        return link

    # --- link records ----------------------------------------------------
    def record(self, name: str) -> LinkRecord | None:
        """The link's stored record (None if there is none)."""
        doc = self.store.links().get(name)
        return LinkRecord.from_json(doc) if doc is not None else None

    def save_record(self, record: LinkRecord) -> None:
        self.store.put_link(record.name, record.to_json())

    def _persist(self, link: ShadowLink) -> None:
        """Store the link's spec and state; the rest of its record (what its syncers created) is kept."""
        current = self.record(link.spec.name)
        if current is None:
            current = LinkRecord(link.spec, link.state)
        self.save_record(replace(current, spec=link.spec, state=link.state))

    def list_links(self) -> list[dict[str, Any]]:
        return [{"name": name, "state": str(link.state), "source": list(link.spec.source.bootstrap_servers),
                 "topics": len(self.topics_of(name))} for name, link in sorted(self.links.items())]

    def describe(self, name: str) -> dict[str, Any]:
        link = self._require(name)
        return {"name": name, "state": str(link.state), "spec": link.spec.to_json(),
                "topics": {t: {"state": e["state"], "reason": e.get("reason", "")}
                           for t, e in sorted(self.topics_of(name).items())}}

    async def _published(self) -> None:
        """An admin operation answers once its change is in the cluster metadata (etcd, on a cluster)."""
        try:
            await self.store.publish()
        except ControlPlaneError as exc:
            raise LinkError(503, f"the change is made on this broker but not yet in the cluster metadata "
                                 f"(etcd): {exc}; it is retried") from None

    def _require_controller(self) -> None:
        if not self.is_controller:
            view = self.control.view()
            raise LinkError(409, f"shadow links are changed through the controller (broker {view.controller})")

    async def create(self, doc: Any) -> dict[str, Any]:
        self._require_controller()
        spec = self._parse(doc)
        async with self._lock:
            if spec.name in self.links or self.record(spec.name) is not None:
                raise LinkError(409, f"shadow link {spec.name!r} already exists")
            await self._check_source(spec)
            link = ShadowLink(self, spec, LinkState.ACTIVE)
            self._persist(link)
            self.links[spec.name] = link
            await link.start()
            link.set_roles(self.is_controller, self.broker.coordinates_groups)
        await self._published()
        try:
            await link.sync_topics_now()
        except (ClientError, OSError, TimeoutError, KafkaError, ControlPlaneError) as exc:
            # discovery keeps retrying in the background
            log.warning("initial topic discovery for link %s failed: %s", spec.name, exc)
        await self._published()
        return self.describe(spec.name)

    async def update(self, name: str, doc: Any) -> dict[str, Any]:
        self._require_controller()
        spec = self._parse(doc)
        if spec.name != name:
            raise LinkError(400, f"name: the spec names link {spec.name!r}, not {name!r} (links cannot be renamed)")
        async with self._lock:
            old = self._require(name)
            if spec.source.bootstrap_servers != old.spec.source.bootstrap_servers:
                await self._check_source(spec)
            await old.stop()
            link = ShadowLink(self, spec, old.state)
            self.links[name] = link
            self._persist(link)
            await link.start()
            link.set_roles(self.is_controller, self.broker.coordinates_groups)
        await self._published()
        return self.describe(name)

    async def pause(self, name: str) -> dict[str, Any]:
        self._require_controller()
        async with self._lock:
            link = self._require(name)
            if link.state is LinkState.FAILED_OVER:
                raise LinkError(409, f"shadow link {name!r} is failed over; there is nothing to pause")
            await link.set_paused(True)
            self._persist(link)
        await self._published()
        return self.describe(name)

    async def resume(self, name: str) -> dict[str, Any]:
        self._require_controller()
        async with self._lock:
            link = self._require(name)
            await link.set_paused(False)
            self._persist(link)
            link.set_roles(self.is_controller, self.broker.coordinates_groups)
        await self._published()
        return self.describe(name)

    async def failover(self, name: str, topics: list[str] | None) -> dict[str, Any]:
        """Fail over ``topics`` (or, with None, every shadow topic of the link). Returns once requested (and,
        on a cluster, once the request is in etcd: a new controller would finish it)."""
        self._require_controller()
        async with self._lock:
            link = self._require(name)
            own = self.topics_of(name)
            if topics is None:
                targets = sorted(own)
                link.state = LinkState.FAILING_OVER
                self._persist(link)
            else:
                unknown = [t for t in topics if t not in own]
                if unknown:
                    raise LinkError(404, f"not shadow topics of link {name!r}: {', '.join(unknown)}")
                targets = sorted(set(topics))
            with self.store.batch():  # one write for the whole failover, however many topics
                for topic in targets:
                    if self.topic_state(topic) is not ShadowTopicState.FAILED_OVER:
                        self.set_topic_state(topic, ShadowTopicState.FAILING_OVER, "failover requested")
        await self._published()
        link.schedule_failover(targets)
        return {"link": name, "topics": targets}

    def fence_here(self, link_name: str, topics: list[str]) -> None:
        """Stop this broker's replicators of ``topics`` now (synchronously: no append starts after this), and
        never start them here again."""
        self._fenced.update(topics)
        link = self.links.get(link_name)
        if link is not None and link.engine is not None:
            for topic in topics:
                link.engine.stop_topic(topic)

    async def settle_here(self, link_name: str, topics: list[str]) -> int:
        """After :meth:`fence_here`: let appends already under way land, make what was replicated visible on
        the partitions led here, and return the highest producer id in this broker's copies of ``topics``."""
        self.fence_here(link_name, topics)
        link = self.links.get(link_name)
        if link is not None and link.engine is not None:
            await link.engine.drain_writes()
        wanted = set(topics)
        logs = [log_ for log_ in self.broker.logs.all_logs() if log_.topic in wanted]
        for log_ in logs:  # appends that landed while the fence went up are replicated data: make them visible
            tp = (log_.topic, log_.partition)
            if self.broker.replicas.state(*tp).leader == self.node_id:
                try:
                    self.broker.replicas.leader_partition(*tp).maybe_advance_high_watermark()
                except KafkaError:
                    continue  # deposed meanwhile: its new leader does this
                self.broker.notifier.notify(tp)
        return max((log_.max_producer_id for log_ in logs), default=-1)

    async def finish_failover(self, link: ShadowLink, topics: list[str]) -> None:
        """On the controller, once the request is stored: fence every broker's replicators of ``topics``, raise
        the cluster's producer-id floor above every replicated producer id, then mark the topics failed over
        (ordinary, writable topics on every broker from then on)."""
        highest = await self.settle_here(link.spec.name, topics)
        others = self.peers.others() if self.peers is not None else []
        for node in others:  # every live broker: a broker that is down replicates nothing, and comes back to
            # the failed-over state
            answer = await self._ask(node, "/v1/internal/shadow/fence", {"link": link.spec.name, "topics": topics})
            if isinstance(answer, dict) and isinstance(answer.get("max_producer_id"), int):
                highest = max(highest, answer["max_producer_id"])
        # A new idempotent producer must never collide with a replicated producer id, whichever broker it asks.
        await self.broker.producer_id_barrier(highest + 1)
        for node in others:
            await self._ask(node, "/v1/internal/shadow/producer-id-barrier", {})
        with self.store.batch():
            for topic in topics:
                self.set_topic_state(topic, ShadowTopicState.FAILED_OVER, "")
            own = self.topics_of(link.spec.name)
            if own and all(e["state"] == ShadowTopicState.FAILED_OVER for e in own.values()):
                link.state = LinkState.FAILED_OVER
                self._persist(link)
        await self.store.publish()
        log.info("link %s: %d topic(s) failed over (producer ids from now on above %d)", link.spec.name,
                 len(topics), highest)

    async def _ask(self, node: int, path: str, body: dict[str, Any]) -> Any:
        """A call to another broker, retried until it answers or is no longer a live member of the cluster."""
        assert self.peers is not None
        deadline = time.monotonic() + FENCE_TIMEOUT_S
        while True:
            try:
                return await self.peers.call(node, path, body)
            except PeerUnavailable as exc:
                if node not in self.peers.others():
                    log.info("broker %d left the cluster during a failover; it comes back failed over", node)
                    return None
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"broker {node} did not answer {path}: {exc}") from None
                await asyncio.sleep(0.5)

    async def delete(self, name: str, force: bool) -> dict[str, Any]:
        self._require_controller()
        link = self._require(name)
        active = sorted(t for t, e in self.topics_of(name).items() if e["state"] != ShadowTopicState.FAILED_OVER)
        if active and not force:
            raise LinkError(409, f"shadow link {name!r} still has topics that are not failed over: "
                                 f"{', '.join(active)}; fail them over first or delete with --force")
        if active:
            await self.failover(name, None)
            deadline = time.monotonic() + 60
            while any(e["state"] != ShadowTopicState.FAILED_OVER for e in self.topics_of(name).values()):
                if time.monotonic() > deadline:
                    raise LinkError(500, f"failover of link {name!r} did not finish; try again")
                await asyncio.sleep(0.05)
        async with self._lock:
            await link.stop()
            del self.links[name]
            with self.store.batch():
                for topic in self.topics_of(name):
                    self.store.delete_topic(topic)
                    self._fenced.discard(topic)
                self.store.delete_link(name)
        await self._published()
        return {"deleted": name}

    def status(self, name: str, others: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The link's status; on a cluster, ``others`` are the other brokers' parts (``local_status``)."""
        return self._require(name).status(others)

    def local_status(self, name: str) -> dict[str, Any]:
        return self._require(name).local_status()

    # --- helpers -------------------------------------------------------
    @staticmethod
    def _parse(doc: Any) -> LinkSpec:
        try:
            return parse_link_spec(doc)
        except SpecError as exc:
            raise LinkError(400, str(exc)) from None

    async def _check_source(self, spec: LinkSpec) -> None:
        from umbra.shadow.link import probe_source

        try:
            await probe_source(spec, connect=self.connect_source)
        except (ClientError, OSError, TimeoutError) as exc:
            raise LinkError(400, f"source.bootstrap_servers: cannot reach the source cluster at "
                                 f"{', '.join(spec.source.bootstrap_servers)}: {exc}") from None
