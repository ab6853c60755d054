"""BrokerConnection against an in-test server: handshake, pipelining, correlation, timeouts, close."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from typing import Any

import pytest
from client_fakes import FakeBroker, api_versions_fields

from umbra.client import BrokerConnection, ClientConnectionError, ClientProtocolError, ClientTimeout
from umbra.client.errors import UnsupportedApiError
from umbra.client.settings import ConnectionSettings
from umbra.protocol.codec import build_response, encode_response

FAST = ConnectionSettings(client_id="unit", connect_timeout_s=2.0, request_timeout_s=2.0)


def metadata_answer(header: Any, request: Any) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "brokers": [{"node_id": 7, "host": "h", "port": header.correlation_id}],
            "cluster_id": "c", "controller_id": 7, "topics": []}


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_handshake_picks_highest_common_version_per_api() -> None:
    async def scenario() -> None:
        versions = {18: (0, 4), 3: (0, 9), 1: (0, 11), 2: (1, 3), 16: (0, 0), 32: (2, 4), 29: (0, 0)}
        async with FakeBroker(metadata_answer, versions) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                assert connection.versions == {18: 3, 3: 9, 1: 11, 2: 3, 16: 0, 32: 4}
                assert not connection.supports(29)  # remote max 0 is below our min 1
                with pytest.raises(UnsupportedApiError):
                    connection.version(29)
            header, request = fake.requests[0]
            assert (header.api_key, header.api_version, header.client_id) == (18, 3, "unit")
            assert request.client_software_name == "umbra"

    run(scenario())


def test_handshake_falls_back_when_remote_lacks_api_versions_v3() -> None:
    class OldBroker(FakeBroker):
        def respond(self, header: Any, request: Any) -> Any:
            if header.api_key == 18 and header.api_version > 2:
                body = build_response(18, 0, {**api_versions_fields(self.versions), "error_code": 35})
                return encode_response(18, 0, header.correlation_id, body)
            return super().respond(header, request)

    async def scenario() -> None:
        async with OldBroker(metadata_answer, {18: (0, 2), 3: (0, 8)}) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                assert connection.versions == {18: 2, 3: 8}
                response = await connection.request(3, {"topics": None})
                assert response.brokers[0].node_id == 7
            assert [h.api_version for h, _ in fake.requests[:2]] == [3, 2]

    run(scenario())


def test_pipelined_requests_resolve_in_order_with_flexible_headers() -> None:
    async def scenario() -> None:
        async with FakeBroker(metadata_answer) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                fake.hold.clear()
                tasks = [asyncio.create_task(connection.request(3, {"topics": None}, version=v))
                         for v in (12, 9, 1, 12)]
                await asyncio.wait_for(fake.request_seen.wait(), 5)
                fake.hold.set()
                responses = await asyncio.gather(*tasks)
            # The fake echoes each correlation id as the broker port: every future got its own answer.
            ports = [r.brokers[0].port for r in responses]
            assert ports == [h.correlation_id for h, _ in fake.requests[1:]]
            assert len(set(ports)) == 4

    run(scenario())


def test_mismatched_correlation_id_fails_everything_pending() -> None:
    def wrong_id(header: Any, request: Any) -> bytes:
        body = build_response(3, header.api_version, metadata_answer(header, request))
        return encode_response(3, header.api_version, header.correlation_id + 1000, body)

    async def scenario() -> None:
        async with FakeBroker(wrong_id) as fake:
            connection = BrokerConnection("127.0.0.1", fake.port, FAST)
            await connection.connect()
            with pytest.raises(ClientProtocolError, match="correlation id"):
                await connection.request(3, {"topics": None})
            assert not connection.connected
            with pytest.raises(ClientConnectionError):
                await connection.request(3, {"topics": None})
            await connection.close()

    run(scenario())


def test_oversized_frame_closes_connection() -> None:
    async def scenario() -> None:
        async with FakeBroker(lambda h, r: struct.pack(">i", 2**31 - 1)) as fake:
            settings = ConnectionSettings(request_timeout_s=2.0, max_response_bytes=1 << 20)
            async with BrokerConnection("127.0.0.1", fake.port, settings) as connection:
                with pytest.raises(ClientProtocolError, match="response size"):
                    await connection.request(3, {"topics": None})

    run(scenario())


def test_request_timeout_raises_and_closes() -> None:
    async def scenario() -> None:
        async with FakeBroker(lambda h, r: None) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                started = time.monotonic()
                with pytest.raises(ClientTimeout):
                    await connection.request(3, {"topics": None}, timeout=0.2)
                assert time.monotonic() - started < 2
                assert not connection.connected

    run(scenario())


def test_remote_close_fails_pending_requests_promptly() -> None:
    async def scenario() -> None:
        async with FakeBroker(lambda h, r: None) as fake:
            async with BrokerConnection("127.0.0.1", fake.port, FAST) as connection:
                pending = asyncio.create_task(connection.request(3, {"topics": None}, timeout=30))
                fake.request_seen.clear()
                await asyncio.wait_for(fake.request_seen.wait(), 5)
                await fake.drop_connections()
                with pytest.raises(ClientConnectionError, match="closed"):
                    await asyncio.wait_for(pending, 5)

    run(scenario())


def test_close_fails_pending_requests() -> None:
    async def scenario() -> None:
        async with FakeBroker(lambda h, r: None) as fake:
            connection = BrokerConnection("127.0.0.1", fake.port, FAST)
            await connection.connect()
            pending = asyncio.create_task(connection.request(3, {"topics": None}))
            fake.request_seen.clear()
            await asyncio.wait_for(fake.request_seen.wait(), 5)
            await connection.close()
            with pytest.raises(ClientConnectionError):
                await pending

    run(scenario())


def test_connect_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused

        async def scenario() -> None:
            with pytest.raises(ClientConnectionError, match="cannot connect"):
                await BrokerConnection("127.0.0.1", port, FAST).connect()

        run(scenario())


def test_connect_timeout_against_a_silent_listener() -> None:
    async def scenario() -> None:
        # A server that accepts but never answers ApiVersions: the handshake must time out, not hang.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = ConnectionSettings(connect_timeout_s=1.0, request_timeout_s=0.3)
        try:
            with pytest.raises(ClientTimeout):
                await BrokerConnection("127.0.0.1", port, settings).connect()
        finally:
            server.close()

    run(scenario())
