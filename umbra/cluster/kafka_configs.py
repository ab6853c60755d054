"""Kafka's config names as data: the value types and checks, and the configs umbra stores without acting on.

:mod:`umbra.cluster.configs` defines the configs umbra acts on (retention, compaction, segments...). Kafka
defines many more, and tools set them: a broker must accept, store and describe every one of them, with
Kafka's type, default and validation. The rest of Kafka's topic, broker and group configs are listed here,
one row each, with ``acted_on=False``: accepted, stored, described, synced by shadow links, no effect.
Names, types, defaults and ranges follow Kafka 4.0 (``TopicConfig``, ``LogConfig``, ``ServerTopicConfigSynonyms``,
``DynamicBrokerConfig``, ``GroupConfig``, ``GroupCoordinatorConfig``), plus the topic configs Kafka 3.x still
accepts (``message.format.version``, ``message.downconversion.enable``,
``message.timestamp.difference.max.ms``).

This module is pure data and checks: no I/O, no umbra imports beyond errors.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from umbra.errors import InvalidConfig

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1
SHORT_MAX = 2**15 - 1


class ConfigType(enum.IntEnum):
    """DescribeConfigs ``config_type`` values."""

    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


# --- value checks: each returns the normalised value or raises ValueError(problem) ------------
Check = Callable[[str], str]


def integer(low: int, high: int, kind: str = "LONG") -> Check:
    def check(value: str) -> str:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"not a number of type {kind}") from None
        if not low <= number <= high:
            raise ValueError(f"must be in {low}..{high}" if high < LONG_MAX else f"must be at least {low}")
        return str(number)

    return check


def integer_or(special: int, low: int, high: int, kind: str = "INT") -> Check:
    """An integer in ``low..high``, or ``special`` (Kafka's "default level" -1 of gzip)."""
    in_range = integer(low, high, kind)

    def check(value: str) -> str:
        normalised = integer(-LONG_MAX, LONG_MAX, kind)(value)
        if int(normalised) == special:
            return normalised
        try:
            return in_range(value)
        except ValueError:
            raise ValueError(f"must be {special} or in {low}..{high}") from None

    return check


def number(low: float, high: float) -> Check:
    def check(value: str) -> str:
        try:
            parsed = float(value.strip())
        except ValueError:
            raise ValueError("not a number of type DOUBLE") from None
        if not low <= parsed <= high:
            raise ValueError(f"must be in {low:g}..{high:g}")
        return str(parsed)

    return check


fraction = number(0.0, 1.0)
any_double = number(-sys.float_info.max, sys.float_info.max)


def boolean(value: str) -> str:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError("expected value to be either true or false")
    return lowered


def one_of(*allowed: str) -> Check:
    def check(value: str) -> str:
        if value.strip() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value.strip()

    return check


def any_string(value: str) -> str:
    return value


def split_list(value: str) -> list[str]:
    items: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if item and item not in items:
            items.append(item)
    return items


def any_list(value: str) -> str:
    return ",".join(split_list(value))


def cleanup_policy(value: str) -> str:
    """``delete``, ``compact``, both, or (as Kafka 3.x+ accepts, e.g. after SUBTRACT of the last one) none."""
    items = split_list(value)
    unknown = [item for item in items if item not in ("delete", "compact")]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; the policies are delete and compact")
    return ",".join(items)


_THROTTLED_REPLICA = re.compile(r"\d+:\d+")


def throttled_replicas(value: str) -> str:
    """``*`` or ``partition:broker`` pairs (Kafka's ThrottledReplicaListValidator)."""
    items = split_list(value)
    if items == ["*"] or all(_THROTTLED_REPLICA.fullmatch(item) for item in items):
        return ",".join(items)
    raise ValueError("must be the literal '*' or a list of replicas in the form [PartitionId]:[BrokerId]")


# Kafka 3.x's MetadataVersionValidator: a release, optionally with its IV suffix (0.8.0 ... 3.9-IV0).
_MESSAGE_FORMAT = re.compile(r"(0\.(8|9|10|11)(\.\d+)?|[1-3]\.\d+)(-IV\d+)?")


def message_format_version(value: str) -> str:
    if not _MESSAGE_FORMAT.fullmatch(value.strip()):
        raise ValueError("not a Kafka release such as 2.8 or 3.0-IV1")
    return value.strip()


def tiered_storage_off(value: str) -> str:
    """umbra has no tiered storage: as Kafka with ``remote.log.storage.system.enable=false``, only false goes."""
    normalised = boolean(value)
    if normalised == "true":
        raise ValueError("Tiered Storage functionality is disabled in the broker (umbra has no tiered storage)")
    return normalised


# --- the stored-only rows -------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredConfig:
    """A Kafka config umbra accepts and stores without acting on it.

    ``broker_synonym``: for a topic config, the broker config holding its default ("" when Kafka has none);
    ``scope`` (broker configs): ``cluster`` (dynamic, per broker or cluster-wide), ``broker`` (dynamic, per
    broker only), ``listener`` (dynamic only with a listener prefix, which umbra has not) or ``static``.
    ``acted_on`` is True only for the group coordinator's read-only settings (its defaults, and the bounds
    that group configs are checked against).
    """

    name: str
    type: ConfigType
    default: str
    check: Check
    doc: str
    broker_synonym: str = ""
    scope: str = "cluster"
    sensitive: bool = False
    field: str = ""  # the BrokerConfig attribute holding its static value, when umbra's config file has one
    acted_on: bool = False


_S = StoredConfig
_T = ConfigType

# Topic configs, with their broker synonyms (Kafka's ServerTopicConfigSynonyms).
STORED_TOPIC_CONFIGS: tuple[StoredConfig, ...] = (
    _S("segment.jitter.ms", _T.LONG, "0", integer(0, LONG_MAX), "Random jitter subtracted from segment.ms.",
       "log.roll.jitter.ms"),
    _S("segment.index.bytes", _T.INT, "10485760", integer(4, INT_MAX, "INT"),
       "Size of the offset index of a segment (umbra's indexes grow as needed).", "log.index.size.max.bytes"),
    _S("file.delete.delay.ms", _T.LONG, "60000", integer(0, LONG_MAX),
       "Delay before a deleted segment's files are removed (umbra removes them at once).",
       "log.segment.delete.delay.ms"),
    _S("unclean.leader.election.enable", _T.BOOLEAN, "false", boolean,
       "Elect an out-of-sync replica as leader as a last resort (umbra never does).",
       "unclean.leader.election.enable"),
    _S("compression.gzip.level", _T.INT, "-1", integer_or(-1, 1, 9), "Gzip level of broker recompression.",
       "compression.gzip.level"),
    _S("compression.lz4.level", _T.INT, "9", integer(1, 17, "INT"), "LZ4 level of broker recompression.",
       "compression.lz4.level"),
    _S("compression.zstd.level", _T.INT, "3", integer(-131072, 22, "INT"), "Zstd level of broker recompression.",
       "compression.zstd.level"),
    _S("preallocate", _T.BOOLEAN, "false", boolean, "Preallocate segment files.", "log.preallocate"),
    _S("message.format.version", _T.STRING, "3.0-IV1", message_format_version,
       "Deprecated in Kafka 3.0, removed in 4.0: accepted and stored, always record format v2.",
       "log.message.format.version"),
    _S("message.timestamp.difference.max.ms", _T.LONG, str(LONG_MAX), integer(0, LONG_MAX),
       "Deprecated: the largest difference between a record's timestamp and the broker's clock.",
       "log.message.timestamp.difference.max.ms"),
    _S("message.timestamp.before.max.ms", _T.LONG, str(LONG_MAX), integer(0, LONG_MAX),
       "How far in the past a record's CreateTime may be.", "log.message.timestamp.before.max.ms"),
    _S("message.timestamp.after.max.ms", _T.LONG, "3600000", integer(0, LONG_MAX),
       "How far in the future a record's CreateTime may be.", "log.message.timestamp.after.max.ms"),
    _S("message.downconversion.enable", _T.BOOLEAN, "true", boolean,
       "Deprecated: down-convert records for old consumers (umbra serves format v2 only).",
       "log.message.downconversion.enable"),
    _S("leader.replication.throttled.replicas", _T.LIST, "", throttled_replicas,
       "Replicas whose leader-side replication is throttled."),
    _S("follower.replication.throttled.replicas", _T.LIST, "", throttled_replicas,
       "Replicas whose follower-side replication is throttled."),
    _S("remote.storage.enable", _T.BOOLEAN, "false", tiered_storage_off, "Tiered storage of the topic."),
    _S("local.retention.ms", _T.LONG, "-2", integer(-2, LONG_MAX),
       "Local retention under tiered storage; -2 means retention.ms.", "log.local.retention.ms"),
    _S("local.retention.bytes", _T.LONG, "-2", integer(-2, LONG_MAX),
       "Local retention under tiered storage; -2 means retention.bytes.", "log.local.retention.bytes"),
    _S("remote.log.copy.disable", _T.BOOLEAN, "false", boolean, "Stop copying segments to remote storage."),
    _S("remote.log.delete.on.disable", _T.BOOLEAN, "false", boolean,
       "Delete remote data when tiered storage is disabled."),
)

# Broker synonyms that Kafka does not let a dynamic update change (DynamicLogConfig's non-reconfigurable set).
STATIC_TOPIC_SYNONYMS = frozenset({"log.message.format.version"})

_THREADS = "Threads of a pool umbra does not have (its event loop and worker threads are sized by itself)."
# Kafka's DynamicThreadPool: a dynamic update may at most double, and at least halve, the current value.
THREAD_POOLS = frozenset({"num.io.threads", "num.replica.fetchers", "num.recovery.threads.per.data.dir",
                          "background.threads"})


def normalise_value(name: str, check: Check, value: str | None) -> str:
    """The canonical form of config ``name``'s ``value``; InvalidConfig naming the key and the problem when bad."""
    if value is None:
        raise InvalidConfig(f"Invalid value null for configuration {name}: a value is required")
    try:
        return check(value)
    except ValueError as exc:
        raise InvalidConfig(f"Invalid value {value!r} for configuration {name}: {exc}") from None


def check_thread_count(name: str, current: int, new: int) -> None:
    """ValueError with Kafka's message when a thread-pool config moves too far at once."""
    if name not in THREAD_POOLS or new == current:
        return
    problem = f"Dynamic thread count update validation failed for {name}={new}"
    if new < current / 2:
        raise ValueError(f"{problem}, value should be at least half the current value {current}")
    if new > current * 2:
        raise ValueError(f"{problem}, value should not be greater than double the current value {current}")

# Broker configs other than the topic synonyms (those come with the topic configs).
STORED_BROKER_CONFIGS: tuple[StoredConfig, ...] = (
    # DynamicThreadPool
    _S("num.io.threads", _T.INT, "8", integer(1, INT_MAX, "INT"), _THREADS),
    _S("num.replica.fetchers", _T.INT, "1", integer(1, INT_MAX, "INT"), _THREADS),
    _S("num.recovery.threads.per.data.dir", _T.INT, "2", integer(1, INT_MAX, "INT"), _THREADS),
    _S("background.threads", _T.INT, "10", integer(1, INT_MAX, "INT"), _THREADS),
    _S("num.network.threads", _T.INT, "3", integer(1, INT_MAX, "INT"), _THREADS),
    # LogCleaner
    _S("log.cleaner.threads", _T.INT, "1", integer(0, INT_MAX, "INT"), "Log cleaner threads (umbra runs one)."),
    _S("log.cleaner.dedupe.buffer.size", _T.LONG, "134217728", integer(-2**63, LONG_MAX),
       "Memory of the cleaner's offset map."),
    _S("log.cleaner.io.buffer.load.factor", _T.DOUBLE, "0.9", any_double,
       "Load factor of the cleaner's offset map."),
    _S("log.cleaner.io.buffer.size", _T.INT, "524288", integer(0, INT_MAX, "INT"), "Cleaner I/O buffer size."),
    _S("log.cleaner.io.max.bytes.per.second", _T.DOUBLE, "1.7976931348623157E308", any_double, "Cleaner I/O throttle."),
    # Metrics, producer state
    _S("metric.reporters", _T.LIST, "", any_list, "Metrics reporter classes (umbra has its Prometheus endpoint)."),
    _S("producer.id.expiration.ms", _T.INT, "86400000", integer(1, INT_MAX, "INT"),
       "How long an idle producer id's state is kept."),
    _S("transaction.partition.verification.enable", _T.BOOLEAN, "true", boolean,
       "Verify transactional produce against the coordinator (umbra has no transactions)."),
    # SocketServer: connection limits are read from the config file at start; dynamic values are stored only.
    _S("max.connections", _T.INT, "10000", integer(0, INT_MAX, "INT"),
       "A dynamic value is stored only: the config file's max_connections applies.", field="max_connections"),
    _S("max.connections.per.ip", _T.INT, "1000", integer(0, INT_MAX, "INT"),
       "A dynamic value is stored only: the config file's max_connections_per_ip applies.",
       field="max_connections_per_ip"),
    _S("max.connections.per.ip.overrides", _T.STRING, "", any_string, "Per-IP connection limits."),
    _S("max.connection.creation.rate", _T.INT, str(INT_MAX), integer(0, INT_MAX, "INT"),
       "Connections accepted per second."),
    # Tiered storage (DynamicRemoteLogConfig)
    _S("remote.log.index.file.cache.total.size.bytes", _T.LONG, "1073741824", integer(1, LONG_MAX),
       "Tiered storage index cache."),
    _S("remote.fetch.max.wait.ms", _T.INT, "500", integer(1, INT_MAX, "INT"), "Tiered storage fetch wait."),
    _S("remote.log.manager.copy.max.bytes.per.second", _T.LONG, str(LONG_MAX), integer(1, LONG_MAX),
       "Tiered storage copy throttle."),
    _S("remote.log.manager.fetch.max.bytes.per.second", _T.LONG, str(LONG_MAX), integer(1, LONG_MAX),
       "Tiered storage fetch throttle."),
    _S("remote.list.offsets.request.timeout.ms", _T.LONG, "30000", integer(1, LONG_MAX),
       "Tiered storage ListOffsets timeout."),
    # DynamicListenerConfig: per broker only (Kafka refuses them cluster-wide). umbra's SASL is configured
    # in its config file; these are stored for the tools that set them.
    _S("sasl.mechanism.inter.broker.protocol", _T.STRING, "GSSAPI", any_string, "SASL between brokers.",
       scope="broker"),
    _S("sasl.jaas.config", _T.PASSWORD, "", any_string, "JAAS login context.", scope="broker", sensitive=True),
    _S("sasl.enabled.mechanisms", _T.LIST, "GSSAPI", any_list, "SASL mechanisms offered.", scope="broker"),
    _S("sasl.kerberos.service.name", _T.STRING, "", any_string, "Kerberos principal name.", scope="broker"),
    _S("sasl.kerberos.kinit.cmd", _T.STRING, "/usr/bin/kinit", any_string, "Kerberos kinit path.",
       scope="broker"),
    _S("sasl.kerberos.ticket.renew.window.factor", _T.DOUBLE, "0.8", any_double,
       "Kerberos ticket renewal point.", scope="broker"),
    _S("sasl.kerberos.ticket.renew.jitter", _T.DOUBLE, "0.05", any_double,
       "Kerberos ticket renewal jitter.", scope="broker"),
    _S("sasl.kerberos.min.time.before.relogin", _T.LONG, "60000", integer(-2**63, LONG_MAX),
       "Kerberos minimum time between relogins.", scope="broker"),
    _S("sasl.kerberos.principal.to.local.rules", _T.LIST, "DEFAULT", any_list,
       "Kerberos principal mapping rules.", scope="broker"),
    _S("sasl.login.refresh.window.factor", _T.DOUBLE, "0.8", number(0.5, 1.0), "Login refresh point.",
       scope="broker"),
    _S("sasl.login.refresh.window.jitter", _T.DOUBLE, "0.05", number(0.0, 0.25), "Login refresh jitter.",
       scope="broker"),
    _S("sasl.login.refresh.min.period.seconds", _T.SHORT, "60", integer(0, 900, "SHORT"),
       "Login refresh minimum period.", scope="broker"),
    _S("sasl.login.refresh.buffer.seconds", _T.SHORT, "300", integer(0, 3600, "SHORT"),
       "Login refresh buffer.", scope="broker"),
    _S("principal.builder.class", _T.CLASS,
       "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder", any_string,
       "Principal builder (umbra's principals are User:<name> from SASL or the certificate).", scope="broker"),
    _S("ssl.client.auth", _T.STRING, "none", one_of("required", "requested", "none"), "TLS client auth.",
       scope="broker"),
    _S("ssl.protocol", _T.STRING, "TLSv1.3", any_string, "TLS protocol.", scope="broker"),
    _S("ssl.enabled.protocols", _T.LIST, "TLSv1.2,TLSv1.3", any_list, "TLS protocols.", scope="broker"),
    _S("ssl.cipher.suites", _T.LIST, "", any_list, "TLS cipher suites.", scope="broker"),
    _S("ssl.endpoint.identification.algorithm", _T.STRING, "https", any_string, "TLS host name check.",
       scope="broker"),
    _S("ssl.keymanager.algorithm", _T.STRING, "SunX509", any_string, "TLS key manager.", scope="broker"),
    _S("ssl.trustmanager.algorithm", _T.STRING, "PKIX", any_string, "TLS trust manager.", scope="broker"),
    _S("ssl.provider", _T.STRING, "", any_string, "TLS security provider.", scope="broker"),
    _S("ssl.secure.random.implementation", _T.STRING, "", any_string, "TLS random source.", scope="broker"),
    _S("ssl.engine.factory.class", _T.CLASS, "", any_string, "TLS engine factory.", scope="broker"),
    # SslConfigs.RECONFIGURABLE_CONFIGS: Kafka changes them only per listener (listener.name.<l>.ssl...).
    *(_S(name, type_, default, any_string, "TLS key material (umbra's TLS is set in its config file).",
         scope="listener", sensitive=type_ == _T.PASSWORD)
      for name, type_, default in (
          ("ssl.keystore.type", _T.STRING, "JKS"), ("ssl.keystore.location", _T.STRING, ""),
          ("ssl.keystore.password", _T.PASSWORD, ""), ("ssl.key.password", _T.PASSWORD, ""),
          ("ssl.truststore.type", _T.STRING, "JKS"), ("ssl.truststore.location", _T.STRING, ""),
          ("ssl.truststore.password", _T.PASSWORD, ""), ("ssl.keystore.certificate.chain", _T.PASSWORD, ""),
          ("ssl.keystore.key", _T.PASSWORD, ""), ("ssl.truststore.certificates", _T.PASSWORD, ""))),
    # Static (read-only) group coordinator settings: the bounds of the group configs below.
    _S("group.consumer.session.timeout.ms", _T.INT, "45000", integer(1, INT_MAX, "INT"),
       "Default session timeout of consumer-protocol (KIP-848) groups.", scope="static",
       field="group_consumer_session_timeout_ms", acted_on=True),
    _S("group.consumer.min.session.timeout.ms", _T.INT, "45000", integer(1, INT_MAX, "INT"),
       "Smallest consumer.session.timeout.ms a group may set.", scope="static", acted_on=True),
    _S("group.consumer.max.session.timeout.ms", _T.INT, "60000", integer(1, INT_MAX, "INT"),
       "Largest consumer.session.timeout.ms a group may set.", scope="static", acted_on=True),
    _S("group.consumer.heartbeat.interval.ms", _T.INT, "5000", integer(1, INT_MAX, "INT"),
       "Default heartbeat interval of consumer-protocol (KIP-848) groups.", scope="static",
       field="group_consumer_heartbeat_interval_ms", acted_on=True),
    _S("group.consumer.min.heartbeat.interval.ms", _T.INT, "5000", integer(1, INT_MAX, "INT"),
       "Smallest consumer.heartbeat.interval.ms a group may set.", scope="static", acted_on=True),
    _S("group.consumer.max.heartbeat.interval.ms", _T.INT, "15000", integer(1, INT_MAX, "INT"),
       "Largest consumer.heartbeat.interval.ms a group may set.", scope="static", acted_on=True),
    _S("group.consumer.migration.policy", _T.STRING, "bidirectional",
       one_of("disabled", "upgrade", "downgrade", "bidirectional"),
       "Online migration of non-empty groups between the classic and consumer protocols (KIP-848).",
       scope="static", field="group_consumer_migration_policy", acted_on=True),
    _S("group.share.session.timeout.ms", _T.INT, "45000", integer(1, INT_MAX, "INT"),
       "Default session timeout of share groups.", scope="static"),
    _S("group.share.min.session.timeout.ms", _T.INT, "45000", integer(1, INT_MAX, "INT"),
       "Smallest share.session.timeout.ms a group may set.", scope="static", acted_on=True),
    _S("group.share.max.session.timeout.ms", _T.INT, "60000", integer(1, INT_MAX, "INT"),
       "Largest share.session.timeout.ms a group may set.", scope="static", acted_on=True),
    _S("group.share.heartbeat.interval.ms", _T.INT, "5000", integer(1, INT_MAX, "INT"),
       "Default heartbeat interval of share groups.", scope="static"),
    _S("group.share.min.heartbeat.interval.ms", _T.INT, "5000", integer(1, INT_MAX, "INT"),
       "Smallest share.heartbeat.interval.ms a group may set.", scope="static", acted_on=True),
    _S("group.share.max.heartbeat.interval.ms", _T.INT, "15000", integer(1, INT_MAX, "INT"),
       "Largest share.heartbeat.interval.ms a group may set.", scope="static", acted_on=True),
    _S("group.share.record.lock.duration.ms", _T.INT, "30000", integer(1000, 3600000, "INT"),
       "Default record lock duration of share groups.", scope="static"),
    _S("group.share.min.record.lock.duration.ms", _T.INT, "15000", integer(1000, 30000, "INT"),
       "Smallest share.record.lock.duration.ms a group may set.", scope="static", acted_on=True),
    _S("group.share.max.record.lock.duration.ms", _T.INT, "60000", integer(30000, 3600000, "INT"),
       "Largest share.record.lock.duration.ms a group may set.", scope="static", acted_on=True),
)


@dataclass(frozen=True)
class GroupConfigDef:
    """A GROUP resource config (Kafka's GroupConfig): its default and bounds are broker configs."""

    name: str
    type: ConfigType
    check: Check
    broker_default: str  # the broker config holding the default
    low: str = ""  # broker configs bounding the value ("" when none)
    high: str = ""
    doc: str = ""
    default: str = ""  # the default when no broker config holds it
    acted_on: bool = False

    def normalise(self, value: str | None) -> str:
        return normalise_value(self.name, self.check, value)


GROUP_CONFIGS: tuple[GroupConfigDef, ...] = (
    GroupConfigDef("consumer.session.timeout.ms", _T.INT, integer(1, INT_MAX, "INT"),
                   "group.consumer.session.timeout.ms", "group.consumer.min.session.timeout.ms",
                   "group.consumer.max.session.timeout.ms",
                   "Session timeout of this consumer-protocol (KIP-848) group's members.", acted_on=True),
    GroupConfigDef("consumer.heartbeat.interval.ms", _T.INT, integer(1, INT_MAX, "INT"),
                   "group.consumer.heartbeat.interval.ms", "group.consumer.min.heartbeat.interval.ms",
                   "group.consumer.max.heartbeat.interval.ms",
                   "Heartbeat interval of this consumer-protocol (KIP-848) group's members.", acted_on=True),
    GroupConfigDef("share.session.timeout.ms", _T.INT, integer(1, INT_MAX, "INT"),
                   "group.share.session.timeout.ms", "group.share.min.session.timeout.ms",
                   "group.share.max.session.timeout.ms", "Session timeout of this share group (umbra has none)."),
    GroupConfigDef("share.heartbeat.interval.ms", _T.INT, integer(1, INT_MAX, "INT"),
                   "group.share.heartbeat.interval.ms", "group.share.min.heartbeat.interval.ms",
                   "group.share.max.heartbeat.interval.ms", "Heartbeat interval of this share group."),
    GroupConfigDef("share.record.lock.duration.ms", _T.INT, integer(1000, INT_MAX, "INT"),
                   "group.share.record.lock.duration.ms", "group.share.min.record.lock.duration.ms",
                   "group.share.max.record.lock.duration.ms", "Record lock duration of this share group."),
    GroupConfigDef("share.auto.offset.reset", _T.STRING, one_of("latest", "earliest"), "",
                   doc="Where a share group starts reading when it has no offset.", default="latest"),
)
