"""Kafka's configs that umbra stores without acting on: topic, broker and group definitions, scopes, checks."""

from __future__ import annotations

from typing import Any

import pytest

from umbra.cluster import configs as defs
from umbra.cluster import group_configs
from umbra.cluster.configs import AlterOp, ConfigSource, ConfigType
from umbra.cluster.group_configs import GROUP_CONFIGS_DOCUMENT, GroupConfig, group_config
from umbra.cluster.kafka_configs import STORED_TOPIC_CONFIGS
from umbra.config import BrokerConfig
from umbra.errors import ErrorCode, InvalidConfig, InvalidRequest

BROKER = BrokerConfig(node_id=7)

# Kafka 4.0's topic configs (LogConfig), plus those Kafka 3.x still accepts: umbra knows every one.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
    "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
    "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
    "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable",
    "message.format.version", "message.downconversion.enable", "message.timestamp.difference.max.ms",
}


def test_every_kafka_topic_config_is_defined() -> None:
    assert set(defs.TOPIC_CONFIGS) == KAFKA_TOPIC_CONFIGS


@pytest.mark.parametrize(("name", "value", "normalised"), [
    ("file.delete.delay.ms", "12345", "12345"),
    ("message.format.version", "2.8", "2.8"),
    ("message.format.version", "3.0-IV1", "3.0-IV1"),
    ("message.format.version", "0.10.2", "0.10.2"),
    ("preallocate", "TRUE", "true"),
    ("compression.gzip.level", "-1", "-1"),
    ("compression.zstd.level", "-5", "-5"),
    ("leader.replication.throttled.replicas", "*", "*"),
    ("follower.replication.throttled.replicas", "0:1, 1:2", "0:1,1:2"),
    ("remote.storage.enable", "false", "false"),
    ("local.retention.ms", "-2", "-2"),
])
def test_stored_only_topic_values_are_validated_and_normalised(name: str, value: str, normalised: str) -> None:
    assert defs.validate_topic_configs({name: value}) == {name: normalised}
    assert not defs.TOPIC_CONFIGS[name].acted_on


def test_stored_only_configs_do_not_touch_the_log_config() -> None:
    stored = {c.name: c.default for c in STORED_TOPIC_CONFIGS} | {"file.delete.delay.ms": "1", "preallocate": "true"}
    assert defs.log_config_for(BROKER, defs.validate_topic_configs(stored), {}) == defs.log_config_for(BROKER, {}, {})


