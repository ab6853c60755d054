"""ACLs enforced by a real `umbra broker` (`authorization.enabled`), as real clients and raw requests see them.

A principal is whatever the connection authenticated as; tests ask the `Principals` helper for the client
settings of one: `User:ANONYMOUS` is a plaintext client, `User:<cn>` an mTLS client whose certificate has that
common name (tests/pki.py). A SASL principal would be one more way to make those settings.

- ANONYMOUS: ACLs are written while authorization is off (a denied principal cannot write them), then the
  broker restarts with it on, on the same data dir. ANONYMOUS may READ topic `readable`, READ every `deny-`
  topic except `deny-me` (a DENY beats the ALLOW), and READ group `readers`. It consumes there, and is refused,
  with Kafka's error codes, everything else: one raw request per row of the operation table.
- mTLS: `User:admin` is a super user and grants and revokes through the Kafka API while alice and bob work; an
  ACL change applies to the next request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kafka.admin as kp
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from harness import BrokerProcess, create_topic, stop_all, wait_until
from kafka.errors import ClusterAuthorizationFailedError
from pki import CertFiles, CertificateAuthority
from rawclient import RawConnection, error_codes

from umbra.protocol.codec import build_request

TIMEOUT = 30.0
ANONYMOUS = "User:ANONYMOUS"
OFFSETS = "__consumer_offsets"
TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED = 29, 30, 31
RECORDS = [f"record-{i}".encode() for i in range(5)]


@dataclass
class Principals:
    """Client settings that connect to ``broker`` as a given principal."""

    broker: BrokerProcess
    ca: CertificateAuthority | None = None
    certificates: dict[str, CertFiles] = field(default_factory=dict)

    def client(self, principal: str, **extra: Any) -> dict[str, Any]:
        if principal == ANONYMOUS:
            return {"bootstrap.servers": self.broker.listener_bootstrap("PLAINTEXT")
                    if self.ca is not None else self.broker.bootstrap, **extra}
        kind, _, name = principal.partition(":")
        assert kind == "User" and self.ca is not None, f"no way to connect as {principal}"
        if name not in self.certificates:
            self.certificates[name] = self.ca.issue_client(name)
        certificate = self.certificates[name]
        return {"bootstrap.servers": self.broker.listener_bootstrap("MTLS"), "security.protocol": "SSL",
                "ssl.ca.location": str(self.ca.cert_file), "ssl.certificate.location": str(certificate.cert_file),
                "ssl.key.location": str(certificate.key_file), **extra}

    def admin(self, principal: str) -> AdminClient:
        return AdminClient(self.client(principal))


def allow(principal: str, resource_type: ResourceType, name: str, operation: AclOperation,
          pattern: ResourcePatternType = ResourcePatternType.LITERAL,
          permission: AclPermissionType = AclPermissionType.ALLOW) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, "*", operation, permission)


def create_acls(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)


def produce(settings: dict[str, Any], topic: str, values: list[bytes]) -> list[KafkaError | None]:
    """Each record's delivery error (None: delivered)."""
    producer = Producer({**settings, "message.timeout.ms": 10000, "acks": "all"})
    outcomes: list[KafkaError | None] = []
    for value in values:
        producer.produce(topic, value, on_delivery=lambda err, _msg: outcomes.append(err))
    assert producer.flush(TIMEOUT) == 0
    return outcomes


def error_code(failure: BaseException) -> int:
    assert isinstance(failure, KafkaException), failure
    code: int = failure.args[0].code()
    return code


# --- ANONYMOUS, with ACLs written before authorization was enabled ----------------------------------------

