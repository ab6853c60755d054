"""Authorized operations (KIP-430) in Metadata and DescribeCluster, as confluent-kafka's AdminClient and raw
requests see them: every operation Kafka defines for the resource type while authorization is off, the
authorizer's answer once it is on, and Kafka's "not requested" (INT32_MIN) when the request does not ask.

The secured broker is set up as in test_authorization.py: ACLs for ANONYMOUS are written while authorization is
off, then the broker restarts with it on, on the same data dir. ANONYMOUS may READ topic `orders` (READ implies
DESCRIBE), and ALTER and ALTER_CONFIGS the cluster (which imply DESCRIBE and DESCRIBE_CONFIGS). Kafka's rule that
a principal without DESCRIBE on the cluster sees no cluster operations at all is tested in
tests/unit/server/test_authorized_operations.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from harness import BrokerProcess, create_topic, stop_all
from rawclient import RawConnection

from umbra.protocol.codec import build_request

TIMEOUT = 30.0
TOPIC = "orders"
ANONYMOUS = "User:ANONYMOUS"
TOPIC_OPERATIONS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                    AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
ALLOWED_CLUSTER_OPERATIONS = {AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.ALTER_CONFIGS,
                              AclOperation.DESCRIBE_CONFIGS}
CLUSTER_OPERATIONS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                      AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
                      AclOperation.DESCRIBE}


def start(tmp_path_factory: pytest.TempPathFactory, name: str) -> BrokerProcess:
    broker = BrokerProcess(tmp_path_factory.mktemp(name) / "broker", name=name)
    broker.start()
    create_topic(broker.bootstrap, TOPIC, partitions=1)
    return broker


@pytest.fixture(scope="module")
def open_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = start(tmp_path_factory, "open")
    try:
        yield broker
    finally:
        stop_all([broker])


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = start(tmp_path_factory, "secured")
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        bindings = [AclBinding(ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, ANONYMOUS, "*",
                               AclOperation.READ, AclPermissionType.ALLOW),
                    *(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, ANONYMOUS, "*",
                                 operation, AclPermissionType.ALLOW)
                      for operation in (AclOperation.ALTER, AclOperation.ALTER_CONFIGS))]
        for future in admin.create_acls(bindings, request_timeout=TIMEOUT).values():
            future.result(timeout=TIMEOUT)
        broker.stop()
        broker.config = {"authorization": {"enabled": True}}
        broker.start()
        yield broker
    finally:
        stop_all([broker])


def described_operations(broker: BrokerProcess) -> tuple[set[Any], set[Any]]:
    """(the topic's, the cluster's) authorized operations, as confluent-kafka's AdminClient reports them."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = admin.describe_topics(TopicCollection([TOPIC]), include_authorized_operations=True,
                                  request_timeout=TIMEOUT)[TOPIC].result(timeout=TIMEOUT)
    cluster = admin.describe_cluster(include_authorized_operations=True,
                                     request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return set(topic.authorized_operations), set(cluster.authorized_operations)


def test_without_authorization_every_operation_is_authorized(open_broker: BrokerProcess) -> None:
    assert described_operations(open_broker) == (TOPIC_OPERATIONS, CLUSTER_OPERATIONS)


def test_with_authorization_only_what_the_acls_allow(secured_broker: BrokerProcess) -> None:
    assert described_operations(secured_broker) == ({AclOperation.READ, AclOperation.DESCRIBE},
                                                    ALLOWED_CLUSTER_OPERATIONS)


def raw(broker: BrokerProcess, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    request = build_request(api_key, version, fields)
    request.with_header(correlation_id=11, client_id="authorized-operations")
    host, _, port = broker.bootstrap.rpartition(":")
    with RawConnection(host, int(port)) as connection:
        connection.sock.sendall(bytes(request.encode(header=True, framed=True)))
        correlation_id, response = connection.receive(api_key, version)
    assert correlation_id == 11
    return response


def metadata(broker: BrokerProcess, version: int, *, topic: bool, cluster: bool) -> Any:
    topics = [{"name": TOPIC, "topic_id": None}] if version >= 10 else [{"name": TOPIC}]
    fields = {"topics": topics, "allow_auto_topic_creation": False, "include_topic_authorized_operations": topic}
    if version <= 10:
        fields["include_cluster_authorized_operations"] = cluster
    return raw(broker, 3, version, fields)


# The codec decodes the bit field as the set of AclOperation numbers, and INT32_MIN ("not requested") as None.
READ_DESCRIBE = {int(AclOperation.READ.value), int(AclOperation.DESCRIBE.value)}


@pytest.mark.parametrize("version", [8, 10])
def test_metadata_fills_them_only_when_asked(secured_broker: BrokerProcess, version: int) -> None:
    asked = metadata(secured_broker, version, topic=True, cluster=True)
    assert asked.topics[0].authorized_operations == READ_DESCRIBE
    assert asked.authorized_operations == {int(op.value) for op in ALLOWED_CLUSTER_OPERATIONS}
    not_asked = metadata(secured_broker, version, topic=False, cluster=False)
    assert not_asked.topics[0].authorized_operations is None
    assert not_asked.authorized_operations is None


def test_metadata_v12_has_topic_operations_alone(open_broker: BrokerProcess) -> None:
    asked = metadata(open_broker, 12, topic=True, cluster=False)
    assert asked.topics[0].authorized_operations == {int(op.value) for op in TOPIC_OPERATIONS}
    assert metadata(open_broker, 12, topic=False, cluster=False).topics[0].authorized_operations is None


def test_describe_cluster_fills_them_only_when_asked(open_broker: BrokerProcess) -> None:
    for version in (0, 1):
        asked = raw(open_broker, 60, version, {"include_cluster_authorized_operations": True})
        assert asked.authorized_operations == {int(op.value) for op in CLUSTER_OPERATIONS}
        assert raw(open_broker, 60, version, {"include_cluster_authorized_operations": False}
                   ).authorized_operations is None
