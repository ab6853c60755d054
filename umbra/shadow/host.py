"""What the shadow-link layer needs from the broker it runs in. Declared here, in the shadow package's own
terms; the broker satisfies it structurally, and the shadow package never imports `server` or `admin`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from umbra.cluster.control import ControlPlane
    from umbra.cluster.metadata import MetadataStore, TopicMetadata
    from umbra.groups.coordinator import GroupCoordinator
    from umbra.records.crc import Buffer
    from umbra.security.acls import AclBinding, AclFilter, AclStore
    from umbra.storage.log import AppendResult, Log
    from umbra.storage.manager import LogManager


class HeldPartition(Protocol):
    """A partition this broker leads: the replicators append to its log at its leader epoch."""

    @property
    def log(self) -> Log: ...

    @property
    def leader_epoch(self) -> int: ...

    def append_replicated(self, records: Buffer, expected_start_offset: int, leader_epoch: int) -> AppendResult:
        """Append at the source's offsets; refused (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH) once this
        broker no longer leads the partition at ``leader_epoch``."""

    def maybe_advance_high_watermark(self) -> None: ...


class Leadership(Protocol):
    @property
    def leader(self) -> int: ...


class Partitions(Protocol):
    def leader_partition(self, topic: str, index: int, current_leader_epoch: int = -1) -> HeldPartition: ...

    def state(self, topic: str, index: int) -> Leadership:
        """Who leads ``topic-index`` (the control plane's assignment on a cluster)."""


class PeerUnavailable(Exception):
    """Another broker of the cluster did not answer (down, unreachable, or it refused)."""


class Peers(Protocol):
    """The other live brokers of the cluster, reached over their admin API (the controller's failover, and
    status gathered from every broker)."""

    def others(self) -> list[int]:
        """Node ids of the other live brokers."""

    async def call(self, node_id: int, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST ``body`` (GET without one) to ``path`` on broker ``node_id``; its JSON answer. Raises
        PeerUnavailable."""


class Notifier(Protocol):
    def notify(self, tp: tuple[str, int]) -> None:
        """Wake fetches waiting on ``tp`` (new data, or a changed high watermark)."""


class Metrics(Protocol):
    @property
    def registry(self) -> Any:
        """The prometheus registry the shadow metrics register in."""


class ShadowHost(Protocol):
    """Metadata (shadow links and topics are stored there), the partitions the replicators append to, the
    notifier that wakes fetches, the producer-id allocator a failover moves, the ACL store the ACL syncer
    writes, the group coordinator the offset syncer commits to, and the metrics registry."""

    metadata: MetadataStore
    logs: LogManager
    acls: AclStore
    groups: GroupCoordinator | None
    control: ControlPlane

    @property
    def clustered(self) -> bool:
        """On a cluster on etcd: topics, links and shadow-topic states live there."""

    @property
    def coordinates_groups(self) -> bool:
        """The group coordinator is on this broker (where the consumer-offset syncer commits)."""

    @property
    def replicas(self) -> Partitions: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def metrics(self) -> Metrics: ...

    async def create_topic_with_defaults(self, name: str, partitions: int, configs: dict[str, str]
                                         ) -> TopicMetadata:
        """A topic with the cluster's defaults (replication factor); on a cluster through the control plane."""

    async def grow_topic(self, name: str, count: int) -> TopicMetadata: ...

    async def change_topic_configs(self, name: str, configs: dict[str, str]) -> None: ...

    async def change_acls(self, add: Sequence[AclBinding], remove: Sequence[AclFilter]) -> None: ...

    async def producer_id_barrier(self, floor: int) -> None:
        """New producer ids on this cluster are at or above ``floor`` from now on."""

    def drop_producer_id_block(self) -> None:
        """Forget producer ids reserved but not handed out (another broker raised the floor)."""
