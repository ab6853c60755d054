"""Topic and broker config definitions: validation, precedence, synonyms and incremental operations."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from umbra.cluster import configs as defs
from umbra.cluster.configs import AlterOp, ConfigSource, ConfigType, TopicMutation
from umbra.cluster.metadata import TopicMetadata
from umbra.config import BrokerConfig
from umbra.errors import ErrorCode, InvalidConfig, InvalidRequest, PolicyViolation

BROKER = BrokerConfig(node_id=7)


# --- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value", "normalised"), [
    ("retention.ms", "-1", "-1"),
    ("retention.ms", " 60000 ", "60000"),
    ("retention.bytes", "-1", "-1"),
    ("segment.bytes", "14", "14"),
    ("segment.ms", "1", "1"),
    ("max.message.bytes", "0", "0"),
    ("message.timestamp.type", "LogAppendTime", "LogAppendTime"),
    ("cleanup.policy", "delete", "delete"),
    ("cleanup.policy", " delete , delete", "delete"),
    ("cleanup.policy", "", ""),  # Kafka accepts no policy (what SUBTRACT of the last one leaves)
    ("compression.type", "zstd", "zstd"),
    ("compression.type", "producer", "producer"),
    ("min.insync.replicas", "2", "2"),
    ("flush.messages", "1", "1"),
    ("flush.ms", "0", "0"),
    ("index.interval.bytes", "0", "0"),
])
def test_valid_topic_values_are_normalised(name: str, value: str, normalised: str) -> None:
    assert defs.validate_topic_configs({name: value}) == {name: normalised}


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("retention.ms", "-2", "must be at least -1"),
    ("retention.ms", "soon", "not a number of type LONG"),
    ("retention.bytes", "1.5", "not a number"),
    ("segment.bytes", "13", "must be in 14..2147483647"),
    ("segment.bytes", str(2**31), "must be in 14..2147483647"),
    ("segment.ms", "0", "must be at least 1"),
    ("max.message.bytes", "-1", "must be in 0.."),
    ("message.timestamp.type", "Whenever", "must be one of CreateTime, LogAppendTime"),
    ("compression.type", "brotli", "must be one of"),
    ("min.insync.replicas", "0", "must be in 1.."),
    ("flush.messages", "0", "must be at least 1"),
    ("cleanup.policy", "shred", "unknown policy 'shred'"),
    ("file.delete.delay.ms", "-1", "must be at least 0"),
    ("file.delete.delay.ms", "soon", "not a number of type LONG"),
    ("preallocate", "yes", "either true or false"),
    ("message.format.version", "banana", "not a Kafka release"),
    ("compression.gzip.level", "12", "must be -1 or in 1..9"),
    ("leader.replication.throttled.replicas", "0-1", "[PartitionId]:[BrokerId]"),
    ("remote.storage.enable", "true", "Tiered Storage functionality is disabled"),
])
def test_bad_topic_values_name_the_key_and_the_problem(name: str, value: str, problem: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        defs.validate_topic_configs({name: value})
    assert caught.value.code == ErrorCode.INVALID_CONFIG
    assert name in caught.value.message and problem in caught.value.message


@pytest.mark.parametrize("value", ["compact", "compact,delete", "delete, compact"])
def test_compaction_policies_and_settings_are_accepted(value: str) -> None:
    normalised = defs.validate_topic_configs({"cleanup.policy": value, "delete.retention.ms": "5",
                                              "min.cleanable.dirty.ratio": "0.25", "min.compaction.lag.ms": "7"})
    assert normalised["cleanup.policy"] == ",".join(part.strip() for part in value.split(","))
    config = defs.log_config_for(BrokerConfig(), normalised, {})
    assert config.compacts and (config.delete_retention_ms, config.min_cleanable_dirty_ratio,
                                config.min_compaction_lag_ms) == (5, 0.25, 7)
    with pytest.raises(InvalidConfig, match="must be in 0..1"):
        defs.validate_topic_configs({"min.cleanable.dirty.ratio": "1.5"})


def test_unknown_topic_config_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="Unknown topic config name: retention.hours"):
        defs.validate_topic_configs({"retention.hours": "1"})


def test_null_value_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="a value is required"):
        defs.validate_topic_configs({"retention.ms": None})


def test_broker_synonyms_are_alterable_but_static_configs_are_read_only() -> None:
    assert defs.validate_broker_configs({"log.retention.ms": "1000", "message.max.bytes": "2000"}) == {
        "log.retention.ms": "1000", "message.max.bytes": "2000"}
    with pytest.raises(InvalidRequest, match=r"Cannot update these configs dynamically: Set\(num.partitions\)"):
        defs.validate_broker_configs({"num.partitions": "3"})
    with pytest.raises(InvalidConfig, match="Unknown broker config name: retention.ms"):
        defs.validate_broker_configs({"retention.ms": "3"})
    with pytest.raises(InvalidConfig, match="log.roll.ms"):
        defs.validate_broker_configs({"log.roll.ms": "0"})


def test_every_topic_config_has_a_dynamic_broker_synonym() -> None:
    without = {"leader.replication.throttled.replicas", "follower.replication.throttled.replicas",
               "remote.storage.enable", "remote.log.copy.disable", "remote.log.delete.on.disable"}
    for definition in defs.TOPIC_CONFIGS.values():
        if definition.name in without:  # Kafka has no broker default for these
            assert definition.broker_synonym == "", definition.name
            continue
        synonym = defs.BROKER_CONFIGS[definition.broker_synonym]
        # message.format.version's broker synonym is static in Kafka too (not reconfigurable)
        assert synonym.dynamic == (definition.name != "message.format.version"), definition.name
        assert synonym.type == definition.type, definition.name
    expected = {"retention.ms": "log.retention.ms", "segment.ms": "log.roll.ms",
                "max.message.bytes": "message.max.bytes", "segment.bytes": "log.segment.bytes",
                "message.timestamp.type": "log.message.timestamp.type", "retention.bytes": "log.retention.bytes",
                "cleanup.policy": "log.cleanup.policy", "min.insync.replicas": "min.insync.replicas"}
    for topic_name, broker_name in expected.items():
        assert defs.TOPIC_CONFIGS[topic_name].broker_synonym == broker_name


# --- precedence and merging ------------------------------------------------------------------
def test_defaults_come_from_the_broker_config() -> None:
    config = defs.log_config_for(BrokerConfig(), {}, {})
    assert config.retention_ms == BrokerConfig().log_retention_ms
    assert config.segment_bytes == BrokerConfig().log_segment_bytes
    assert config.max_message_bytes == BrokerConfig().message_max_bytes
    assert config.flush_messages is None and config.flush_ms is None
    assert config.cleanup_policy == "delete"


def test_topic_override_beats_per_broker_beats_cluster_wide_beats_static() -> None:
    static = replace(BROKER, log_retention_ms=1000, log_segment_bytes=5000, message_max_bytes=3000,
                     log_retention_bytes=9000)
    dynamic = {"log.retention.ms": "2000", "log.segment.bytes": "6000", "7/log.retention.ms": "3000",
               "8/message.max.bytes": "1"}  # another broker's value does not apply here
    config = defs.log_config_for(static, {"retention.ms": "-1"}, dynamic)
    assert config.retention_ms == -1
    assert config.segment_bytes == 6000
    assert config.max_message_bytes == 3000
    assert config.retention_bytes == 9000
    assert defs.log_config_for(static, {}, dynamic).retention_ms == 3000
    assert defs.log_config_for(static, {}, {"log.retention.ms": "2000"}).retention_ms == 2000


def test_every_log_config_field_follows_its_topic_config() -> None:
    overrides = {"segment.bytes": "100", "segment.ms": "200", "retention.ms": "300", "retention.bytes": "400",
                 "max.message.bytes": "500", "message.timestamp.type": "LogAppendTime",
                 "index.interval.bytes": "600", "flush.messages": "700", "flush.ms": "800"}
    config = defs.log_config_for(BROKER, overrides, {})
    assert (config.segment_bytes, config.segment_ms, config.retention_ms, config.retention_bytes,
            config.max_message_bytes, config.message_timestamp_type, config.index_interval_bytes,
            config.flush_messages, config.flush_ms) == (100, 200, 300, 400, 500, "LogAppendTime", 600, 700, 800)


def test_min_insync_replicas_follows_precedence() -> None:
    assert defs.min_insync_replicas(BROKER, {}, {}) == 1
    assert defs.min_insync_replicas(BROKER, {}, {"min.insync.replicas": "2"}) == 2
    assert defs.min_insync_replicas(BROKER, {"min.insync.replicas": "3"}, {"min.insync.replicas": "2"}) == 3


def test_invalid_stored_values_fall_back_to_the_next_source() -> None:
    config = defs.log_config_for(BROKER, {"retention.ms": "bogus"}, {"log.segment.bytes": "1"})
    assert config.retention_ms == BROKER.log_retention_ms
    assert config.segment_bytes == BROKER.log_segment_bytes


def test_topic_synonyms_list_every_source_in_order() -> None:
    static = replace(BROKER, log_retention_ms=1000)
    dynamic = {"log.retention.ms": "2000", "7/log.retention.ms": "3000"}
    (entry,) = defs.describe_topic(static, {"retention.ms": "4000"}, dynamic, ["retention.ms"])
    assert (entry.value, entry.source, entry.read_only, entry.type) == (
        "4000", ConfigSource.DYNAMIC_TOPIC_CONFIG, False, ConfigType.LONG)
    assert [(s.name, s.value, s.source) for s in entry.synonyms] == [
        ("retention.ms", "4000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.retention.ms", "3000", ConfigSource.DYNAMIC_BROKER_CONFIG),
        ("log.retention.ms", "2000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
        ("log.retention.ms", "1000", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG),
    ]


def test_describe_topic_marks_defaults_and_filters_keys() -> None:
    entries = defs.describe_topic(BROKER, {}, {})
    assert [e.name for e in entries] == sorted(defs.TOPIC_CONFIGS)
    assert all(e.is_default and e.source == ConfigSource.DEFAULT_CONFIG for e in entries)
    assert [e.name for e in defs.describe_topic(BROKER, {}, {}, ["segment.ms", "nope"])] == ["segment.ms"]


def test_describe_broker_sources_and_read_only() -> None:
    static = replace(BROKER, num_partitions=3)
    entries = {e.name: e for e in defs.describe_broker(static, {"log.retention.ms": "5"}, cluster_default=False)}
    assert entries["num.partitions"].value == "3"
    assert entries["num.partitions"].source == ConfigSource.STATIC_BROKER_CONFIG
    assert entries["num.partitions"].read_only
    assert entries["broker.id"].value == "7"
    assert entries["default.replication.factor"].source == ConfigSource.DEFAULT_CONFIG
    assert entries["log.retention.ms"].value == "5"
    assert entries["log.retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
    assert not entries["log.retention.ms"].read_only
    assert entries["auto.create.topics.enable"].value == "true"


def test_describe_cluster_default_resource_lists_only_cluster_wide_dynamic_configs() -> None:
    entries = defs.describe_broker(BROKER, {"log.retention.ms": "5", "7/log.roll.ms": "9"}, cluster_default=True)
    assert [(e.name, e.value, e.source) for e in entries] == [
        ("log.retention.ms", "5", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)]


def test_dynamic_scopes_are_kept_apart() -> None:
    stored = {"log.retention.ms": "1", "7/log.retention.ms": "2", "8/log.roll.ms": "3"}
    assert defs.dynamic_scope(stored, None) == {"log.retention.ms": "1"}
    assert defs.dynamic_scope(stored, 7) == {"log.retention.ms": "2"}
    assert defs.replace_dynamic_scope(stored, 7, {"message.max.bytes": "4"}) == {
        "log.retention.ms": "1", "8/log.roll.ms": "3", "7/message.max.bytes": "4"}
    assert defs.replace_dynamic_scope(stored, None, {}) == {"7/log.retention.ms": "2", "8/log.roll.ms": "3"}


# --- incremental alter -----------------------------------------------------------------------
def _incremental(current: dict[str, str], *ops: tuple[str, int, str | None]) -> dict[str, str]:
    return defs.apply_incremental(current, ops, defs.topic_config_def,
                                  lambda name: defs.effective_topic_config(name, BROKER, current, {}))


def test_incremental_set_and_delete() -> None:
    current = {"retention.ms": "1000", "segment.ms": "2000"}
    assert _incremental(current, ("retention.ms", AlterOp.SET, "5"), ("segment.ms", AlterOp.DELETE, None)) == {
        "retention.ms": "5"}
    assert _incremental({}, ("segment.ms", AlterOp.DELETE, None)) == {}


def test_incremental_append_and_subtract_work_on_lists_from_the_effective_value() -> None:
    assert _incremental({}, ("cleanup.policy", AlterOp.APPEND, "delete")) == {"cleanup.policy": "delete"}
    assert _incremental({}, ("cleanup.policy", AlterOp.APPEND, "compact")) == {"cleanup.policy": "delete,compact"}
    # Kafka accepts SUBTRACT of the last policy: an empty list, described as ""
    assert _incremental({}, ("cleanup.policy", AlterOp.SUBTRACT, "delete")) == {"cleanup.policy": ""}
    assert _incremental({"cleanup.policy": "compact,delete"}, ("cleanup.policy", AlterOp.SUBTRACT, "delete")) == {
        "cleanup.policy": "compact"}
    with pytest.raises(InvalidConfig, match="APPEND is only allowed on list configs; retention.ms is LONG"):
        _incremental({}, ("retention.ms", AlterOp.APPEND, "5"))


def test_incremental_rejects_unknown_keys_and_operations() -> None:
    with pytest.raises(InvalidConfig, match="Unknown topic config"):
        _incremental({}, ("no.such", AlterOp.DELETE, None))
    with pytest.raises(InvalidRequest, match="unknown config operation 9"):
        _incremental({}, ("retention.ms", 9, "1"))


# --- mutation policy ---------------------------------------------------------------------------
def test_topic_policy_sees_the_mutation_and_can_refuse() -> None:
    import uuid

    topic = TopicMetadata("t", uuid.uuid4(), 1, MappingProxyType({}))
    seen = []

    def policy(meta: TopicMetadata, mutation: TopicMutation, changed: frozenset[str]) -> None:
        seen.append((meta.name, mutation, changed))
        if mutation is TopicMutation.DELETE:
            raise PolicyViolation("shadow topics cannot be deleted")

    defs.check_topic_mutation(None, topic, TopicMutation.DELETE)
    defs.check_topic_mutation(policy, topic, TopicMutation.ALTER_CONFIGS, ["retention.ms"])
    with pytest.raises(PolicyViolation):
        defs.check_topic_mutation(policy, topic, TopicMutation.DELETE)
    assert seen[0] == ("t", TopicMutation.ALTER_CONFIGS, frozenset({"retention.ms"}))
