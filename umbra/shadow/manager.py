"""Shadow links on this broker: create, update, pause, fail over, delete; read-only shadow topics.

Links and shadow-topic states are cluster metadata (``MetadataStore``), so they
survive restarts. Each link's runtime (syncers and replicators) lives in
:class:`umbra.shadow.link.ShadowLink`; this module owns the lifecycle and the
rules: shadow topics refuse producer writes, deletes, partition changes and
edits of synced configs until they are failed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from umbra.client.errors import ClientError
from umbra.cluster.configs import TopicMutation
from umbra.cluster.metadata import TopicMetadata
from umbra.errors import ErrorCode, KafkaError, PolicyViolation
from umbra.shadow.link import ShadowLink, SourceFactory, connect_source
from umbra.shadow.records import LinkRecord
from umbra.shadow.spec import LinkSpec, SpecError, parse_link_spec
from umbra.shadow.state import LinkState, ShadowTopicState

if TYPE_CHECKING:
    from umbra.shadow.host import ShadowHost

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
    def __init__(self, broker: ShadowHost, connect_source: SourceFactory = connect_source) -> None:
        self.broker = broker
        self.connect_source = connect_source  # how each link builds its source client (tests pass a fake)
        self.links: dict[str, ShadowLink] = {}
        self._lock = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------
    async def start(self) -> None:
        for name in self.broker.metadata.shadow_links():
            try:
                record = self.record(name)
            except (SpecError, ValueError, KeyError) as exc:
                log.error("stored shadow link %s is invalid and stays stopped: %s", name, exc)
                continue
            assert record is not None
            link = ShadowLink(self, record.spec, record.state)
            self.links[name] = link
            await link.start()

    async def stop(self) -> None:
        for link in list(self.links.values()):
            await link.stop()

    # --- shadow-topic state ------------------------------------------
    def topic_entry(self, topic: str) -> dict[str, Any] | None:
        return self.broker.metadata.shadow_topic(topic)

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
            self.broker.metadata.put_shadow_topic(topic, entry)

    def topics_of(self, link_name: str) -> dict[str, dict[str, Any]]:
        return {t: e for t, e in self.broker.metadata.shadow_topics().items() if e.get("link") == link_name}

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
        doc = self.broker.metadata.shadow_links().get(name)
        return LinkRecord.from_json(doc) if doc is not None else None

    def save_record(self, record: LinkRecord) -> None:
        self.broker.metadata.put_shadow_link(record.name, record.to_json())

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

    async def create(self, doc: Any) -> dict[str, Any]:
        if self.broker.clustered:
            raise LinkError(400, "shadow links on a cluster of brokers on etcd are not built yet: run the link "
                                 "on a single broker (without --etcd) for now")
        spec = self._parse(doc)
        async with self._lock:
            if spec.name in self.links:
                raise LinkError(409, f"shadow link {spec.name!r} already exists")
            await self._check_source(spec)
            link = ShadowLink(self, spec, LinkState.ACTIVE)
            self._persist(link)
            self.links[spec.name] = link
            await link.start()
        try:
            await link.sync_topics_now()
        except (ClientError, OSError, TimeoutError, KafkaError) as exc:  # discovery keeps retrying in the background
            log.warning("initial topic discovery for link %s failed: %s", spec.name, exc)
        return self.describe(spec.name)

    async def update(self, name: str, doc: Any) -> dict[str, Any]:
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
        return self.describe(name)

    async def pause(self, name: str) -> dict[str, Any]:
        async with self._lock:
            link = self._require(name)
            if link.state is LinkState.FAILED_OVER:
                raise LinkError(409, f"shadow link {name!r} is failed over; there is nothing to pause")
            await link.set_paused(True)
            self._persist(link)
        return self.describe(name)

    async def resume(self, name: str) -> dict[str, Any]:
        async with self._lock:
            link = self._require(name)
            await link.set_paused(False)
            self._persist(link)
        return self.describe(name)

    async def failover(self, name: str, topics: list[str] | None) -> dict[str, Any]:
        """Fail over ``topics`` (or, with None, every shadow topic of the link). Returns once requested."""
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
            with self.broker.metadata.batch():  # one write for the whole failover, however many topics
                for topic in targets:
                    if self.topic_state(topic) is not ShadowTopicState.FAILED_OVER:
                        self.set_topic_state(topic, ShadowTopicState.FAILING_OVER, "failover requested")
        link.schedule_failover(targets)
        return {"link": name, "topics": targets}

    def finish_failover(self, link: ShadowLink, topics: list[str]) -> None:
        """Called by the link once replication of ``topics`` has stopped: they become ordinary topics."""
        wanted = set(topics)
        logs = [log_ for log_ in self.broker.logs.all_logs() if log_.topic in wanted]
        highest = max((log_.max_producer_id for log_ in logs), default=-1)
        for log_ in logs:  # appends that landed while the fence went up are replicated data: make them visible
            self.broker.replicas.leader_partition(log_.topic, log_.partition).maybe_advance_high_watermark()
            self.broker.notifier.notify((log_.topic, log_.partition))
        # A new idempotent producer must never collide with a replicated producer id.
        self.broker.producer_ids.ensure_above(highest)
        with self.broker.metadata.batch():
            for topic in topics:
                self.set_topic_state(topic, ShadowTopicState.FAILED_OVER, "")
            own = self.topics_of(link.spec.name)
            if own and all(e["state"] == ShadowTopicState.FAILED_OVER for e in own.values()):
                link.state = LinkState.FAILED_OVER
                self._persist(link)

    async def delete(self, name: str, force: bool) -> dict[str, Any]:
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
            with self.broker.metadata.batch():
                for topic in self.topics_of(name):
                    self.broker.metadata.delete_shadow_topic(topic)
                self.broker.metadata.delete_shadow_link(name)
        return {"deleted": name}

    def status(self, name: str) -> dict[str, Any]:
        return self._require(name).status()

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
