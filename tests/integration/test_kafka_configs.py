"""Every Kafka topic, broker and group config is accepted, stored, described with its source, and kept.

One real `umbra broker` for the module; confluent-kafka's AdminClient and kafka-python's KafkaAdminClient
set and describe configs umbra stores without acting on (``file.delete.delay.ms``, ``message.format.version``,
``background.threads``, the GROUP resource's ``consumer.session.timeout.ms``), and the last test restarts
the broker and finds them all again.
"""

from __future__ import annotations

import socket
import struct
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from harness import BrokerProcess, create_topic, stop_all, wait_for_topic
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.protocol.admin import IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse

TIMEOUT = 20.0
GROUP_CONFIG = 8  # DescribeConfigs config_source of a config set on a GROUP resource


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path_factory.mktemp("kafka-configs") / "broker", name="kafka-configs")
    try:
        broker.start()
        yield broker
    finally:
        stop_all([broker])


@pytest.fixture
def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def describe(admin: AdminClient, resource_type: ResourceType, name: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(resource_type, name)
    result: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT)
    return result


def incremental(admin: AdminClient, resource_type: ResourceType, name: str,
                *ops: tuple[str, AlterConfigOpType, str | None], validate_only: bool = False) -> Any:
    entries = [ConfigEntry(key, value, incremental_operation=op) for key, op, value in ops]
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]


def kafka_error(future: Any) -> KafkaError:
    with pytest.raises(KafkaException) as caught:
        future.result(timeout=TIMEOUT)
    error: KafkaError = caught.value.args[0]
    return error


def kafka_python_admin(broker: BrokerProcess) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))


def raw_incremental(broker: BrokerProcess, resource_type: int, name: str, key: str, value: str) -> tuple[int, str]:
    """For what no client sends: the cluster-wide broker resource "" (clients name brokers by id)."""
    request = IncrementalAlterConfigsRequest(resources=[(resource_type, name, [(key, 0, value)])], validate_only=False)
    request.API_VERSION = 1
    request.with_header(correlation_id=7, client_id="test-kafka-configs")
    host, port = broker.bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        reader = sock.makefile("rb")
        (size,) = struct.unpack(">i", reader.read(4))
        frame = reader.read(size)
    (result,) = IncrementalAlterConfigsResponse.decode(frame, version=1, header=True).responses
    return result.error_code, result.error_message or ""


# --- topics --------------------------------------------------------------------------------------
def test_stored_only_topic_configs_are_accepted_and_described(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("stored")
    create_topic(broker.bootstrap, topic, partitions=1)
    before = describe(admin, ResourceType.TOPIC, topic)
    assert before["file.delete.delay.ms"].value == "60000" and before["file.delete.delay.ms"].is_default
    assert before["message.format.version"].value == "3.0-IV1"

    incremental(admin, ResourceType.TOPIC, topic, ("file.delete.delay.ms", AlterConfigOpType.SET, "12345"),
                ("message.format.version", AlterConfigOpType.SET, "2.8")).result(TIMEOUT)
    configs = describe(admin, ResourceType.TOPIC, topic)
    for name, value in (("file.delete.delay.ms", "12345"), ("message.format.version", "2.8")):
        assert configs[name].value == value
        assert configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].is_default  # an incremental change keeps the rest

    # kafka-python's legacy AlterConfigs, and its DescribeConfigs.
    client = kafka_python_admin(broker)
    try:
        result = client.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic, configs={
            "preallocate": "true", "segment.jitter.ms": "10"})], incremental=False)
        assert result == {"topic": {topic: "OK"}}
        described = client.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, topic)],
                                            config_filter="all")["topic"][topic]
    finally:
        client.close()
    assert (described["preallocate"]["value"], described["segment.jitter.ms"]["value"]) == ("true", "10")
    assert described["preallocate"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    # kafka-python resends the other modified keys with a legacy AlterConfigs (which replaces the whole set)
    assert (described["file.delete.delay.ms"]["value"], described["file.delete.delay.ms"]["config_source"]) == (
        "12345", "DYNAMIC_TOPIC_CONFIG")


def test_bad_and_unknown_topic_configs_get_kafkas_errors(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("bad")
    create_topic(broker.bootstrap, topic, partitions=1)
    error = kafka_error(incremental(admin, ResourceType.TOPIC, topic,
                                    ("file.delete.delay.ms", AlterConfigOpType.SET, "soon")))
    assert error.code() == KafkaError.INVALID_CONFIG
    assert "file.delete.delay.ms" in error.str() and "'soon'" in error.str()
    error = kafka_error(incremental(admin, ResourceType.TOPIC, topic,
                                    ("message.format.version", AlterConfigOpType.SET, "banana")))
    assert error.code() == KafkaError.INVALID_CONFIG and "'banana'" in error.str()
    error = kafka_error(incremental(admin, ResourceType.TOPIC, topic,
                                    ("no.such.config", AlterConfigOpType.SET, "1")))
    assert error.code() == KafkaError.INVALID_CONFIG and "Unknown topic config name: no.such.config" in error.str()

    # validate_only: checked, not stored.
    incremental(admin, ResourceType.TOPIC, topic, ("file.delete.delay.ms", AlterConfigOpType.SET, "1"),
                validate_only=True).result(TIMEOUT)
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"preallocate": "true"})
    with warnings.catch_warnings():  # deprecated in the client, still a Kafka API
        warnings.simplefilter("ignore", DeprecationWarning)
        admin.alter_configs([resource], validate_only=True)[resource].result(timeout=TIMEOUT)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert configs["file.delete.delay.ms"].is_default and configs["preallocate"].is_default


