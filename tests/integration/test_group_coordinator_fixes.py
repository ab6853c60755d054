"""Issue 13's group-coordinator fixes, on a real broker with raw requests:

(a) OffsetCommit checks the member and its generation before the group's state (Kafka's order);
(b) session timeouts fire on time: a DeleteGroups sent right after the timeout finds the group empty;
(c) FindCoordinator for a transactional id answers an error clients treat as fatal, so that
    ``init_transactions()`` fails at once with a message instead of retrying for ever.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BrokerProcess, create_topic
from rawclient import RawConnection

from umbra.errors import ErrorCode
from umbra.protocol.codec import build_request

SESSION_TIMEOUT_MS = 1000
BROKER_CONFIG = {"group_initial_rebalance_delay_ms": 0, "group_min_session_timeout_ms": 500}
TOPIC = "fixes"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(Path(tmp_path_factory.mktemp("group-fixes")), name="broker", config=BROKER_CONFIG)
    process.start()
    try:
        create_topic(process.bootstrap, TOPIC, partitions=1)
        yield process
    finally:
        process.stop()


def call(conn: RawConnection, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    request = build_request(api_key, version, fields)
    request.with_header(correlation_id=next(_ids), client_id="raw-test")
    conn.sock.sendall(bytes(request.encode(header=True, framed=True)))
    return conn.receive(api_key, version)[1]


def join(conn: RawConnection, group: str) -> tuple[str, int]:
    """One member joins (JoinGroup v5: MEMBER_ID_REQUIRED, then again): (member id, generation)."""
    fields = {"group_id": group, "session_timeout_ms": SESSION_TIMEOUT_MS, "rebalance_timeout_ms": 5000,
              "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
              "protocols": [{"name": "range", "metadata": b""}]}
    first = call(conn, 11, 5, fields)
    assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    joined = call(conn, 11, 5, {**fields, "member_id": first.member_id})
    assert joined.error_code == 0
    return joined.member_id, joined.generation_id


def commit(conn: RawConnection, group: str, generation: int, member_id: str) -> int:
    response = call(conn, 8, 8, {"group_id": group, "generation_id_or_member_epoch": generation,
                                 "member_id": member_id, "group_instance_id": None, "topics": [
                                     {"name": TOPIC, "partitions": [{"partition_index": 0, "committed_offset": 1,
                                                                     "committed_leader_epoch": -1,
                                                                     "committed_metadata": ""}]}]})
    return int(response.topics[0].partitions[0].error_code)


def test_offset_commit_checks_member_and_generation_before_the_rebalance(broker: BrokerProcess) -> None:
    with RawConnection(broker.host, broker.port or 0) as conn:
        member_id, generation = join(conn, "order-of-checks")  # the group now waits for SyncGroup
        assert commit(conn, "order-of-checks", generation - 1, member_id) == ErrorCode.ILLEGAL_GENERATION
        assert commit(conn, "order-of-checks", generation, "someone-else") == ErrorCode.UNKNOWN_MEMBER_ID
        assert commit(conn, "order-of-checks", generation, member_id) == ErrorCode.REBALANCE_IN_PROGRESS


def test_a_session_expires_on_time(broker: BrokerProcess) -> None:
    group = "expires-on-time"
    with RawConnection(broker.host, broker.port or 0) as conn:
        member_id, generation = join(conn, group)
        synced = call(conn, 14, 3, {"group_id": group, "generation_id": generation, "member_id": member_id,
                                    "group_instance_id": None, "assignments": [
                                        {"member_id": member_id, "assignment": b""}]})
        assert synced.error_code == 0
        last_contact = time.monotonic()  # the session runs from the SyncGroup, which the broker saw before this
        # The point is the timing: DeleteGroups goes out 150 ms after the session ended (the old 0.5 s tick
        # let the member live up to 500 ms longer).
        time.sleep(max(0.0, last_contact + SESSION_TIMEOUT_MS / 1000 + 0.15 - time.monotonic()))
        deleted = call(conn, 42, 2, {"groups_names": [group]})
        assert deleted.results[0].error_code == 0, deleted


def test_transactional_find_coordinator_is_fatal_with_a_message(broker: BrokerProcess) -> None:
    with RawConnection(broker.host, broker.port or 0) as conn:
        found = call(conn, 10, 4, {"key_type": 1, "coordinator_keys": ["tx-1"]})
        assert found.coordinators[0].error_code == ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert "not supported" in found.coordinators[0].error_message

    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-1"})
    started = time.monotonic()
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        producer.init_transactions(30)
    assert time.monotonic() - started < 10
    error = raised.value.args[0]
    assert error.fatal() or not error.retriable(), error
    assert "not supported" in error.str(), error.str()


def test_aiokafka_transactional_producer_fails_at_once(broker: BrokerProcess) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    import asyncio

    async def start() -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="tx-2")
        try:
            await producer.start()
            await asyncio.wait_for(producer.begin_transaction(), 10)
        finally:
            await producer.stop()

    started = time.monotonic()
    with pytest.raises(aiokafka.errors.TransactionalIdAuthorizationFailed):  # fatal: it was retried 254 times
        asyncio.run(start())
    assert time.monotonic() - started < 10
