"""Wire-level behaviour with raw requests: pipelining, idempotent sequences, fetch sessions, long polls."""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Producer
from harness import create_topic, wait_until
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.producer import ProduceRequest
from rawclient import RawConnection

from umbra.records.batch import iter_batch_headers
from umbra.records.records import build_batch

METADATA, PRODUCE, FETCH, API_VERSIONS, INIT_PID = 3, 0, 1, 18, 22


def _produce(conn: RawConnection, topic: str, records: bytes, partition: int = 0) -> object:
    response = conn.request(PRODUCE, 9, transactional_id=None, acks=-1, timeout_ms=5000, topic_data=[
        ProduceRequest.TopicProduceData(name=topic, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=partition, records=records)])])
    return response.responses[0].partition_responses[0]


def _fetch_request(topic: str, offset: int, session_id: int = 0, epoch: int = -1, partitions=(0,),
                   max_wait_ms: int = 0, min_bytes: int = 0) -> dict:
    return dict(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=1 << 20, isolation_level=0,
                session_id=session_id, session_epoch=epoch, rack_id="", forgotten_topics_data=[],
                topics=[FetchRequest.FetchTopic(topic=topic, partitions=[
                    FetchRequest.FetchTopic.FetchPartition(partition=p, current_leader_epoch=-1, fetch_offset=offset,
                                                           last_fetched_epoch=-1, log_start_offset=-1,
                                                           partition_max_bytes=1 << 20) for p in partitions])])


