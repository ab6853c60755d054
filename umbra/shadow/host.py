"""What the shadow-link layer needs from the broker it runs in. Declared here, in the shadow package's own
terms; the broker satisfies it structurally, and the shadow package never imports `server` or `admin`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from umbra.cluster.metadata import MetadataStore, TopicMetadata
    from umbra.groups.coordinator import GroupCoordinator
    from umbra.security.acls import AclStore
    from umbra.storage.log import Log
    from umbra.storage.manager import LogManager


class HeldPartition(Protocol):
    """A partition this broker leads: the replicators append to its log at its leader epoch."""

    @property
    def log(self) -> Log: ...

    @property
    def leader_epoch(self) -> int: ...

    def maybe_advance_high_watermark(self) -> None: ...


class Partitions(Protocol):
    def leader_partition(self, topic: str, index: int, current_leader_epoch: int = -1) -> HeldPartition: ...


class Notifier(Protocol):
    def notify(self, tp: tuple[str, int]) -> None:
        """Wake fetches waiting on ``tp`` (new data, or a changed high watermark)."""


class ProducerIds(Protocol):
    def ensure_above(self, producer_id: int) -> None:
        """New producer ids from now on are above ``producer_id`` (failover: never reuse a replicated one)."""


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

    @property
    def clustered(self) -> bool:
        """On a cluster on etcd (shadow links there are the next step; refused until then)."""

    @property
    def replicas(self) -> Partitions: ...

    @property
    def notifier(self) -> Notifier: ...

    @property
    def producer_ids(self) -> ProducerIds: ...

    @property
    def metrics(self) -> Metrics: ...

    def create_topic(self, name: str, partitions: int, configs: dict[str, str] | None = None,
                     internal: bool = False, *, open_logs: bool = True) -> TopicMetadata: ...

    def add_partitions(self, name: str, count: int, *, open_logs: bool = True) -> TopicMetadata: ...

    async def open_topic_logs(self, meta: TopicMetadata) -> None: ...

    def topic_configs_changed(self, name: str) -> None: ...
