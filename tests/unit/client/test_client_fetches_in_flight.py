"""How many fetches a source broker gets in flight (plan_in_flight, sans-I/O), and the round-trip probe a
BrokerFetcher sends ahead of a Fetch."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from umbra.client import BrokerFetcher, FetchSettings
from umbra.client import versions as api
from umbra.client.fetcher import MAX_FETCHES_IN_FLIGHT, InFlight, plan_in_flight
from umbra.protocol.codec import build_response, encode_response

MB = 1_000_000
DEFAULTS = FetchSettings()  # 50 MiB a request, 10 MiB a partition
T0 = ("orders", 0)
ORDERS_ID = uuid.uuid4()


def test_one_fetch_without_a_round_trip_or_on_a_lan() -> None:
    assert plan_in_flight(DEFAULTS, 6, 200 * MB, None) == InFlight(1, DEFAULTS.fetch_max_bytes)
    assert plan_in_flight(DEFAULTS, 6, 200 * MB, 0.0) == InFlight(1, DEFAULTS.fetch_max_bytes)
    # 1 GB/s at 0.5 ms: a full 50 MiB response takes 100 round trips to arrive; the idle round trip costs 1 %.
    assert plan_in_flight(DEFAULTS, 6, 1000 * MB, 0.0005) == InFlight(1, DEFAULTS.fetch_max_bytes)


def test_a_far_source_gets_its_partitions_over_several_fetches_sharing_what_one_had_in_flight() -> None:
    # 200 MB/s at 50 ms: a 10 MB bandwidth-delay product; a 50 MiB response is only 5 of them.
    plan = plan_in_flight(DEFAULTS, 12, 200 * MB, 0.05)
    assert plan == InFlight(MAX_FETCHES_IN_FLIGHT, DEFAULTS.fetch_max_bytes // MAX_FETCHES_IN_FLIGHT)
    # While one response arrives, the others' requests cover twice the bandwidth-delay product.
    assert (plan.fetches - 1) * plan.max_bytes >= 2 * 200 * MB * 0.05


def test_fetch_sizes_grow_with_the_bandwidth_delay_product_up_to_fetch_max_bytes() -> None:
    plan = plan_in_flight(DEFAULTS, 12, 500 * MB, 0.05)  # 25 MB in flight needed
    assert plan.fetches == MAX_FETCHES_IN_FLIGHT
    assert plan.max_bytes == -(-2 * 25 * MB // (MAX_FETCHES_IN_FLIGHT - 1))
    assert plan_in_flight(DEFAULTS, 12, 1000 * MB, 0.2) == InFlight(MAX_FETCHES_IN_FLIGHT, DEFAULTS.fetch_max_bytes)
    assert plan_in_flight(DEFAULTS, 6, 500 * MB, 0.05).fetches == 6  # one partition each: none waits for another


def test_never_more_fetches_than_partitions_and_never_fewer_than_asked() -> None:
    assert plan_in_flight(DEFAULTS, 1, 200 * MB, 0.05) == InFlight(1, DEFAULTS.fetch_max_bytes)
    assert plan_in_flight(DEFAULTS, 2, 200 * MB, 0.05) == InFlight(2, DEFAULTS.fetch_max_bytes // 2)
    # A slow window (the rate dropped) keeps the fetches the loop has: moving partitions back costs requests.
    assert plan_in_flight(DEFAULTS, 6, 0.0, 0.05, at_least=4).fetches == 4
    assert plan_in_flight(DEFAULTS, 3, 0.0, 0.05, at_least=4).fetches == 3


class ProbedConnection:
    """Answers ApiVersions with a bare frame (the probe reads none of it) and Fetch with one empty partition;
    every request must come at the version the connection negotiated for its API."""

    def __init__(self) -> None:
        self.api_keys: list[int] = []
        self.gate: asyncio.Event | None = None  # when set, Fetches are answered once it is

    def version(self, api_key: int) -> int:
        return 16 if api_key == api.FETCH else 2  # as negotiated

    async def request_frame(self, api_key: int, fields: dict[str, Any], *, version: int, timeout: float) -> bytes:
        self.api_keys.append(api_key)
        assert version == self.version(api_key)
        await asyncio.sleep(0)  # answered later, as a remote would
        if api_key == api.FETCH and self.gate is not None:
            await self.gate.wait()
        if api_key == api.API_VERSIONS:
            return b"\x00\x00\x00\x01\x00\x00"
        response = {"throttle_time_ms": 0, "error_code": 0, "session_id": 9, "responses": [
            {"topic": "orders", "topic_id": ORDERS_ID, "partitions": [
                {"partition_index": 0, "error_code": 0, "high_watermark": 1, "last_stable_offset": 1,
                 "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
                 "records": b""}]}]}
        return bytes(encode_response(1, version, 1, build_response(1, version, response)))[4:]


def test_the_round_trip_probe_goes_out_ahead_of_the_fetch_only_when_asked_and_then_every_interval() -> None:
    connection = ProbedConnection()

    async def connect() -> Any:
        return connection

    async def scenario() -> None:
        fetcher = BrokerFetcher(connect, DEFAULTS, broker_id=1)
        fetcher.add_partition(T0, 0, ORDERS_ID)
        await fetcher.fetch()
        assert connection.api_keys == [api.FETCH] and fetcher.round_trip_s is None
        fetcher.probe_round_trip = True
        await fetcher.fetch()
        assert connection.api_keys[1:] == [api.API_VERSIONS, api.FETCH]
        assert fetcher.round_trip_s is not None and fetcher.round_trip_s >= 0
        await fetcher.fetch()  # the next probe is due ROUND_TRIP_PROBE_INTERVAL_S later
        assert connection.api_keys[3:] == [api.FETCH]

    asyncio.run(scenario())


def test_siblings_share_the_connection_and_the_probe_waits_until_nothing_else_is_in_flight() -> None:
    connection = ProbedConnection()
    connects = []

    async def connect() -> Any:
        connects.append(1)
        return connection

    async def scenario() -> None:
        gate = connection.gate = asyncio.Event()
        fetcher = BrokerFetcher(connect, DEFAULTS, broker_id=1)
        fetcher.probe_round_trip = True
        sibling = fetcher.sibling()
        fetcher.add_partition(T0, 0, ORDERS_ID)
        sibling.add_partition(("orders", 1), 0, ORDERS_ID)
        in_flight = asyncio.ensure_future(sibling.fetch())
        await asyncio.sleep(0)
        first = asyncio.ensure_future(fetcher.fetch())
        await asyncio.sleep(0)
        assert connection.api_keys == [api.FETCH, api.FETCH]  # no probe behind the sibling's Fetch
        gate.set()
        await asyncio.gather(in_flight, first)
        assert fetcher.round_trip_s is None
        await fetcher.fetch()  # alone on the connection now
        assert connection.api_keys[2:] == [api.API_VERSIONS, api.FETCH] and fetcher.round_trip_s is not None
        await sibling.close()  # ends the sibling's session only
        assert sibling.session.session_id == 0 and fetcher.session.session_id == 9

    asyncio.run(scenario())
    assert len(connects) == 3  # each of the three Fetches asked the one connection source
