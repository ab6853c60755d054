"""Version negotiation with sources that are not umbra: KIP-511's lenient ApiVersions fallback, capabilities."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from client_fakes import FakeBroker, api_versions_fields
from test_client_connection import FAST, metadata_answer

from umbra.client import BrokerConnection
from umbra.client import versions as api
from umbra.client.capabilities import DEGRADED_EFFECTS, SourceCapabilities
from umbra.protocol.codec import build_response, encode_response

UNSUPPORTED_VERSION = 35


def v0_body(error: int, entries: list[tuple[int, int, int]]) -> bytes:
    return struct.pack(">hi", error, len(entries)) + b"".join(struct.pack(">hhh", *e) for e in entries)


def mock_body(entries: list[tuple[int, int, int]]) -> bytes:
    """librdkafka's mock answering a v3 request it does not support: a one-byte count, then v1's throttle."""
    return (struct.pack(">hb", UNSUPPORTED_VERSION, len(entries)) + b"".join(struct.pack(">hhh", *e) for e in entries)
            + struct.pack(">i", 0))


def flexible_body(entries: list[tuple[int, int, int]]) -> bytes:
    return (struct.pack(">hb", UNSUPPORTED_VERSION, len(entries) + 1)
            + b"".join(struct.pack(">hhhb", *e, 0) for e in entries) + struct.pack(">ib", 0, 0))


@pytest.mark.parametrize(("body", "named"), [
    (v0_body(UNSUPPORTED_VERSION, [(18, 0, 2)]), 2),  # Kafka 2.4+ (KIP-511): v0, ApiVersions alone
    (v0_body(UNSUPPORTED_VERSION, [(0, 0, 7), (18, 0, 1), (1, 0, 10)]), 1),
    (v0_body(UNSUPPORTED_VERSION, []), None),  # Kafka before 2.4: v0, no entries
    (mock_body([(18, 0, 2)]), 2),  # librdkafka's mock
    (flexible_body([(18, 0, 3)]), 3),
    (struct.pack(">h", UNSUPPORTED_VERSION), None),  # nothing but the error code
    (struct.pack(">hi", UNSUPPORTED_VERSION, 2**30) + b"\x00" * 20, None),  # a count that cannot be true
])
def test_named_api_versions_max_reads_every_layout(body: bytes, named: int | None) -> None:
    assert api.api_versions_error(body) == UNSUPPORTED_VERSION
    assert api.named_api_versions_max(body) == named


def test_api_versions_error_needs_two_bytes() -> None:
    with pytest.raises(ValueError):
        api.api_versions_error(b"\x00")


class RefusingBroker(FakeBroker):
    """Answers ApiVersions above ``highest`` the way ``answer`` builds it; serves ``highest`` and below."""

    def __init__(self, highest: int, answer: Any) -> None:
        super().__init__(metadata_answer, {18: (0, highest), 3: (0, 7), 1: (4, 10)})
        self.highest = highest
        self.answer = answer

    def respond(self, header: Any, request: Any) -> Any:
        if header.api_key == 18 and header.api_version > self.highest:
            body = self.answer(self.highest)
            return struct.pack(">ii", 4 + len(body), header.correlation_id) + body
        if header.api_key == 18:
            body = build_response(18, header.api_version, api_versions_fields(self.versions))
            return encode_response(18, header.api_version, header.correlation_id, body)
        return super().respond(header, request)


@pytest.mark.parametrize(("answer", "tried"), [
    (lambda highest: mock_body([(18, 0, highest)]), [3, 2]),
    (lambda highest: v0_body(UNSUPPORTED_VERSION, [(18, 0, highest)]), [3, 2]),
    (lambda highest: v0_body(UNSUPPORTED_VERSION, []), [3, 0]),
    (lambda highest: struct.pack(">h", UNSUPPORTED_VERSION), [3, 0]),
])
def test_handshake_retries_at_the_version_the_remote_names(answer: Any, tried: list[int]) -> None:
    async def scenario() -> None:
        async with RefusingBroker(2, answer) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                assert connection.versions == {18: 2, 3: 7, 1: 10}  # from the answer to the last try
                assert connection.remote_versions[1] == (4, 10)
                response = await connection.request(3, {"topics": None})
                assert response.brokers[0].node_id == 7
            assert [h.api_version for h, _ in fake.requests if h.api_key == 18] == tried

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_handshake_ends_at_v0_even_if_the_remote_names_a_higher_version() -> None:
    """A remote that refuses v3 but names v5 must not send the client round in circles."""
    async def scenario() -> None:
        async with RefusingBroker(0, lambda _: v0_body(UNSUPPORTED_VERSION, [(18, 0, 5)])) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                assert connection.versions[18] == 0
            assert [h.api_version for h, _ in fake.requests if h.api_key == 18] == [3, 0]

    asyncio.run(asyncio.wait_for(scenario(), 20))


# -- capabilities -------------------------------------------------------------------------------------------

KAFKA_2_1 = {api.API_VERSIONS: 2, api.METADATA: 7, api.FETCH: 10, api.LIST_OFFSETS: 4, api.OFFSET_FETCH: 5,
             api.FIND_COORDINATOR: 2, api.LIST_GROUPS: 2, api.DESCRIBE_CONFIGS: 2, api.DESCRIBE_ACLS: 1}
KAFKA_3_9 = {api.API_VERSIONS: 3, api.METADATA: 12, api.FETCH: 16, api.LIST_OFFSETS: 9, api.OFFSET_FETCH: 9,
             api.FIND_COORDINATOR: 4, api.LIST_GROUPS: 4, api.DESCRIBE_CONFIGS: 4, api.DESCRIBE_ACLS: 3}


def test_no_broker_known_means_unknown_not_degraded() -> None:
    capabilities = SourceCapabilities.from_versions({})
    assert set(capabilities.flags().values()) == {None}
    assert capabilities.degraded() == {}


def test_a_current_kafka_lacks_nothing() -> None:
    capabilities = SourceCapabilities.from_versions({"1": KAFKA_3_9, "2": KAFKA_3_9}, {1: True, 2: None})
    assert capabilities.degraded() == {}
    assert capabilities.to_json()["api_versions"]["1"]["Fetch"] == 16


def test_kafka_2_1_has_epochs_but_no_topic_ids() -> None:
    capabilities = SourceCapabilities.from_versions({"1": KAFKA_2_1})
    assert capabilities.degraded() == {"topic_ids": DEGRADED_EFFECTS["topic_ids"]}
    assert capabilities.leader_epochs is True


def test_a_rolling_upgrade_counts_as_its_oldest_broker() -> None:
    old = {**KAFKA_2_1, api.FETCH: 5, api.METADATA: 4}  # Kafka 0.11
    capabilities = SourceCapabilities.from_versions({"1": KAFKA_3_9, "2": old})
    assert set(capabilities.degraded()) == {"topic_ids", "leader_epochs", "fetch_sessions"}


def test_fetch_v4_reports_no_log_start_offset_and_missing_apis_are_degraded() -> None:
    versions = {api.API_VERSIONS: 0, api.METADATA: 4, api.FETCH: 4, api.LIST_OFFSETS: 1}
    assert set(SourceCapabilities.from_versions({"b:1": versions}).degraded()) == set(DEGRADED_EFFECTS)


def test_sessions_not_granted_by_a_fetch_v7_source_are_degraded() -> None:
    capabilities = SourceCapabilities.from_versions({"1": KAFKA_3_9, "2": KAFKA_3_9}, {1: True, 2: False})
    assert set(capabilities.degraded()) == {"fetch_sessions"}
