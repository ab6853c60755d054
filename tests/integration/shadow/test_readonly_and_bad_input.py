"""Read-only shadow topics and bad input (issue 3, point 7), with a real source and shadow broker.

- Producing to a shadow topic fails fast with a non-retriable error whose message names the link and says
  to fail over; DeleteTopics, CreatePartitions and edits of synced configs get POLICY_VIOLATION with a
  message; a non-synced config may be changed (and survives later syncs); consumers read normally.
- A link spec with an unknown key, a bad filter or an unreachable source gets a clear error (HTTP 400 /
  ``umbra shadow create`` exits non-zero with one line on stderr) and nothing is created.
- A failover of an unknown topic is refused with a message; ``delete`` is refused while topics are
  ACTIVE, and ``delete --force`` fails them over first.
"""

from __future__ import annotations

import socket
import time
import uuid
import warnings
from pathlib import Path

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, ResourceType
from harness import BrokerProcess, create_topic, wait_until
from kafka import KafkaProducer
from kafka.errors import InvalidTopicError
from kafka.protocol.admin import DeleteTopicsRequest
from kafka.protocol.producer import ProduceRequest
from link_api import admin_call, create_link, link_spec, wait_caught_up
from rawclient import RawConnection
from shadow_helpers_b import (
    TIMEOUT,
    admin,
    consume_all,
    high_watermarks,
    link_names,
    produce,
    run_cli,
    topic_config,
    topic_partitions,
    topic_states,
)

from umbra.records import build_batch

TOPIC = "ro"
RECORDS = 30


def _policy_error(future) -> KafkaError:  # type: ignore[no-untyped-def]
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=TIMEOUT)
    return raised.value.args[0]


def _assert_policy_violation(error: KafkaError, what: str) -> None:
    assert error.code() == KafkaError.POLICY_VIOLATION, error
    text = error.str()
    assert "shadow of link 'dr'" in text and "fail it over" in text and what in text, text


def _delivery_report(shadow: BrokerProcess, enable_idempotence: bool) -> tuple[KafkaError | None, float]:
    """(error, seconds) of the delivery report of one record produced to the shadow topic with default retries."""
    producer = Producer({"bootstrap.servers": shadow.bootstrap, "message.timeout.ms": 30000, "acks": "all",
                         "enable.idempotence": enable_idempotence})
    reports: list[tuple[KafkaError | None, float]] = []
    started = time.monotonic()
    producer.produce(TOPIC, value=b"not allowed", partition=0,
                     on_delivery=lambda err, _msg: reports.append((err, time.monotonic() - started)))

    def reported() -> bool:
        producer.poll(0.1)
        return bool(reports)

    wait_until(reported, timeout=35, interval=0, message="the delivery report")
    return reports[0]


