"""Prometheus metrics of one broker, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("umbra_requests", "Kafka requests handled", ["api"], registry=self.registry)
        self.request_errors = Counter("umbra_request_errors", "Kafka requests answered with an error", ["api", "error"],
                                      registry=self.registry)
        self.produced_bytes = Counter("umbra_produced_bytes", "Record bytes appended by producers",
                                      registry=self.registry)
        self.produced_batches = Counter("umbra_produced_batches", "Record batches appended by producers",
                                        registry=self.registry)
        self.fetched_bytes = Counter("umbra_fetched_bytes", "Record bytes returned to fetchers", registry=self.registry)
        self.fetch_sendfile_bytes = Counter("umbra_fetch_sendfile_bytes",
                                            "Record bytes sent to fetchers from segment files with os.sendfile",
                                            registry=self.registry)
        self.connections = Gauge("umbra_connections", "Open client connections", registry=self.registry)
        self.connections_refused = Gauge("umbra_connections_refused",
                                         "Connections closed at once for max_connections / max_connections_per_ip",
                                         registry=self.registry)
        self.request_memory = Gauge("umbra_request_memory_bytes",
                                    "Request bytes buffered and not yet handled (queued_max_request_bytes bounds it)",
                                    registry=self.registry)
        self.request_memory_waits = Gauge("umbra_request_memory_waits",
                                          "Times a connection stopped reading to wait for request memory",
                                          registry=self.registry)
        self.partitions = Gauge("umbra_partitions", "Partitions hosted", registry=self.registry)
        self.offline_partitions = Gauge("umbra_offline_partitions",
                                        "Partitions a storage error took offline (see GET /v1/storage)",
                                        registry=self.registry)
        self.log_cleaner_passes = Counter("umbra_log_cleaner_passes", "Log cleaner passes that rewrote segments",
                                          ["topic"], registry=self.registry)
        self.log_cleaner_records_removed = Counter("umbra_log_cleaner_records_removed",
                                                   "Records removed by the log cleaner", ["topic"],
                                                   registry=self.registry)
        self.log_cleaner_bytes_read = Counter("umbra_log_cleaner_bytes_read", "Segment bytes read by the log cleaner",
                                              registry=self.registry)
        self.log_cleaner_bytes_written = Counter("umbra_log_cleaner_bytes_written",
                                                 "Cleaned segment bytes written by the log cleaner",
                                                 registry=self.registry)
        self.log_end_offset = Gauge("umbra_log_end_offset", "Log end offset", ["topic", "partition"],
                                    registry=self.registry)
        self.cluster_brokers_alive = Gauge("umbra_cluster_brokers_alive", "Brokers of the cluster alive in the "
                                           "control plane, as this broker sees it", registry=self.registry)
        self.is_controller = Gauge("umbra_is_controller", "1 on the controller broker", registry=self.registry)
        self.controller_changes = Gauge("umbra_controller_changes", "Times this broker saw the controller change",
                                        registry=self.registry)
        self.control_plane_reachable = Gauge("umbra_control_plane_reachable",
                                             "1 while the control plane (etcd) answers", registry=self.registry)
        self.under_replicated_partitions = Gauge("umbra_under_replicated_partitions",
                                                 "Partitions whose ISR is smaller than their replica set",
                                                 registry=self.registry)
        self.isr_shrinks = Counter("umbra_isr_shrinks", "Followers this broker, as leader, dropped from an ISR",
                                   registry=self.registry)
        self.isr_expands = Counter("umbra_isr_expands", "Followers this broker, as leader, added back to an ISR",
                                   registry=self.registry)
