"""Authorized operations (KIP-430) in Metadata and DescribeCluster, on an in-process broker whose authorizer
allows what each test says: the bits follow the authorizer's answers, and, as in Kafka, a principal that may not
DESCRIBE the cluster gets no cluster operations at all (0), whatever else it may do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from umbra.config import AuthorizationConfig, BrokerConfig
from umbra.protocol.codec import SCHEMAS, RequestHeader, build_request, build_response
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.authz import CLUSTER_NAME
from umbra.server.broker import Broker
from umbra.server.handlers import API_HANDLERS, RequestContext, load_all

load_all()

Allowed = set[tuple[ResourceType, str, AclOperation]]


class FixedAuthorizer:
    def __init__(self, allow: Allowed) -> None:
        self.allow = allow

    def allowed(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                name: str) -> bool:
        return (resource_type, name, operation) in self.allow

    def allowed_on_any(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType) -> bool:
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    config = BrokerConfig(data_dir=tmp_path, log_cleaner_enabled=False, authorization=AuthorizationConfig(enabled=True))
    broker = Broker(config)
    broker.open_logs()
    broker.create_topic("t", 1)
    yield broker
    broker.close_storage()


def call(broker: Broker, allow: Allowed, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    """Handle one request as the connection would and decode the encoded response."""
    broker.authorizer = FixedAuthorizer(allow)  # type: ignore[assignment]
    request = SCHEMAS[api_key].request.decode(build_request(api_key, version, fields).encode(version=version),
                                              version=version)
    ctx = RequestContext(broker, RequestHeader(api_key, version, 7, "client"), "10.0.0.1:4000", 1, "User:alice")
    result = asyncio.run(API_HANDLERS[api_key].handle(ctx, request))
    encoded = build_response(api_key, version, result).encode(version=version)
    return SCHEMAS[api_key].response.decode(encoded, version=version)


def cluster(*operations: AclOperation) -> Allowed:
    return {(ResourceType.CLUSTER, CLUSTER_NAME, operation) for operation in operations}


def codes(*operations: AclOperation) -> set[int]:
    return {int(operation) for operation in operations}


def describe_cluster(broker: Broker, allow: Allowed) -> Any:
    return call(broker, allow, 60, 1, {"include_cluster_authorized_operations": True, "endpoint_type": 1})


def test_cluster_operations_are_the_authorizers_answers(broker: Broker) -> None:
    allowed = (AclOperation.DESCRIBE, AclOperation.IDEMPOTENT_WRITE)
    assert describe_cluster(broker, cluster(*allowed)).authorized_operations == codes(*allowed)


def test_without_describe_on_the_cluster_there_are_none(broker: Broker) -> None:
    assert describe_cluster(broker, cluster(AclOperation.ALTER_CONFIGS)).authorized_operations == set()
    response = call(broker, cluster(AclOperation.ALTER_CONFIGS), 3, 10, {
        "topics": None, "allow_auto_topic_creation": False, "include_cluster_authorized_operations": True,
        "include_topic_authorized_operations": False})
    assert response.authorized_operations == set()


def test_topic_operations_of_every_listed_topic(broker: Broker) -> None:
    allow = {(ResourceType.TOPIC, "t", AclOperation.DESCRIBE), (ResourceType.TOPIC, "t", AclOperation.WRITE)}
    response = call(broker, allow, 3, 12, {"topics": None, "allow_auto_topic_creation": False,
                                           "include_topic_authorized_operations": True})
    assert [(topic.name, topic.authorized_operations) for topic in response.topics] == [
        ("t", codes(AclOperation.DESCRIBE, AclOperation.WRITE))]
