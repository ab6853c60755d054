"""The control plane: which brokers form the cluster, which of them are alive, and which one is the controller.

Two implementations sit behind :class:`ControlPlane`: :class:`LocalControlPlane`, the single-node embedded
default (this broker is the cluster and its controller), and :class:`umbra.cluster.etcd.EtcdControlPlane`,
where brokers register in etcd under leases and elect the controller there. Readers take a frozen
:class:`ClusterView`; nothing here blocks the event loop.

Both keep cluster-wide JSON documents (``scram_users``; on a cluster also ``acls``, ``broker_configs``): in etcd
under ``documents/<name>``, or, for a single broker, in ``<data_dir>/documents/<name>.json``. A running single
broker holds an exclusive lock on ``<data_dir>/.lock`` (:class:`DataDirLock`), so that ``umbra user`` can refuse
to change its documents behind its back.
"""

from __future__ import annotations

import asyncio
import copy
import fcntl
import json
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from umbra.cluster.metadata import PartitionAssignment, TopicMetadata
from umbra.storage.checkpoint import write_atomically


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A broker as it registered: where clients and operators reach it."""

    node_id: int
    rack: str | None
    kafka_address: str  # HOST:PORT: its first listener's (PLAINTEXT on a cluster: the brokers replicate over it)
    admin_address: str  # http://HOST:PORT
    alive: bool = True
    # (listener name, HOST:PORT) of every listener, as clients reach it: Metadata answers a client with each
    # broker's address on the listener the client came in on. Empty: kafka_address alone, named PLAINTEXT (a
    # registration from before listeners).
    listeners: tuple[tuple[str, str], ...] = ()

    def address_for(self, listener: str | None) -> str | None:
        """HOST:PORT of this broker on ``listener`` (None: its first), or None when it has no such listener."""
        if listener is None:
            return self.kafka_address
        for name, address in self.listeners or (("PLAINTEXT", self.kafka_address),):
            if name == listener:
                return address
        return None

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "rack": self.rack, "kafka_address": self.kafka_address,
                "admin_address": self.admin_address, "alive": self.alive, "listeners": dict(self.listeners)}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, alive: bool) -> BrokerInfo:
        rack = data.get("rack")
        listeners = tuple((str(name), str(address)) for name, address in (data.get("listeners") or {}).items())
        return cls(int(data["node_id"]), str(rack) if rack is not None else None, str(data["kafka_address"]),
                   str(data["admin_address"]), alive, listeners)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What this broker last knew of the cluster. ``controller`` is None while none is elected (or while
    the control plane cannot be reached: ``reachable`` is then False and the rest is the last view)."""

    cluster_id: str
    controller: int | None
    controller_epoch: int
    brokers: tuple[BrokerInfo, ...]
    reachable: bool = True
    controller_changes: int = 0  # times this broker saw the controller change

    def alive_brokers(self) -> list[BrokerInfo]:
        return [b for b in self.brokers if b.alive]


TopicsListener = Callable[[dict[str, TopicMetadata]], Awaitable[None]]
DocumentListener = Callable[[Any], None]  # a cluster-wide JSON document (ACLs, broker configs), None if unset


