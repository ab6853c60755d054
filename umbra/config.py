"""Broker configuration: typed, validated, from CLI flags and/or a YAML file.

Every key is refused with a one-line error naming it when it is unknown or its
value is bad; :class:`ConfigError` carries that line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from umbra.cluster.control import parse_endpoints


class ConfigError(Exception):
    """A bad configuration value; the message is one line naming the key."""


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(key: str, value: Any) -> HostPort:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"{key}: missing host in {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{key}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is outside 0..65535")
    return HostPort(host, port)


@dataclass(frozen=True)
class BrokerConfig:
    """Everything a broker is started with. Field names are the YAML keys (and --flag-names)."""

    data_dir: Path = Path("./data")
    node_id: int = 1
    listen: HostPort = HostPort("127.0.0.1", 9092)
    advertise: HostPort | None = None
    admin_listen: HostPort = HostPort("127.0.0.1", 9644)
    cluster_id: str | None = None
    # The control plane: etcd endpoints (http://HOST:PORT, comma-separated or a YAML list); none = this broker
    # alone, with its local metadata store. With etcd, cluster_id is required.
    etcd: str | None = None
    rack: str | None = None  # [broker.rack]
    broker_session_timeout_ms: int = 9000  # [broker.session.timeout.ms]: a broker silent this long is dead
    replica_lag_time_max_ms: int = 30000  # [replica.lag.time.max.ms]: a follower behind this long leaves the ISR
    # Requests larger than this close the connection (Kafka: socket.request.max.bytes).
    max_request_bytes: int = 104857600
    # Request bytes buffered before they are handled, over every connection; a connection that needs more
    # stops reading until there is room (Kafka: queued.max.request.bytes). At least max_request_bytes.
    queued_max_request_bytes: int = 268435456
    max_connections: int = 10000  # [max.connections]: a connection over it is closed at once
    max_connections_per_ip: int = 1000  # [max.connections.per.ip]
    auto_create_topics: bool = True
    num_partitions: int = 1
    default_replication_factor: int = 1
    # Log defaults (Kafka broker names in brackets); topics may override them.
    log_segment_bytes: int = 1073741824  # [log.segment.bytes]
    log_segment_ms: int = 604800000  # [log.roll.ms]
    log_retention_ms: int = 604800000  # [log.retention.ms]
    log_retention_bytes: int = -1  # [log.retention.bytes]
    log_retention_check_interval_ms: int = 300000  # [log.retention.check.interval.ms]
    log_flush_offset_checkpoint_interval_ms: int = 60000  # [log.flush.offset.checkpoint.interval.ms]
    message_max_bytes: int = 1048588  # [message.max.bytes]
    log_message_timestamp_type: str = "CreateTime"  # [log.message.timestamp.type]
    # Compaction of topics with cleanup.policy=compact (and __consumer_offsets).
    log_cleaner_enabled: bool = True  # [log.cleaner.enable]
    log_cleaner_interval_ms: int = 15000  # [log.cleaner.backoff.ms]: pause between cleaner passes
    offsets_topic_segment_bytes: int = 104857600  # [offsets.topic.segment.bytes]
    offsets_topic_replication_factor: int = 3  # [offsets.topic.replication.factor] (on a cluster)
    auto_leader_rebalance_enable: bool = True  # [auto.leader.rebalance.enable]: leaders back to preferred replicas
    leader_imbalance_check_interval_ms: int = 300000  # [leader.imbalance.check.interval.seconds], in ms
    # Flush policy. Writes reach the OS before any acknowledgement, so a process
    # crash (kill -9) loses nothing; fsync protects against machine crashes.
    log_flush_interval_messages: int = 9223372036854775807  # [log.flush.interval.messages]
    log_flush_interval_ms: int = 9223372036854775807  # [log.flush.interval.ms]
    fsync_before_ack: bool = False  # fsync the partition before acknowledging acks=all produce
    # Serve large Fetch record sets from the segment files with os.sendfile (no copy through Python).
    fetch_sendfile: bool = True
    # Consumer groups.
    group_initial_rebalance_delay_ms: int = 3000
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    offsets_retention_minutes: int = 10080
    log_level: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def advertised(self) -> HostPort:
        return self.advertise or self.listen


_FIELDS = {f.name: f for f in dataclasses.fields(BrokerConfig) if f.name != "extra"}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
_TIMESTAMP_TYPES = {"CreateTime", "LogAppendTime"}


def _coerce(key: str, value: Any) -> Any:
    f = _FIELDS[key]
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if kind in ("HostPort", "HostPort | None"):
        if value is None and kind.endswith("None"):
            return None
        return parse_host_port(key, value)
    if kind == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a directory path, got {value!r}")
        return Path(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        return number
    if kind in ("str", "str | None"):
        if value is None and kind.endswith("None"):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {kind}")


def _check_ranges(config: BrokerConfig) -> None:
    positive = ("max_request_bytes", "num_partitions", "default_replication_factor", "log_segment_bytes",
                "log_segment_ms", "log_retention_check_interval_ms", "log_flush_offset_checkpoint_interval_ms",
                "message_max_bytes",
                "log_flush_interval_messages", "log_flush_interval_ms", "group_min_session_timeout_ms",
                "group_max_session_timeout_ms", "offsets_retention_minutes", "log_cleaner_interval_ms",
                "offsets_topic_segment_bytes", "queued_max_request_bytes", "max_connections",
                "max_connections_per_ip", "broker_session_timeout_ms", "replica_lag_time_max_ms",
                "offsets_topic_replication_factor", "leader_imbalance_check_interval_ms")
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {getattr(config, key)}")
    for key in ("log_retention_ms", "log_retention_bytes"):
        if getattr(config, key) < -1:
            raise ConfigError(f"{key}: must be -1 (unlimited) or >= 0, got {getattr(config, key)}")
    if config.queued_max_request_bytes < config.max_request_bytes:
        raise ConfigError(f"queued_max_request_bytes: must be at least max_request_bytes ({config.max_request_bytes}), "
                          f"got {config.queued_max_request_bytes}")
    if config.node_id < 0:
        raise ConfigError(f"node_id: must be >= 0, got {config.node_id}")
    if config.group_initial_rebalance_delay_ms < 0:
        raise ConfigError("group_initial_rebalance_delay_ms: must be >= 0")
    if config.log_message_timestamp_type not in _TIMESTAMP_TYPES:
        raise ConfigError(f"log_message_timestamp_type: expected CreateTime or LogAppendTime, got {config.log_message_timestamp_type!r}")
    if config.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {sorted(_LOG_LEVELS)}, got {config.log_level!r}")


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> BrokerConfig:
    """Merge file values with command-line flags (flags win) and validate every key."""
    values: dict[str, Any] = {}
    for source in (file_values, flag_values):
        for raw_key, value in source.items():
            key = str(raw_key).replace("-", "_").replace(".", "_")
            if key not in _FIELDS:
                raise ConfigError(f"unknown setting {raw_key!r}")
            if key == "etcd" and isinstance(value, list):
                value = ",".join(str(v) for v in value)
            values[key] = _coerce(key, value)
    config = BrokerConfig(**values)
    _check_ranges(config)
    _check_control_plane(config)
    return config


def _check_control_plane(config: BrokerConfig) -> None:
    if config.etcd is None:
        return
    try:
        parse_endpoints(config.etcd)
    except ValueError as exc:
        raise ConfigError(f"etcd: {exc}") from None
    if not config.cluster_id:
        raise ConfigError("cluster_id: required with etcd (every broker of a cluster gives the same one)")


def setting_names() -> list[str]:
    return sorted(_FIELDS)