def test_described_with_their_source_and_defaults() -> None:
    entries = {e.name: e for e in defs.describe_topic(BROKER, {"file.delete.delay.ms": "12345"}, {})}
    assert (entries["file.delete.delay.ms"].value, entries["file.delete.delay.ms"].source) == (
        "12345", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert [(s.name, s.value, s.source) for s in entries["file.delete.delay.ms"].synonyms] == [
        ("file.delete.delay.ms", "12345", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.segment.delete.delay.ms", "60000", ConfigSource.DEFAULT_CONFIG)]
    assert (entries["message.format.version"].value, entries["message.format.version"].source) == (
        "3.0-IV1", ConfigSource.DEFAULT_CONFIG)
    # No broker synonym in Kafka: the default alone.
    throttled = entries["leader.replication.throttled.replicas"]
    assert (throttled.value, throttled.type, len(throttled.synonyms)) == ("", ConfigType.LIST, 1)


def test_a_cluster_wide_broker_default_reaches_the_stored_only_topic_config() -> None:
    dynamic = defs.validate_broker_configs({"log.segment.delete.delay.ms": "5000"})
    entry = defs.describe_topic(BROKER, {}, dynamic, ["file.delete.delay.ms"])[0]
    assert (entry.value, entry.source) == ("5000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)


# --- broker configs: scopes as in Kafka ----------------------------------------------------------
def test_broker_config_scopes() -> None:
    assert defs.validate_broker_configs({"background.threads": "20"}) == {"background.threads": "20"}
    assert defs.validate_broker_configs({"sasl.kerberos.min.time.before.relogin": "1000"}, 7) == {
        "sasl.kerberos.min.time.before.relogin": "1000"}
    with pytest.raises(InvalidRequest, match="broker id must be specified"):
        defs.validate_broker_configs({"sasl.kerberos.min.time.before.relogin": "1000"})
    with pytest.raises(InvalidRequest, match="only per-listener"):
        defs.validate_broker_configs({"ssl.keystore.location": "/x"}, 7)
    with pytest.raises(InvalidRequest, match=r"Cannot update these configs dynamically: Set\(log.message.format"):
        defs.validate_broker_configs({"log.message.format.version": "2.8"}, 7)
    # Kafka's static configs that umbra does not describe get Kafka's read-only answer too, not "unknown".
    for static in ("log.retention.hours", "process.roles", "auto.leader.rebalance.enable"):
        with pytest.raises(InvalidRequest, match=rf"Cannot update these configs dynamically: Set\({static}\)"):
            defs.validate_broker_configs({static: "1"}, 7)
    with pytest.raises(InvalidConfig, match="Unknown broker config name: no.such.thing"):
        defs.validate_broker_configs({"no.such.thing": "1"}, 7)
    with pytest.raises(InvalidConfig, match="background.threads") as caught:
        defs.validate_broker_configs({"background.threads": "many"})
    assert caught.value.code == ErrorCode.INVALID_CONFIG and "'many'" in caught.value.message


def test_thread_pools_move_at_most_double_or_half_at_once() -> None:
    defs.check_broker_changes(BROKER, {}, {"background.threads": "20"})
    with pytest.raises(InvalidRequest, match="should not be greater than double the current value 10"):
        defs.check_broker_changes(BROKER, {}, {"background.threads": "21"})
    with pytest.raises(InvalidRequest, match="at least half the current value 8"):
        defs.check_broker_changes(BROKER, {}, {"7/num.io.threads": "3"})
    defs.check_broker_changes(BROKER, {"7/num.io.threads": "16"}, {"7/num.io.threads": "30"})


def test_sensitive_broker_configs_are_never_described() -> None:
    entry = defs.describe_broker(BROKER, {"7/sasl.jaas.config": "secret"}, False, ["sasl.jaas.config"])[0]
    assert entry.is_sensitive and entry.value is None and entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG
    assert all(s.value != "secret" for s in entry.synonyms)


def test_describe_broker_marks_stored_only_dynamic_configs_alterable() -> None:
    entries = {e.name: e for e in defs.describe_broker(BROKER, {"background.threads": "12"}, False)}
    assert (entries["background.threads"].value, entries["background.threads"].source) == (
        "12", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert not entries["background.threads"].read_only
    assert entries["group.consumer.min.session.timeout.ms"].read_only
    assert entries["max.connections"].value == str(BROKER.max_connections)  # from umbra's own config


# --- group configs -------------------------------------------------------------------------------
def test_group_configs_validate_names_types_bounds_and_heartbeat() -> None:
    assert group_configs.validate_group_configs({"consumer.session.timeout.ms": "50000"}, BROKER) == {
        "consumer.session.timeout.ms": "50000"}
    with pytest.raises(InvalidConfig, match="Unknown group config name: session.timeout.ms"):
        group_configs.validate_group_configs({"session.timeout.ms": "1"}, BROKER)
    with pytest.raises(InvalidConfig, match="'soon'"):
        group_configs.validate_group_configs({"consumer.session.timeout.ms": "soon"}, BROKER)
    with pytest.raises(InvalidConfig, match="greater than or equal to group.consumer.min.session.timeout.ms"):
        group_configs.validate_group_configs({"consumer.session.timeout.ms": "1000"}, BROKER)
    with pytest.raises(InvalidConfig, match="less than or equal to group.consumer.max.heartbeat.interval.ms"):
        group_configs.validate_group_configs({"consumer.heartbeat.interval.ms": "20000"}, BROKER)
    with pytest.raises(InvalidConfig, match="share.auto.offset.reset"):
        group_configs.validate_group_configs({"share.auto.offset.reset": "middle"}, BROKER)


def test_describe_group_sources() -> None:
    entries = {e.name: e for e in group_configs.describe_group(BROKER, {"consumer.session.timeout.ms": "50000"})}
    assert (entries["consumer.session.timeout.ms"].value, entries["consumer.session.timeout.ms"].source) == (
        "50000", ConfigSource.GROUP_CONFIG)
    assert (entries["consumer.heartbeat.interval.ms"].value, entries["consumer.heartbeat.interval.ms"].source) == (
        "5000", ConfigSource.DEFAULT_CONFIG)
    assert [e.name for e in group_configs.describe_group(BROKER, {}, ["share.auto.offset.reset"])] == [
        "share.auto.offset.reset"]


def test_incremental_operations_on_group_configs() -> None:
    current = {"consumer.session.timeout.ms": "50000"}
    updated = defs.apply_incremental(current, [("consumer.session.timeout.ms", AlterOp.DELETE, None),
                                               ("consumer.heartbeat.interval.ms", AlterOp.SET, "6000")],
                                     group_configs.group_config_def, lambda name: "")
    assert updated == {"consumer.heartbeat.interval.ms": "6000"}


class _Control:
    def __init__(self, document: Any) -> None:
        self._document = document

    def document(self, name: str) -> Any:
        return self._document if name == GROUP_CONFIGS_DOCUMENT else None


def test_group_config_accessor_reads_the_document() -> None:
    document = group_configs.with_overrides(None, "g", {"consumer.session.timeout.ms": "50000",
                                                        "consumer.heartbeat.interval.ms": "6000"})
    config = group_config(_Control(document), "g")
    assert (config.consumer_session_timeout_ms, config.consumer_heartbeat_interval_ms) == (50000, 6000)
    assert (config.session_timeout_ms(45000), config.heartbeat_interval_ms(5000)) == (50000, 6000)
    assert group_config(_Control(document), "other") == GroupConfig()
    assert group_config(_Control(None), "g").session_timeout_ms(45000) == 45000
    assert group_configs.with_overrides(document, "g", {}) == {}
