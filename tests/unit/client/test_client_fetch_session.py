"""The fetch-session state machine (sans-I/O) and BrokerFetcher driven through a scripted connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from umbra.client import BrokerFetcher, ClientConnectionError, ClientResponseError, FetchSettings
from umbra.client.fetch_session import FetchSession
from umbra.errors import ErrorCode
from umbra.protocol.codec import build_response, encode_response

T0 = ("orders", 0)
T1 = ("orders", 1)
P0 = ("payments", 0)
ORDERS_ID = uuid.uuid4()
PAYMENTS_ID = uuid.uuid4()


def established(session: FetchSession, session_id: int = 55) -> None:
    plan = session.build_request()
    assert plan.is_full
    session.on_response(plan, 0, session_id)


def test_full_request_names_everything_and_opens_a_session() -> None:
    session = FetchSession()
    session.add_partition(T0, 10, ORDERS_ID)
    session.add_partition(T1, 20, ORDERS_ID)
    plan = session.build_request()
    assert (plan.session_id, plan.epoch) == (0, 0)
    assert {tp: p.fetch_offset for tp, p in plan.partitions.items()} == {T0: 10, T1: 20}
    session.on_response(plan, 0, 55)
    assert (session.session_id, session.next_epoch) == (55, 1)


def test_incremental_requests_name_only_changes_and_forget_removed() -> None:
    session = FetchSession()
    session.add_partition(T0, 10, ORDERS_ID)
    session.add_partition(T1, 20, ORDERS_ID)
    established(session)

    plan = session.build_request()
    assert (plan.session_id, plan.epoch, plan.partitions, plan.forgotten) == (55, 1, {}, {})
    session.on_response(plan, 0, 55)

    session.set_offset(T0, 15)
    session.set_offset(T1, 20)  # unchanged: not sent
    session.add_partition(P0, 0, PAYMENTS_ID)
    session.remove_partition(T1)
    plan = session.build_request()
    assert plan.epoch == 2
    assert {tp: p.fetch_offset for tp, p in plan.partitions.items()} == {T0: 15, P0: 0}
    assert plan.forgotten == {T1: ORDERS_ID}
    assert plan.offsets == {T0: 15, P0: 0}
    session.on_response(plan, 0, 55)

    plan = session.build_request()
    assert (plan.epoch, plan.partitions, plan.forgotten) == (3, {}, {})


def test_offsets_move_only_when_told() -> None:
    session = FetchSession()
    session.add_partition(T0, 10)
    established(session)
    for _ in range(3):
        plan = session.build_request()
        session.on_response(plan, 0, 55)
        assert session.fetch_offset(T0) == 10
    with pytest.raises(KeyError):
        session.set_offset(P0, 1)


@pytest.mark.parametrize("error, keeps_id", [(ErrorCode.INVALID_FETCH_SESSION_EPOCH, True),
                                             (ErrorCode.FETCH_SESSION_ID_NOT_FOUND, False),
                                             (ErrorCode.UNKNOWN_SERVER_ERROR, True)])
def test_errors_reset_to_a_full_request(error: ErrorCode, keeps_id: bool) -> None:
    session = FetchSession()
    session.add_partition(T0, 10)
    session.add_partition(T1, 20)
    established(session)
    plan = session.build_request()
    session.on_response(plan, int(error), 0)
    plan = session.build_request()
    assert plan.is_full
    assert plan.session_id == (55 if keeps_id else 0)  # a kept id lets the remote drop the old session
    assert set(plan.partitions) == {T0, T1}


def test_lost_request_resets_and_no_session_stays_full() -> None:
    session = FetchSession()
    session.add_partition(T0, 10)
    established(session)
    session.build_request()
    session.on_request_lost()
    assert session.build_request().is_full

    sessionless = FetchSession()
    sessionless.add_partition(T0, 1)
    established(sessionless, session_id=0)  # the remote granted no session
    assert sessionless.build_request().is_full


def test_epoch_wraps_to_one() -> None:
    session = FetchSession()
    session.add_partition(T0, 1)
    established(session)
    session.next_epoch = 2**31 - 1
    assert session.build_request().epoch == 2**31 - 1
    assert session.build_request().epoch == 1


# -- BrokerFetcher over a scripted connection ------------------------------------------------------


class ScriptedConnection:
    """Answers Fetch requests with ``answer(request_fields) -> response fields`` or raises."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any], version: int = 16) -> None:
        self.answer = answer
        self.fetch_version = version
        self.requests: list[dict[str, Any]] = []

    def version(self, api_key: int) -> int:
        return self.fetch_version

    async def request_frame(self, api_key: int, fields: dict[str, Any], *, version: int, timeout: float) -> bytes:
        self.requests.append(fields)
        answer = self.answer(fields)
        if isinstance(answer, Exception):
            raise answer
        return bytes(encode_response(1, version, 1, build_response(1, version, answer)))[4:]


