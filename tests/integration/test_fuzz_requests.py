"""A mutation fuzzer against a live broker: valid requests of every API it serves, with bytes flipped, cut, or
added, sent for a bounded time. Every answer must be a response to the request's correlation id that decodes
as that API's response (an error code, or a result), or a closed connection; the broker never crashes, never
logs an internal error, and keeps serving."""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from typing import Any

from harness import BrokerProcess, create_topic

from umbra.protocol.codec import SCHEMAS, build_request
from umbra.records.records import build_batch

# A new seed each run finds new inputs; a failure names its seed, and UMBRA_FUZZ_SEED replays it.
SEED = int(os.environ.get("UMBRA_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
TIME_BUDGET_S = 40.0
MAX_REQUESTS = 4000


def _seeds(topic: str) -> list[tuple[int, int, Any]]:
    """Valid requests with content, for the APIs where empty defaults would exercise little."""
    batch = build_batch([(b"k%d" % i, b"v%d" % i, [("h", b"x")], 1_000 + i) for i in range(3)])
    return [
        (0, 8, build_request(0, 8, {"transactional_id": None, "acks": 1, "timeout_ms": 1000, "topic_data": [
            {"name": topic, "partition_data": [{"index": 0, "records": batch}]}]})),
        (1, 12, build_request(1, 12, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 65536,
                                      "isolation_level": 0, "session_id": 0, "session_epoch": -1, "rack_id": "",
                                      "forgotten_topics_data": [], "topics": [{"topic": topic, "partitions": [
                                          {"partition": 0, "current_leader_epoch": -1, "fetch_offset": 0,
                                           "last_fetched_epoch": -1, "log_start_offset": -1,
                                           "partition_max_bytes": 65536}]}]})),
        (2, 5, build_request(2, 5, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}]}]})),
        (3, 12, build_request(3, 12, {"topics": [{"name": topic, "topic_id": None}],
                                      "allow_auto_topic_creation": False,
                                      "include_topic_authorized_operations": False})),
        (19, 5, build_request(19, 5, {"topics": [{"name": "fuzz-created", "num_partitions": 1,
                                                  "replication_factor": 1, "assignments": [], "configs": []}],
                                      "timeout_ms": 1000, "validate_only": True})),
        (23, 4, build_request(23, 4, {"replica_id": -1, "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}]})),
    ]


def _defaults(versions: dict[int, tuple[int, int]]) -> list[tuple[int, int, Any]]:
    requests = []
    for api_key, (lowest, highest) in sorted(versions.items()):
        if api_key in SCHEMAS:
            for version in {lowest, highest}:
                requests.append((api_key, version, SCHEMAS[api_key].request[version]()))
    return requests


def _frame(message: Any, correlation_id: int) -> bytes:
    message.with_header(correlation_id=correlation_id, client_id="fuzz")
    return bytes(message.encode(header=True, framed=True))[4:]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        position = rng.randrange(len(data)) if data else 0
        if kind < 0.5 and data:
            data[position] = rng.randrange(256)
        elif kind < 0.7 and data:
            data[position] = data[position] ^ (1 << rng.randrange(8))
        elif kind < 0.85:
            del data[position:position + rng.randint(1, 8)]
        else:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def _decode_answer(api_key: int, version: int, response: bytes) -> None:
    """Decode as the version asked; an ApiVersions refusal comes in v0, as KIP-511 says."""
    try:
        SCHEMAS[api_key].response.decode(response, version=version, header=True)
    except Exception:
        if api_key != 18:
            raise
        decoded = SCHEMAS[18].response.decode(response, version=0, header=True)
        assert decoded.error_code == 35, decoded


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except (ConnectionResetError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _api_versions(broker: BrokerProcess) -> dict[int, tuple[int, int]]:
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body := _frame(SCHEMAS[18].request[0](), 1))) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4) or b"\0\0\0\0")[0]
        response = SCHEMAS[18].response.decode(_read_exactly(sock, size), version=0, header=True)
    return {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}


def test_mutated_requests_of_every_api(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "fuzzed", partitions=1)
    versions = _api_versions(broker)
    corpus = _seeds("fuzzed") + _defaults(versions)
    assert {api_key for api_key, _, _ in corpus} >= set(versions) - {18}, "every served API is fuzzed"
    rng = random.Random(SEED)
    deadline = time.monotonic() + TIME_BUDGET_S
    sent = answered = closed = 0
    sock: socket.socket | None = None
    while time.monotonic() < deadline and sent < MAX_REQUESTS:
        api_key, version, message = rng.choice(corpus)
        correlation_id = sent + 2
        body = _mutate(_frame(message, correlation_id), rng)
        if sock is None:
            sock = socket.create_connection((broker.host, broker.port), timeout=10)
        sent += 1
        try:
            sock.sendall(struct.pack(">i", len(body)) + body)
        except (BrokenPipeError, ConnectionResetError):
            sock.close()
            sock, closed = None, closed + 1
            continue
        head = _read_exactly(sock, 4)
        if head is None:
            sock.close()
            sock, closed = None, closed + 1
            continue
        response = _read_exactly(sock, struct.unpack(">i", head)[0])
        assert response is not None, f"request {sent}: the answer was cut off"
        # It answers what its (possibly mutated) header asked, with that header's correlation id.
        asked_key, asked_version, asked_id = struct.unpack_from(">hhi", body, 0)
        assert struct.unpack_from(">i", response, 0)[0] == asked_id, f"request {sent}: wrong correlation id"
        if asked_key in SCHEMAS and 0 <= asked_version <= SCHEMAS[asked_key].response.max_version:
            try:
                _decode_answer(asked_key, asked_version, response)
            except Exception as exc:
                raise AssertionError(f"seed {SEED}, request {sent}: {SCHEMAS[asked_key].name} v{asked_version} "
                                     f"(from a {SCHEMAS[api_key].name} v{version}): the answer does not decode: "
                                     f"{exc!r}; request {body.hex()}; answer {response.hex()}") from None
        answered += 1
    if sock is not None:
        sock.close()
    assert sent >= 200 and answered and closed, (SEED, sent, answered, closed)
    assert broker.running and _api_versions(broker) == versions, f"seed {SEED}"  # alive and serving
    log = broker.log_text()
    assert "internal error" not in log and "Traceback" not in log, f"seed {SEED}: {broker.log_tail(80)}"
