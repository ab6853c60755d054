"""What a source cluster can do for a shadow link, read from the API versions its brokers negotiated (sans-I/O).

A shadow link works with any Kafka-API source from Apache Kafka 0.11 on; where the source lacks a feature
it degrades, and says so. Each capability is True only when every broker the client has talked to
supports it (a cluster in the middle of a rolling upgrade counts as its oldest broker), False when one
does not, and None while no broker has been asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from umbra.client import versions as api

# capability -> what the link does without it. Operators read these in status and in the log.
DEGRADED_EFFECTS: dict[str, str] = {
    "fetch_sessions": "no fetch sessions (Fetch < v7, or none granted): every Fetch names every partition",
    "topic_ids": "no topic ids (Metadata < v10): a recreated source topic is detected by comparing the "
                 "shadow's last batch (offsets and CRC) with the source's",
    "leader_epochs": "no leader epochs in the fetch path (Fetch < v9 or Metadata < v7): before replicating a "
                     "partition on, the link checks that the shadow's last batch matches the source's (CRC)",
    "fetch_log_start_offset": "Fetch < v5 reports no log start offset: the source's retention is followed "
                              "through ListOffsets",
    "list_groups": "no ListGroups: only consumer groups that the link names with literal filters are synced",
    "describe_configs": "no DescribeConfigs: topic configs are not synced; shadow topics take this "
                        "cluster's defaults",
    "describe_acls": "no DescribeAcls: ACLs are not synced",
}


@dataclass(frozen=True, slots=True)
class SourceCapabilities:
    versions: Mapping[str, Mapping[str, int]]  # broker -> API name -> version sent
    fetch_sessions: bool | None
    topic_ids: bool | None
    leader_epochs: bool | None
    fetch_log_start_offset: bool | None
    list_groups: bool | None
    describe_configs: bool | None
    describe_acls: bool | None

    @classmethod
    def from_versions(cls, negotiated: Mapping[str, Mapping[int, int]],
                      sessions_granted: Mapping[int, bool | None] | None = None) -> SourceCapabilities:
        """From ``SourceCluster.negotiated_versions()`` and, per fetcher, whether a session was granted."""
        known = [versions for versions in negotiated.values() if versions]

        def every(api_key: int, minimum: int = 0) -> bool | None:
            if not known:
                return None
            return all(versions.get(api_key, -1) >= minimum for versions in known)

        sessions = every(api.FETCH, api.FETCH_SESSIONS)
        observed = [granted for granted in (sessions_granted or {}).values() if granted is not None]
        if sessions and observed:
            sessions = all(observed)
        epochs = every(api.FETCH, api.FETCH_LEADER_EPOCH)
        metadata_epochs = every(api.METADATA, api.METADATA_LEADER_EPOCH)
        return cls(
            versions={label: {api.API_NAMES.get(key, str(key)): version for key, version in sorted(versions.items())}
                      for label, versions in sorted(negotiated.items())},
            fetch_sessions=sessions,
            topic_ids=every(api.METADATA, api.METADATA_TOPIC_IDS),
            leader_epochs=None if epochs is None else bool(epochs and metadata_epochs),
            fetch_log_start_offset=every(api.FETCH, api.FETCH_LOG_START_OFFSET),
            list_groups=every(api.LIST_GROUPS),
            describe_configs=every(api.DESCRIBE_CONFIGS),
            describe_acls=every(api.DESCRIBE_ACLS),
        )

    def flags(self) -> dict[str, bool | None]:
        return {name: getattr(self, name) for name in DEGRADED_EFFECTS}

    def degraded(self) -> dict[str, str]:
        """capability -> effect, for every capability the source is known to lack."""
        return {name: DEGRADED_EFFECTS[name] for name, value in self.flags().items() if value is False}

    def to_json(self) -> dict[str, Any]:
        return {**self.flags(), "degraded": self.degraded(),
                "api_versions": {label: dict(versions) for label, versions in self.versions.items()}}
