"""What the admin server needs from the broker it serves (declared here; the broker satisfies it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from umbra.admin.metrics import BrokerMetrics
    from umbra.cluster.metadata import MetadataStore
    from umbra.server.listeners import Listeners
    from umbra.server.memory import ConnectionLimits, RequestMemoryPool
    from umbra.server.notify import AppendNotifier
    from umbra.storage.manager import LogManager


class AdminHost(Protocol):
    """Health, storage and metrics read these; ``umbra storage recover`` wakes waiting fetches through the
    notifier."""

    node_id: int
    metadata: MetadataStore
    logs: LogManager
    metrics: BrokerMetrics
    notifier: AppendNotifier
    request_memory: RequestMemoryPool
    connection_limits: ConnectionLimits
    listeners: Listeners

    @property
    def connection_count(self) -> int: ...
