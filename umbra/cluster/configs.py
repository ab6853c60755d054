"""Topic and broker config definitions: names, types, validation, defaults, synonyms and precedence.

A topic config's effective value is the first of these that is set (Kafka's order):

1. the topic's override (``DYNAMIC_TOPIC_CONFIG``), stored in the topic's metadata;
2. the broker synonym set for this broker only (``DYNAMIC_BROKER_CONFIG``);
3. the broker synonym set cluster-wide (``DYNAMIC_DEFAULT_BROKER_CONFIG``);
4. the broker synonym from the broker's config file or flags (``STATIC_BROKER_CONFIG``);
5. the built-in default (``DEFAULT_CONFIG``).

Dynamic broker configs live in the metadata store's one flat map (``MetadataStore.set_broker_configs``):
a cluster-wide value under its bare name (``log.retention.ms``), a per-broker value under
``<node id>/<name>`` (``1/log.retention.ms``); see :func:`dynamic_key`.

Every Kafka topic and broker config is accepted (:mod:`umbra.cluster.kafka_configs` lists the ones umbra
stores without acting on: ``acted_on`` is False); the others are enforced. ``compression.type`` is stored and
described but never acted on: umbra stores batches exactly as the producer compressed them.

This module is pure: no I/O, no event loop.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from umbra.cluster.kafka_broker_names import KAFKA_STATIC_BROKER_CONFIGS
from umbra.cluster.kafka_configs import (
    INT_MAX,
    LONG_MAX,
    STATIC_TOPIC_SYNONYMS,
    STORED_BROKER_CONFIGS,
    STORED_TOPIC_CONFIGS,
    THREAD_POOLS,
    Check,
    ConfigType,
    any_string,
    check_thread_count,
    cleanup_policy,
    fraction,
    integer,
    normalise_value,
    one_of,
    split_list,
)
from umbra.config import BrokerConfig
from umbra.errors import InvalidConfig, InvalidRequest
from umbra.protocol.constants import ConfigSource
from umbra.storage.config import LogConfig

if TYPE_CHECKING:
    from umbra.cluster.metadata import TopicMetadata

log = logging.getLogger("umbra.configs")

__all__ = ["ConfigType", "ConfigSource", "split_list"]  # re-exported for callers of this module

# --- definitions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: ConfigType
    doc: str
    check: Check
    acted_on: bool = True  # False: stored and described only (docs/compatibility.md lists them)
    sensitive: bool = False

    def normalise(self, value: str | None) -> str:
        """The canonical form of ``value``; InvalidConfig naming the key and the problem when it is bad."""
        return normalise_value(self.name, self.check, value)


@dataclass(frozen=True)
class BrokerConfigDef(ConfigDef):
    """A broker config. ``static`` reads its value from the broker's start-up config. ``scope`` says where a
    dynamic update may set it: ``cluster`` (per broker or cluster-wide), ``broker`` (per broker only),
    ``listener`` (only with a listener prefix, which umbra has not) or ``static`` (read-only)."""

    static: Callable[[BrokerConfig], str] = lambda _config: ""
    scope: str = "static"

    @property
    def dynamic(self) -> bool:
        return self.scope in ("cluster", "broker")


@dataclass(frozen=True)
class TopicConfigDef(ConfigDef):
    broker_synonym: str = ""  # "" when Kafka has none: then the default is ``default``
    default: str = ""


def _field(name: str) -> Callable[[BrokerConfig], str]:
    def read(config: BrokerConfig) -> str:
        value = getattr(config, name)
        return str(value).lower() if isinstance(value, bool) else str(value)

    return read


def _constant(value: str) -> Callable[[BrokerConfig], str]:
    return lambda _config: value


_TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
_COMPRESSION_TYPES = ("producer", "none", "uncompressed", "gzip", "snappy", "lz4", "zstd")
_COMPRESSION_DOC = ("Stored and described for compatibility. umbra never recompresses: batches are stored "
                    "exactly as the producer compressed them, whatever this says.")


def _topic(name: str, type_: ConfigType, check: Check, synonym: str, doc: str, acted_on: bool = True) -> TopicConfigDef:
    return TopicConfigDef(name, type_, doc, check, acted_on, broker_synonym=synonym)


TOPIC_CONFIGS: dict[str, TopicConfigDef] = {d.name: d for d in (
    _topic("cleanup.policy", ConfigType.LIST, cleanup_policy, "log.cleanup.policy",
           "delete: drop old segments by retention.ms and retention.bytes. compact: keep the newest record of "
           "each key (the log cleaner). Both may be given: compact,delete."),
    _topic("delete.retention.ms", ConfigType.LONG, integer(0, LONG_MAX), "log.cleaner.delete.retention.ms",
           "How long a tombstone of a compacted topic is kept after its first cleaning."),
    _topic("min.cleanable.dirty.ratio", ConfigType.DOUBLE, fraction, "log.cleaner.min.cleanable.ratio",
           "A compacted log is cleaned once its uncleaned bytes are at least this share of its cleanable bytes."),
    _topic("min.compaction.lag.ms", ConfigType.LONG, integer(0, LONG_MAX), "log.cleaner.min.compaction.lag.ms",
           "Records younger than this stay uncompacted."),
    _topic("max.compaction.lag.ms", ConfigType.LONG, integer(1, LONG_MAX), "log.cleaner.max.compaction.lag.ms",
           "Records older than this are compacted whatever the dirty ratio; the active segment of a compacted "
           "topic rolls at this age."),
    _topic("compression.type", ConfigType.STRING, one_of(*_COMPRESSION_TYPES), "compression.type", _COMPRESSION_DOC,
           acted_on=False),
    _topic("flush.messages", ConfigType.LONG, integer(1, LONG_MAX), "log.flush.interval.messages",
           "fsync the partition after this many messages; the default never forces an fsync."),
    _topic("flush.ms", ConfigType.LONG, integer(0, LONG_MAX), "log.flush.interval.ms",
           "fsync the partition when this many milliseconds have passed since the last flush."),
    _topic("index.interval.bytes", ConfigType.INT, integer(0, INT_MAX, "INT"), "log.index.interval.bytes",
           "Bytes of batches between two entries of the sparse offset index."),
    _topic("max.message.bytes", ConfigType.INT, integer(0, INT_MAX, "INT"), "message.max.bytes",
           "Largest record batch the partition accepts; larger ones get MESSAGE_TOO_LARGE."),
    _topic("message.timestamp.type", ConfigType.STRING, one_of(*_TIMESTAMP_TYPES), "log.message.timestamp.type",
           "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock on append."),
    _topic("min.insync.replicas", ConfigType.INT, integer(1, INT_MAX, "INT"), "min.insync.replicas",
           "acks=all produce fails with NOT_ENOUGH_REPLICAS when fewer replicas are in sync."),
    _topic("retention.bytes", ConfigType.LONG, integer(-1, LONG_MAX), "log.retention.bytes",
           "Largest size of a partition before old segments are deleted; -1 means no limit."),
    _topic("retention.ms", ConfigType.LONG, integer(-1, LONG_MAX), "log.retention.ms",
           "Age after which old segments are deleted; -1 means no limit."),
    _topic("segment.bytes", ConfigType.INT, integer(14, INT_MAX, "INT"), "log.segment.bytes",
           "Size at which the active segment is rolled."),
    _topic("segment.ms", ConfigType.LONG, integer(1, LONG_MAX), "log.roll.ms",
           "Age at which the active segment is rolled, even when it is not full."),
    *(TopicConfigDef(c.name, c.type, c.doc, c.check, False, c.sensitive, c.broker_synonym, c.default)
      for c in STORED_TOPIC_CONFIGS),
)}


def _broker(name: str, type_: ConfigType, static: Callable[[BrokerConfig], str], doc: str) -> BrokerConfigDef:
    return BrokerConfigDef(name, type_, doc, any_string, static=static)


def _synonym_defs() -> list[BrokerConfigDef]:
    """The broker-level defaults of the topic configs: dynamically alterable."""
    static = {
        "log.cleanup.policy": _constant("delete"),
        "log.cleaner.delete.retention.ms": _constant("86400000"),
        "log.cleaner.min.cleanable.ratio": _constant("0.5"),
        "log.cleaner.min.compaction.lag.ms": _constant("0"),
        "log.cleaner.max.compaction.lag.ms": _constant(str(LONG_MAX)),
        "compression.type": _constant("producer"),
        "log.flush.interval.messages": _field("log_flush_interval_messages"),
        "log.flush.interval.ms": _field("log_flush_interval_ms"),
        "log.index.interval.bytes": _constant("4096"),
        "message.max.bytes": _field("message_max_bytes"),
        "log.message.timestamp.type": _field("log_message_timestamp_type"),
        "min.insync.replicas": _constant("1"),
        "log.retention.bytes": _field("log_retention_bytes"),
        "log.retention.ms": _field("log_retention_ms"),
        "log.segment.bytes": _field("log_segment_bytes"),
        "log.roll.ms": _field("log_segment_ms"),
    }
    return [BrokerConfigDef(d.broker_synonym, d.type, f"Default {d.name} of topics. {d.doc}", d.check, d.acted_on,
                            d.sensitive, static.get(d.broker_synonym, _constant(d.default)),
                            "static" if d.broker_synonym in STATIC_TOPIC_SYNONYMS else "cluster")
            for d in TOPIC_CONFIGS.values() if d.broker_synonym]


def _stored_broker_defs() -> list[BrokerConfigDef]:
    return [BrokerConfigDef(c.name, c.type, c.doc, c.check, c.acted_on, c.sensitive,
                            _field(c.field) if c.field else _constant(c.default), c.scope)
            for c in STORED_BROKER_CONFIGS]


BROKER_CONFIGS: dict[str, BrokerConfigDef] = {d.name: d for d in sorted((
    *_synonym_defs(),
    *_stored_broker_defs(),
    _broker("broker.id", ConfigType.INT, _field("node_id"), "The node id of this broker."),
    _broker("log.dirs", ConfigType.STRING, _field("data_dir"), "The data directory."),
    _broker("listeners", ConfigType.STRING, lambda c: ",".join(f"{x.name}://{x.address}" for x in c.listeners),
            "The Kafka listeners."),
    _broker("advertised.listeners", ConfigType.STRING,
            lambda c: ",".join(f"{x.name}://{x.advertise or x.address}" for x in c.listeners),
            "The addresses clients are told to connect to, per listener."),
    _broker("listener.security.protocol.map", ConfigType.STRING,
            lambda c: ",".join(f"{x.name}:{x.security_protocol}" for x in c.listeners),
            "The security protocol of each listener."),
    _broker("num.partitions", ConfigType.INT, _field("num_partitions"),
            "Partitions of auto-created topics and of CreateTopics with num_partitions -1."),
    _broker("default.replication.factor", ConfigType.SHORT, _field("default_replication_factor"),
            "Replication factor of CreateTopics with replication_factor -1."),
    _broker("auto.create.topics.enable", ConfigType.BOOLEAN, _field("auto_create_topics"),
            "Create a topic when a client asks for its metadata or produces to it."),
    _broker("socket.request.max.bytes", ConfigType.INT, _field("max_request_bytes"),
            "Largest request accepted; a larger one closes the connection."),
    _broker("log.retention.check.interval.ms", ConfigType.LONG, _field("log_retention_check_interval_ms"),
            "How often retention runs."),
    _broker("log.cleaner.enable", ConfigType.BOOLEAN, _field("log_cleaner_enabled"),
            "Run the log cleaner, which compacts topics whose cleanup.policy contains compact."),
    _broker("log.cleaner.backoff.ms", ConfigType.LONG, _field("log_cleaner_interval_ms"),
            "Pause between two passes of the log cleaner."),
    _broker("offsets.topic.segment.bytes", ConfigType.INT, _field("offsets_topic_segment_bytes"),
            "Segment size of the compacted __consumer_offsets topic."),
    _broker("group.initial.rebalance.delay.ms", ConfigType.INT, _field("group_initial_rebalance_delay_ms"),
            "How long the first rebalance of an empty group waits for more members."),
    _broker("group.min.session.timeout.ms", ConfigType.INT, _field("group_min_session_timeout_ms"),
            "Smallest session timeout a group member may ask for."),
    _broker("group.max.session.timeout.ms", ConfigType.INT, _field("group_max_session_timeout_ms"),
            "Largest session timeout a group member may ask for."),
    _broker("offsets.retention.minutes", ConfigType.INT, _field("offsets_retention_minutes"),
            "How long committed offsets of an empty group are kept."),
), key=lambda d: d.name)}

_DEFAULT_BROKER = BrokerConfig()


# --- dynamic broker config storage -----------------------------------------------------------
def dynamic_key(name: str, node_id: int | None) -> str:
    """Key in the stored broker-config map: the bare name cluster-wide, ``<node id>/<name>`` for one broker."""
    return name if node_id is None else f"{node_id}/{name}"


def dynamic_scope(broker_dynamic: Mapping[str, str], node_id: int | None) -> dict[str, str]:
    """The dynamic configs of one scope (cluster-wide when ``node_id`` is None), by config name."""
    if node_id is None:
        return {k: v for k, v in broker_dynamic.items() if "/" not in k}
    prefix = f"{node_id}/"
    return {k.removeprefix(prefix): v for k, v in broker_dynamic.items() if k.startswith(prefix)}


def replace_dynamic_scope(broker_dynamic: Mapping[str, str], node_id: int | None,
                          configs: Mapping[str, str]) -> dict[str, str]:
    """The whole stored map with one scope's configs replaced by ``configs``."""
    kept = {k: v for k, v in broker_dynamic.items()
            if (("/" in k) if node_id is None else not k.startswith(f"{node_id}/"))}
    kept.update({dynamic_key(name, node_id): value for name, value in configs.items()})
    return kept


