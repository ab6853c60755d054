"""Shadow links from an independent Kafka implementation: librdkafka's mock cluster of three brokers.

The mock (C, inside librdkafka, driven through ctypes: tests/rdkafka_mock.py) is a source umbra has never
seen: partitions led by different brokers, no fetch sessions, no ListGroups, DescribeConfigs or DescribeAcls,
ApiVersions only up to v2, one batch per partition per Fetch. The tests copy a topic from it, with faults
commanded through its C API, and check the shadow record by record and batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from harness import BrokerProcess, http_get
from link_api import admin_call, create_link, link_status
from mock_source import (
    assert_mirrored,
    commit,
    committed,
    leaders,
    mock_link_spec,
    partitions_by_number,
    produce_with_every_codec,
    read_batches,
    wait_mirrored,
    wait_status,
)
from rdkafka_mock import (
    API_VERSIONS,
    FENCED_LEADER_EPOCH,
    FETCH,
    FIND_COORDINATOR,
    LIST_OFFSETS,
    METADATA,
    NOT_LEADER_OR_FOLLOWER,
    OFFSET_FETCH,
    REQUEST_TIMED_OUT,
    TRANSPORT,
    UNKNOWN_TOPIC_OR_PARTITION,
    MockCluster,
)
from roundtrip import make_records

pytestmark = pytest.mark.timeout(240)

TOPIC = "orders"
PARTITIONS = 6


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster(brokers=3) as cluster:
        yield cluster


def test_topic_copied_at_source_offsets_and_group_offsets_synced(mock: MockCluster, broker: BrokerProcess) -> None:
    mock.create_topic(TOPIC, PARTITIONS)
    assert len(set(leaders(mock.bootstraps, TOPIC).values())) == 3, "partitions should be led by every broker"
    records = make_records("mock", 6000, PARTITIONS)
    acknowledged = produce_with_every_codec(mock.bootstraps, TOPIC, records)
    ends = {p: sum(1 for r in records if r.partition == p) for p in range(PARTITIONS)}
    group_offsets = {p: end // 2 for p, end in ends.items()}
    commit(mock.bootstraps, "billing", TOPIC, group_offsets)
    assert committed(mock.bootstraps, "billing", TOPIC, PARTITIONS) == group_offsets

    create_link(broker, mock_link_spec(mock))
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records, acknowledged)

    # Each partition was fetched from its own leader, over one fetch task per source broker.
    by_partition = partitions_by_number(doc, TOPIC)
    assert {p: by_partition[p]["source_broker"] for p in range(PARTITIONS)} == leaders(mock.bootstraps, TOPIC)
    fetchers = [t for t in doc["tasks"] if t["task"].startswith("fetch-from-source-broker-")]
    assert len(fetchers) == 3 and all(t["state"] == "ACTIVE" for t in fetchers), doc["tasks"]

    # The group's offsets, committed on the source, are the shadow's.
    wait_status(broker, lambda _: committed(broker.bootstrap, "billing", TOPIC, PARTITIONS) == group_offsets,
                "consumer group offsets synced")

    # What the mock lacks is said once, in status and as events, and the link works around it.
    capabilities = link_status(broker)["source_capabilities"]
    assert {k: capabilities[k] for k in ("fetch_sessions", "topic_ids", "leader_epochs", "list_groups",
                                         "describe_configs", "describe_acls")} == {
        "fetch_sessions": False, "topic_ids": True, "leader_epochs": True, "list_groups": False,
        "describe_configs": False, "describe_acls": False}
    assert set(capabilities["degraded"]) == {"fetch_sessions", "list_groups", "describe_configs", "describe_acls"}
    assert all(versions["Fetch"] == 16 and versions["ApiVersions"] == 2
               for versions in capabilities["api_versions"].values()), capabilities["api_versions"]
    events = [e["event"] for e in link_status(broker)["events"]]
    for capability in capabilities["degraded"]:
        assert sum(capabilities["degraded"][capability] in e for e in events) == 1, (capability, events)
    _, body = http_get(broker.admin_url + "/metrics")
    assert 'umbra_shadow_source_degraded{capability="fetch_sessions",link="dr"} 1.0' in body.decode()
    assert 'umbra_shadow_source_degraded{capability="leader_epochs",link="dr"} 0.0' in body.decode()
    tasks = {t["task"]: t for t in link_status(broker)["tasks"]}
    assert tasks["acl-sync"]["state"] == "UNSUPPORTED" and "DescribeAcls" in tasks["acl-sync"]["reason"]
    assert tasks["consumer-offset-sync"]["state"] == "ACTIVE"
    assert tasks["topic-sync"]["state"] == "ACTIVE"


def test_a_link_whose_groups_cannot_be_discovered_says_so(mock: MockCluster, broker: BrokerProcess) -> None:
    mock.create_topic(TOPIC, 1)
    create_link(broker, mock_link_spec(mock, groups=()) | {"consumer_offsets": {"enabled": True,
                                                                                "interval": "500ms"}})
    task = wait_status(broker, lambda doc: next((t for t in doc["tasks"] if t["task"] == "consumer-offset-sync"
                                                 and t["state"] == "UNSUPPORTED"), None),
                       "consumer-offset-sync UNSUPPORTED")
    assert "ListGroups" in task["reason"] and "literal" in task["reason"]


# -- faults on the source, during catch-up -----------------------------------------------------------------

def _load(mock: MockCluster) -> tuple[list[Any], dict[int, tuple[int, int]]]:
    mock.create_topic(TOPIC, PARTITIONS)
    # Small batches, so that catching up takes many fetches (the mock answers one batch per partition each).
    records = make_records("faults", 6000, PARTITIONS)
    return records, produce_with_every_codec(mock.bootstraps, TOPIC, records, **{"batch.size": 2000})


def _mid_catch_up(broker: BrokerProcess) -> dict[int, dict[str, Any]]:
    """Wait until every partition has some, but not all, of its data on the shadow."""
    def started(doc: dict[str, Any]) -> dict[int, dict[str, Any]] | None:
        parts = partitions_by_number(doc, TOPIC)
        if len(parts) == PARTITIONS and all(p["shadow_high_watermark"] > 0 for p in parts.values()):
            return parts
        return None

    parts = wait_status(broker, started, "replication under way", timeout=60)
    assert any(p["shadow_high_watermark"] < p["source_high_watermark"] for p in parts.values()), \
        "the fault must land during catch-up: slow the source down further"
    return parts


@pytest.fixture
def slow_mock(mock: MockCluster) -> MockCluster:
    for broker_id in mock.broker_ids:
        mock.set_rtt(broker_id, 3)  # every request takes 3 ms or more: catch-up lasts seconds
    return mock


def test_leaders_move_during_catch_up(slow_mock: MockCluster, broker: BrokerProcess) -> None:
    mock = slow_mock
    records, acknowledged = _load(mock)
    before = leaders(mock.bootstraps, TOPIC)
    create_link(broker, mock_link_spec(mock))
    during = _mid_catch_up(broker)
    moved = {p: before[p] % 3 + 1 for p in range(PARTITIONS)}
    for p, leader in moved.items():
        mock.set_leader(TOPIC, p, leader)
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records, acknowledged)
    parts = partitions_by_number(doc, TOPIC)
    for p, leader in moved.items():
        assert parts[p]["source_broker"] == leader, parts[p]
        assert parts[p]["source_leader_changes"] >= 1, parts[p]
        assert parts[p]["source_leader_epoch"] > during[p]["source_leader_epoch"], parts[p]  # bumped by the move
    assert any("source leader moved" in e["event"] for e in doc["events"]), doc["events"]
    _, body = http_get(broker.admin_url + "/metrics")
    changes = [line for line in body.decode().splitlines()
               if line.startswith('umbra_shadow_source_leader_changes_total{link="dr"}')]
    assert changes and float(changes[0].split()[-1]) >= PARTITIONS, changes


def test_source_broker_down_and_back(slow_mock: MockCluster, broker: BrokerProcess) -> None:
    mock = slow_mock
    records, acknowledged = _load(mock)
    led = leaders(mock.bootstraps, TOPIC)
    down = led[0]
    stuck = {p for p, leader in led.items() if leader == down}
    create_link(broker, mock_link_spec(mock))
    _mid_catch_up(broker)
    mock.broker_down(down)

    # Its partitions say why they wait; every other partition catches up meanwhile.
    def others_done(doc: dict[str, Any]) -> bool:
        parts = partitions_by_number(doc, TOPIC)
        waiting = all(parts[p]["state"] == "LINK_UNAVAILABLE" and f"source broker {down}" in parts[p]["reason"]
                      for p in stuck)
        return waiting and all(parts[p]["lag"] == 0 and parts[p]["shadow_high_watermark"] ==
                               parts[p]["source_high_watermark"] for p in parts if p not in stuck)

    wait_status(broker, others_done, f"partitions of broker {down} waiting, the others caught up", timeout=90)
    mock.broker_up(down)
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records, acknowledged)
    events = " | ".join(e["event"] for e in doc["events"])
    assert f"source broker {down}" in events and f"source broker {down} answers again" in events, events


def test_source_broker_down_and_its_partitions_led_elsewhere(slow_mock: MockCluster, broker: BrokerProcess) -> None:
    mock = slow_mock
    records, acknowledged = _load(mock)
    led = leaders(mock.bootstraps, TOPIC)
    down = led[0]
    create_link(broker, mock_link_spec(mock))
    _mid_catch_up(broker)
    mock.broker_down(down)
    for p, leader in led.items():
        if leader == down:  # as a cluster would: a new leader for each of the lost broker's partitions
            mock.set_leader(TOPIC, p, down % 3 + 1)
    more = [replace(r, index=len(records) + r.index) for r in make_records("faults-after", 600, PARTITIONS)]
    acknowledged.update(produce_with_every_codec(mock.bootstraps, TOPIC, more))  # the new leaders take writes
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records + more, acknowledged)
    parts = partitions_by_number(doc, TOPIC)
    assert all(parts[p]["source_broker"] != down for p in parts), doc["partitions"]
    assert all(parts[p]["source_leader_changes"] >= 1 for p, leader in led.items() if leader == down)
    mock.broker_up(down)


def test_injected_errors_are_retried_and_reported(slow_mock: MockCluster, broker: BrokerProcess) -> None:
    mock = slow_mock
    records, acknowledged = _load(mock)
    create_link(broker, mock_link_spec(mock))
    _mid_catch_up(broker)
    partition_errors = [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION]
    for p in (0, 1):
        mock.push_partition_errors(TOPIC, p, FETCH, partition_errors)
    # Whole-request errors (the mock puts them in every partition too), and a dropped connection.
    mock.push_request_errors(FETCH, [REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER, TRANSPORT])
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records, acknowledged)
    # Every error pushed for partitions 0 and 1 is counted on them (some answer fetches sent before the
    # partition left its fetch session, and may arrive after the catch-up).
    codes = {"NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT", "FENCED_LEADER_EPOCH", "UNKNOWN_TOPIC_OR_PARTITION"}
    wait_status(broker, lambda d: all(codes <= set(partitions_by_number(d, TOPIC)[p]["source_errors"])
                                      for p in (0, 1)), "every injected partition error counted")
    # Each whole-request error reached one fetch task, whichever broker it was sent to.
    fetch_errors: dict[str, int] = {}
    for task in doc["tasks"]:
        for code, count in task.get("errors", {}).items():
            fetch_errors[code] = fetch_errors.get(code, 0) + count
    for code in ("REQUEST_TIMED_OUT", "NOT_LEADER_OR_FOLLOWER", "ClientConnectionError"):
        assert fetch_errors.get(code, 0) >= 1, fetch_errors


# -- older sources ---------------------------------------------------------------------------------------------

# What the mock advertises, narrowed to an older Apache Kafka's versions, and what umbra must then send.
# The mock's own ceilings are ApiVersions v2, Fetch v16, Metadata v12, ListOffsets v7, FindCoordinator v3 and
# OffsetFetch v6: those are the "librdkafka-mock" row.
PROFILES: dict[str, dict[int, int]] = {
    "librdkafka-mock": {API_VERSIONS: 2, METADATA: 12, FETCH: 16, LIST_OFFSETS: 7, FIND_COORDINATOR: 3,
                        OFFSET_FETCH: 6},
    "kafka-2.1": {API_VERSIONS: 2, METADATA: 7, FETCH: 10, LIST_OFFSETS: 4, FIND_COORDINATOR: 2, OFFSET_FETCH: 5},
    "kafka-0.11": {API_VERSIONS: 1, METADATA: 4, FETCH: 5, LIST_OFFSETS: 2, FIND_COORDINATOR: 1, OFFSET_FETCH: 3},
}
# Capabilities each profile lacks (beyond ListGroups, DescribeConfigs and DescribeAcls, which the mock never has).
PROFILE_DEGRADED = {
    "librdkafka-mock": {"fetch_sessions"},
    "kafka-2.1": {"fetch_sessions", "topic_ids"},
    "kafka-0.11": {"fetch_sessions", "topic_ids", "leader_epochs"},
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_versions_negotiated_with_an_older_source(profile: str, broker: BrokerProcess) -> None:
    with MockCluster(brokers=3, recording=True) as mock:
        assert mock.proxy is not None
        mock.create_topic(TOPIC, 3)
        records = make_records(profile, 1500, 3)
        acknowledged = produce_with_every_codec(mock.bootstraps, TOPIC, records)
        commit(mock.bootstraps, "billing", TOPIC, {0: 100, 1: 200, 2: 300})
        if profile != "librdkafka-mock":
            for api_key, highest in PROFILES[profile].items():
                mock.set_api_versions(api_key, 0, highest)
        mock.proxy.clear()

        create_link(broker, mock_link_spec(mock))
        wait_mirrored(mock, broker, TOPIC, 3)
        assert_mirrored(mock, broker, TOPIC, 3, records, acknowledged)
        wait_status(broker, lambda _: committed(broker.bootstrap, "billing", TOPIC, 3) == {0: 100, 1: 200, 2: 300},
                    "group offsets synced")

        # ApiVersions first at umbra's highest (v3); the mock refuses it and names its own highest, which umbra
        # uses from then on. Every other API at the highest version both sides know, never above.
        sent = mock.proxy.versions_sent("umbra-shadow")
        expected = {api_key: {highest} for api_key, highest in PROFILES[profile].items()}
        expected[API_VERSIONS] = {3, PROFILES[profile][API_VERSIONS]}
        assert sent == expected, f"{profile}: sent {sent}, expected {expected}"

        capabilities = link_status(broker)["source_capabilities"]
        lacking = {"list_groups", "describe_configs", "describe_acls"} | PROFILE_DEGRADED[profile]
        assert set(capabilities["degraded"]) == lacking, capabilities
        assert all(versions["Fetch"] == PROFILES[profile][FETCH] for versions in capabilities["api_versions"].values())


def test_recreated_topic_detected_without_topic_ids(broker: BrokerProcess) -> None:
    """Kafka before 2.8 has no topic ids: a topic deleted and recreated under the same name looks the same.
    The shadow's last batch is checked against the source's before a partition replicates on."""
    with MockCluster(brokers=3) as mock:
        mock.create_topic(TOPIC, 3)
        for api_key, highest in PROFILES["kafka-2.1"].items():
            mock.set_api_versions(api_key, 0, highest)
        first = make_records("first", 600, 3)
        produce_with_every_codec(mock.bootstraps, TOPIC, first)
        create_link(broker, mock_link_spec(mock))
        wait_mirrored(mock, broker, TOPIC, 3)
        before = read_batches(broker.bootstrap, TOPIC, 3)

        # A restart of replication on an unchanged source: every partition's end checks out.
        assert admin_call(broker, "POST", "/v1/shadow-links/dr/pause")[0] == 200
        assert admin_call(broker, "POST", "/v1/shadow-links/dr/resume")[0] == 200
        # (by CRC, for the missing topic ids, and by leader epoch, which the Kafka 2.1 profile has)
        doc = wait_status(broker, lambda d: d if all(p.get("start_point_check") == "match" for p in d["partitions"])
                          and d["start_point_checks"].get("match", 0) >= 3 else None, "three start points checked")
        assert set(doc["start_point_checks"]) == {"match"}, doc["start_point_checks"]

        # The topic is recreated while the link is paused, and grows past where the shadow ends.
        assert admin_call(broker, "POST", "/v1/shadow-links/dr/pause")[0] == 200
        mock.delete_topic(TOPIC)
        mock.create_topic(TOPIC, 3)
        produce_with_every_codec(mock.bootstraps, TOPIC, make_records("second", 900, 3))
        assert admin_call(broker, "POST", "/v1/shadow-links/dr/resume")[0] == 200
        # No common history at all: the whole topic is FAULTED, as a recreated topic with topic ids would be.
        doc = wait_status(broker, lambda d: d if d["topics"][0]["state"] == "FAULTED" else None, "topic FAULTED")
        assert "no common history" in doc["topics"][0]["reason"], doc["topics"]
        assert all(p["state"] == "FAULTED" for p in doc["partitions"]), doc["partitions"]
        assert doc["start_point_checks"].get("diverged", 0) >= 1, doc["start_point_checks"]
        assert any("differs from the source's" in e["event"] and "no common history" in e["event"]
                   for e in doc["events"]), doc["events"]
        # Nothing of the new topic was written over the shadow's data.
        assert read_batches(broker.bootstrap, TOPIC, 3) == before


def test_source_client_rack_fetches_from_the_preferred_replica(mock: MockCluster, broker: BrokerProcess) -> None:
    """KIP-392: with ``source.client.rack``, each partition is fetched from the replica the source's leader
    prefers for that rack, and copied exactly as from the leader."""
    mock.create_topic(TOPIC, PARTITIONS)
    led = leaders(mock.bootstraps, TOPIC)
    for broker_id, rack in zip(mock.broker_ids, ("az1", "az2", "az3"), strict=True):
        mock.set_rack(broker_id, rack)
    followers = {p: next(b for b in mock.broker_ids if b != led[p]) for p in range(PARTITIONS)}
    for p, follower in followers.items():
        mock.set_follower(TOPIC, p, follower)
    records = make_records("rack", 1200, PARTITIONS)
    acknowledged = produce_with_every_codec(mock.bootstraps, TOPIC, records)

    spec = mock_link_spec(mock)
    spec["source"]["client"]["rack"] = "az1"
    create_link(broker, spec)
    doc = wait_mirrored(mock, broker, TOPIC, PARTITIONS)
    for p in range(PARTITIONS):  # no preferred replica: the test's own reader (leaders only) gets the data
        mock.set_follower(TOPIC, p, -1)
    assert_mirrored(mock, broker, TOPIC, PARTITIONS, records, acknowledged)
    by_partition = partitions_by_number(doc, TOPIC)
    assert {p: by_partition[p]["source_broker"] for p in range(PARTITIONS)} == followers, doc["events"]
    assert {p: by_partition[p]["source_leader"] for p in range(PARTITIONS)} == led
    assert any("the replica the leader prefers for rack az1" in e["event"] for e in doc["events"]), doc["events"]

