"""Per-partition log configuration, named after Kafka's topic configs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from umbra.errors import InvalidConfig

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"


# How many times max.message.bytes (at least 1 MiB) a batch may decompress to. Real data compresses 3-20 times.
DECOMPRESSION_RATIO_LIMIT = 64


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Kafka topic-level log settings.

    ``flush_messages`` / ``flush_ms``: fsync after that many messages / milliseconds since the last flush.
    ``None`` (the default, like Kafka's Long.MAX_VALUE) never forces an fsync: durability comes from
    replication, and every acknowledged append is already in the OS page cache, so it survives a
    process crash (kill -9); only a machine crash can lose unflushed data.
    ``retention_ms`` / ``retention_bytes``: -1 means unlimited. Retention applies only when
    ``cleanup_policy`` contains "delete"; the log cleaner (``cleaner.py``) compacts logs whose policy
    contains "compact", honouring ``delete_retention_ms``, ``min_cleanable_dirty_ratio``,
    ``min_compaction_lag_ms`` and ``max_compaction_lag_ms`` as Kafka does.
    """

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    retention_ms: int = 604800000
    retention_bytes: int = -1
    max_message_bytes: int = 1048588
    message_timestamp_type: str = CREATE_TIME
    index_interval_bytes: int = 4096
    flush_messages: int | None = None
    flush_ms: int | None = None
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 86400000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = 2**63 - 1

    def __post_init__(self) -> None:
        if self.message_timestamp_type not in (CREATE_TIME, LOG_APPEND_TIME):
            raise InvalidConfig(f"message.timestamp.type must be CreateTime or LogAppendTime, "
                                f"not {self.message_timestamp_type!r}")
        if self.segment_bytes < 14:
            raise InvalidConfig("segment.bytes must be at least 14")
        if self.segment_ms < 1 or self.index_interval_bytes < 0 or self.max_message_bytes < 0:
            raise InvalidConfig("segment.ms, index.interval.bytes and max.message.bytes must be positive")
        if not 0.0 <= self.min_cleanable_dirty_ratio <= 1.0:
            raise InvalidConfig("min.cleanable.dirty.ratio must be between 0 and 1")
        if self.delete_retention_ms < 0 or self.min_compaction_lag_ms < 0:
            raise InvalidConfig("delete.retention.ms and min.compaction.lag.ms must not be negative")
        if self.max_compaction_lag_ms < 1 or self.max_compaction_lag_ms < self.min_compaction_lag_ms:
            raise InvalidConfig("max.compaction.lag.ms must be at least 1 and at least min.compaction.lag.ms")

    @property
    def max_decompressed_bytes(self) -> int:
        """The most a batch of this log may decompress to when the broker decodes it (producing to a compacted
        topic, validating produced records, compaction, ListOffsets by time): anything bigger is a
        decompression bomb and fails with CORRUPT_MESSAGE."""
        return max(self.max_message_bytes, 1 << 20) * DECOMPRESSION_RATIO_LIMIT

    @property
    def roll_ms(self) -> int:
        """How old the active segment may get: ``segment.ms``, and for a compacted log no more than
        ``max.compaction.lag.ms`` (records in the active segment cannot be cleaned), as Kafka does."""
        return min(self.segment_ms, self.max_compaction_lag_ms) if self.compacts else self.segment_ms

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == LOG_APPEND_TIME

    @property
    def deletes(self) -> bool:
        return "delete" in self.cleanup_policy.split(",")

    @property
    def compacts(self) -> bool:
        return "compact" in self.cleanup_policy  # a substring test: asked on every produce; names are validated

    def with_kafka_configs(self, configs: Mapping[str, str | None]) -> LogConfig:
        """Return a copy overridden by Kafka topic config names (``segment.bytes`` ...); unknown names ignored."""
        changes: dict[str, Any] = {}
        for name, value in configs.items():
            attribute = _KAFKA_NAMES.get(name)
            if attribute is None or value is None:
                continue
            if attribute in _STRING_FIELDS:
                changes[attribute] = value
                continue
            if attribute in _FLOAT_FIELDS:
                try:
                    changes[attribute] = float(value)
                except ValueError as exc:
                    raise InvalidConfig(f"{name} must be a number, not {value!r}") from exc
                continue
            try:
                number = int(value)
            except ValueError as exc:
                raise InvalidConfig(f"{name} must be an integer, not {value!r}") from exc
            if attribute in ("flush_messages", "flush_ms") and number >= 2**63 - 1:
                changes[attribute] = None
            else:
                changes[attribute] = number
        return replace(self, **changes)


_KAFKA_NAMES = {f.name.replace("_", "."): f.name for f in fields(LogConfig)}
_KAFKA_NAMES["max.message.bytes"] = "max_message_bytes"
_KAFKA_NAMES["message.timestamp.type"] = "message_timestamp_type"
_KAFKA_NAMES["flush.messages"] = "flush_messages"
_STRING_FIELDS = {"message_timestamp_type", "cleanup_policy"}
_FLOAT_FIELDS = {"min_cleanable_dirty_ratio"}
