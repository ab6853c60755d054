"""Shadow links to secured sources: SASL_SSL with SCRAM-SHA-512, and mTLS. Replication, consumer-offset sync and
ACL sync work over them, and the link's password appears in no output: not in describe, status, the metrics
page, nor either broker's log."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from harness import create_topic, wait_until
from link_api import admin_call, create_link, link_spec, link_status, wait_caught_up
from pki import CertificateAuthority
from shadow_helpers import assert_logs_equal, produce

TIMEOUT = 60
PASSWORD = "Link-Secret-5f0e9c2a"


def _source_config(ca: CertificateAuthority) -> dict[str, Any]:
    server = ca.issue_server()
    tls = {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}
    return {"log_level": "DEBUG", "authorization": {"enabled": True,
                                                    "super_users": ["User:ANONYMOUS", "User:shadow-link"]},
            "listeners": [
                {"name": "PLAINTEXT", "address": "127.0.0.1:0"},  # the test's own set-up (ANONYMOUS: super user)
                {"name": "SASL_SSL", "address": "127.0.0.1:0", "security_protocol": "SASL_SSL",
                 "sasl_mechanisms": ["SCRAM-SHA-512"], "tls": tls},
                {"name": "MTLS", "address": "127.0.0.1:0", "security_protocol": "SSL",
                 "tls": {**tls, "ca_file": str(ca.cert_file), "client_auth": "required"}},
            ]}


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def _acls(bootstrap: str) -> set[tuple[str, str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    return {(b.name, b.principal, b.operation.name) for b in admin.describe_acls(everything).result(timeout=TIMEOUT)}


@pytest.mark.parametrize("security", ["sasl_ssl_scram", "mtls"])
def test_a_link_to_a_secured_source_replicates_syncs_and_never_shows_the_secret(
        broker_factory: Any, tmp_path: Path, security: str) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    source = broker_factory("source", config=_source_config(ca))
    shadow = broker_factory("shadow", config={"log_level": "DEBUG"})
    topic = f"orders-{security.replace('_', '-')}"
    create_topic(source.bootstrap, topic, partitions=3)
    produce(source.bootstrap, topic, [{"value": f"v{i}".encode(), "partition": i % 3} for i in range(300)])
    _commit(source.bootstrap, "billing", topic, {0: 40, 1: 50, 2: 60})
    admin = AdminClient({"bootstrap.servers": source.bootstrap})
    acl = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ,
                     AclPermissionType.ALLOW)
    for future in admin.create_acls([acl]).values():
        future.result(timeout=TIMEOUT)

    spec = link_spec(source, prefixes=(topic,))
    if security == "sasl_ssl_scram":
        upsert = UserScramCredentialUpsertion("shadow-link", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                              PASSWORD.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=TIMEOUT)
        password_file = tmp_path / "link.password"
        password_file.write_text(PASSWORD + "\n")
        spec["source"] |= {"bootstrap_servers": [source.listener_bootstrap("SASL_SSL")],
                           "tls": {"ca_file": str(ca.cert_file)},
                           "sasl": {"mechanism": "SCRAM-SHA-512", "username": "shadow-link",
                                    "password_file": str(password_file)}}
    else:
        client = ca.issue_client("shadow-link")
        spec["source"] |= {"bootstrap_servers": [source.listener_bootstrap("MTLS")],
                           "tls": {"ca_file": str(ca.cert_file), "cert_file": str(client.cert_file),
                                   "key_file": str(client.key_file)}}
    create_link(shadow, spec)
    wait_caught_up(shadow, {topic: 3})
    assert_logs_equal(source, shadow, {topic: 3})
    wait_until(lambda: _committed(shadow.bootstrap, "billing", topic, 3) == {0: 40, 1: 50, 2: 60}, timeout=TIMEOUT,
               message=lambda: f"billing's offsets on the shadow: {_committed(shadow.bootstrap, 'billing', topic, 3)}")
    wait_until(lambda: (topic, "User:alice", "READ") in _acls(shadow.bootstrap), timeout=TIMEOUT,
               message=lambda: f"alice's ACL on the shadow: {_acls(shadow.bootstrap)}")
    # The source saw the link as its principal (a super user there, so only authentication let it in).
    principal = "User:shadow-link"
    assert any(principal in line for line in source.log_text().splitlines()), "the link's principal on the source"

    status, described = admin_call(shadow, "GET", "/v1/shadow-links/dr")
    assert status == 200
    outputs = {"describe": json.dumps(described), "status": json.dumps(link_status(shadow)),
               "metrics": urllib.request.urlopen(shadow.admin_url + "/metrics").read().decode(),
               "shadow log": shadow.log_text(), "source log": source.log_text()}
    for where, text in outputs.items():
        assert PASSWORD not in text, f"the link's password is in the {where}"
    if security == "sasl_ssl_scram":
        assert described["spec"]["source"]["sasl"] == {"mechanism": "SCRAM-SHA-512", "username": "shadow-link",
                                               "password_file": str(tmp_path / "link.password")}


def test_a_wrong_source_password_shows_in_status_without_the_password(broker_factory: Any, tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    source = broker_factory("source", config=_source_config(ca))
    shadow = broker_factory("shadow", config={"log_level": "DEBUG"})
    admin = AdminClient({"bootstrap.servers": source.bootstrap})
    upsert = UserScramCredentialUpsertion("shadow-link", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                          PASSWORD.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=TIMEOUT)
    wrong = f"not-{uuid.uuid4().hex}"
    spec = link_spec(source, prefixes=("x",))
    spec["source"] |= {"bootstrap_servers": [source.listener_bootstrap("SASL_SSL")], "tls": {"ca_file": str(ca.cert_file)},
                       "sasl": {"mechanism": "SCRAM-SHA-512", "username": "shadow-link", "password_env": "UMBRA_NOPE"}}
    status, body = admin_call(shadow, "POST", "/v1/shadow-links", spec)
    assert status == 400 and "UMBRA_NOPE is not set" in body["error"], body  # refused at creation, named
    password_file = tmp_path / "wrong.password"
    password_file.write_text(wrong)
    spec["source"]["sasl"] = {"mechanism": "SCRAM-SHA-512", "username": "shadow-link",
                              "password_file": str(password_file)}
    status, body = admin_call(shadow, "POST", "/v1/shadow-links", spec)
    assert status == 400 and "refused the credentials" in body["error"], body
    for text in (json.dumps(body), shadow.log_text(), source.log_text()):
        assert wrong not in text and PASSWORD not in text
