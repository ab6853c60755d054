"""Sync (issue 3, point 6): the link keeps the shadow's topics, partitions, configs and ACLs in line
with the source, never shadows an excluded topic, and faults (keeping the data) a topic whose source
topic is deleted or recreated.

Two real brokers (the ``clusters`` fixture): every change is made on the source with confluent-kafka's
AdminClient and observed on the shadow with ordinary Kafka requests (Metadata, DescribeConfigs,
DescribeAcls, Fetch) or the link's status.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourcePatternType,
    ResourceType,
)
from harness import create_topic, wait_until
from link_api import admin_call, create_link, link_spec, link_status, wait_caught_up
from shadow_helpers_b import (
    TIMEOUT,
    admin,
    consume_all,
    high_watermarks,
    produce,
    topic_config,
    topic_partitions,
    topic_states,
    wait_replicated,
)


def test_topics_and_partitions_follow_the_source_and_excluded_topics_never_appear(clusters) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, "sync-a", partitions=2)
    produce(source, "sync-a", 40, partitions=2)
    create_link(shadow, link_spec(source, prefixes=("sync-",), excludes=("sync-secret",)))
    wait_caught_up(shadow, {"sync-a": 2})

    # A topic created on the source after the link appears with the same partition count and the data.
    # The excluded topic is created first: a discovery pass that sees sync-later sees sync-secret too.
    create_topic(source.bootstrap, "sync-secret", partitions=2)
    produce(source, "sync-secret", 10, partitions=2)
    create_topic(source.bootstrap, "sync-later", partitions=3)
    produce(source, "sync-later", 30, partitions=3)
    wait_until(lambda: topic_partitions(shadow).get("sync-later") == 3, timeout=TIMEOUT,
               message=lambda: f"sync-later with 3 partitions on the shadow, have {topic_partitions(shadow)}")
    assert wait_replicated(source, shadow, "sync-later", 3) == [10, 10, 10]
    # ... and a topic outside the filters is not shadowed either.
    create_topic(source.bootstrap, "other", partitions=1)

    # Partitions added at the source appear on the shadow, and the new ones replicate too.
    source_admin = admin(source)
    source_admin.create_partitions([NewPartitions("sync-a", 5)], request_timeout=TIMEOUT)["sync-a"].result(TIMEOUT)
    produce(source, "sync-a", 50, partitions=5, prefix="grown")
    wait_until(lambda: topic_partitions(shadow).get("sync-a") == 5, timeout=TIMEOUT,
               message=lambda: f"sync-a with 5 partitions on the shadow, have {topic_partitions(shadow)}")
    assert wait_replicated(source, shadow, "sync-a", 5) == [30, 30, 10, 10, 10]
    wait_caught_up(shadow, {"sync-a": 5, "sync-later": 3})
    assert len(consume_all(shadow, "sync-a", 90)) == 90

    # A later discovery pass (the one that created sync-z) also saw "sync-secret" and "other": still absent.
    create_topic(source.bootstrap, "sync-z", partitions=1)
    wait_until(lambda: "sync-z" in topic_partitions(shadow), timeout=TIMEOUT, message="sync-z on the shadow")
    shadow_topics = topic_partitions(shadow)
    assert "sync-secret" not in shadow_topics and "other" not in shadow_topics, shadow_topics
    status = link_status(shadow)
    assert sorted(t["topic"] for t in status["topics"]) == ["sync-a", "sync-later", "sync-z"], status["topics"]
    assert not any(p["topic"] in ("sync-secret", "other") for p in status["partitions"])


def _alter(broker: Any, topic: str, *entries: ConfigEntry) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
    client = admin(broker)
    client.incremental_alter_configs([resource], request_timeout=TIMEOUT)[resource].result(TIMEOUT)


def _acl(name: str, pattern: ResourcePatternType = ResourcePatternType.LITERAL, principal: str = "User:alice",
         operation: AclOperation = AclOperation.READ) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def _acl_keys(broker: Any) -> set[tuple[Any, ...]]:
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    client = admin(broker)
    found = client.describe_acls(everything, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
            for b in found}


def _key(b: AclBinding) -> tuple[Any, ...]:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def test_configs_and_acls_follow_the_source(clusters) -> None:
    source, shadow = clusters
    # file.delete.delay.ms and message.format.version are Kafka topic configs umbra stores without acting on:
    # synced all the same, so that the shadow describes the topic as its source does.
    stored_only = {"file.delete.delay.ms": "12345", "message.format.version": "2.8"}
    create_topic(source.bootstrap, "cfg-a", partitions=1, config={"retention.ms": "86400000", **stored_only})
    create_link(shadow, link_spec(source, prefixes=("cfg-",), excludes=("cfg-secret",)))
    wait_until(lambda: topic_config(shadow, "cfg-a").get("retention.ms") == "86400000", timeout=TIMEOUT,
               message=lambda: f"cfg-a's retention.ms on the shadow: {topic_config(shadow, 'cfg-a')}")
    assert {k: topic_config(shadow, "cfg-a")[k] for k in stored_only} == stored_only

    # IncrementalAlterConfigs on the source: retention.ms follows; segment.ms (not synced) does not.
    default_segment_ms = topic_config(shadow, "cfg-a")["segment.ms"]
    _alter(source, "cfg-a", ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
           ConfigEntry("segment.ms", "1234567", incremental_operation=AlterConfigOpType.SET))
    wait_until(lambda: topic_config(shadow, "cfg-a").get("retention.ms") == "3600000", timeout=TIMEOUT,
               message=lambda: f"retention.ms=3600000 on the shadow: {topic_config(shadow, 'cfg-a')}")
    # Both changes came in the same DescribeConfigs answer, so the pass that synced one saw the other.
    assert topic_config(shadow, "cfg-a")["segment.ms"] == default_segment_ms

    # The legacy AlterConfigs (whole-set replace) works as well: retention.bytes set, retention.ms dropped.
    resource = ConfigResource(ResourceType.TOPIC, "cfg-a", set_config={"retention.bytes": "1048576"})
    source_admin = admin(source)
    with warnings.catch_warnings():  # deprecated in the client, still a Kafka API that sources answer
        warnings.simplefilter("ignore", DeprecationWarning)
        source_admin.alter_configs([resource], request_timeout=TIMEOUT)[resource].result(TIMEOUT)
    source_retention_ms = topic_config(source, "cfg-a")["retention.ms"]
    assert source_retention_ms != "3600000"

    def synced() -> bool:
        configs = topic_config(shadow, "cfg-a")
        return configs.get("retention.bytes") == "1048576" and configs.get("retention.ms") == source_retention_ms

    wait_until(synced, timeout=TIMEOUT, message=lambda: f"the replaced configs on the shadow: {topic_config(shadow, 'cfg-a')}")

    # ACLs: on a shadowed topic (literal), on the filter's prefix (prefixed) -> mirrored; on an excluded or
    # unselected topic -> not mirrored.
    mirrored = [_acl("cfg-a"), _acl("cfg-", ResourcePatternType.PREFIXED, principal="User:bob",
                                    operation=AclOperation.WRITE)]
    ignored = [_acl("cfg-secret"), _acl("payments")]
    for future in source_admin.create_acls(mirrored + ignored, request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)
    want = {_key(b) for b in mirrored}
    wait_until(lambda: want <= _acl_keys(shadow), timeout=TIMEOUT,
               message=lambda: f"the source's ACLs on the shadow: {_acl_keys(shadow)}; status {link_status(shadow)['tasks']}")
    # The same DescribeAcls answer carried the ignored ones.
    assert _acl_keys(shadow) == want

    # Deleting an ACL on the source removes it from the shadow, and only it.
    deleted = AclBindingFilter(ResourceType.TOPIC, "cfg-a", ResourcePatternType.LITERAL, "User:alice", "*",
                               AclOperation.READ, AclPermissionType.ALLOW)
    for future in source_admin.delete_acls([deleted], request_timeout=TIMEOUT).values():
        assert len(future.result(timeout=TIMEOUT)) == 1
    wait_until(lambda: _acl_keys(shadow) == {_key(mirrored[1])}, timeout=TIMEOUT,
               message=lambda: f"only the prefixed ACL left on the shadow: {_acl_keys(shadow)}")


def test_deleted_or_recreated_source_topic_stops_the_shadow_topic_and_keeps_its_data(clusters) -> None:
    """A deleted source topic leaves its shadow SOURCE_DELETED, a recreated one FAULTED: both read-only, their
    data kept."""
    source, shadow = clusters
    for topic, partitions in (("gone", 2), ("reborn", 1), ("kept", 1)):
        create_topic(source.bootstrap, topic, partitions=partitions)
        produce(source, topic, 30 * partitions, partitions=partitions)
    create_link(shadow, link_spec(source))
    wait_caught_up(shadow, {"gone": 2, "reborn": 1, "kept": 1})
    before = {topic: consume_all(shadow, topic, count, group="before")
              for topic, count in (("gone", 60), ("reborn", 30))}

    # "gone" is deleted; "reborn" is deleted and at once created again (a new topic id) with more records
    # than the shadow has, which must never be appended to the old topic's shadow.
    source_admin = admin(source)
    for future in source_admin.delete_topics(["gone", "reborn"], request_timeout=TIMEOUT).values():
        future.result(TIMEOUT)
    create_topic(source.bootstrap, "reborn", partitions=1)
    produce(source, "reborn", 80, prefix="new-life")

    def faulted() -> bool:
        states = topic_states(shadow)
        return states["gone"][0] == "SOURCE_DELETED" and states["reborn"][0] == "FAULTED"

    wait_until(faulted, timeout=TIMEOUT,
               message=lambda: f"gone SOURCE_DELETED and reborn FAULTED: {topic_states(shadow)}")
    states = topic_states(shadow)
    assert "no longer exists" in states["gone"][1] and "data kept" in states["gone"][1], states
    # Seen missing first (SOURCE_DELETED) or not, the new topic id faults it.
    assert "recreated" in states["reborn"][1], states
    assert states["kept"] == ("ACTIVE", "")
    status, described = admin_call(shadow, "GET", "/v1/shadow-links/dr")
    assert status == 200 and described["topics"]["gone"] == {"state": "SOURCE_DELETED",
                                                              "reason": states["gone"][1]}

    # The link keeps replicating the other topics; a pass after the faults changed nothing in the faulted ones:
    # their data is kept as it was, and they stay read-only.
    produce(source, "kept", 5, prefix="more")
    assert wait_replicated(source, shadow, "kept", 1) == [35]
    assert topic_partitions(shadow)["gone"] == 2
    assert high_watermarks(shadow, "reborn", 1) == [30]
    for topic, count in (("gone", 60), ("reborn", 30)):
        assert consume_all(shadow, topic, count, group="after") == before[topic]
    producer = Producer({"bootstrap.servers": shadow.bootstrap, "message.timeout.ms": 10000})
    reports: list[KafkaError | None] = []
    producer.produce("gone", value=b"x", partition=0, on_delivery=lambda err, _m: reports.append(err))
    producer.flush(TIMEOUT)
    assert reports and reports[0] is not None and reports[0].code() == KafkaError.TOPIC_EXCEPTION, reports
    assert {t: st[0] for t, st in topic_states(shadow).items()} == {"gone": "SOURCE_DELETED", "reborn": "FAULTED",
                                                                     "kept": "ACTIVE"}

    # A topic whose source is gone can still be failed over: it becomes an ordinary writable topic, data kept.
    status, _ = admin_call(shadow, "POST", "/v1/shadow-links/dr/failover", {"topics": ["gone"]})
    assert status == 202
    wait_until(lambda: topic_states(shadow)["gone"][0] == "FAILED_OVER", timeout=TIMEOUT,
               message=lambda: f"gone FAILED_OVER: {topic_states(shadow)}")
    reports.clear()
    producer.produce("gone", value=b"after failover", partition=0, on_delivery=lambda err, _m: reports.append(err))
    producer.flush(TIMEOUT)
    assert reports == [None]
    after = consume_all(shadow, "gone", 61, group="after-failover")
    assert [r for r in after if r[:2] != (0, 30)] == before["gone"] and (0, 30, None, b"after failover") in after


def test_acl_revocations_follow_across_pause_update_and_restart(clusters) -> None:
    """The link remembers which ACLs it created: a revocation on the source while the link is paused, updated or
    restarted still reaches the shadow, and an ACL the shadow had of its own is never deleted."""
    source, shadow = clusters
    create_topic(source.bootstrap, "acl-a", partitions=1)
    source_admin, shadow_admin = admin(source), admin(shadow)
    own = _acl("acl-a", principal="User:carol")  # the shadow's own, and the source's too
    for future in shadow_admin.create_acls([own], request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)
    revocable = [_acl("acl-a", principal=f"User:{who}") for who in ("pause", "update", "restart")]
    for future in source_admin.create_acls([own, *revocable], request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)
    create_link(shadow, link_spec(source, prefixes=("acl-",)))
    everything = {_key(b) for b in (own, *revocable)}
    wait_until(lambda: _acl_keys(shadow) == everything, timeout=TIMEOUT,
               message=lambda: f"the source's ACLs on the shadow: {_acl_keys(shadow)}")

    def revoke(binding: AclBinding) -> None:
        acl_filter = AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type,
                                      binding.principal, binding.host, binding.operation, binding.permission_type)
        for future in source_admin.delete_acls([acl_filter], request_timeout=TIMEOUT).values():
            assert len(future.result(timeout=TIMEOUT)) == 1

    # Paused: the revocation waits, then lands on resume.
    assert admin_call(shadow, "POST", "/v1/shadow-links/dr/pause")[0] == 200
    revoke(revocable[0])
    assert admin_call(shadow, "POST", "/v1/shadow-links/dr/resume")[0] == 200
    expected = everything - {_key(revocable[0])}
    wait_until(lambda: _acl_keys(shadow) == expected, timeout=TIMEOUT,
               message=lambda: f"revoked while paused: {_acl_keys(shadow)}")

    # Updated (the spec replaced): what the link created is still known.
    revoke(revocable[1])
    spec = link_spec(source, prefixes=("acl-",))
    spec["topics"]["sync_interval"] = "400ms"
    assert admin_call(shadow, "PUT", "/v1/shadow-links/dr", spec)[0] == 200
    expected -= {_key(revocable[1])}
    wait_until(lambda: _acl_keys(shadow) == expected, timeout=TIMEOUT,
               message=lambda: f"revoked across an update: {_acl_keys(shadow)}")

    # Restarted with the revocation made while the shadow was down.
    shadow.stop()
    revoke(revocable[2])
    shadow.start()
    expected -= {_key(revocable[2])}
    wait_until(lambda: _acl_keys(shadow) == expected, timeout=TIMEOUT,
               message=lambda: f"revoked across a restart: {_acl_keys(shadow)}")

    # The source drops the ACL the shadow had of its own: the shadow keeps it (two ACL syncs later).
    revoked_ms = int(time.time() * 1000)
    revoke(own)

    def acl_sync_ran_since(ms: int) -> bool:
        task = next(t for t in link_status(shadow)["tasks"] if t["task"] == "acl-sync")
        return task["state"] == "ACTIVE" and (task["last_run_ms"] or 0) > ms

    wait_until(lambda: acl_sync_ran_since(revoked_ms), timeout=TIMEOUT, message="an ACL sync after the revocation")
    second = int(time.time() * 1000)
    wait_until(lambda: acl_sync_ran_since(second), timeout=TIMEOUT, message="another ACL sync")
    assert _acl_keys(shadow) == {_key(own)}
