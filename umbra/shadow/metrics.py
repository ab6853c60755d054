"""Prometheus metrics of shadow links, registered in the broker's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge("umbra_shadow_lag_records", "Source high watermark minus shadow high watermark",
                         ["link", "topic", "partition"], registry=registry)
        self.bytes = Counter("umbra_shadow_replicated_bytes", "Record-batch bytes replicated", ["link"],
                             registry=registry)
        self.batches = Counter("umbra_shadow_replicated_batches", "Record batches replicated", ["link"],
                               registry=registry)
        self.errors = Counter("umbra_shadow_replication_errors", "Replication errors", ["link", "error"],
                              registry=registry)
        self.gaps = Counter("umbra_shadow_retention_gaps", "Jumps past data the source's retention removed",
                            ["link", "topic", "partition"], registry=registry)
        self.leader_changes = Counter("umbra_shadow_source_leader_changes",
                                      "Shadow partitions that followed their source partition to a new leader",
                                      ["link"], registry=registry)
        self.degraded = Gauge("umbra_shadow_source_degraded",
                              "1 for each capability the source lacks (see source_capabilities in link status)",
                              ["link", "capability"], registry=registry)
        self.truncations = Counter("umbra_shadow_truncations",
                                   "Truncations of a shadow partition to where it and its diverged source agree",
                                   ["link", "topic", "partition"], registry=registry)
        self.truncated_records = Counter("umbra_shadow_truncated_records",
                                         "Offsets removed from shadow partitions by those truncations",
                                         ["link", "topic", "partition"], registry=registry)
        self.topics = Gauge("umbra_shadow_topics", "Shadow topics by state", ["link", "state"], registry=registry)
