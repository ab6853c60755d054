"""Topic and config admin APIs against a real `umbra broker`, through confluent-kafka and kafka-python.

CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, AlterConfigs and IncrementalAlterConfigs;
config changes must reach the open logs (max.message.bytes, retention.ms) and survive a restart.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from harness import BrokerProcess, create_topic, wait_for_topic, wait_until
from kafka.protocol.admin import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)

TIMEOUT = 20.0


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def kafka_error(future: Any) -> KafkaError:
    with pytest.raises(KafkaException) as caught:
        future.result(timeout=TIMEOUT)
    error: KafkaError = caught.value.args[0]
    return error


def topic_names(admin: AdminClient) -> set[str]:
    return set(admin.list_topics(timeout=10).topics)


def describe_topic(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    result: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    return result


def incremental_alter(admin: AdminClient, resource_type: ResourceType, name: str,
                      **ops: tuple[AlterConfigOpType, str | None]) -> Any:
    entries = [ConfigEntry(key.replace("_", "."), value, incremental_operation=op) for key, (op, value) in ops.items()]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    return admin.incremental_alter_configs([resource])[resource]


def produce_one(bootstrap: str, topic: str, size: int, timestamp_ms: int | None = None) -> KafkaError | None:
    """Produce one record of ``size`` bytes and return its delivery error (None when it was written)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "retries": 0, "acks": "all",
                         "enable.idempotence": False, "compression.type": "none", "message.max.bytes": 10_000_000})
    outcome: list[KafkaError | None] = []
    kwargs = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
    producer.produce(topic, b"x" * size, partition=0, on_delivery=lambda err, _msg: outcome.append(err), **kwargs)
    producer.flush(TIMEOUT)
    assert outcome, "no delivery report within the timeout"
    return outcome[0]


def raw_request(bootstrap: str, request: Any, response_class: Any, version: int) -> Any:
    """Send one request on its own connection and return the decoded response (for what no client sends)."""
    request.API_VERSION = version
    request.with_header(correlation_id=7, client_id="test-admin-apis")
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        reader = sock.makefile("rb")
        (size,) = struct.unpack(">i", reader.read(4))
        frame = reader.read(size)
    return response_class.decode(frame, version=version, header=True)