def answer_with(records: dict[tuple[str, int], bytes], *, error_code: int = 0, session_id: int = 9,
                by_id: bool = True) -> dict[str, Any]:
    topics: dict[str, dict[str, Any]] = {}
    for (topic, partition), data in records.items():
        topic_id = ORDERS_ID if topic == "orders" else PAYMENTS_ID
        entry = topics.setdefault(topic, {"topic": topic, "topic_id": topic_id, "partitions": []})
        entry["partitions"].append({"partition_index": partition, "error_code": 0, "high_watermark": 100,
                                    "last_stable_offset": 100, "log_start_offset": 3,
                                    "aborted_transactions": None, "preferred_read_replica": -1, "records": data})
    return {"throttle_time_ms": 0, "error_code": error_code, "session_id": session_id,
            "responses": list(topics.values())}


def make_fetcher(connection: ScriptedConnection) -> BrokerFetcher:
    async def connect() -> Any:
        return connection

    settings = FetchSettings(fetch_max_wait_ms=100, fetch_min_bytes=1, fetch_max_bytes=1000,
                             fetch_partition_max_bytes=500)
    return BrokerFetcher(connect, settings, broker_id=1)


def test_fetcher_maps_topic_ids_back_to_names_and_reports_requested_offsets() -> None:
    connection = ScriptedConnection(lambda f: answer_with({T0: b"x" * 10, P0: b""}))
    fetcher = make_fetcher(connection)
    fetcher.add_partition(T0, 5, ORDERS_ID)
    fetcher.add_partition(P0, 7, PAYMENTS_ID)
    result = asyncio.run(fetcher.fetch())
    assert result.version == 16 and result.was_full
    assert set(result.partitions) == {T0, P0}
    assert bytes(result.partitions[T0].records) == b"x" * 10
    assert (result.partitions[T0].high_watermark, result.partitions[T0].log_start_offset) == (100, 3)
    assert result.partitions[T0].fetch_offset == 5
    request = connection.requests[0]
    assert (request["max_wait_ms"], request["min_bytes"], request["max_bytes"]) == (100, 1, 1000)
    assert request["topics"][0]["partitions"][0]["partition_max_bytes"] == 500


def test_fetcher_without_topic_ids_falls_back_to_v12_names() -> None:
    connection = ScriptedConnection(lambda f: answer_with({T0: b"abc"}))
    fetcher = make_fetcher(connection)
    fetcher.add_partition(T0, 0, None)
    result = asyncio.run(fetcher.fetch())
    assert result.version == 12
    assert bytes(result.partitions[T0].records) == b"abc"


def test_fetcher_retries_a_session_error_once_as_a_full_fetch() -> None:
    replies = iter([answer_with({T0: b""}, session_id=9),
                    answer_with({}, error_code=int(ErrorCode.FETCH_SESSION_ID_NOT_FOUND), session_id=0),
                    answer_with({T0: b"again"}, session_id=10)])
    connection = ScriptedConnection(lambda f: next(replies))
    fetcher = make_fetcher(connection)
    fetcher.add_partition(T0, 0, ORDERS_ID)

    async def scenario() -> None:
        await fetcher.fetch()
        result = await fetcher.fetch()
        assert bytes(result.partitions[T0].records) == b"again"
        assert result.session_id == 10

    asyncio.run(scenario())
    epochs = [(r["session_id"], r["session_epoch"]) for r in connection.requests]
    assert epochs == [(0, 0), (9, 1), (0, 0)]


def test_fetcher_raises_other_top_level_errors_and_lost_requests() -> None:
    replies = iter([answer_with({}, error_code=int(ErrorCode.UNKNOWN_SERVER_ERROR)),
                    ClientConnectionError("gone"), answer_with({T0: b""})])
    connection = ScriptedConnection(lambda f: next(replies))
    fetcher = make_fetcher(connection)
    fetcher.add_partition(T0, 0, ORDERS_ID)

    async def scenario() -> None:
        with pytest.raises(ClientResponseError):
            await fetcher.fetch()
        with pytest.raises(ClientConnectionError):
            await fetcher.fetch()
        result = await fetcher.fetch()
        assert result.was_full

    asyncio.run(scenario())