@pytest.fixture(scope="module")
def anonymous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Principals]:
    broker = BrokerProcess(tmp_path_factory.mktemp("authz") / "broker", name="authz",
                           config={"auto_create_topics": True, "group_initial_rebalance_delay_ms": 0})
    try:
        broker.start()
        for topic in ("readable", "secret", "deny-me"):
            create_topic(broker.bootstrap, topic, partitions=1)
        plain = {"bootstrap.servers": broker.bootstrap}
        assert produce(plain, "readable", RECORDS) == [None] * len(RECORDS)
        assert produce(plain, "secret", RECORDS) == [None] * len(RECORDS)
        commit_offset(plain, "others", "readable")  # a group ANONYMOUS will not be allowed to see
        create_acls(AdminClient(plain), [
            allow(ANONYMOUS, ResourceType.TOPIC, "readable", AclOperation.READ),
            allow(ANONYMOUS, ResourceType.TOPIC, "deny-", AclOperation.READ, ResourcePatternType.PREFIXED),
            allow(ANONYMOUS, ResourceType.TOPIC, "deny-me", AclOperation.READ, permission=AclPermissionType.DENY),
            allow(ANONYMOUS, ResourceType.GROUP, "readers", AclOperation.READ),
        ])
        broker.stop()
        assert broker.config is not None
        broker.config["authorization"] = {"enabled": True}
        broker.start()
        yield Principals(broker)
    finally:
        stop_all([broker])