# --- resolution --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigSynonym:
    name: str
    value: str
    source: ConfigSource


def _valid(definition: ConfigDef, value: str, where: str) -> bool:
    try:
        definition.normalise(value)
    except InvalidConfig as exc:
        log.warning("ignoring stored %s: %s", where, exc)
        return False
    return True


def broker_synonyms(definition: BrokerConfigDef, broker: BrokerConfig,
                    broker_dynamic: Mapping[str, str]) -> list[ConfigSynonym]:
    """Every value this broker config has, highest precedence first; the last is always static or default."""
    found: list[ConfigSynonym] = []
    if definition.dynamic:
        for node_id, source in ((broker.node_id, ConfigSource.DYNAMIC_BROKER_CONFIG),
                                (None, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)):
            value = broker_dynamic.get(dynamic_key(definition.name, node_id))
            if value is not None and _valid(definition, value, f"broker config {dynamic_key(definition.name, node_id)}"):
                found.append(ConfigSynonym(definition.name, value, source))
    static, default = definition.static(broker), definition.static(_DEFAULT_BROKER)
    if static != default:
        found.append(ConfigSynonym(definition.name, static, ConfigSource.STATIC_BROKER_CONFIG))
    found.append(ConfigSynonym(definition.name, default, ConfigSource.DEFAULT_CONFIG))
    return found