def test_pipelined_requests_are_answered_in_order(broker) -> None:
    with RawConnection("127.0.0.1", broker.port) as conn:
        frames = []
        expected = []
        for i in range(30):
            api, version = [(API_VERSIONS, 3), (METADATA, 12), (METADATA, 1)][i % 3]
            fields = {"client_software_name": "raw", "client_software_version": "1"} if api == API_VERSIONS else \
                {"topics": None, "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
            cid, frame = conn.encode(api, version, correlation_id=1000 + i, **fields)
            frames.append(frame)
            expected.append((cid, api, version))
        conn.sock.sendall(b"".join(frames))  # all at once, one write
        for cid, api, version in expected:
            got, _ = conn.receive(api, version)
            assert got == cid


def test_idempotent_sequences(broker) -> None:
    create_topic(broker.bootstrap, "idem", partitions=1)
    with RawConnection("127.0.0.1", broker.port) as conn:
        init = conn.request(INIT_PID, 4, transactional_id=None, transaction_timeout_ms=60000, producer_id=-1,
                            producer_epoch=-1)
        assert init.error_code == 0 and init.producer_id >= 0
        pid, epoch = init.producer_id, init.producer_epoch

        def batch(seq: int, n: int = 3) -> bytes:
            return build_batch([(b"k", b"v%d" % (seq + i), [], 1_700_000_000_000) for i in range(n)],
                               producer_id=pid, producer_epoch=epoch, base_sequence=seq)

        first = _produce(conn, "idem", batch(0))
        assert (first.error_code, first.base_offset) == (0, 0)
        second = _produce(conn, "idem", batch(3))
        assert (second.error_code, second.base_offset) == (0, 3)
        duplicate = _produce(conn, "idem", batch(3))  # a retry of the last batch: same offsets, nothing appended
        assert (duplicate.error_code, duplicate.base_offset) == (0, 3)
        gap = _produce(conn, "idem", batch(10))
        assert gap.error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        after = _produce(conn, "idem", batch(6))
        assert (after.error_code, after.base_offset) == (0, 6)
        fetched = conn.request(FETCH, 12, **_fetch_request("idem", 0))
        records = fetched.responses[0].partitions[0].records
        assert [h.base_offset for h in iter_batch_headers(memoryview(records))] == [0, 3, 6]
        assert fetched.responses[0].partitions[0].high_watermark == 9
        # a new producer id is always a fresh one
        again = conn.request(INIT_PID, 4, transactional_id=None, transaction_timeout_ms=60000, producer_id=-1,
                             producer_epoch=-1)
        assert again.producer_id != pid


def test_fetch_session_sends_only_changes(broker) -> None:
    create_topic(broker.bootstrap, "sess", partitions=2)
    with RawConnection("127.0.0.1", broker.port) as conn:
        for p in (0, 1):
            assert _produce(conn, "sess", build_batch([(None, b"x", [], 1)]), partition=p).error_code == 0
        full = conn.request(FETCH, 12, **_fetch_request("sess", 0, session_id=0, epoch=0, partitions=(0, 1)))
        assert full.error_code == 0 and full.session_id > 0
        assert sorted(p.partition_index for p in full.responses[0].partitions) == [0, 1]
        session = full.session_id
        # incremental, nothing new: no partitions in the response
        quiet = conn.request(FETCH, 12, **{**_fetch_request("sess", 1, session, 1, partitions=(0, 1))})
        assert quiet.error_code == 0 and quiet.responses == []
        # new data on partition 1 only: only partition 1 comes back
        assert _produce(conn, "sess", build_batch([(None, b"y", [], 1)]), partition=1).error_code == 0
        changed = conn.request(FETCH, 12, **{**_fetch_request("sess", 1, session, 2, partitions=())})
        assert [p.partition_index for t in changed.responses for p in t.partitions] == [1]
        # a wrong epoch is refused
        wrong = conn.request(FETCH, 12, **_fetch_request("sess", 1, session, 7, partitions=()))
        assert wrong.error_code == 71  # INVALID_FETCH_SESSION_EPOCH
        unknown = conn.request(FETCH, 12, **_fetch_request("sess", 1, 999999999, 1, partitions=()))
        assert unknown.error_code == 70  # FETCH_SESSION_ID_NOT_FOUND


def test_long_poll_returns_when_data_arrives(broker) -> None:
    create_topic(broker.bootstrap, "poll", partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    timer = threading.Timer(0.5, lambda: (producer.produce("poll", value=b"late", partition=0), producer.flush(10)))
    with RawConnection("127.0.0.1", broker.port, timeout=30) as conn:
        timer.start()
        started = time.monotonic()
        response = conn.request(FETCH, 12, **_fetch_request("poll", 0, max_wait_ms=20000, min_bytes=1))
        waited = time.monotonic() - started
    timer.join()
    partition = response.responses[0].partitions[0]
    assert partition.records, "the long poll returned without the record"
    assert waited < 15, "the fetch waited for max_wait_ms instead of waking on the append"


def test_fetch_by_topic_id(broker) -> None:
    create_topic(broker.bootstrap, "byid", partitions=1)
    with RawConnection("127.0.0.1", broker.port) as conn:
        assert _produce(conn, "byid", build_batch([(None, b"z", [], 1)])).error_code == 0
        meta = conn.request(METADATA, 12, topics=None, allow_auto_topic_creation=False,
                            include_topic_authorized_operations=False)
        topic_id = next(t.topic_id for t in meta.topics if t.name == "byid")
        assert topic_id != uuid.UUID(int=0)
        request = _fetch_request("byid", 0)
        request["topics"] = [FetchRequest.FetchTopic(topic_id=topic_id, partitions=request["topics"][0].partitions)]
        response = conn.request(FETCH, 13, **request)
        assert response.responses[0].topic_id == topic_id
        assert response.responses[0].partitions[0].records
        request["topics"] = [FetchRequest.FetchTopic(topic_id=uuid.uuid4(), partitions=request["topics"][0].partitions)]
        missing = conn.request(FETCH, 13, **request)
        assert missing.responses[0].partitions[0].error_code == 100  # UNKNOWN_TOPIC_ID


def test_min_insync_replicas_is_enforced_for_acks_all(broker) -> None:
    create_topic(broker.bootstrap, "strict", partitions=1, config={"min.insync.replicas": "2"})
    with RawConnection("127.0.0.1", broker.port) as conn:
        batch = build_batch([(None, b"x", [], 1)])
        refused = _produce(conn, "strict", batch)
        assert refused.error_code == 19  # NOT_ENOUGH_REPLICAS: one broker cannot give two in-sync replicas
        assert "min.insync.replicas" in refused.error_message
        accepted = conn.request(PRODUCE, 9, transactional_id=None, acks=1, timeout_ms=5000, topic_data=[
            ProduceRequest.TopicProduceData(name="strict", partition_data=[
                ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=batch)])])
        assert accepted.responses[0].partition_responses[0].error_code == 0


def test_internal_offsets_topic_is_protected(broker) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    with RawConnection("127.0.0.1", broker.port) as conn:
        forged = _produce(conn, "__consumer_offsets", build_batch([(b"forged", b"commit", [], 1)]))
        assert forged.error_code == 17  # INVALID_TOPIC_EXCEPTION
        from kafka.protocol.admin import DeleteRecordsRequest

        topic = DeleteRecordsRequest.DeleteRecordsTopic(name="__consumer_offsets", partitions=[
            DeleteRecordsRequest.DeleteRecordsTopic.DeleteRecordsPartition(partition_index=0, offset=-1)])
        deleted = conn.request(21, 2, topics=[topic], timeout_ms=5000)
        assert deleted.topics[0].partitions[0].error_code == 17
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.alter_configs([ConfigResource("topic", "__consumer_offsets", set_config={"retention.ms": "1"})])
    error = None
    try:
        futures[next(iter(futures))].result(timeout=20)
    except Exception as exc:  # KafkaException carrying POLICY_VIOLATION
        error = exc
    assert error is not None and "internal" in str(error)


def test_creating_a_large_topic_does_not_stall_other_clients(broker) -> None:
    """A new topic's logs are created off the event loop. Another connection's request, sent once the topic is
    in the metadata, is answered while the CreateTopics of 2,000 partitions is still creating them. Before,
    the loop was blocked throughout, so the CreateTopics response was always out first."""
    import select

    from umbra.protocol.codec import SCHEMAS

    create = SCHEMAS[19].request[4]
    topic = f"large-{uuid.uuid4().hex[:8]}"
    with RawConnection("127.0.0.1", broker.port, timeout=120) as creator, \
            RawConnection("127.0.0.1", broker.port) as other:  # fmt: skip
        cid = creator.send(19, 4, topics=[create.CreatableTopic(name=topic, num_partitions=2000, replication_factor=1,
                                                                assignments=[], configs=[])],
                           timeout_ms=120_000, validate_only=False)  # fmt: skip

        def listed() -> bool:
            wanted = SCHEMAS[METADATA].request[9].MetadataRequestTopic(name=topic)
            response = other.request(METADATA, 9, topics=[wanted], allow_auto_topic_creation=False,
                                     include_cluster_authorized_operations=False,
                                     include_topic_authorized_operations=False)  # fmt: skip
            return response.topics[0].error_code == 0

        wait_until(listed, timeout=60, interval=0.01, message=f"{topic} in the metadata")
        other.request(API_VERSIONS, 3, client_software_name="test", client_software_version="1")
        answered_first = not select.select([creator.sock], [], [], 0)[0]
        got, response = creator.receive(19, 4)
        assert got == cid and response.topics[0].error_code == 0
        assert answered_first, "the other connection waited for the topic's logs to be created"
    assert len(list(broker.data_dir.glob(f"{topic}-*"))) == 2000


def test_a_fetch_from_a_broker_that_is_no_replica_is_refused(broker) -> None:
    """A follower fetch (a broker id as replica_id) reads to the log end and moves the ISR, so only replicas
    may send one; here every partition has one replica, this broker. Consumers (-1) are unaffected, and
    acks=all is acknowledged at once: the ISR is this broker alone."""
    create_topic(broker.bootstrap, "replicated", partitions=1)
    with RawConnection("127.0.0.1", broker.port) as conn:
        assert _produce(conn, "replicated", build_batch([(b"k", b"v", [], 1_000)])).error_code == 0
        as_follower = dict(_fetch_request("replicated", 0), replica_id=2)
        follower = conn.request(FETCH, 12, **as_follower).responses[0].partitions[0]
        assert follower.error_code == 6  # NOT_LEADER_OR_FOLLOWER
        consumer = conn.request(FETCH, 12, **_fetch_request("replicated", 0)).responses[0].partitions[0]
        assert consumer.error_code == 0 and consumer.high_watermark == 1 and consumer.records
