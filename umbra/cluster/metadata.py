"""The local metadata store: the single-node control-plane backend.

Topics (name, id, partition count, config overrides), dynamic broker configs and shadow links live in
``<data_dir>/cluster-metadata.json``, replaced atomically (write, fsync, rename). Readers get frozen snapshots.

A change is visible at once; the file is written by one writer thread, never on the caller's (the event loop
must not wait for a disk). Changes made together inside :meth:`MetadataStore.batch` are one write, and writes
that queue up while one is under way are merged into the next. A caller that must not answer before its
change is durable awaits :meth:`MetadataStore.persisted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from umbra.errors import InvalidPartitions, InvalidTopic, TopicAlreadyExists, UnknownTopicOrPartition

_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249


def validate_topic_name(name: str) -> None:
    if not name:
        raise InvalidTopic("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopic(f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopic(f"topic name is longer than {MAX_TOPIC_NAME} characters")
    if not _TOPIC_NAME.match(name):
        raise InvalidTopic(f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_' and '-'")


@dataclass(frozen=True)
class PartitionAssignment:
    """Who holds one partition of a cluster topic: its replicas, the leader, its epoch and the ISR."""

    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    # A reassignment under way (AlterPartitionReassignments): the replica set it ends with. Meanwhile
    # ``replicas`` holds the target and the replicas being removed; it ends once the target is in sync.
    target: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"replicas": list(self.replicas), "leader": self.leader,
                                "leader_epoch": self.leader_epoch, "isr": list(self.isr)}
        if self.target:
            data["target"] = list(self.target)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartitionAssignment:
        return cls(tuple(int(r) for r in data["replicas"]), int(data["leader"]), int(data["leader_epoch"]),
                   tuple(int(r) for r in data["isr"]), tuple(int(r) for r in data.get("target", [])))


@dataclass(frozen=True)
class TopicMetadata:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    internal: bool = False
    # Per partition, on a cluster (the control plane assigns them); empty: every partition on this one broker.
    assignments: tuple[PartitionAssignment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {"name": self.name, "topic_id": str(self.topic_id), "partitions": self.partitions,
                "configs": dict(self.configs), "internal": self.internal}
        if self.assignments:
            data["assignments"] = [a.to_json() for a in self.assignments]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicMetadata:
        return cls(data["name"], uuid.UUID(data["topic_id"]), int(data["partitions"]),
                   MappingProxyType(dict(data.get("configs", {}))), bool(data.get("internal", False)),
                   tuple(PartitionAssignment.from_json(a) for a in data.get("assignments", [])))


Listener = Callable[[], None]


class DataDirError(Exception):
    """The data directory cannot be used by this broker (another cluster's, or its metadata is unreadable)."""


class MetadataStore:
    FILE = "cluster-metadata.json"

    def __init__(self, data_dir: Path, cluster_id: str | None = None) -> None:
        self._path = data_dir / self.FILE
        self._topics: dict[str, TopicMetadata] = {}
        self._broker_configs: dict[str, str] = {}
        # Shadow links: name -> {"spec": {...}, "state": str, ...} and shadow topic -> {"link", "state", ...}.
        self._shadow_links: dict[str, dict[str, Any]] = {}
        self._shadow_topics: dict[str, dict[str, Any]] = {}
        self._listeners: list[Listener] = []
        self._leader_epoch = -1  # the epoch this node last led its partitions at (see bump_leader_epoch)
        self.cluster_id = cluster_id or ""
        # Writing: changes are numbered; the writer thread writes the newest snapshot and says which number
        # it covers, so persisted() knows when a change is on disk.
        self._batch_depth = 0
        self._batched = False
        self._version = 0
        self._written = 0
        self._snapshot: tuple[int, str] | None = None  # the newest (version, JSON) not yet written
        self._write_lock = threading.Lock()
        self._writing: Future[None] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metadata-writer")
        self._load()
        if not self.cluster_id:
            self.cluster_id = uuid.uuid4().hex[:22]
            self._save_now()

    # --- persistence -------------------------------------------------
    def _load(self) -> None:
        if not self._path.exists():
            return
        try:
            data = json.loads(self._path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataDirError(f"{self._path} is not readable cluster metadata: {exc}") from None
        stored_id = data.get("cluster_id", "")
        if self.cluster_id and stored_id and stored_id != self.cluster_id:
            raise DataDirError(f"data dir {self._path.parent} belongs to cluster {stored_id}, not {self.cluster_id}")
        self.cluster_id = stored_id or self.cluster_id
        self._topics = {t["name"]: TopicMetadata.from_json(t) for t in data.get("topics", [])}
        self._broker_configs = dict(data.get("broker_configs", {}))
        self._shadow_links = dict(data.get("shadow_links", {}))
        self._shadow_topics = dict(data.get("shadow_topics", {}))
        self._leader_epoch = int(data.get("leader_epoch", -1))

    def _serialize(self) -> str:
        data = {"cluster_id": self.cluster_id, "topics": [t.to_json() for t in self._topics.values()],
                "broker_configs": self._broker_configs, "shadow_links": self._shadow_links,
                "shadow_topics": self._shadow_topics, "leader_epoch": self._leader_epoch}
        return json.dumps(data, indent=1, sort_keys=True)

    def _write_file(self, text: str) -> None:
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _save_now(self) -> None:
        """Write on the caller's thread (start-up only, before anything else uses the store)."""
        self._version += 1
        self._write_file(self._serialize())
        self._written = self._version

    def _save(self) -> None:
        """Hand the current state to the writer thread."""
        self._version += 1
        with self._write_lock:
            self._snapshot = (self._version, self._serialize())
            if self._writing is None or self._writing.done():
                self._writing = self._writer.submit(self._write_pending)

    def _write_pending(self) -> None:
        while True:
            with self._write_lock:
                pending, self._snapshot = self._snapshot, None
                if pending is None:
                    return
            version, text = pending
            self._write_file(text)
            self._written = version

    def _changed(self) -> None:
        if self._batch_depth:
            self._batched = True
            return
        self._save()
        for listener in list(self._listeners):
            listener()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Changes made inside are written (and announced to subscribers) once, when the outermost ends."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth and self._batched:
                self._batched = False
                self._changed()

    @property
    def version(self) -> int:
        """How many changes were made: compare before and after an operation to know whether it changed anything."""
        return self._version

    async def persisted(self) -> None:
        """Wait until every change made so far is on disk (raises the writer's OSError if it failed)."""
        target = self._version
        while self._written < target:
            with self._write_lock:
                writing = self._writing
            if writing is None:
                return
            await asyncio.wrap_future(writing)

    def flush(self) -> None:
        """Block until every change made so far is on disk (shutdown, tests)."""
        target = self._version
        while self._written < target:
            with self._write_lock:
                writing = self._writing
            if writing is None:
                return
            writing.result()

    def close(self) -> None:
        self.flush()
        self._writer.shutdown(wait=True)

    def bump_leader_epoch(self) -> int:
        """A new leader epoch for every partition of this (single) node, persisted before it is used.

        Leadership is re-established at every start, so the epoch moves on, as Kafka's does on every election:
        a follower or shadow that fetched under the old epoch then learns where that epoch ended (KIP-320,
        KIP-595), which is how a tail lost in a crash is told from data still to come.
        """
        self._leader_epoch += 1
        self._save_now()  # before any partition is led at it
        return self._leader_epoch

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- reads -------------------------------------------------------
    def topics(self) -> list[TopicMetadata]:
        return list(self._topics.values())

    def topic(self, name: str) -> TopicMetadata | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicMetadata | None:
        for topic in self._topics.values():
            if topic.topic_id == topic_id:
                return topic
        return None

    def require_topic(self, name: str) -> TopicMetadata:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartition(f"topic {name!r} does not exist")
        return topic

    def broker_configs(self) -> MappingProxyType[str, str]:
        return MappingProxyType(dict(self._broker_configs))

    # --- writes ------------------------------------------------------
    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None,
                     internal: bool = False) -> TopicMetadata:
        validate_topic_name(name)
        if name in self._topics:
            raise TopicAlreadyExists(f"topic {name!r} already exists")
        if partitions <= 0:
            raise InvalidPartitions(f"partition count must be positive, got {partitions}")
        topic = TopicMetadata(name, uuid.uuid4(), partitions, MappingProxyType(dict(configs or {})), internal)
        self._topics[name] = topic
        self._changed()
        return topic

    def apply_cluster_topics(self, topics: dict[str, TopicMetadata]) -> tuple[list[TopicMetadata], list[TopicMetadata]]:
        """A cluster's topics as the control plane holds them replace this broker's view (a broker on etcd
        never creates topics locally). Returns (topics new or changed, topics gone)."""
        changed = [t for name, t in topics.items() if self._topics.get(name) != t]
        gone = [t for name, t in self._topics.items() if name not in topics]
        if changed or gone:
            self._topics = dict(topics)
            for topic in gone:
                self._shadow_topics.pop(topic.name, None)
            self._changed()
        return changed, gone

    def delete_topic(self, name: str) -> TopicMetadata:
        topic = self.require_topic(name)
        del self._topics[name]
        self._shadow_topics.pop(name, None)
        self._changed()
        return topic

    def set_partition_count(self, name: str, count: int) -> TopicMetadata:
        topic = self.require_topic(name)
        if count <= topic.partitions:
            raise InvalidPartitions(f"topic {name!r} has {topic.partitions} partitions; the new count {count} must be larger")
        topic = replace(topic, partitions=count)
        self._topics[name] = topic
        self._changed()
        return topic

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> TopicMetadata:
        """Replace the topic's config overrides."""
        topic = replace(self.require_topic(name), configs=MappingProxyType(dict(configs)))
        self._topics[name] = topic
        self._changed()
        return topic

    def set_broker_configs(self, configs: dict[str, str]) -> None:
        self._broker_configs = dict(configs)
        self._changed()

    # --- shadow links (cluster metadata, so they survive restarts) ---------
    def shadow_links(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entry) for name, entry in self._shadow_links.items()}

    def shadow_link(self, name: str) -> dict[str, Any] | None:
        entry = self._shadow_links.get(name)
        return dict(entry) if entry is not None else None

    def put_shadow_link(self, name: str, entry: dict[str, Any]) -> None:
        self._shadow_links[name] = dict(entry)
        self._changed()

    def delete_shadow_link(self, name: str) -> None:
        self._shadow_links.pop(name, None)
        self._changed()

    def shadow_topics(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entry) for name, entry in self._shadow_topics.items()}

    def shadow_topic(self, topic: str) -> dict[str, Any] | None:
        entry = self._shadow_topics.get(topic)
        return dict(entry) if entry is not None else None

    def put_shadow_topic(self, topic: str, entry: dict[str, Any]) -> None:
        self._shadow_topics[topic] = dict(entry)
        self._changed()

    def delete_shadow_topic(self, topic: str) -> None:
        if self._shadow_topics.pop(topic, None) is not None:
            self._changed()
