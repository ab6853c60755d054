"""The admin APIs that Kafka 4-era tools ask for, through real clients against one real umbra broker:
ElectLeaders (43), AlterReplicaLogDirs (34), AlterPartitionReassignments/ListPartitionReassignments (45/46),
DescribeTopicPartitions (75), manual replica assignments in CreateTopics/CreatePartitions, and Fetch v17.

kafka-python 3.0.12's KafkaAdminClient has a call for each; confluent-kafka's AdminClient has ``elect_leaders``
and ``describe_topics``. librdkafka 2.16's ``describe_topics`` still asks Metadata (v12, with the topics'
authorized operations), not DescribeTopicPartitions: the test records which it sent, from librdkafka's own
protocol log, and checks the answer either way. Where a client hides the broker's error message, a raw request
(tests/rawclient.py, over a real connection) reads it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicCollection
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions
from confluent_kafka.admin import NewTopic as NewConfluentTopic
from harness import BrokerProcess, wait_for_topic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol.consumer import FetchRequest
from rawclient import RawConnection

from umbra.protocol.codec import build_request

ELECTION_NOT_NEEDED = 84
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_REQUEST = 42
TOPIC = "kafka4-admin"
PARTITIONS = 5


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("kafka4-admin") / "broker", name="kafka4-admin")
    try:
        process.start()
        admin = KafkaAdminClient(bootstrap_servers=process.bootstrap, request_timeout_ms=20_000)
        try:
            admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
        finally:
            admin.close()
        wait_for_topic(process.bootstrap, TOPIC, PARTITIONS)
        yield process
    finally:
        process.stop()


@pytest.fixture
def admin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20_000)
    try:
        yield client
    finally:
        client.close()


def node_id(admin: KafkaAdminClient) -> int:
    brokers = admin.describe_cluster()["brokers"]
    assert len(brokers) == 1
    return int(brokers[0]["broker_id"])


def raw_request(broker: BrokerProcess, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    """One request over a real connection, for what the clients do not show (an error message, a null list)."""
    host, _, port = broker.bootstrap.rpartition(":")
    with RawConnection(host, int(port)) as connection:
        request = build_request(api_key, version, fields)
        request.with_header(correlation_id=1, client_id="kafka4-admin-test")
        connection.sock.sendall(bytes(request.encode(header=True, framed=True)))
        correlation_id, response = connection.receive(api_key, version)
    assert correlation_id == 1
    return response


def election_codes(response: Any) -> dict[tuple[str, int], int]:
    return {(topic.topic, p.partition_id): p.error_code
            for topic in response.replica_election_results for p in topic.partition_result}


# --- ElectLeaders ------------------------------------------------------------------------------------------

def test_kafka_python_elect_leaders(admin: KafkaAdminClient) -> None:
    """One broker leads every partition: a preferred or unclean election is ELECTION_NOT_NEEDED (which the client
    does not raise), an unknown partition UNKNOWN_TOPIC_OR_PARTITION."""
    preferred = admin.elect_leaders(0, {TOPIC: [0, 1]})
    assert preferred.API_VERSION == 2
    assert election_codes(preferred) == {(TOPIC, 0): ELECTION_NOT_NEEDED, (TOPIC, 1): ELECTION_NOT_NEEDED}
    unclean = admin.elect_leaders(1, {TOPIC: [2]})
    assert election_codes(unclean) == {(TOPIC, 2): ELECTION_NOT_NEEDED}
    unknown = admin.elect_leaders(0, {TOPIC: [PARTITIONS], "no-such-topic": [0]}, raise_errors=False)
    assert election_codes(unknown) == {(TOPIC, PARTITIONS): UNKNOWN_TOPIC_OR_PARTITION,
                                       ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION}
    every = admin.elect_leaders(0, None)  # the client lists every partition of every topic itself
    assert {(TOPIC, p) for p in range(PARTITIONS)} <= set(election_codes(every))
    assert set(election_codes(every).values()) == {ELECTION_NOT_NEEDED}


def test_elect_leaders_for_every_partition_leaves_out_those_not_needing_one(broker: BrokerProcess) -> None:
    """A null partition list (Kafka's "every partition") answers only the partitions that needed an election."""
    response = raw_request(broker, 43, 2, {"election_type": 0, "topic_partitions": None, "timeout_ms": 5000})
    assert response.error_code == 0
    assert all(not topic.partition_result for topic in response.replica_election_results), response


def test_confluent_elect_leaders(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    result = admin.elect_leaders(ElectionType.PREFERRED, [ConfluentTopicPartition(TOPIC, 0),
                                                          ConfluentTopicPartition(TOPIC, 3)]).result(timeout=30)
    assert {(tp.topic, tp.partition): error.code() for tp, error in result.items()} == {
        (TOPIC, 0): KafkaError.ELECTION_NOT_NEEDED, (TOPIC, 3): KafkaError.ELECTION_NOT_NEEDED}


# --- AlterReplicaLogDirs -----------------------------------------------------------------------------------

def test_kafka_python_alter_replica_log_dirs(admin: KafkaAdminClient) -> None:
    """The broker's one log dir (as DescribeLogDirs names it) takes the move; any other path is
    LOG_DIR_NOT_FOUND; a partition that does not exist UNKNOWN_TOPIC_OR_PARTITION."""
    node = node_id(admin)
    (described,) = admin.describe_log_dirs()
    dirs = [d["log_dir"] for d in described["log_dirs"]]
    assert described["broker"] == node and len(dirs) == 1, described
    moved = admin.alter_replica_log_dirs({(TOPIC, 0, node): dirs[0]})
    assert list(moved.values()) == [kafka_errors.NoError]
    elsewhere = admin.alter_replica_log_dirs({(TOPIC, 1, node): dirs[0] + "-elsewhere"})
    assert list(elsewhere.values()) == [kafka_errors.LogDirNotFoundError]
    unknown = admin.alter_replica_log_dirs({(TOPIC, PARTITIONS, node): dirs[0]})
    assert list(unknown.values()) == [kafka_errors.UnknownTopicOrPartitionError]


# --- AlterPartitionReassignments / ListPartitionReassignments -------------------------------------------

def test_kafka_python_partition_reassignments(admin: KafkaAdminClient, broker: BrokerProcess) -> None:
    """kafka-python negotiates v1 (KIP-860) and v0 alike. A reassignment to the broker itself completes at once,
    so none is listed; naming a broker that does not exist is INVALID_REPLICA_ASSIGNMENT, naming it."""
    node = node_id(admin)
    assert admin.alter_partition_reassignments({TopicPartition(TOPIC, 0): [node]}) == {
        TopicPartition(TOPIC, 0): None}
    assert admin.list_partition_reassignments() == {}
    refused = admin.alter_partition_reassignments({TopicPartition(TOPIC, 1): [node, 7]})
    assert refused == {TopicPartition(TOPIC, 1): kafka_errors.InvalidReplicationAssignmentError}
    for version in (0, 1):
        response = raw_request(broker, 45, version, {"timeout_ms": 5000, "topics": [
            {"name": TOPIC, "partitions": [{"partition_index": 1, "replicas": [7]}]}]})
        partition = response.responses[0].partitions[0]
        assert partition.error_code == INVALID_REPLICA_ASSIGNMENT
        assert "broker 7" in partition.error_message


# --- DescribeTopicPartitions ---------------------------------------------------------------------------------

def test_kafka_python_describe_topic_partitions_pages(admin: KafkaAdminClient) -> None:
    """Pages of at most the limit, the cursor where the next one starts, and the partitions' leaders."""
    node = node_id(admin)
    seen: list[int] = []
    cursor = None
    for _ in range(PARTITIONS):
        page = admin.describe_topic_partitions([TOPIC], response_partition_limit=2, cursor=cursor)
        (topic,) = page["topics"]
        assert topic["error_code"] == 0 and topic["name"] == TOPIC and not topic["is_internal"]
        assert topic["topic_id"] is not None
        assert len(topic["partitions"]) <= 2
        for p in topic["partitions"]:
            assert (p["leader_id"], p["replica_nodes"], p["isr_nodes"], p["offline_replicas"]) == (
                node, [node], [node], [])
            assert p["leader_epoch"] >= 0
        seen += [p["partition_index"] for p in topic["partitions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert cursor == {"topic_name": TOPIC, "partition_index": seen[-1] + 1}
    assert seen == list(range(PARTITIONS))
    assert topic["topic_authorized_operations"] > 0  # every operation while authorization is off


def test_describe_topic_partitions_every_topic_and_unknown_ones(admin: KafkaAdminClient) -> None:
    every = admin.describe_topic_partitions([])
    names = [t["name"] for t in every["topics"]]
    assert TOPIC in names and names == sorted(names)
    assert every["next_cursor"] is None
    internal = [t for t in every["topics"] if t["name"] == "__consumer_offsets"]
    assert all(t["is_internal"] for t in internal)
    unknown = admin.describe_topic_partitions(["no-such-topic", TOPIC], response_partition_limit=PARTITIONS + 1)
    assert [(t["name"], t["error_code"]) for t in unknown["topics"]] == [("kafka4-admin", 0),
                                                                          ("no-such-topic", UNKNOWN_TOPIC_OR_PARTITION)]
    # the page filled with the first topic: the next starts at the second one
    full = admin.describe_topic_partitions([TOPIC, "no-such-topic"], response_partition_limit=PARTITIONS)
    assert full["next_cursor"] == {"topic_name": "no-such-topic", "partition_index": 0}


def test_describe_topic_partitions_cursor_must_name_a_listed_topic(broker: BrokerProcess) -> None:
    """As Kafka: the cursor's topic must be one of the topics named, else INVALID_REQUEST on each of them."""
    response = raw_request(broker, 75, 0, {"topics": [{"name": TOPIC}], "response_partition_limit": 10,
                                           "cursor": {"topic_name": "elsewhere", "partition_index": 0}})
    assert [(t.name, t.error_code, t.partitions) for t in response.topics] == [(TOPIC, INVALID_REQUEST, [])]
    assert response.next_cursor is None


def test_confluent_describe_topics(broker: BrokerProcess) -> None:
    """confluent-kafka's describe_topics: the partitions, their leader and replicas, and the authorized operations;
    the request it sends is DescribeTopicPartitions where librdkafka uses it, else Metadata v12."""
    log = logging.getLogger("kafka4-admin-librdkafka")
    sent = io.StringIO()
    handler = logging.StreamHandler(sent)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "debug": "protocol", "logger": log})
        futures = admin.describe_topics(TopicCollection([TOPIC]), include_authorized_operations=True)
        description = futures[TOPIC].result(timeout=30)
        admin.poll(0.1)  # deliver librdkafka's log lines
    finally:
        log.removeHandler(handler)
    assert description.name == TOPIC and not description.is_internal
    assert [p.id for p in description.partitions] == list(range(PARTITIONS))
    for p in description.partitions:
        assert p.leader is not None and [r.id for r in p.replicas] == [p.leader.id] == [r.id for r in p.isr]
    assert description.authorized_operations  # every operation while authorization is off
    requests = {line.split("Sent ", 1)[1].split(" ", 1)[0] for line in sent.getvalue().splitlines() if "Sent " in line}
    assert requests & {"DescribeTopicPartitionsRequest", "MetadataRequest"}, requests


# --- manual replica assignments ------------------------------------------------------------------------------

def test_manual_assignments_on_one_broker(admin: KafkaAdminClient, broker: BrokerProcess) -> None:
    """`[[node], [node]]` is accepted by CreateTopics and CreatePartitions; broker 7 is refused, named."""
    node = node_id(admin)
    created = admin.create_topics({"manual": {"assignments": {0: [node], 1: [node]}}})
    (topic,) = created["topics"]
    assert (topic["error_code"], topic["num_partitions"], topic["replication_factor"]) == (0, 2, 1)
    wait_for_topic(broker.bootstrap, "manual", 2)

    refused = admin.create_topics({"manual-7": {"assignments": {0: [node], 1: [7]}}}, raise_errors=False)
    (topic,) = refused["topics"]
    assert topic["error_code"] == INVALID_REPLICA_ASSIGNMENT and "broker 7" in topic["error_message"]
    gap = admin.create_topics({"manual-gap": {"assignments": {0: [node], 2: [node]}}}, raise_errors=False)
    assert gap["topics"][0]["error_code"] == INVALID_REPLICA_ASSIGNMENT
    both = admin.create_topics({"manual-both": {"num_partitions": 2, "assignments": {0: [node], 1: [node]}}},
                               raise_errors=False)
    assert both["topics"][0]["error_code"] == INVALID_REQUEST

    grown = admin.create_partitions({"manual": {"count": 4, "assignments": [[node], [node]]}})
    assert [(r.name, r.error_code) for r in grown.results] == [("manual", 0)]
    wait_for_topic(broker.bootstrap, "manual", 4)
    seven = admin.create_partitions({"manual": {"count": 5, "assignments": [[7]]}}, raise_errors=False)
    (result,) = seven.results
    assert result.error_code == INVALID_REPLICA_ASSIGNMENT and "broker 7" in result.error_message
    short = admin.create_partitions({"manual": {"count": 6, "assignments": [[node]]}}, raise_errors=False)
    assert short.results[0].error_code == INVALID_REPLICA_ASSIGNMENT
    (described,) = admin.describe_topic_partitions(["manual"])["topics"]
    assert [p["replica_nodes"] for p in described["partitions"]] == [[node]] * 4


# --- Fetch v17 ----------------------------------------------------------------------------------------------

def test_kafka_python_consumes_with_fetch_v17(admin: KafkaAdminClient, broker: BrokerProcess) -> None:
    """kafka-python (Fetch v4-18) negotiates Kafka 3.9's highest, v17, and reads what it produced."""
    node = node_id(admin)
    assert admin.get_broker_version_data(node).api_version(FetchRequest) == 17
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        for i in range(3):
            producer.send(TOPIC, value=b"v17-%d" % i, partition=PARTITIONS - 1)
        producer.flush(timeout=20)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=10_000)
    try:
        partition = TopicPartition(TOPIC, PARTITIONS - 1)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values = [m.value for _, m in zip(range(3), consumer, strict=False)]
    finally:
        consumer.close()
    assert values == [b"v17-%d" % i for i in range(3)]


def test_confluent_manual_assignments(admin: KafkaAdminClient, broker: BrokerProcess) -> None:
    node = node_id(admin)
    confluent = AdminClient({"bootstrap.servers": broker.bootstrap})
    confluent.create_topics([NewConfluentTopic("c-manual", 2, replica_assignment=[[node], [node]])])["c-manual"].result(
        timeout=30)
    wait_for_topic(broker.bootstrap, "c-manual", 2)
    confluent.create_partitions([NewPartitions("c-manual", 3, replica_assignment=[[node]])])["c-manual"].result(
        timeout=30)
    wait_for_topic(broker.bootstrap, "c-manual", 3)
    refused = confluent.create_topics([NewConfluentTopic("c-manual-7", 1, replica_assignment=[[7]])])["c-manual-7"]
    with pytest.raises(KafkaException) as error:
        refused.result(timeout=30)
    assert error.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert "broker 7" in error.value.args[0].str()