def commit_offset(settings: dict[str, Any], group: str, topic: str) -> None:
    consumer = Consumer({**settings, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    finally:
        consumer.close()


def test_consumer_reads_the_topic_and_group_it_may_read(anonymous: Principals) -> None:
    consumer = Consumer(anonymous.client(ANONYMOUS, **{"group.id": "readers", "auto.offset.reset": "earliest",
                                                        "enable.auto.commit": False}))
    received: list[bytes] = []
    try:
        consumer.subscribe(["readable"])

        def all_read() -> bool:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                received.append(message.value())
            return len(received) >= len(RECORDS)

        wait_until(all_read, timeout=TIMEOUT, interval=0, message=lambda: f"records read so far: {received}")
        committed = consumer.commit(asynchronous=False)
        assert committed is not None and all(tp.error is None for tp in committed), committed
    finally:
        consumer.close()
    assert received == RECORDS


def test_producing_is_denied(anonymous: Principals) -> None:
    for topic in ("readable", "secret"):
        outcomes = produce(anonymous.client(ANONYMOUS), topic, RECORDS[:1])
        assert [e.code() if e else None for e in outcomes] == [KafkaError.TOPIC_AUTHORIZATION_FAILED], topic


def test_metadata_lists_only_topics_it_may_describe(anonymous: Principals) -> None:
    topics = anonymous.admin(ANONYMOUS).list_topics(timeout=TIMEOUT).topics
    assert set(topics) == {"readable", "deny-me"}  # a DENY of READ does not deny DESCRIBE (Kafka's rule)


def test_reading_a_denied_topic_fails(anonymous: Principals) -> None:
    consumer = Consumer(anonymous.client(ANONYMOUS, **{"group.id": "readers", "enable.auto.commit": False}))
    try:
        consumer.assign([TopicPartition("deny-me", 0, 0)])

        def refused() -> int:
            message = consumer.poll(0.5)
            error = message.error() if message is not None else None
            return error.code() if error is not None else 0

        assert wait_until(refused, timeout=TIMEOUT) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()


def test_admin_operations_are_denied(anonymous: Principals) -> None:
    admin = anonymous.admin(ANONYMOUS)
    created = admin.create_topics([NewTopic("new-topic", 1, 1)], request_timeout=TIMEOUT)["new-topic"]
    assert error_code(created.exception(timeout=TIMEOUT)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    deleted = admin.delete_topics(["secret"], request_timeout=TIMEOUT)["secret"]
    assert error_code(deleted.exception(timeout=TIMEOUT)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # librdkafka drops DescribeAcls's error code (it answers an empty list): kafka-python's client reports it.
    client = kp.KafkaAdminClient(bootstrap_servers=anonymous.client(ANONYMOUS)["bootstrap.servers"],
                                 request_timeout_ms=int(TIMEOUT * 1000))
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            client.describe_acls(kp.ACLFilter(None, None, kp.ACLOperation.ANY, kp.ACLPermissionType.ANY,
                                              kp.ResourcePatternFilter(kp.ResourceType.ANY, None,
                                                                       kp.ACLResourcePatternType.ANY)))
    finally:
        client.close()


# One raw request per row of the operation table, as ANONYMOUS with the ACLs above.

def _fetch(topic: str, replica_id: int = -1) -> dict[str, Any]:
    return {"replica_id": replica_id, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
            "session_id": 0, "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                                         "partition_max_bytes": 1 << 20}]}]}


def _commit(group: str, topic: str) -> dict[str, Any]:
    return {"group_id": group, "generation_id_or_member_epoch": -1, "member_id": "", "group_instance_id": None,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                       "committed_leader_epoch": -1, "committed_metadata": ""}]}]}


_ANY_ACL = {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
            "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1}
_CONFIG_RESOURCES = [{"resource_type": 2, "resource_name": "readable"}, {"resource_type": 4, "resource_name": "1"}]


def _by(entries: list[dict[str, Any]], key: str, value: str = "error_code") -> dict[str, Any]:
    return {entry[key]: entry[value] for entry in entries}


@dataclass
class RawRow:
    name: str
    api_key: int
    version: int
    fields: dict[str, Any]
    codes: set[int]  # every error code in the response, exactly
    expect: Callable[[dict[str, Any]], bool] | None = None


RAW_ROWS = [
    RawRow("produce", 0, 9, {"acks": 1, "timeout_ms": 1000, "transactional_id": None, "topic_data": [
        {"name": "readable", "partition_data": [{"index": 0, "records": b""}]}]}, {TOPIC_DENIED}),
    RawRow("fetch readable", 1, 12, _fetch("readable"), {0}),
    RawRow("fetch secret", 1, 12, _fetch("secret"), {0, TOPIC_DENIED}),
    RawRow("fetch deny-me (DENY beats the prefixed ALLOW)", 1, 12, _fetch("deny-me"), {0, TOPIC_DENIED}),
    RawRow("fetch as a follower", 1, 12, _fetch("readable", replica_id=7), {0, TOPIC_DENIED}),
    RawRow("list offsets readable", 2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": "readable", "partitions": [{"partition_index": 0, "timestamp": -1}]}]}, {0}),
    RawRow("list offsets secret", 2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": "secret", "partitions": [{"partition_index": 0, "timestamp": -1}]}]}, {TOPIC_DENIED}),
    RawRow("metadata, named topics", 3, 12, {"topics": [{"name": n} for n in ("readable", "secret", "nope")],
                                              "allow_auto_topic_creation": True}, {0, TOPIC_DENIED},
           expect=lambda r: _by(r["topics"], "name") == {"readable": 0, "secret": TOPIC_DENIED,
                                                          "nope": TOPIC_DENIED}),
    RawRow("metadata, every topic", 3, 12, {"topics": None, "allow_auto_topic_creation": False}, {0},
           expect=lambda r: {t["name"] for t in r["topics"]} == {"readable", "deny-me"}),
    RawRow("create topics", 19, 7, {"topics": [{"name": "new", "num_partitions": 1, "replication_factor": 1,
                                                "assignments": [], "configs": []}],
                                    "timeout_ms": 1000, "validate_only": False},
           {0, TOPIC_DENIED}, expect=lambda r: r["topics"][0]["error_code"] == TOPIC_DENIED),
    RawRow("delete topics", 20, 6, {"topics": [{"name": n, "topic_id": None} for n in ("secret", "nope")],
                                    "timeout_ms": 1000}, {TOPIC_DENIED}),
    RawRow("delete records", 21, 2, {"topics": [{"name": "readable", "partitions": [
        {"partition_index": 0, "offset": 1}]}], "timeout_ms": 1000}, {TOPIC_DENIED}),
    RawRow("init producer id", 22, 4, {"transactional_id": None, "transaction_timeout_ms": -1, "producer_id": -1,
                                       "producer_epoch": -1}, {CLUSTER_DENIED}),
    RawRow("offset for leader epoch", 23, 4, {"replica_id": -1, "topics": [
        {"topic": t, "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}
        for t in ("readable", "secret")]}, {0, TOPIC_DENIED},
           expect=lambda r: [p["error_code"] for t in r["topics"] for p in t["partitions"]] == [0, TOPIC_DENIED]),
    RawRow("describe acls", 29, 3, dict(_ANY_ACL), {CLUSTER_DENIED}),
    RawRow("create acls", 30, 3, {"creations": [{"resource_type": 2, "resource_name": "secret",
                                                 "resource_pattern_type": 3, "principal": ANONYMOUS, "host": "*",
                                                 "operation": 3, "permission_type": 3}]}, {CLUSTER_DENIED}),
    RawRow("delete acls", 31, 3, {"filters": [dict(_ANY_ACL)]}, {CLUSTER_DENIED}),
    RawRow("describe configs", 32, 4, {"resources": [{**r, "configuration_keys": None} for r in _CONFIG_RESOURCES],
                                       "include_synonyms": False, "include_documentation": False},
           {TOPIC_DENIED, CLUSTER_DENIED}),
    RawRow("incremental alter configs", 44, 1, {"resources": [
        {**r, "configs": [{"name": "retention.ms", "config_operation": 0, "value": "1000"}]}
        for r in _CONFIG_RESOURCES[:1]], "validate_only": False}, {TOPIC_DENIED}),
    RawRow("describe log dirs", 35, 4, {"topics": None}, {CLUSTER_DENIED}, expect=lambda r: r["results"] == []),
    RawRow("create partitions", 37, 3, {"topics": [{"name": "readable", "count": 2, "assignments": None}],
                                        "timeout_ms": 1000, "validate_only": False}, {TOPIC_DENIED}),
    RawRow("find coordinator", 10, 4, {"key_type": 0, "coordinator_keys": ["readers", "others"]}, {0, GROUP_DENIED},
           expect=lambda r: _by(r["coordinators"], "key") == {"readers": 0, "others": GROUP_DENIED}),
    RawRow("join another group", 11, 9, {"group_id": "others", "session_timeout_ms": 10000,
                                         "rebalance_timeout_ms": 10000, "member_id": "", "group_instance_id": None,
                                         "protocol_type": "consumer", "protocols": [], "reason": None},
           {GROUP_DENIED}),
    RawRow("describe groups", 15, 5, {"groups": ["readers", "others"], "include_authorized_operations": False},
           {0, GROUP_DENIED}, expect=lambda r: _by(r["groups"], "group_id") == {"readers": 0, "others": GROUP_DENIED}),
    RawRow("list groups", 16, 4, {"states_filter": []}, {0},
           expect=lambda r: "others" not in {g["group_id"] for g in r["groups"]}),
    RawRow("delete groups (READ is not DELETE)", 42, 2, {"groups_names": ["readers"]}, {GROUP_DENIED}),
    RawRow("offset delete", 47, 0, {"group_id": "readers", "topics": [
        {"name": "readable", "partitions": [{"partition_index": 0}]}]}, {GROUP_DENIED}),
    RawRow("offset fetch", 9, 8, {"require_stable": False, "groups": [
        {"group_id": "readers", "topics": [{"name": t, "partition_indexes": [0]} for t in ("readable", "secret")]},
        {"group_id": "others", "topics": None}]}, {0, TOPIC_DENIED, GROUP_DENIED},
           expect=lambda r: _by(r["groups"], "group_id") == {"readers": 0, "others": GROUP_DENIED}),
    RawRow("offset commit, another group", 8, 8, _commit("others", "readable"), {GROUP_DENIED}),
    RawRow("offset commit, a denied topic", 8, 8, _commit("readers", "secret"), {TOPIC_DENIED}),
    RawRow("alter partition reassignments", 45, 0, {"timeout_ms": 1000, "topics": [
        {"name": "readable", "partitions": [{"partition_index": 0, "replicas": [1]}]}]}, {CLUSTER_DENIED}),
    RawRow("list partition reassignments", 46, 0, {"timeout_ms": 1000, "topics": None}, {CLUSTER_DENIED}),
    RawRow("describe producers", 61, 0, {"topics": [{"name": t, "partition_indexes": [0]}
                                                    for t in ("readable", "secret")]}, {0, TOPIC_DENIED}),
    RawRow("describe cluster", 60, 1, {"include_cluster_authorized_operations": False, "endpoint_type": 1}, {0}),
    RawRow("api versions", 18, 3, {"client_software_name": "raw", "client_software_version": "1"}, {0}),
]


def raw_call(broker: BrokerProcess, api_key: int, version: int, fields: dict[str, Any]) -> dict[str, Any]:
    host, _, port = broker.bootstrap.rpartition(":")
    with RawConnection(host, int(port)) as connection:
        request = build_request(api_key, version, fields)
        request.with_header(correlation_id=1, client_id="authz-test")
        connection.sock.sendall(bytes(request.encode(header=True, framed=True)))
        _, response = connection.receive(api_key, version)
    decoded: dict[str, Any] = response.to_dict()
    return decoded


@pytest.mark.parametrize("row", RAW_ROWS, ids=[row.name for row in RAW_ROWS])
def test_operation_table_as_anonymous(anonymous: Principals, row: RawRow) -> None:
    response = raw_call(anonymous.broker, row.api_key, row.version, row.fields)
    assert error_codes(response) == row.codes, response
    if row.expect is not None:
        assert row.expect(response), response


# --- mTLS principals: a super user grants and revokes while others work ----------------------------------

@pytest.fixture
def mtls(broker_factory: Any, tmp_path: Path) -> Principals:
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    tls = {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}
    broker = broker_factory("mtls", config={
        "authorization": {"enabled": True, "super_users": ["User:admin"]},
        "listeners": [
            {"name": "PLAINTEXT", "address": "127.0.0.1:0", "security_protocol": "PLAINTEXT"},
            {"name": "MTLS", "address": "127.0.0.1:0", "security_protocol": "SSL",
             "tls": {**tls, "ca_file": str(ca.cert_file), "client_auth": "required"}},
        ]})
    return Principals(broker, ca)


def test_acl_changes_apply_to_the_next_request(mtls: Principals) -> None:
    admin = mtls.admin("User:admin")
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic in admin.list_topics(timeout=5).topics, timeout=TIMEOUT, message=f"topic {topic}")

    def delivered(principal: str) -> KafkaError | None:
        return produce(mtls.client(principal), topic, [b"x"])[0]

    denied = KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert (error := delivered("User:alice")) is not None and error.code() == denied
    create_acls(admin, [allow("User:alice", ResourceType.TOPIC, topic, AclOperation.WRITE)])
    assert delivered("User:alice") is None
    assert (error := delivered("User:bob")) is not None and error.code() == denied
    assert topic not in mtls.admin("User:bob").list_topics(timeout=TIMEOUT).topics
    assert set(mtls.admin(ANONYMOUS).list_topics(timeout=TIMEOUT).topics) == set()
    assert topic in mtls.admin("User:alice").list_topics(timeout=TIMEOUT).topics  # WRITE implies DESCRIBE
    create_acls(admin, [allow("User:*", ResourceType.TOPIC, "orders-", AclOperation.WRITE,
                              ResourcePatternType.PREFIXED, AclPermissionType.DENY)])
    assert (error := delivered("User:alice")) is not None and error.code() == denied
    assert OFFSETS in admin.list_topics(timeout=TIMEOUT).topics  # the super user sees everything