# --- CreateTopics --------------------------------------------------------------------------
def test_create_topics_validates_and_reports_per_topic(broker: BrokerProcess, admin: AdminClient) -> None:
    good, dry, bad_config, unknown_key, too_many_replicas = (topic_name(p) for p in ("good", "dry", "bad", "unk", "rf"))
    futures = admin.create_topics([
        NewTopic(good, num_partitions=3, replication_factor=1, config={"retention.ms": "-1"}),
        NewTopic(bad_config, num_partitions=1, replication_factor=1, config={"cleanup.policy": "shred"}),
        NewTopic(unknown_key, num_partitions=1, replication_factor=1, config={"retention.hours": "1"}),
        NewTopic(too_many_replicas, num_partitions=1, replication_factor=3),
    ], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    futures[good].result(timeout=TIMEOUT)
    error = kafka_error(futures[bad_config])
    assert error.code() == KafkaError.INVALID_CONFIG and "unknown policy 'shred'" in error.str()
    error = kafka_error(futures[unknown_key])
    assert error.code() == KafkaError.INVALID_CONFIG and "retention.hours" in error.str()
    error = kafka_error(futures[too_many_replicas])
    assert error.code() == KafkaError.INVALID_REPLICATION_FACTOR and "larger than available brokers" in error.str()
    wait_for_topic(broker.bootstrap, good, 3, admin=admin)

    dry_future = admin.create_topics([NewTopic(dry, num_partitions=2)], validate_only=True,
                                     operation_timeout=TIMEOUT, request_timeout=TIMEOUT)
    dry_future[dry].result(timeout=TIMEOUT)
    names = topic_names(admin)
    assert good in names and dry not in names and bad_config not in names and too_many_replicas not in names

    error = kafka_error(admin.create_topics([NewTopic(good, num_partitions=1)], request_timeout=TIMEOUT)[good])
    assert error.code() == KafkaError.TOPIC_ALREADY_EXISTS

    default_partitions = topic_name("default")
    admin.create_topics([NewTopic(default_partitions)], request_timeout=TIMEOUT)[default_partitions].result(TIMEOUT)
    wait_for_topic(broker.bootstrap, default_partitions, 1, admin=admin)  # num.partitions defaults to 1


# --- DescribeConfigs ---------------------------------------------------------------------------
def test_describe_configs_defaults_sources_and_synonyms(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("describe")
    create_topic(broker.bootstrap, topic, partitions=1, config={"retention.ms": "3600000"})
    configs = describe_topic(admin, topic)
    retention = configs["retention.ms"]
    assert retention.value == "3600000" and retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not retention.is_default and not retention.is_read_only
    assert [(s.name, s.source) for s in retention.synonyms.values()][:1] == [
        ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)]
    assert "log.retention.ms" in retention.synonyms
    segment_ms = configs["segment.ms"]
    assert segment_ms.value == "604800000" and segment_ms.is_default
    assert segment_ms.source == ConfigSource.DEFAULT_CONFIG.value
    assert "log.roll.ms" in segment_ms.synonyms
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["compression.type"].value == "producer"

    broker_resource = ConfigResource(ResourceType.BROKER, "1")
    broker_configs = admin.describe_configs([broker_resource])[broker_resource].result(timeout=TIMEOUT)
    listeners = broker_configs["listeners"]
    assert listeners.is_read_only and listeners.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert listeners.value == f"PLAINTEXT://{broker.bootstrap}"
    assert broker_configs["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert not broker_configs["log.retention.ms"].is_read_only

    missing = ConfigResource(ResourceType.TOPIC, topic_name("missing"))
    error = kafka_error(admin.describe_configs([missing])[missing])
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# --- AlterConfigs and IncrementalAlterConfigs -------------------------------------------------
def test_max_message_bytes_change_is_enforced(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("maxbytes")
    create_topic(broker.bootstrap, topic, partitions=1)
    assert produce_one(broker.bootstrap, topic, 5000) is None

    incremental_alter(admin, ResourceType.TOPIC, topic, max_message_bytes=(AlterConfigOpType.SET, "1000")).result(TIMEOUT)
    assert describe_topic(admin, topic)["max.message.bytes"].value == "1000"
    error = produce_one(broker.bootstrap, topic, 5000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert produce_one(broker.bootstrap, topic, 100) is None

    # A config survives a restart and is applied to the reopened log.
    broker.restart()
    restarted = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe_topic(restarted, topic)["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    error = produce_one(broker.bootstrap, topic, 5000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE

    incremental_alter(restarted, ResourceType.TOPIC, topic, max_message_bytes=(AlterConfigOpType.DELETE, None)).result(TIMEOUT)
    assert describe_topic(restarted, topic)["max.message.bytes"].is_default
    assert produce_one(broker.bootstrap, topic, 5000) is None


def test_incremental_alter_keeps_others_and_legacy_alter_replaces_all(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("alter")
    create_topic(broker.bootstrap, topic, partitions=1, config={"retention.ms": "3600000"})
    incremental_alter(admin, ResourceType.TOPIC, topic, segment_ms=(AlterConfigOpType.SET, "600000")).result(TIMEOUT)
    configs = describe_topic(admin, topic)
    assert (configs["retention.ms"].value, configs["segment.ms"].value) == ("3600000", "600000")

    error = kafka_error(incremental_alter(admin, ResourceType.TOPIC, topic, retention_ms=(AlterConfigOpType.SET, "soon")))
    assert error.code() == KafkaError.INVALID_CONFIG and "retention.ms" in error.str()
    error = kafka_error(incremental_alter(admin, ResourceType.TOPIC, topic, segment_ms=(AlterConfigOpType.APPEND, "1")))
    assert error.code() == KafkaError.INVALID_CONFIG and "list configs" in error.str()

    # Legacy AlterConfigs replaces the whole override set: segment.ms and retention.ms go back to defaults.
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1000000"})
    admin.alter_configs([resource])[resource].result(timeout=TIMEOUT)
    configs = describe_topic(admin, topic)
    assert configs["retention.bytes"].value == "1000000"
    assert configs["segment.ms"].is_default and configs["retention.ms"].is_default

    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "1"})
    admin.alter_configs([resource], validate_only=True)[resource].result(timeout=TIMEOUT)
    assert describe_topic(admin, topic)["retention.ms"].is_default

    missing = topic_name("missing")
    error = kafka_error(incremental_alter(admin, ResourceType.TOPIC, missing, retention_ms=(AlterConfigOpType.SET, "1")))
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_message_timestamp_type_change_reaches_the_log(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("tstype")
    create_topic(broker.bootstrap, topic, partitions=1)
    an_hour_ago = int(time.time() * 1000) - 3600 * 1000
    assert produce_one(broker.bootstrap, topic, 10, timestamp_ms=an_hour_ago) is None
    incremental_alter(admin, ResourceType.TOPIC, topic,
                      message_timestamp_type=(AlterConfigOpType.SET, "LogAppendTime")).result(TIMEOUT)
    before = int(time.time() * 1000)
    assert produce_one(broker.bootstrap, topic, 10, timestamp_ms=an_hour_ago) is None
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        messages: list[Any] = []

        def consumed_both() -> bool:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
            return len(messages) >= 2

        wait_until(consumed_both, timeout=TIMEOUT, message="both records")
    finally:
        consumer.close()
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME

    assert messages[0].timestamp() == (TIMESTAMP_CREATE_TIME, an_hour_ago)
    kind, stamped = messages[1].timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and stamped >= before


def test_retention_ms_change_deletes_old_segments(broker_factory: Any) -> None:
    broker = broker_factory("retention", config={"log_retention_check_interval_ms": 100})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = topic_name("retention")
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": "1024"})
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    for _ in range(6):
        assert produce_one(broker.bootstrap, topic, 600, timestamp_ms=two_hours_ago) is None
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": topic})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 6)
        incremental_alter(admin, ResourceType.TOPIC, topic, retention_ms=(AlterConfigOpType.SET, "3600000")).result(TIMEOUT)
        low, high = wait_until(lambda: (lambda w: w if w[0] > 0 else None)(
            consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)), timeout=TIMEOUT,
            message="retention to delete the old segments")
        assert 0 < low <= high == 6
    finally:
        consumer.close()


def test_dynamic_broker_configs(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("brokerdyn")
    create_topic(broker.bootstrap, topic, partitions=1)
    # Clients name brokers by id only; the cluster-wide resource "" needs a raw request.
    request = IncrementalAlterConfigsRequest(resources=[(4, "", [("log.retention.ms", 0, "7200000")])],
                                             validate_only=False)
    (result,) = raw_request(broker.bootstrap, request, IncrementalAlterConfigsResponse, 1).responses
    assert (result.error_code, result.error_message) == (0, None)
    retention = describe_topic(admin, topic)["retention.ms"]
    assert retention.value == "7200000"
    assert retention.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    incremental_alter(admin, ResourceType.BROKER, "1", log_retention_ms=(AlterConfigOpType.SET, "3600000")).result(TIMEOUT)
    retention = describe_topic(admin, topic)["retention.ms"]
    assert retention.value == "3600000" and retention.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    error = kafka_error(incremental_alter(admin, ResourceType.BROKER, "1", num_partitions=(AlterConfigOpType.SET, "4")))
    # Kafka's answer for a static broker config: INVALID_REQUEST "Cannot update these configs dynamically"
    assert error.code() == KafkaError.INVALID_REQUEST and "Cannot update these configs dynamically" in error.str()

    broker.restart()
    restarted = AdminClient({"bootstrap.servers": broker.bootstrap})
    retention = describe_topic(restarted, topic)["retention.ms"]
    assert retention.value == "3600000" and retention.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # confluent-kafka keys synonyms by name, so read the whole synonym list with kafka-python.
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        described = client.describe_configs([KpConfigResource("BROKER", "1")], include_synonyms=True,
                                            config_filter="all")["broker"]["1"]
    finally:
        client.close()
    assert [(s["value"], s["source"]) for s in described["log.retention.ms"]["synonyms"]] == [
        ("3600000", "DYNAMIC_BROKER_CONFIG"), ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        ("604800000", "DEFAULT_CONFIG")]
    assert described["num.partitions"]["read_only"] is True


# --- CreatePartitions and DeleteTopics ---------------------------------------------------------
def test_create_partitions_and_delete_topic(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("grow")
    create_topic(broker.bootstrap, topic, partitions=2)
    admin.create_partitions([NewPartitions(topic, 4)], validate_only=True)[topic].result(timeout=TIMEOUT)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(timeout=TIMEOUT)
    wait_for_topic(broker.bootstrap, topic, 4, admin=admin)
    assert produce_one(broker.bootstrap, topic, 10) is None

    error = kafka_error(admin.create_partitions([NewPartitions(topic, 3)])[topic])
    assert error.code() == KafkaError.INVALID_PARTITIONS and "higher than the requested 3" in error.str()

    error = kafka_error(admin.delete_topics(["__consumer_offsets"], request_timeout=TIMEOUT)["__consumer_offsets"])
    assert error.code() == KafkaError.TOPIC_EXCEPTION
    assert "__consumer_offsets" in topic_names(admin)
    missing = topic_name("missing")
    error = kafka_error(admin.delete_topics([missing], request_timeout=TIMEOUT)[missing])
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    admin.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in topic_names(admin), timeout=TIMEOUT, message=f"{topic} to disappear")
    broker.restart()
    assert topic not in topic_names(AdminClient({"bootstrap.servers": broker.bootstrap}))


def test_create_topics_v7_returns_id_and_configs_and_delete_v6_by_id(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("byid")
    create = CreateTopicsRequest(topics=[(topic, -1, -1, [], [("retention.ms", "-1")])], timeout_ms=5000,
                                 validate_only=False)
    (created,) = raw_request(broker.bootstrap, create, CreateTopicsResponse, 7).topics
    assert (created.error_code, created.num_partitions, created.replication_factor) == (0, 1, 1)
    configs = {c.name: (c.value, c.config_source) for c in created.configs}
    assert configs["retention.ms"] == ("-1", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert configs["segment.ms"] == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    topic_id = created.topic_id
    assert topic_id is not None
    wait_for_topic(broker.bootstrap, topic, 1, admin=admin)

    unknown_id = uuid.uuid4()
    request = DeleteTopicsRequest(topics=[(None, topic_id), (None, unknown_id), ("__consumer_offsets", None)],
                                  timeout_ms=5000)
    results = raw_request(broker.bootstrap, request, DeleteTopicsResponse, 6).responses
    assert [(r.name, r.topic_id, r.error_code) for r in results[:2]] == [
        (topic, topic_id, 0), (None, unknown_id, KafkaError.UNKNOWN_TOPIC_ID)]
    assert results[2].error_code == KafkaError.TOPIC_EXCEPTION and "internal" in results[2].error_message
    wait_until(lambda: topic not in topic_names(admin), timeout=TIMEOUT, message=f"{topic} to disappear")


# --- kafka-python's KafkaAdminClient -----------------------------------------------------------
@pytest.fixture
def kafka_python_admin(broker: BrokerProcess) -> Iterator[Any]:
    from kafka.admin import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        yield client
    finally:
        client.close()


def test_kafka_python_admin_client(broker: BrokerProcess, kafka_python_admin: Any, admin: AdminClient) -> None:
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import NewPartitions as KpNewPartitions
    from kafka.admin import NewTopic as KpNewTopic
    from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError

    topic = topic_name("kp")
    kafka_python_admin.create_topics([KpNewTopic(topic, 2, 1, topic_configs={"segment.ms": "600000"})],
                                     validate_only=True)
    assert topic not in topic_names(admin)
    kafka_python_admin.create_topics([KpNewTopic(topic, 2, 1, topic_configs={"segment.ms": "600000"})])
    wait_for_topic(broker.bootstrap, topic, 2, admin=admin)
    with pytest.raises(TopicAlreadyExistsError):
        kafka_python_admin.create_topics([KpNewTopic(topic, 2, 1)])
    with pytest.raises(InvalidConfigurationError):
        kafka_python_admin.create_topics([KpNewTopic(topic_name("kpbad"), 1, 1, topic_configs={"segment.ms": "0"})])

    described = kafka_python_admin.describe_configs([KpConfigResource("TOPIC", topic)], include_synonyms=True,
                                                   config_filter="all")
    configs = described["topic"][topic]
    assert configs["segment.ms"]["value"] == "600000"
    assert configs["segment.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert configs["retention.ms"]["config_source"] == "DEFAULT_CONFIG"
    assert [s["name"] for s in configs["segment.ms"]["synonyms"]] == ["segment.ms", "log.roll.ms"]

    result = kafka_python_admin.alter_configs([KpConfigResource("TOPIC", topic, configs={"retention.ms": "-1"})],
                                              incremental=False)
    assert result == {"topic": {topic: "OK"}}
    # The legacy request carried the other modified config too (the client adds it), so both are set.
    assert describe_topic(admin, topic)["retention.ms"].value == "-1"

    kafka_python_admin.create_partitions({topic: KpNewPartitions(3)})
    wait_for_topic(broker.bootstrap, topic, 3, admin=admin)
    kafka_python_admin.delete_topics([topic])
    wait_until(lambda: topic not in topic_names(admin), timeout=TIMEOUT, message=f"{topic} to disappear")