def test_create_topics_takes_stored_only_configs(broker: BrokerProcess, admin: AdminClient) -> None:
    topic, bad = topic_name("create"), topic_name("create-bad")
    wanted = {"file.delete.delay.ms": "777", "message.format.version": "3.0", "unclean.leader.election.enable": "true"}
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=wanted),
                                   NewTopic(bad, num_partitions=1, replication_factor=1,
                                            config={"remote.storage.enable": "true"})],
                                  request_timeout=TIMEOUT)
    futures[topic].result(timeout=TIMEOUT)
    error = kafka_error(futures[bad])
    assert error.code() == KafkaError.INVALID_CONFIG and "Tiered Storage" in error.str()
    wait_for_topic(broker.bootstrap, topic, 1, admin=admin)
    configs = describe(admin, ResourceType.TOPIC, topic)
    assert {name: configs[name].value for name in wanted} == wanted
    assert all(configs[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value for name in wanted)


def test_subtract_of_the_last_cleanup_policy_leaves_an_empty_list(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("subtract")
    create_topic(broker.bootstrap, topic, partitions=1, config={"cleanup.policy": "delete"})
    incremental(admin, ResourceType.TOPIC, topic, ("cleanup.policy", AlterConfigOpType.SUBTRACT, "delete")).result(TIMEOUT)
    policy = describe(admin, ResourceType.TOPIC, topic)["cleanup.policy"]
    assert (policy.value, policy.source) == ("", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    incremental(admin, ResourceType.TOPIC, topic, ("cleanup.policy", AlterConfigOpType.APPEND, "compact")).result(TIMEOUT)
    assert describe(admin, ResourceType.TOPIC, topic)["cleanup.policy"].value == "compact"


# --- brokers -------------------------------------------------------------------------------------
def test_stored_only_broker_configs(broker: BrokerProcess, admin: AdminClient) -> None:
    incremental(admin, ResourceType.BROKER, "1", ("background.threads", AlterConfigOpType.SET, "20"),
                ("sasl.kerberos.min.time.before.relogin", AlterConfigOpType.SET, "120000")).result(TIMEOUT)
    configs = describe(admin, ResourceType.BROKER, "1")
    for name, value in (("background.threads", "20"), ("sasl.kerberos.min.time.before.relogin", "120000")):
        assert (configs[name].value, configs[name].source) == (value, ConfigSource.DYNAMIC_BROKER_CONFIG.value)
        assert not configs[name].is_read_only
    assert configs["num.io.threads"].value == "8" and configs["num.io.threads"].is_default
    assert configs["sasl.jaas.config"].is_sensitive and configs["sasl.jaas.config"].value is None

    error = kafka_error(incremental(admin, ResourceType.BROKER, "1", ("background.threads", AlterConfigOpType.SET, "many")))
    assert error.code() == KafkaError.INVALID_CONFIG and "background.threads" in error.str() and "'many'" in error.str()
    # Kafka's scopes: per-broker SASL settings cannot be set cluster-wide; the static ones not at all.
    code, message = raw_incremental(broker, 4, "", "sasl.kerberos.min.time.before.relogin", "1000")
    assert code == KafkaError.INVALID_REQUEST and "broker id must be specified" in message
    code, message = raw_incremental(broker, 4, "", "background.threads", "12")
    assert code == 0, message
    error = kafka_error(incremental(admin, ResourceType.BROKER, "1", ("log.message.format.version",
                                                                      AlterConfigOpType.SET, "2.8")))
    assert error.code() == KafkaError.INVALID_REQUEST and "Cannot update these configs dynamically" in error.str()


# --- groups --------------------------------------------------------------------------------------
def test_group_configs(broker: BrokerProcess, admin: AdminClient) -> None:
    group = "cfg-group"  # need not exist: Kafka takes configs for any group id
    incremental(admin, ResourceType.GROUP, group, ("consumer.session.timeout.ms", AlterConfigOpType.SET, "50000"),
                ("consumer.heartbeat.interval.ms", AlterConfigOpType.SET, "6000")).result(TIMEOUT)
    configs = describe(admin, ResourceType.GROUP, group)
    assert (configs["consumer.session.timeout.ms"].value, configs["consumer.session.timeout.ms"].source) == (
        "50000", GROUP_CONFIG)
    assert configs["share.session.timeout.ms"].value == "45000" and configs["share.session.timeout.ms"].is_default

    error = kafka_error(incremental(admin, ResourceType.GROUP, group,
                                    ("consumer.session.timeout.ms", AlterConfigOpType.SET, "1000")))
    assert error.code() == KafkaError.INVALID_CONFIG
    assert "consumer.session.timeout.ms must be greater than or equal to" in error.str()
    error = kafka_error(incremental(admin, ResourceType.GROUP, group, ("retention.ms", AlterConfigOpType.SET, "1")))
    assert error.code() == KafkaError.INVALID_CONFIG and "Unknown group config name: retention.ms" in error.str()

    # kafka-python (GROUP is resource type 32 on the wire): its alter_configs, then the same view.
    client = kafka_python_admin(broker)
    try:
        result = client.alter_configs([KpConfigResource(ConfigResourceType.GROUP, group, configs={
            "consumer.heartbeat.interval.ms": "7000"})])
        assert result == {"group": {group: "OK"}}
        described = client.describe_configs([KpConfigResource(ConfigResourceType.GROUP, group)],
                                            config_filter="all")["group"][group]
    finally:
        client.close()
    assert described["consumer.heartbeat.interval.ms"]["value"] == "7000"
    assert described["consumer.session.timeout.ms"]["value"] == "50000"  # incremental: kept
    assert described["share.session.timeout.ms"]["config_source"] == "DEFAULT_CONFIG"


# --- restart -------------------------------------------------------------------------------------
def test_stored_configs_survive_a_restart(broker: BrokerProcess, admin: AdminClient) -> None:
    topic = topic_name("restart")
    create_topic(broker.bootstrap, topic, partitions=1, config={"file.delete.delay.ms": "4242"})
    incremental(admin, ResourceType.BROKER, "1", ("num.io.threads", AlterConfigOpType.SET, "9")).result(TIMEOUT)
    incremental(admin, ResourceType.GROUP, "restart-group",
                ("consumer.session.timeout.ms", AlterConfigOpType.SET, "55000")).result(TIMEOUT)

    broker.restart()
    restarted = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(restarted, ResourceType.TOPIC, topic)["file.delete.delay.ms"].value == "4242"
    threads = describe(restarted, ResourceType.BROKER, "1")["num.io.threads"]
    assert (threads.value, threads.source) == ("9", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    timeout = describe(restarted, ResourceType.GROUP, "restart-group")["consumer.session.timeout.ms"]
    assert (timeout.value, timeout.source) == ("55000", GROUP_CONFIG)