def test_shadow_topics_are_read_only_but_readable(clusters) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, TOPIC, partitions=2)
    produce(source, TOPIC, RECORDS, partitions=2)
    create_link(shadow, link_spec(source))
    wait_caught_up(shadow, {TOPIC: 2})
    hws = high_watermarks(shadow, TOPIC, 2)

    # Produce fails fast: the delivery report arrives long before message.timeout.ms, not retriable
    # (plain and idempotent producers, with librdkafka's default retries).
    for idempotent in (False, True):
        error, after = _delivery_report(shadow, enable_idempotence=idempotent)
        assert error is not None and error.code() == KafkaError.TOPIC_EXCEPTION, (idempotent, error)
        assert not error.retriable() and not error.fatal(), (idempotent, error)
        assert after < 5.0, f"the produce error took {after:.1f}s (idempotent={idempotent}): the client retried it"
    # kafka-python surfaces the broker's error message to the application.
    kafka_python = KafkaProducer(bootstrap_servers=shadow.bootstrap, retries=5, request_timeout_ms=30000)
    started = time.monotonic()
    with pytest.raises(InvalidTopicError, match="read-only shadow of link 'dr'.*fail it over"):
        kafka_python.send(TOPIC, b"not allowed").get(timeout=35)
    assert time.monotonic() - started < 5.0
    kafka_python.close()

    # The error message names the link and says to fail over (a raw Produce v9 shows it).
    records = build_batch([(b"k", b"not allowed", [], int(time.time() * 1000))])
    with RawConnection(shadow.host, shadow.port) as connection:
        response = connection.request(0, 9, transactional_id=None, acks=-1, timeout_ms=5000, topic_data=[
            ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
                ProduceRequest.TopicProduceData.PartitionProduceData(index=1, records=records)])])
    partition = response.responses[0].partition_responses[0]
    assert partition.error_code == KafkaError.TOPIC_EXCEPTION, partition
    message = partition.error_message or ""
    assert "'dr'" in message and "read-only shadow" in message and "fail it over" in message, message
    assert "umbra shadow failover dr --topic ro" in message, message
    assert high_watermarks(shadow, TOPIC, 2) == hws  # nothing was appended

    shadow_admin = admin(shadow)
    # DeleteTopics, CreatePartitions and a synced config change: POLICY_VIOLATION with a message.
    error = _policy_error(shadow_admin.delete_topics([TOPIC], request_timeout=TIMEOUT)[TOPIC])
    assert error.code() == KafkaError.POLICY_VIOLATION, error
    # librdkafka's DeleteTopics (v1-v4) has no error message: ask with v6, which carries it.
    with RawConnection(shadow.host, shadow.port) as connection:
        response = connection.request(20, 6, timeout_ms=5000, topics=[
            DeleteTopicsRequest[6].DeleteTopicState(name=TOPIC, topic_id=uuid.UUID(int=0))])
    deleted = response.responses[0]
    _assert_policy_violation(KafkaError(deleted.error_code, deleted.error_message), "delete")
    _assert_policy_violation(_policy_error(shadow_admin.create_partitions(
        [NewPartitions(TOPIC, 4)], request_timeout=TIMEOUT)[TOPIC]), "partitions")
    synced = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    _assert_policy_violation(_policy_error(shadow_admin.incremental_alter_configs(
        [synced], request_timeout=TIMEOUT)[synced]), "retention.ms")
    legacy = ConfigResource(ResourceType.TOPIC, TOPIC, set_config={"retention.bytes": "1000"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _assert_policy_violation(_policy_error(shadow_admin.alter_configs([legacy], request_timeout=TIMEOUT)[legacy]),
                                 "retention.bytes")
    assert topic_partitions(shadow)[TOPIC] == 2
    assert topic_config(shadow, TOPIC)["retention.ms"] == topic_config(source, TOPIC)["retention.ms"]

    # A config that is not synced may be changed on the shadow, and later syncs keep it.
    local = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("segment.ms", "7654321", incremental_operation=AlterConfigOpType.SET)])
    shadow_admin.incremental_alter_configs([local], request_timeout=TIMEOUT)[local].result(TIMEOUT)
    source_admin = admin(source)
    changed = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    source_admin.incremental_alter_configs([changed], request_timeout=TIMEOUT)[changed].result(TIMEOUT)
    wait_until(lambda: topic_config(shadow, TOPIC)["retention.ms"] == "7200000", timeout=TIMEOUT,
               message="retention.ms synced from the source")
    assert topic_config(shadow, TOPIC)["segment.ms"] == "7654321"

    # Consumers (a group, subscribing) read the shadow topic as they would the source.
    assert consume_all(shadow, TOPIC, RECORDS) == consume_all(source, TOPIC, RECORDS)
    assert topic_states(shadow)[TOPIC] == ("ACTIVE", "")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def test_bad_link_specs_are_refused_and_create_nothing(clusters, tmp_path: Path) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, "orders", partitions=1)  # what a wrongly created link would shadow

    unknown_key = link_spec(source)
    unknown_key["source"]["client"]["fetch_max_wait"] = 100  # a typo of fetch_max_wait_ms
    bad_filter = link_spec(source)
    bad_filter["topics"]["filters"] = [{"include": "regex", "name": "orders.*"}]
    unreachable = link_spec(source)
    unreachable["source"]["bootstrap_servers"] = [f"127.0.0.1:{_closed_port()}"]
    bad_rack = link_spec(source)
    bad_rack["source"]["client"]["rack"] = 3
    cases = {
        "unknown key": (unknown_key, "source.client.fetch_max_wait: unknown key"),
        "bad rack": (bad_rack, "source.client.rack: expected the rack"),
        "bad filter": (bad_filter, "topics.filters[0].include: expected literal or prefix"),
        "unreachable source": (unreachable, "source.bootstrap_servers: cannot reach the source cluster"),
    }
    for case, (spec, expected) in cases.items():
        started = time.monotonic()
        status, body = admin_call(shadow, "POST", "/v1/shadow-links", spec)
        assert status == 400, (case, status, body)
        assert expected in body["error"], (case, body)
        assert time.monotonic() - started < 10, case

        path = tmp_path / f"{case.replace(' ', '-')}.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = run_cli(shadow, "create", "--config", str(path))
        assert result.returncode != 0, (case, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("umbra: error: ") and expected in lines[0], (case, result.stderr)
        assert result.stdout == "", (case, result.stdout)

    # A spec file that is not YAML, or is missing, is refused by the CLI before any call.
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    for path in (tmp_path / "broken.yaml", tmp_path / "missing.yaml"):
        result = run_cli(shadow, "create", "--config", str(path))
        assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result
        assert str(path) in result.stderr, result.stderr

    # Nothing was created: no link, no shadow topic (and a valid spec still works afterwards).
    assert link_names(shadow) == []
    assert topic_partitions(shadow) == {}
    create_link(shadow, link_spec(source))
    wait_caught_up(shadow, {"orders": 1})
    status, body = admin_call(shadow, "POST", "/v1/shadow-links", link_spec(source))
    assert status == 409 and "already exists" in body["error"], body


def test_failover_of_unknown_topics_is_refused_and_delete_needs_force(clusters) -> None:
    source, shadow = clusters
    for topic in ("fo-a", "fo-b"):
        create_topic(source.bootstrap, topic, partitions=1)
        produce(source, topic, 20)
    create_link(shadow, link_spec(source))
    wait_caught_up(shadow, {"fo-a": 1, "fo-b": 1})

    # Unknown topics (alone or next to a known one) and unknown links: refused, nothing failed over.
    status, body = admin_call(shadow, "POST", "/v1/shadow-links/dr/failover", {"topics": ["fo-a", "nope"]})
    assert status == 404 and "nope" in body["error"] and "fo-a" not in body["error"], body
    status, body = admin_call(shadow, "POST", "/v1/shadow-links/ghost/failover", {"topics": ["fo-a"]})
    assert status == 404 and "'ghost' does not exist" in body["error"], body
    result = run_cli(shadow, "failover", "dr", "--topic", "nope")
    assert result.returncode != 0, result
    assert result.stderr.strip().splitlines() == ["umbra: error: not shadow topics of link 'dr': nope"], result.stderr
    assert topic_states(shadow) == {"fo-a": ("ACTIVE", ""), "fo-b": ("ACTIVE", "")}

    # delete is refused while topics are ACTIVE: the link and its topics stay as they were.
    status, body = admin_call(shadow, "DELETE", "/v1/shadow-links/dr")
    assert status == 409 and "fo-a, fo-b" in body["error"] and "--force" in body["error"], body
    result = run_cli(shadow, "delete", "dr")
    assert result.returncode != 0 and "--force" in result.stderr, result
    assert link_names(shadow) == ["dr"]
    assert topic_states(shadow) == {"fo-a": ("ACTIVE", ""), "fo-b": ("ACTIVE", "")}

    # --force fails them over first: the link is gone, the topics are ordinary writable topics that keep
    # their data and continue at the next offset.
    result = run_cli(shadow, "delete", "dr", "--force")
    assert result.returncode == 0, result
    assert result.stdout.strip() == "deleted shadow link dr", result.stdout
    assert link_names(shadow) == []
    status, _ = admin_call(shadow, "GET", "/v1/shadow-links/dr/status")
    assert status == 404
    producer = Producer({"bootstrap.servers": shadow.bootstrap, "acks": "all", "message.timeout.ms": 10000})
    delivered: list[tuple[KafkaError | None, int]] = []
    producer.produce("fo-a", value=b"after failover", partition=0,
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    assert producer.flush(TIMEOUT) == 0
    assert delivered == [(None, 20)], delivered
    assert len(consume_all(shadow, "fo-b", 20)) == 20
