"""What each Kafka API authorizes: the resource and operation every handler checks, and the error it answers.

Each row runs a handler on a real in-process broker (a topic ``t``, a group ``g`` with a committed offset)
whose authorizer records every question and allows only the row's ``allow``. The table must name every API
the broker handles: a handler added without an entry fails ``test_every_api_has_a_row``.

Kafka's table is its docs' "Operations and Resources on Protocols" (and KIP-679 for idempotent producers).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rawclient import error_codes

from umbra.config import AuthorizationConfig, BrokerConfig
from umbra.errors import ErrorCode, KafkaError
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.model import OffsetAndMetadata
from umbra.groups.persistence import offsets_topic_configs
from umbra.protocol.codec import SCHEMAS, RequestHeader, build_request, build_response, error_response
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.authz import CLUSTER_NAME
from umbra.server.broker import Broker
from umbra.server.handlers import API_HANDLERS, RequestContext, load_all

load_all()

Op = AclOperation
TOPIC, GROUP, CLUSTER, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER, ResourceType.TRANSACTIONAL_ID
ANY_NAME = "<any>"  # a KIP-679 question: the operation on some resource of the type
Check = tuple[ResourceType, str, AclOperation]

TOPIC_DENIED = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_DENIED = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
TXN_DENIED = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

# Authentication, not authorization: Kafka checks nothing for these (and umbra may serve them in the connection).
UNCHECKED_APIS = {17: "SaslHandshake", 18: "ApiVersions", 36: "SaslAuthenticate"}


class RecordingAuthorizer:
    """Answers as ``allow`` says, and remembers every question."""

    def __init__(self, allow: set[Check]) -> None:
        self.allow = allow
        self.checks: set[Check] = set()

    def allowed(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                name: str) -> bool:
        self.checks.add((resource_type, name, operation))
        return (resource_type, name, operation) in self.allow

    def allowed_on_any(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType) -> bool:
        self.checks.add((resource_type, ANY_NAME, operation))
        return (resource_type, ANY_NAME, operation) in self.allow


@dataclass
class Row:
    name: str
    api_key: int
    version: int
    fields: dict[str, Any] | Callable[[Broker], dict[str, Any]]
    checks: set[Check]
    errors: set[ErrorCode] = field(default_factory=set)  # each appears somewhere in the response
    allow: set[Check] = field(default_factory=set)
    expect: Callable[[dict[str, Any]], bool] | None = None  # anything else the response must show
    pending: str | None = None  # why the handler does not check yet (an expected failure until it does)


def topic_id_of_t(broker: Broker) -> uuid.UUID:
    return broker.metadata.require_topic("t").topic_id


TP = {"name": "t", "partitions": [{"partition_index": 0}]}
CONFIG_RESOURCES = [{"resource_type": 2, "resource_name": "t"}, {"resource_type": 4, "resource_name": "1"},
                    {"resource_type": 32, "resource_name": "g"}]

ROWS = [
    Row("produce", 0, 9, {"acks": 1, "timeout_ms": 1000, "transactional_id": None,
                          "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b""}]}]},
        {(TOPIC, "t", Op.WRITE)}, {TOPIC_DENIED}),
    Row("produce, transactional", 0, 9, {"acks": 1, "timeout_ms": 1000, "transactional_id": "tx",
                                         "topic_data": [{"name": "t", "partition_data": [{"index": 0,
                                                                                         "records": b""}]}]},
        {(TXN, "tx", Op.WRITE), (TOPIC, "t", Op.WRITE)}, {TXN_DENIED}),
    Row("fetch, consumer", 1, 12, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                                   "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                                   "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                                            "partition_max_bytes": 1 << 20}]}]},
        {(TOPIC, "t", Op.READ)}, {TOPIC_DENIED}),
    Row("fetch, follower", 1, 12, {"replica_id": 2, "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 20,
                                   "isolation_level": 0, "session_id": 0, "session_epoch": -1,
                                   "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                                            "partition_max_bytes": 1 << 20}]}]},
        {(CLUSTER, CLUSTER_NAME, Op.CLUSTER_ACTION)}, {TOPIC_DENIED}),
    Row("list offsets", 2, 7, {"replica_id": -1, "isolation_level": 0,
                               "topics": [{"name": "t", "partitions": [{"partition_index": 0, "timestamp": -1}]}]},
        {(TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}),
    Row("metadata, named topic", 3, 12, {"topics": [{"name": "t"}], "allow_auto_topic_creation": False},
        {(TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}),
    Row("metadata, by topic id", 3, 12, lambda b: {"topics": [{"name": None, "topic_id": topic_id_of_t(b)}],
                                                   "allow_auto_topic_creation": False},
        {(TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}, expect=lambda r: r["topics"][0]["name"] is None),
    Row("metadata, every topic", 3, 12, {"topics": None, "allow_auto_topic_creation": False},
        {(TOPIC, "t", Op.DESCRIBE), (TOPIC, "__consumer_offsets", Op.DESCRIBE)}, expect=lambda r: r["topics"] == []),
    Row("metadata, auto-creation", 3, 12, {"topics": [{"name": "new"}], "allow_auto_topic_creation": True},
        {(TOPIC, "new", Op.DESCRIBE), (CLUSTER, CLUSTER_NAME, Op.CREATE), (TOPIC, "new", Op.CREATE)}, {TOPIC_DENIED},
        allow={(TOPIC, "new", Op.DESCRIBE)}),
    Row("offset commit", 8, 8, {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
                                "group_instance_id": None,
                                "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 0,
                                                                        "committed_leader_epoch": -1,
                                                                        "committed_metadata": ""}]}]},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("offset commit, group allowed", 8, 8, {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "",
                                               "group_instance_id": None,
                                               "topics": [{"name": "t", "partitions": [
                                                   {"partition_index": 0, "committed_offset": 0,
                                                    "committed_leader_epoch": -1, "committed_metadata": ""}]}]},
        {(GROUP, "g", Op.READ), (TOPIC, "t", Op.READ)}, {TOPIC_DENIED}, allow={(GROUP, "g", Op.READ)}),
    Row("offset fetch", 9, 8, {"groups": [{"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0]}]}],
                               "require_stable": False},
        {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
    Row("offset fetch v1", 9, 1, {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0]}]},
        {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
    Row("offset fetch, group allowed", 9, 8, {"groups": [{"group_id": "g", "topics": [
        {"name": "t", "partition_indexes": [0]}]}], "require_stable": False},
        {(GROUP, "g", Op.DESCRIBE), (TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}, allow={(GROUP, "g", Op.DESCRIBE)}),
    Row("offset fetch, every topic", 9, 8, {"groups": [{"group_id": "g", "topics": None}], "require_stable": False},
        {(GROUP, "g", Op.DESCRIBE), (TOPIC, "t", Op.DESCRIBE)}, allow={(GROUP, "g", Op.DESCRIBE)},
        expect=lambda r: r["groups"][0]["topics"] == []),
    Row("find group coordinator", 10, 4, {"key_type": 0, "coordinator_keys": ["g"]},
        {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
    Row("find group coordinator v2", 10, 2, {"key_type": 0, "key": "g"}, {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
    Row("find transaction coordinator", 10, 4, {"key_type": 1, "coordinator_keys": ["tx"]},
        {(TXN, "tx", Op.DESCRIBE)}, {TXN_DENIED}),
    Row("join group", 11, 9, {"group_id": "g", "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
                              "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
                              "protocols": [], "reason": None},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("heartbeat", 12, 4, {"group_id": "g", "generation_id": 1, "member_id": "m", "group_instance_id": None},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("leave group", 13, 5, {"group_id": "g", "members": [{"member_id": "m", "group_instance_id": None,
                                                             "reason": None}]},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("sync group", 14, 5, {"group_id": "g", "generation_id": 1, "member_id": "m", "group_instance_id": None,
                              "protocol_type": "consumer", "protocol_name": "range", "assignments": []},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("describe groups", 15, 5, {"groups": ["g"], "include_authorized_operations": False},
        {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
    Row("list groups", 16, 4, {"states_filter": []}, {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE), (GROUP, "g", Op.DESCRIBE)},
        expect=lambda r: r["groups"] == [] and r["error_code"] == 0),
    Row("list groups, group allowed", 16, 4, {"states_filter": []},
        {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE), (GROUP, "g", Op.DESCRIBE)}, allow={(GROUP, "g", Op.DESCRIBE)},
        expect=lambda r: [g["group_id"] for g in r["groups"]] == ["g"]),
    Row("api versions", 18, 3, {"client_software_name": "x", "client_software_version": "1"}, set()),
    Row("create topics", 19, 7, {"topics": [{"name": "new", "num_partitions": 1, "replication_factor": 1,
                                             "assignments": [], "configs": []}],
                                 "timeout_ms": 1000, "validate_only": True},
        {(CLUSTER, CLUSTER_NAME, Op.CREATE), (TOPIC, "new", Op.CREATE)}, {TOPIC_DENIED}),
    Row("create topics, configs not describable", 19, 7,
        {"topics": [{"name": "new", "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []}],
         "timeout_ms": 1000, "validate_only": True},
        {(CLUSTER, CLUSTER_NAME, Op.CREATE), (TOPIC, "new", Op.CREATE), (TOPIC, "new", Op.DESCRIBE_CONFIGS)},
        {TOPIC_DENIED}, allow={(TOPIC, "new", Op.CREATE)},
        expect=lambda r: r["topics"][0]["error_code"] == 0 and r["topics"][0]["configs"] == []),
    Row("delete topics", 20, 6, {"topics": [{"name": "t", "topic_id": None}], "timeout_ms": 1000},
        {(TOPIC, "t", Op.DELETE)}, {TOPIC_DENIED}),
    Row("delete topics by id", 20, 6, lambda b: {"topics": [{"name": None, "topic_id": topic_id_of_t(b)}],
                                                 "timeout_ms": 1000},
        {(TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}, expect=lambda r: r["responses"][0]["name"] is None),
    Row("delete records", 21, 2, {"topics": [{"name": "t", "partitions": [{"partition_index": 0, "offset": 0}]}],
                                  "timeout_ms": 1000},
        {(TOPIC, "t", Op.DELETE)}, {TOPIC_DENIED}),
    Row("init producer id, idempotent", 22, 4, {"transactional_id": None, "transaction_timeout_ms": -1,
                                                "producer_id": -1, "producer_epoch": -1},
        {(CLUSTER, CLUSTER_NAME, Op.IDEMPOTENT_WRITE), (TOPIC, ANY_NAME, Op.WRITE)}, {CLUSTER_DENIED}),
    Row("init producer id, write on some topic (KIP-679)", 22, 4,
        {"transactional_id": None, "transaction_timeout_ms": -1, "producer_id": -1, "producer_epoch": -1},
        {(CLUSTER, CLUSTER_NAME, Op.IDEMPOTENT_WRITE), (TOPIC, ANY_NAME, Op.WRITE)},
        allow={(TOPIC, ANY_NAME, Op.WRITE)}, expect=lambda r: r["error_code"] == 0 and r["producer_id"] >= 0),
    # Transactions are not supported: a transactional id is refused whatever the ACLs say.
    Row("init producer id, transactional", 22, 4, {"transactional_id": "tx", "transaction_timeout_ms": 1000,
                                                   "producer_id": -1, "producer_epoch": -1}, set(), {TXN_DENIED}),
    Row("offset for leader epoch", 23, 4, {"replica_id": -1, "topics": [{"topic": "t", "partitions": [
        {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}]},
        {(CLUSTER, CLUSTER_NAME, Op.CLUSTER_ACTION), (TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}),
    Row("describe acls", 29, 3, {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
                                 "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1},
        {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE)}, {CLUSTER_DENIED}),
    Row("create acls", 30, 3, {"creations": [{"resource_type": 2, "resource_name": "t", "resource_pattern_type": 3,
                                              "principal": "User:x", "host": "*", "operation": 3,
                                              "permission_type": 3}]},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    Row("delete acls", 31, 3, {"filters": [{"resource_type_filter": 1, "resource_name_filter": None,
                                            "pattern_type_filter": 1, "principal_filter": None, "host_filter": None,
                                            "operation": 1, "permission_type": 1}]},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    Row("describe configs", 32, 4, {"resources": [{**r, "configuration_keys": None} for r in CONFIG_RESOURCES],
                                    "include_synonyms": False, "include_documentation": False},
        {(TOPIC, "t", Op.DESCRIBE_CONFIGS), (CLUSTER, CLUSTER_NAME, Op.DESCRIBE_CONFIGS),
         (GROUP, "g", Op.DESCRIBE_CONFIGS)},
        {TOPIC_DENIED, CLUSTER_DENIED, GROUP_DENIED}),
    Row("alter configs", 33, 2, {"resources": [{**r, "configs": []} for r in CONFIG_RESOURCES],
                                 "validate_only": True},
        {(TOPIC, "t", Op.ALTER_CONFIGS), (CLUSTER, CLUSTER_NAME, Op.ALTER_CONFIGS), (GROUP, "g", Op.ALTER_CONFIGS)},
        {TOPIC_DENIED, CLUSTER_DENIED, GROUP_DENIED}),
    Row("alter replica log dirs", 34, 2, {"dirs": [{"path": "/elsewhere", "topics": [{"name": "t", "partitions": [0]}]}]},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    Row("describe log dirs", 35, 4, {"topics": None}, {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE)}, {CLUSTER_DENIED},
        expect=lambda r: r["results"] == []),
    Row("create partitions", 37, 3, {"topics": [{"name": "t", "count": 2, "assignments": None}], "timeout_ms": 1000,
                                     "validate_only": True},
        {(TOPIC, "t", Op.ALTER)}, {TOPIC_DENIED}),
    Row("delete groups", 42, 2, {"groups_names": ["g"]}, {(GROUP, "g", Op.DELETE)}, {GROUP_DENIED}),
    Row("elect leaders", 43, 2, {"election_type": 0, "topic_partitions": [{"topic": "t", "partitions": [0]}],
                                 "timeout_ms": 1000},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    Row("elect leaders, allowed", 43, 2, {"election_type": 0, "topic_partitions": [{"topic": "t", "partitions": [0]}],
                                          "timeout_ms": 1000},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {ErrorCode.ELECTION_NOT_NEEDED}, allow={(CLUSTER, CLUSTER_NAME, Op.ALTER)}),
    Row("incremental alter configs", 44, 1, {"resources": [{**r, "configs": []} for r in CONFIG_RESOURCES],
                                             "validate_only": True},
        {(TOPIC, "t", Op.ALTER_CONFIGS), (CLUSTER, CLUSTER_NAME, Op.ALTER_CONFIGS), (GROUP, "g", Op.ALTER_CONFIGS)},
        {TOPIC_DENIED, CLUSTER_DENIED, GROUP_DENIED}),
    Row("alter partition reassignments", 45, 0, {"timeout_ms": 1000, "topics": [
        {"name": "t", "partitions": [{"partition_index": 0, "replicas": [1]}]}]},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    Row("list partition reassignments", 46, 0, {"timeout_ms": 1000, "topics": None},
        {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE)}, {CLUSTER_DENIED}),
    Row("offset delete", 47, 0, {"group_id": "g", "topics": [TP]}, {(GROUP, "g", Op.DELETE)}, {GROUP_DENIED}),
    Row("offset delete, group allowed", 47, 0, {"group_id": "g", "topics": [TP]},
        {(GROUP, "g", Op.DELETE), (TOPIC, "t", Op.READ)}, {TOPIC_DENIED}, allow={(GROUP, "g", Op.DELETE)}),
    Row("describe user scram credentials", 50, 0, {"users": None}, {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE)},
        {CLUSTER_DENIED}),
    Row("alter user scram credentials", 51, 0, {"deletions": [{"name": "alice", "mechanism": 1}], "upsertions": []},
        {(CLUSTER, CLUSTER_NAME, Op.ALTER)}, {CLUSTER_DENIED}),
    # As Kafka's broker: DESCRIBE on the cluster only decides cluster_authorized_operations (0 without it).
    Row("describe cluster", 60, 1, {"include_cluster_authorized_operations": False, "endpoint_type": 1}, set(),
        expect=lambda r: r["error_code"] == 0 and len(r["brokers"]) == 1),
    Row("describe topic partitions, named topic", 75, 0, {"topics": [{"name": "t"}], "response_partition_limit": 10,
                                                          "cursor": None},
        {(TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}, expect=lambda r: r["topics"][0]["topic_id"] in (None, uuid.UUID(int=0))),
    Row("describe topic partitions, every topic", 75, 0, {"topics": [], "response_partition_limit": 10, "cursor": None},
        {(TOPIC, "t", Op.DESCRIBE), (TOPIC, "__consumer_offsets", Op.DESCRIBE)}, expect=lambda r: r["topics"] == []),
    Row("describe producers", 61, 0, {"topics": [{"name": "t", "partition_indexes": [0]}]},
        {(TOPIC, "t", Op.READ)}, {TOPIC_DENIED}),
    Row("describe cluster, authorized operations", 60, 1,
        {"include_cluster_authorized_operations": True, "endpoint_type": 1}, {(CLUSTER, CLUSTER_NAME, Op.DESCRIBE)},
        expect=lambda r: r["authorized_operations"] == []),  # Kafka: 0 without DESCRIBE on the cluster
    Row("metadata, authorized operations", 3, 10,
        {"topics": [{"name": "t", "topic_id": None}], "allow_auto_topic_creation": False,
         "include_cluster_authorized_operations": True, "include_topic_authorized_operations": True},
        {(TOPIC, "t", Op.DESCRIBE), (CLUSTER, CLUSTER_NAME, Op.DESCRIBE),
         *((TOPIC, "t", op) for op in (Op.READ, Op.WRITE, Op.CREATE, Op.DELETE, Op.ALTER, Op.DESCRIBE_CONFIGS,
                                       Op.ALTER_CONFIGS))},
        allow={(TOPIC, "t", Op.DESCRIBE)},
        expect=lambda r: r["topics"][0]["authorized_operations"] == [int(Op.DESCRIBE)]
        and r["authorized_operations"] == []),
    Row("consumer group heartbeat", 68, 1, {"group_id": "g", "member_id": "m", "member_epoch": 0,
                                            "rebalance_timeout_ms": 10000, "subscribed_topic_names": ["t"],
                                            "topic_partitions": []},
        {(GROUP, "g", Op.READ)}, {GROUP_DENIED}),
    Row("consumer group heartbeat, group allowed", 68, 1, {"group_id": "g", "member_id": "m", "member_epoch": 0,
                                                           "rebalance_timeout_ms": 10000,
                                                           "subscribed_topic_names": ["t"], "topic_partitions": []},
        {(GROUP, "g", Op.READ), (TOPIC, "t", Op.DESCRIBE)}, {TOPIC_DENIED}, allow={(GROUP, "g", Op.READ)}),
    Row("consumer group heartbeat, regex", 68, 1, {"group_id": "g", "member_id": "m", "member_epoch": 0,
                                                   "rebalance_timeout_ms": 10000, "subscribed_topic_regex": "t.*",
                                                   "topic_partitions": []},
        {(GROUP, "g", Op.READ), (TOPIC, "t", Op.DESCRIBE)}, allow={(GROUP, "g", Op.READ)},
        expect=lambda r: r["error_code"] == 0 and not r["assignment"]["topic_partitions"]),
    Row("consumer group describe", 69, 1, {"group_ids": ["g"], "include_authorized_operations": False},
        {(GROUP, "g", Op.DESCRIBE)}, {GROUP_DENIED}),
]


def test_every_api_has_a_row() -> None:
    covered = {row.api_key for row in ROWS} | set(UNCHECKED_APIS)
    missing = {key: handler.name for key, handler in API_HANDLERS.items() if key not in covered}
    assert not missing, f"APIs with no row in the authorization table: {missing}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    config = BrokerConfig(data_dir=tmp_path, log_cleaner_enabled=False, authorization=AuthorizationConfig(enabled=True))
    broker = Broker(config)
    broker.open_logs()
    broker.create_topic("t", 1)
    yield broker
    broker.close_storage()


async def _with_groups(broker: Broker) -> GroupCoordinator:
    """The group coordinator, with group ``g`` holding an offset of ``t-0`` (an empty group)."""
    groups = GroupCoordinator(broker.offsets_log(offsets_topic_configs(1 << 20)), broker.config, broker.notifier)
    await groups.start()
    errors = groups.commit_offsets("g", -1, "", None, {("t", 0): OffsetAndMetadata(0, -1, "", 0)})
    assert set(errors.values()) == {ErrorCode.NONE}
    broker.groups = groups
    return groups


async def _call(broker: Broker, row: Row) -> dict[str, Any]:
    """Encode the request, decode it as the connection would, handle it, and decode the encoded response."""
    fields = row.fields(broker) if callable(row.fields) else row.fields
    version = row.version
    request_cls = SCHEMAS[row.api_key].request
    wire = build_request(row.api_key, version, fields).encode(version=version)
    request = request_cls.decode(wire, version=version)
    ctx = RequestContext(broker, RequestHeader(row.api_key, version, 7, "client"), "10.0.0.1:4000", 1, "User:alice")
    handler = API_HANDLERS[row.api_key]
    try:
        result = await handler.handle(ctx, request)
    except KafkaError as exc:  # what the connection does with a request-wide error
        result = error_response(row.api_key, version, int(exc.code))
    if isinstance(result, list):  # Fetch: the framed response, header included
        frame = b"".join(bytes(piece) for piece in result)[4:]
        decoded = SCHEMAS[row.api_key].response.decode(frame, version=version, header=True)
    else:
        response = build_response(row.api_key, version, result) if isinstance(result, dict) else result
        decoded = SCHEMAS[row.api_key].response.decode(response.encode(version=version), version=version)
    as_dict: dict[str, Any] = decoded.to_dict()
    return as_dict


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name, marks=[pytest.mark.xfail(reason=row.pending)]
                                               if row.pending else []) for row in ROWS])
def test_what_each_api_authorizes(broker: Broker, row: Row) -> None:
    if row.api_key not in API_HANDLERS:
        pytest.skip(f"api key {row.api_key} has no handler in this tree")

    async def run() -> dict[str, Any]:
        groups = await _with_groups(broker)
        try:
            recorder = RecordingAuthorizer(row.allow)
            broker.authorizer = recorder  # type: ignore[assignment]
            response = await _call(broker, row)
            assert recorder.checks == row.checks
            return response
        finally:
            await groups.stop()

    response = asyncio.run(run())
    codes = error_codes(response)
    assert {int(code) for code in row.errors} <= codes, f"{row.errors} not all in {response}"
    if row.expect is not None:
        assert row.expect(response), response