class ControlPlane(Protocol):
    """Membership, controller election, and (on a cluster) the topics with their partition assignments."""

    @property
    def node_id(self) -> int: ...

    @property
    def clustered(self) -> bool:
        """True when topics live in the control plane (etcd), not in this broker's own store."""

    def view(self) -> ClusterView: ...

    def is_controller(self) -> bool: ...

    async def refresh(self) -> ClusterView:
        """Read the membership and the controller now, not at the next poll (an operator's command that
        acts on the live brokers sees one that joined a moment ago)."""

    def subscribe_topics(self, listener: TopicsListener) -> None:
        """``listener`` gets every new snapshot of the cluster's topics (never called when not clustered)."""

    async def create_topic(self, name: str, partitions: int, configs: dict[str, str], replication_factor: int,
                           internal: bool = False, replica_lists: Sequence[Sequence[int]] | None = None
                           ) -> TopicMetadata:
        """Create a topic, its partitions assigned over the live brokers (the controller calls this), or, with
        ``replica_lists``, as given (InvalidReplicaAssignment unless every broker named is live)."""

    async def delete_topic(self, name: str) -> TopicMetadata: ...

    async def update_isr(self, topic: str, index: int, leader_epoch: int, isr: tuple[int, ...]) -> bool:
        """The leader records a changed ISR (Kafka's AlterPartition); False if its epoch is no longer current.
        Raises ControlPlaneError when the store cannot be reached (the leader retries)."""

    async def reserve_producer_ids(self, count: int, floor: int) -> int:
        """A block of ``count`` producer ids no other broker of the cluster will hand out, starting at or
        above ``floor``; returns its first id."""

    async def prepare_shutdown(self, timeout_s: float) -> None:
        """Controlled shutdown: ask the controller to move this broker's leaderships to other in-sync replicas,
        and wait (up to ``timeout_s``) until it leads nothing another replica could lead."""

    async def reassign(self, topic: str, index: int, target: tuple[int, ...] | None) -> None:
        """Start moving a partition to the ``target`` replicas (None: cancel a reassignment under way).
        Raises a KafkaError naming what is wrong (the controller calls this)."""

    async def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace a cluster topic's config overrides; every broker applies them when it reads the topic."""

    def subscribe_document(self, name: str, listener: DocumentListener) -> None:
        """``listener`` gets every new version of the cluster document ``name`` (``acls``, ``broker_configs``)."""

    def document(self, name: str) -> Any:
        """The cluster document ``name`` as this broker last read it (None if unset)."""

    async def update_document(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Compare-and-swap a cluster document: ``change`` gets the current one (None if unset) and returns the
        new one (it may run again if another broker changed it meanwhile). Returns what was stored."""

    async def add_partitions(self, name: str, count: int,
                             replica_lists: Sequence[Sequence[int]] | None = None) -> None:
        """Grow a cluster topic to ``count`` partitions, the new ones assigned over the live brokers, or, with
        ``replica_lists`` (one per new partition), as given."""

    async def elect_preferred_leader(self, topic: str, index: int) -> None:
        """ElectLeaders (PREFERRED): the partition's first replica leads from the next epoch on. Raises
        KafkaError ELECTION_NOT_NEEDED when it already leads, PREFERRED_LEADER_NOT_AVAILABLE when it is not a
        live in-sync replica (the controller calls this)."""

    async def start(self, me: BrokerInfo) -> None:
        """Register this broker (raise ControlPlaneError with a one-line reason if it cannot)."""

    async def stop(self) -> None:
        """Leave the cluster: give up the controllership and the registration's lease."""


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """``http://HOST:PORT[,http://HOST:PORT...]`` as (host, port) pairs; ValueError names a bad one."""
    endpoints = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        rest = item.removeprefix("http://")
        if rest == item or "/" in rest.rstrip("/") or ":" not in rest:
            raise ValueError(f"{item!r} is not http://HOST:PORT")
        host, _, port_text = rest.rstrip("/").rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"{item!r}: port {port_text!r} is not a number") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"{item!r} is not http://HOST:PORT")
        endpoints.append((host.strip("[]"), port))
    if not endpoints:
        raise ValueError("no etcd endpoint given")
    return endpoints


class ControlPlaneError(Exception):
    """The control plane refused this broker, or could not be reached at start-up; one line."""


DOCUMENTS_DIR = "documents"
_DOCUMENT_NAME = re.compile(r"[a-z][a-z0-9_]*")


def local_document_path(data_dir: Path, name: str) -> Path:
    if not _DOCUMENT_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a document name")
    return data_dir / DOCUMENTS_DIR / f"{name}.json"


def read_local_document(data_dir: Path, name: str) -> Any:
    """A single broker's document ``name`` (None if unset). ControlPlaneError if it cannot be read."""
    path = local_document_path(data_dir, name)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ControlPlaneError(f"{path} cannot be read: {exc}") from None


def write_local_document(data_dir: Path, name: str, value: Any) -> None:
    """Replace a single broker's document (temporary file, fsync, rename, fsync of the directory); OSError if
    it cannot be written, and then nothing changed."""
    path = local_document_path(data_dir, name)
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


CLUSTER_MARKER = "etcd-cluster.json"  # in a cluster broker's data dir: which etcd cluster holds its state


