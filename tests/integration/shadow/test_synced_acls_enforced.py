"""ACL sync matters: the source's ACLs, synced to a shadow with authorization on, decide there. After a failover
the same principals have the same rights: alice, allowed to read on the source, reads on the shadow; bob, who has
no ACL, is refused. The users themselves are not synced (SCRAM secrets cannot be read): they were created on the
shadow ahead of time, as docs/security.md says."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from harness import BrokerProcess, create_topic, wait_until
from link_api import admin_call, create_link, link_spec, wait_caught_up
from shadow_helpers import produce

TIMEOUT = 60
PASSWORDS = {"alice": "alice-pw-5e1", "bob": "bob-pw-9c7"}


def _login(broker: BrokerProcess, user: str) -> dict[str, str]:
    return {"bootstrap.servers": broker.listener_bootstrap("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": PASSWORDS[user]}


def _read(broker: BrokerProcess, user: str, topic: str, partitions: int) -> int:
    """Records ``user`` reads from ``topic`` (from the start); KafkaException if refused."""
    consumer = Consumer({**_login(broker, user), "group.id": f"readers-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        count = 0
        for _ in range(40):
            for message in consumer.consume(500, 0.5):
                if message.error() is not None:
                    raise KafkaException(message.error())
                count += 1
            if count >= 90:
                break
        return count
    finally:
        consumer.close()


def test_synced_acls_are_enforced_on_the_shadow_after_failover(broker_factory: Any) -> None:
    source = broker_factory("source")
    shadow = broker_factory("shadow", config={
        "listeners": [{"name": "PLAINTEXT", "address": "127.0.0.1:0"},
                      {"name": "SASL_PLAINTEXT", "address": "127.0.0.1:0", "security_protocol": "SASL_PLAINTEXT",
                       "sasl_mechanisms": ["SCRAM-SHA-512"]}],
        "authorization": {"enabled": True, "super_users": ["User:ANONYMOUS"]},  # the test's set-up, on PLAINTEXT
    })
    shadow_admin = AdminClient({"bootstrap.servers": shadow.bootstrap})
    for future in shadow_admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion(name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), pw.encode())
            for name, pw in PASSWORDS.items()]).values():
        future.result(timeout=TIMEOUT)

    create_topic(source.bootstrap, "orders", partitions=3)
    produce(source.bootstrap, "orders", [{"value": f"o{i}".encode(), "partition": i % 3} for i in range(90)])
    source_admin = AdminClient({"bootstrap.servers": source.bootstrap})
    grants = [AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW),
              AclBinding(ResourceType.GROUP, "readers-", ResourcePatternType.PREFIXED, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)]
    for future in source_admin.create_acls(grants).values():
        future.result(timeout=TIMEOUT)

    create_link(shadow, link_spec(source, prefixes=("orders",)))
    wait_caught_up(shadow, {"orders": 3})
    # Until the ACLs are synced, alice is refused on the shadow like everyone else; then she reads.
    wait_until(lambda: _read(shadow, "alice", "orders", 3) == 90, timeout=TIMEOUT, retry_on=(KafkaException,),
               message="alice reading on the shadow once her ACLs are synced")
    status, body = admin_call(shadow, "POST", "/v1/shadow-links/dr/failover", {"all": True})
    assert status in (200, 202), body
    wait_until(lambda: admin_call(shadow, "GET", "/v1/shadow-links/dr")[1]["state"] == "FAILED_OVER",
               timeout=TIMEOUT, message="the link failed over")
    assert _read(shadow, "alice", "orders", 3) == 90
    try:
        _read(shadow, "bob", "orders", 3)
    except KafkaException as refused:
        assert "TOPIC_AUTHORIZATION_FAILED" in str(refused) or "authoriz" in str(refused).lower(), refused
    else:
        raise AssertionError("bob, with no ACL on the source, read on the shadow")