def topic_synonyms(definition: TopicConfigDef, broker: BrokerConfig, topic_configs: Mapping[str, str],
                   broker_dynamic: Mapping[str, str]) -> list[ConfigSynonym]:
    """Every value this topic config has, highest precedence first; the first is the effective one."""
    found: list[ConfigSynonym] = []
    value = topic_configs.get(definition.name)
    if value is not None and _valid(definition, value, f"topic config {definition.name}"):
        found.append(ConfigSynonym(definition.name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
    if definition.broker_synonym:
        found += broker_synonyms(BROKER_CONFIGS[definition.broker_synonym], broker, broker_dynamic)
    else:
        found.append(ConfigSynonym(definition.name, definition.default, ConfigSource.DEFAULT_CONFIG))
    return found


def effective_topic_config(name: str, broker: BrokerConfig, topic_configs: Mapping[str, str],
                           broker_dynamic: Mapping[str, str]) -> str:
    """The value a topic config has in effect (e.g. ``min.insync.replicas`` for the produce path)."""
    return topic_synonyms(TOPIC_CONFIGS[name], broker, topic_configs, broker_dynamic)[0].value


def min_insync_replicas(broker: BrokerConfig, topic_configs: Mapping[str, str], broker_dynamic: Mapping[str, str]) -> int:
    """acks=all produce needs at least this many in-sync replicas, else NOT_ENOUGH_REPLICAS (not in LogConfig:
    it is a replication rule, not a log one)."""
    return int(effective_topic_config("min.insync.replicas", broker, topic_configs, broker_dynamic))


def log_config_for(broker: BrokerConfig, topic_configs: Mapping[str, str], broker_dynamic: Mapping[str, str]) -> LogConfig:
    """The LogConfig of a topic: topic override > dynamic broker (this broker, then cluster) > static broker."""

    def value(name: str) -> str:
        return effective_topic_config(name, broker, topic_configs, broker_dynamic).strip()

    def number(name: str) -> int:
        return int(value(name))

    def flush(name: str) -> int | None:
        return None if number(name) >= LONG_MAX else number(name)

    return LogConfig(
        segment_bytes=number("segment.bytes"),
        segment_ms=number("segment.ms"),
        retention_ms=number("retention.ms"),
        retention_bytes=number("retention.bytes"),
        max_message_bytes=number("max.message.bytes"),
        message_timestamp_type=value("message.timestamp.type"),
        index_interval_bytes=number("index.interval.bytes"),
        flush_messages=flush("flush.messages"),
        flush_ms=flush("flush.ms"),
        cleanup_policy=",".join(split_list(value("cleanup.policy"))),
        delete_retention_ms=number("delete.retention.ms"),
        min_cleanable_dirty_ratio=float(value("min.cleanable.dirty.ratio")),
        min_compaction_lag_ms=number("min.compaction.lag.ms"),
        max_compaction_lag_ms=number("max.compaction.lag.ms"),
    )


# --- validation of writes ----------------------------------------------------------------------
def topic_config_def(name: str) -> TopicConfigDef:
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        raise InvalidConfig(f"Unknown topic config name: {name}")  # Kafka's words
    return definition


def dynamic_broker_config_def(name: str, node_id: int | None = None) -> BrokerConfigDef:
    """The definition of a broker config that a dynamic update of scope ``node_id`` (None: cluster-wide) may
    set. Kafka's errors otherwise: INVALID_REQUEST for a read-only config or the wrong scope (it wraps them
    so), INVALID_CONFIG for an unknown name (Kafka would store an unknown name; umbra refuses typos)."""
    definition = BROKER_CONFIGS.get(name)
    if definition is None and name not in KAFKA_STATIC_BROKER_CONFIGS:
        raise InvalidConfig(f"Unknown broker config name: {name}")
    if definition is None or definition.scope == "static":
        raise InvalidRequest(f"Cannot update these configs dynamically: Set({name}) (read-only: set it in the "
                             f"broker's config file and restart)")
    if definition.scope == "listener":
        raise InvalidRequest(f"These security configs can be dynamically updated only per-listener using the "
                             f"listener prefix: Set({name})")
    if definition.scope == "broker" and node_id is None:
        raise InvalidRequest(f"Cannot update these configs at default cluster level, broker id must be "
                             f"specified: Set({name})")
    return definition


def check_broker_changes(broker: BrokerConfig, stored: Mapping[str, str], updated: Mapping[str, str]) -> None:
    """Kafka's checks of a dynamic change against this broker's values now (the thread-pool sizes); Kafka
    answers them with INVALID_REQUEST."""
    for name in THREAD_POOLS:
        current = int(broker_synonyms(BROKER_CONFIGS[name], broker, stored)[0].value)
        new = int(broker_synonyms(BROKER_CONFIGS[name], broker, updated)[0].value)
        try:
            check_thread_count(name, current, new)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Normalised topic overrides; InvalidConfig for an unknown key or a bad value."""
    return {name: topic_config_def(name).normalise(value) for name, value in configs.items()}


def validate_broker_configs(configs: Mapping[str, str | None], node_id: int | None = None) -> dict[str, str]:
    """Normalised dynamic broker configs of scope ``node_id``; InvalidConfig for an unknown or bad one,
    InvalidRequest for a read-only one or one of the wrong scope."""
    return {name: dynamic_broker_config_def(name, node_id).normalise(value) for name, value in configs.items()}


class AlterOp(enum.IntEnum):
    """IncrementalAlterConfigs ``config_operation`` values."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class Definition(Protocol):
    """What IncrementalAlterConfigs needs of a topic, broker or group config definition."""

    @property
    def type(self) -> ConfigType: ...

    def normalise(self, value: str | None) -> str: ...


def apply_incremental(current: Mapping[str, str], ops: Iterable[tuple[str, int, str | None]],
                      definition_of: Callable[[str], Definition], effective: Callable[[str], str]) -> dict[str, str]:
    """Apply IncrementalAlterConfigs operations ``(name, op, value)`` to one resource's overrides.

    APPEND and SUBTRACT work on list configs only, starting from the effective value (so appending to a
    config that only has its default extends the default, as in Kafka).
    """
    updated = dict(current)
    for name, op, value in ops:
        definition = definition_of(name)
        if op == AlterOp.SET:
            updated[name] = definition.normalise(value)
        elif op == AlterOp.DELETE:
            updated.pop(name, None)
        elif op in (AlterOp.APPEND, AlterOp.SUBTRACT):
            if definition.type != ConfigType.LIST:
                raise InvalidConfig(f"{AlterOp(op).name} is only allowed on list configs; {name} is "
                                    f"{definition.type.name}")
            items = split_list(updated[name] if name in updated else effective(name))
            given = split_list(value or "")
            if op == AlterOp.APPEND:
                items += [item for item in given if item not in items]
            else:
                items = [item for item in items if item not in given]
            updated[name] = definition.normalise(",".join(items))
        else:
            raise InvalidRequest(f"unknown config operation {op} for {name}; expected 0 (SET), 1 (DELETE), "
                                 f"2 (APPEND) or 3 (SUBTRACT)")
    return updated


# --- descriptions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfigEntry:
    """One config as DescribeConfigs (and CreateTopics v5+) report it."""

    name: str
    value: str | None
    source: ConfigSource
    read_only: bool
    type: ConfigType
    doc: str
    synonyms: tuple[ConfigSynonym, ...]
    is_sensitive: bool = False

    @property
    def is_default(self) -> bool:
        return self.source == ConfigSource.DEFAULT_CONFIG


def _entry(definition: ConfigDef, synonyms: list[ConfigSynonym], read_only: bool) -> ConfigEntry:
    """Sensitive values are never described (Kafka reports null), nor are their synonyms' values."""
    if definition.sensitive:
        synonyms = [ConfigSynonym(s.name, "", s.source) for s in synonyms]
    value = None if definition.sensitive else synonyms[0].value
    return ConfigEntry(definition.name, value, synonyms[0].source, read_only, definition.type, definition.doc,
                       tuple(synonyms), definition.sensitive)


def _wanted(names: Iterable[str], keys: Iterable[str] | None) -> list[str]:
    if keys is None:
        return sorted(names)
    wanted = set(keys)
    return [name for name in sorted(names) if name in wanted]


def describe_topic(broker: BrokerConfig, topic_configs: Mapping[str, str], broker_dynamic: Mapping[str, str],
                   keys: Iterable[str] | None = None) -> list[ConfigEntry]:
    entries = []
    for name in _wanted(TOPIC_CONFIGS, keys):
        definition = TOPIC_CONFIGS[name]
        synonyms = topic_synonyms(definition, broker, topic_configs, broker_dynamic)
        entries.append(_entry(definition, synonyms, read_only=False))
    return entries


def describe_broker(broker: BrokerConfig, broker_dynamic: Mapping[str, str], cluster_default: bool,
                    keys: Iterable[str] | None = None) -> list[ConfigEntry]:
    """A broker's configs, or with ``cluster_default`` only those set cluster-wide (as Kafka does for "")."""
    entries = []
    for name in _wanted(BROKER_CONFIGS, keys):
        definition = BROKER_CONFIGS[name]
        synonyms = broker_synonyms(definition, broker, broker_dynamic)
        if cluster_default:
            synonyms = [s for s in synonyms if s.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
            if not synonyms:
                continue
        entries.append(_entry(definition, synonyms, read_only=not definition.dynamic))
    return entries


# --- mutation policy (extension point) ---------------------------------------------------------
class TopicMutation(enum.Enum):
    DELETE = "delete"
    CREATE_PARTITIONS = "create partitions"
    ALTER_CONFIGS = "alter configs"


# Raises PolicyViolation to refuse; ``changed`` names the config keys an ALTER_CONFIGS changes.
TopicPolicy = Callable[["TopicMetadata", TopicMutation, frozenset[str]], None]


def check_topic_mutation(policy: TopicPolicy | None, topic: TopicMetadata, mutation: TopicMutation,
                         changed: Iterable[str] = ()) -> None:
    """The one check every admin handler runs before it changes a topic (e.g. shadow topics refuse)."""
    if policy is not None:
        policy(topic, mutation, frozenset(changed))