def mark_cluster_data_dir(data_dir: Path, endpoints: str, cluster_id: str) -> None:
    """Note in a cluster broker's data dir that its cluster state (users, ACLs, topics) lives in etcd, so that
    offline tools refuse to write documents there that the cluster would ignore."""
    data_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(data_dir / CLUSTER_MARKER,
                     json.dumps({"etcd": endpoints, "cluster_id": cluster_id}, sort_keys=True) + "\n")


def cluster_of_data_dir(data_dir: Path) -> tuple[str, str] | None:
    """(etcd endpoints, cluster id) if a cluster broker has used ``data_dir``, else None."""
    try:
        marker = json.loads((data_dir / CLUSTER_MARKER).read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return ("(unreadable)", "(unreadable)")
    return str(marker.get("etcd", "")), str(marker.get("cluster_id", ""))


class DataDirLock:
    """An exclusive lock on ``<data_dir>/.lock`` (flock: the kernel drops it when its holder dies). A running
    single broker holds it; ``umbra user --data-dir`` takes it while it changes a document."""

    FILE = ".lock"

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, holder: str) -> DataDirLock:
        """ControlPlaneError, naming ``holder``'s conflict, if another process holds it."""
        fd = os.open(data_dir / cls.FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ControlPlaneError(f"{data_dir} is in use by a running broker (or another `umbra user`): "
                                    f"{holder}") from None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class LocalControlPlane:
    """The single-node default: this broker is the whole cluster, and its controller; topics stay in its own
    metadata store. Its documents are files in ``data_dir`` (kept in memory only without one: tests). With a
    ``data_dir`` it holds the directory's lock from construction (before the broker opens its logs) to
    :meth:`stop`; ControlPlaneError if another process holds it."""

    clustered = False

    def __init__(self, cluster_id: str, node_id: int, data_dir: Path | None = None) -> None:
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._me: BrokerInfo | None = None
        self._data_dir = data_dir
        self._document_listeners: dict[str, list[DocumentListener]] = {}
        self._update_lock = asyncio.Lock()
        self._lock: DataDirLock | None = None
        if data_dir is not None:
            self._lock = DataDirLock.acquire(data_dir, "two brokers cannot share a data directory")
        try:
            self._documents: dict[str, Any] = self._read_documents()
        except ControlPlaneError:
            self._release()
            raise

    def _read_documents(self) -> dict[str, Any]:
        if self._data_dir is None or not (self._data_dir / DOCUMENTS_DIR).is_dir():
            return {}
        names = [p.stem for p in (self._data_dir / DOCUMENTS_DIR).glob("*.json") if _DOCUMENT_NAME.fullmatch(p.stem)]
        return {name: read_local_document(self._data_dir, name) for name in sorted(names)}

    @property
    def node_id(self) -> int:
        return self._node_id

    def view(self) -> ClusterView:
        brokers = (self._me,) if self._me is not None else ()
        return ClusterView(self._cluster_id, self._node_id, 1, brokers)

    def is_controller(self) -> bool:
        return True

    async def refresh(self) -> ClusterView:
        return self.view()

    async def start(self, me: BrokerInfo) -> None:
        self._me = me
        for name, value in self._documents.items():  # the subscribers take the documents read at construction
            for listener in self._document_listeners.get(name, []):
                listener(value)

    async def stop(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def subscribe_topics(self, listener: TopicsListener) -> None:
        return None

    async def create_topic(self, name: str, partitions: int, configs: dict[str, str], replication_factor: int,
                           internal: bool = False, replica_lists: Sequence[Sequence[int]] | None = None
                           ) -> TopicMetadata:
        raise ControlPlaneError("a single broker keeps its topics in its own metadata store")

    async def delete_topic(self, name: str) -> TopicMetadata:
        raise ControlPlaneError("a single broker keeps its topics in its own metadata store")

    async def update_isr(self, topic: str, index: int, leader_epoch: int, isr: tuple[int, ...]) -> bool:
        return True  # one replica: the ISR never changes

    async def reserve_producer_ids(self, count: int, floor: int) -> int:
        raise ControlPlaneError("a single broker allocates producer ids itself")

    async def prepare_shutdown(self, timeout_s: float) -> None:
        return None

    async def reassign(self, topic: str, index: int, target: tuple[int, ...] | None) -> None:
        raise ControlPlaneError("a single broker has one replica of every partition")

    async def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        raise ControlPlaneError("a single broker keeps its topics in its own metadata store")

    def subscribe_document(self, name: str, listener: DocumentListener) -> None:
        self._document_listeners.setdefault(name, []).append(listener)

    def document(self, name: str) -> Any:
        return self._documents.get(name)

    async def update_document(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Written to ``<data_dir>/documents/<name>.json`` before it is visible; OSError if it cannot be (and
        then nothing changed). (ACLs and broker configs of a single broker live in their own stores.)"""
        async with self._update_lock:  # one change at a time: each sees the one before
            value = change(copy.deepcopy(self._documents.get(name)))
            if self._data_dir is not None:
                await asyncio.to_thread(write_local_document, self._data_dir, name, value)
            self._documents[name] = value
        for listener in self._document_listeners.get(name, []):
            listener(value)
        return value

    async def add_partitions(self, name: str, count: int,
                             replica_lists: Sequence[Sequence[int]] | None = None) -> None:
        raise ControlPlaneError("a single broker keeps its topics in its own metadata store")

    async def elect_preferred_leader(self, topic: str, index: int) -> None:
        raise ControlPlaneError("a single broker leads every partition it has")


def elect_leaders(topic: TopicMetadata, alive: set[int]) -> TopicMetadata | None:
    """The controller's election: each partition whose leader is not alive gets the first live in-sync replica
    as leader, at the next epoch, and the ISR loses its dead members. A partition with no live in-sync replica
    stays offline (no unclean election). None when nothing changes."""
    changed = False
    result = []
    for a in topic.assignments:
        if a.leader in alive:
            result.append(a)
            continue
        candidates = [r for r in a.isr if r in alive]
        if not candidates:
            result.append(a)
            continue
        changed = True
        result.append(replace(a, leader=candidates[0], leader_epoch=a.leader_epoch + 1, isr=tuple(candidates)))
    return replace(topic, assignments=tuple(result)) if changed else None


def assign_partitions(partitions: int, replication_factor: int, brokers: list[int],
                      start: int = 0, racks: dict[int, str | None] | None = None) -> list[PartitionAssignment]:
    """Kafka's round-robin: partition p's replicas are ``replication_factor`` consecutive brokers from
    ``start + p``; its first replica is the preferred leader, so leaders spread evenly too. With racks, the
    broker list alternates racks first (as Kafka's rack-aware assignment does), so the consecutive replicas of a
    partition sit on different racks whenever there are enough of them."""
    racks = racks or {}
    ordered = rack_alternating(sorted(brokers), racks)
    count = len(ordered)
    rack_count = len({racks.get(b) or f"-{b}" for b in ordered})
    result = []
    for p in range(partitions):
        chosen: list[int] = []
        used: set[str] = set()
        for i in range(count):  # walk on from the partition's first broker, skipping racks already used
            broker = ordered[(start + p + i) % count]
            rack = racks.get(broker) or f"-{broker}"
            if rack in used and len(used) < rack_count:
                continue
            chosen.append(broker)
            used.add(rack)
            if len(used) == rack_count:
                used = set()  # every rack has one: a second round may reuse them
            if len(chosen) == replication_factor:
                break
        for i in range(count):  # fewer distinct racks than replicas on the walk: fill in order
            if len(chosen) == replication_factor:
                break
            broker = ordered[(start + p + i) % count]
            if broker not in chosen:
                chosen.append(broker)
        replicas = tuple(chosen)
        result.append(PartitionAssignment(replicas, replicas[0], 0, replicas))
    return result


def rack_alternating(brokers: list[int], racks: dict[int, str | None]) -> list[int]:
    """The brokers, one of each rack in turn (racks and brokers in order); brokers without a rack are a rack
    of their own. Without racks: unchanged."""
    if not any(racks.get(b) for b in brokers):
        return brokers
    by_rack: dict[str, list[int]] = {}
    for broker in brokers:
        by_rack.setdefault(racks.get(broker) or f"-{broker}", []).append(broker)
    queues = [by_rack[rack] for rack in sorted(by_rack)]
    result: list[int] = []
    while any(queues):
        for queue in queues:
            if queue:
                result.append(queue.pop(0))
    return result


def restore_preferred_leaders(topic: TopicMetadata, alive: set[int]) -> TopicMetadata | None:
    """``auto.leader.rebalance.enable``: a partition led by another replica than its preferred one (the first)
    moves back, at the next epoch, once the preferred replica is alive and in sync. None when nothing moves."""
    changed = False
    result = []
    for a in topic.assignments:
        preferred = a.replicas[0]
        if a.leader != preferred and preferred in alive and preferred in a.isr:
            changed = True
            result.append(replace(a, leader=preferred, leader_epoch=a.leader_epoch + 1))
        else:
            result.append(a)
    return replace(topic, assignments=tuple(result)) if changed else None


@dataclass(frozen=True, slots=True)
class PartitionHealth:
    total: int
    under_replicated: list[dict[str, Any]]  # topic, partition, leader, replicas, isr
    offline: int  # partitions whose leader is not alive


def partition_health(topics: list[TopicMetadata], alive: set[int] | None) -> PartitionHealth:
    """Under-replicated partitions (an ISR smaller than the replica set) and partitions without a live leader,
    from the cluster's assignments (``alive`` None: this broker alone, where neither can happen)."""
    total, offline = 0, 0
    under: list[dict[str, Any]] = []
    for topic in topics:
        total += topic.partitions
        for index, a in enumerate(topic.assignments):
            if alive is not None and a.leader not in alive:
                offline += 1
            isr = [r for r in a.isr if alive is None or r in alive]
            if len(isr) < len(a.replicas):
                under.append({"topic": topic.name, "partition": index, "leader": a.leader,
                              "replicas": list(a.replicas), "isr": isr})
    return PartitionHealth(total, under, offline)


def start_reassignment(a: PartitionAssignment, target: tuple[int, ...]) -> PartitionAssignment:
    """The replica set grows to the target plus the replicas being removed; the new ones follow the leader,
    and once all of the target is in sync, :func:`finish_reassignments` shrinks it to the target."""
    if target == a.replicas:
        return replace(a, target=())
    replicas = target + tuple(r for r in a.replicas if r not in target)
    return replace(a, replicas=replicas, target=target)


def cancel_reassignment(a: PartitionAssignment) -> PartitionAssignment:
    """Back to the replicas the partition had: those of the old set still in it (Kafka reverts to them)."""
    if not a.target:
        return a
    old = tuple(r for r in a.replicas if r not in a.target or r in a.isr)
    return replace(a, replicas=old or a.replicas, target=())


def finish_reassignments(topic: TopicMetadata, alive: set[int]) -> TopicMetadata | None:
    """Reassignments whose target replicas are all in sync end: the replica set becomes the target, removed
    replicas leave the ISR, and a leader outside the target hands over (at the next epoch)."""
    changed = False
    result = []
    for a in topic.assignments:
        if not a.target or not all(r in a.isr for r in a.target):
            result.append(a)
            continue
        isr = tuple(r for r in a.isr if r in a.target)
        leader, epoch = a.leader, a.leader_epoch
        if leader not in a.target:
            candidates = [r for r in a.target if r in isr and r in alive]
            if not candidates:
                result.append(a)
                continue
            leader, epoch = candidates[0], epoch + 1
        changed = True
        result.append(PartitionAssignment(a.target, leader, epoch, isr))
    return replace(topic, assignments=tuple(result)) if changed else None


def balanced_targets(topic: TopicMetadata, alive: list[int],
                     racks: dict[int, str | None] | None = None) -> dict[int, tuple[int, ...]]:
    """``umbra cluster rebalance``: for each partition of ``topic`` whose replica set differs from an even
    round-robin spread over ``alive`` (same replication factor, capped at the brokers there are), the replica
    set it should move to. Replicas it already has keep their place where the spread allows, so only what
    must move moves."""
    if not topic.assignments or not alive:
        return {}
    rf = min(len(topic.assignments[0].replicas), len(alive))
    start = sum(topic.name.encode()) % len(alive)
    moves = {}
    for index, (current, wanted) in enumerate(zip(topic.assignments, assign_partitions(
            len(topic.assignments), rf, alive, start, racks), strict=True)):
        if set(current.replicas) != set(wanted.replicas) and not current.target:
            moves[index] = wanted.replicas
    return moves
