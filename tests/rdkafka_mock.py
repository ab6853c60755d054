"""librdkafka's mock Kafka cluster, driven through ctypes: an independent Kafka-API source for tests.

librdkafka (bundled in the confluent-kafka wheel) contains a mock cluster written in C: N brokers on
loopback ports that real clients, and umbra's shadow links, reach over TCP. It runs on librdkafka's own
threads inside this (the test) process, so it keeps serving whatever Python does. Its C API moves
partition leaders, takes brokers down and up, injects request errors and narrows the API versions it
advertises, which makes it a source whose faults a test commands.

    with MockCluster(brokers=3) as mock:
        mock.create_topic("orders", partitions=6)
        mock.bootstraps          # "127.0.0.1:40001,127.0.0.1:40002,127.0.0.1:40003"
        mock.set_leader("orders", 0, 2)

``recording=True`` puts a small TCP proxy in front of every mock broker (the mock then advertises the
proxies in Metadata), which records the (API key, version) of every request that crosses it, so a test
can assert what versions a client sends. The mock's own request tracking records no versions.

The API is librdkafka's "experimental" mock API (``rdkafka_mock.h``); the signatures here are those of
the librdkafka bundled with the pinned confluent-kafka.
"""

from __future__ import annotations

import asyncio
import ctypes
import glob
import struct
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import confluent_kafka

# Kafka error codes the tests push (librdkafka's rd_kafka_resp_err_t uses the protocol's numbers).
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
UNKNOWN_TOPIC_OR_PARTITION = 3
FENCED_LEADER_EPOCH = 74
# librdkafka's own: the mock closes the connection instead of answering.
TRANSPORT = -195

FETCH, LIST_OFFSETS, METADATA, OFFSET_FETCH, FIND_COORDINATOR, API_VERSIONS = 1, 2, 3, 9, 10, 18


def _library_path() -> str:
    package = Path(confluent_kafka.__file__).resolve().parent
    found = sorted(glob.glob(str(package.parent / "confluent_kafka.libs" / "librdkafka*.so*")))
    if not found:
        raise RuntimeError(f"no bundled librdkafka next to {package}")
    return found[0]


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_library_path())
    p, i16, i32, i64, c_int, size_t = (ctypes.c_void_p, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64,
                                       ctypes.c_int, ctypes.c_size_t)
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (p, []),
        "rd_kafka_conf_set": (c_int, [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, size_t]),
        "rd_kafka_new": (p, [c_int, p, ctypes.c_char_p, size_t]),
        "rd_kafka_destroy": (None, [p]),
        "rd_kafka_mock_cluster_new": (p, [p, c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [p]),
        "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [p]),
        "rd_kafka_mock_topic_create": (c_int, [p, ctypes.c_char_p, c_int, c_int]),
        "rd_kafka_mock_topic_delete": (c_int, [p, ctypes.c_char_p]),
        "rd_kafka_mock_partition_set_leader": (c_int, [p, ctypes.c_char_p, i32, i32]),
        "rd_kafka_mock_partition_delete_records": (c_int, [p, ctypes.c_char_p, i32, i64]),
        "rd_kafka_mock_broker_set_down": (c_int, [p, i32]),
        "rd_kafka_mock_broker_set_up": (c_int, [p, i32]),
        "rd_kafka_mock_broker_set_rtt": (c_int, [p, i32, c_int]),
        "rd_kafka_mock_broker_set_host_port": (None, [p, i32, ctypes.c_char_p, c_int]),
        "rd_kafka_mock_set_apiversion": (c_int, [p, i16, i16, i16]),
        "rd_kafka_mock_push_request_errors_array": (None, [p, i16, size_t, ctypes.POINTER(c_int)]),
        "rd_kafka_mock_clear_request_errors": (None, [p, i16]),
        "rd_kafka_mock_coordinator_set": (c_int, [p, ctypes.c_char_p, ctypes.c_char_p, i32]),
        "rd_kafka_mock_partition_set_follower": (c_int, [p, ctypes.c_char_p, i32, i32]),
        "rd_kafka_mock_broker_set_rack": (c_int, [p, i32, ctypes.c_char_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    # Variadic: the fixed arguments are declared, the rest are passed as C ints.
    lib.rd_kafka_mock_partition_push_request_errors.restype = c_int
    lib.rd_kafka_mock_partition_push_request_errors.argtypes = [p, ctypes.c_char_p, i32, i16, size_t]
    lib.rd_kafka_mock_broker_push_request_error_rtts.restype = c_int
    lib.rd_kafka_mock_broker_push_request_error_rtts.argtypes = [p, i32, i16, size_t]
    return lib


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


class MockError(RuntimeError):
    pass


def _check(code: int, what: str) -> None:
    if code != 0:
        raise MockError(f"{what}: librdkafka error {code}")


class MockCluster:
    """A running mock cluster of ``brokers`` brokers (ids 1..N). Close it (or use ``with``) to stop it."""

    def __init__(self, brokers: int = 3, *, recording: bool = False) -> None:
        lib = library()
        self._lib = lib
        conf = lib.rd_kafka_conf_new()
        errstr = ctypes.create_string_buffer(512)
        # The handle only hosts the cluster; it never connects anywhere itself.
        for key, value in (("bootstrap.servers", ""), ("log_level", "3")):
            if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errstr, len(errstr)) != 0:
                raise MockError(f"conf {key}: {errstr.value.decode()}")
        self._rk = lib.rd_kafka_new(0, conf, errstr, len(errstr))
        if not self._rk:
            raise MockError(f"rd_kafka_new: {errstr.value.decode()}")
        self._cluster = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            lib.rd_kafka_destroy(self._rk)
            raise MockError("rd_kafka_mock_cluster_new failed")
        self.broker_ids = list(range(1, brokers + 1))
        self.broker_addresses = dict(zip(self.broker_ids, self._own_bootstraps().split(","), strict=True))
        self.proxy: RecordingProxies | None = None
        if recording:
            self.proxy = RecordingProxies(self.broker_addresses)
            for broker_id, (host, port) in self.proxy.addresses.items():
                lib.rd_kafka_mock_broker_set_host_port(self._cluster, broker_id, host.encode(), port)

    def _own_bootstraps(self) -> str:
        return self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    @property
    def bootstraps(self) -> str:
        """The bootstrap servers, as the mock advertises its brokers (the proxies when recording)."""
        if self.proxy is not None:
            return ",".join(f"{host}:{port}" for host, port in self.proxy.addresses.values())
        return ",".join(self.broker_addresses.values())

    def close(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._cluster = None
            self._lib.rd_kafka_destroy(self._rk)
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- topics and leaders ---------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int, replication_factor: int = 3) -> None:
        """Create ``topic``, partition p led by broker ``p % N + 1`` (the mock alone picks leaders at random)."""
        _check(self._lib.rd_kafka_mock_topic_create(self._cluster, topic.encode(), partitions, replication_factor),
               f"create topic {topic}")
        for partition in range(partitions):
            self.set_leader(topic, partition, self.broker_ids[partition % len(self.broker_ids)])

    def delete_topic(self, topic: str) -> None:
        _check(self._lib.rd_kafka_mock_topic_delete(self._cluster, topic.encode()), f"delete topic {topic}")

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Move the partition's leadership (the mock bumps its leader epoch); -1 leaves it leaderless."""
        _check(self._lib.rd_kafka_mock_partition_set_leader(self._cluster, topic.encode(), partition, broker_id),
               f"set leader of {topic}-{partition}")

    def set_follower(self, topic: str, partition: int, broker_id: int) -> None:
        """KIP-392: the leader names ``broker_id`` as the preferred read replica of the partition in Fetch."""
        _check(self._lib.rd_kafka_mock_partition_set_follower(self._cluster, topic.encode(), partition, broker_id),
               f"set follower of {topic}-{partition}")

    def set_rack(self, broker_id: int, rack: str) -> None:
        _check(self._lib.rd_kafka_mock_broker_set_rack(self._cluster, broker_id, rack.encode()), "set rack")

    def delete_records(self, topic: str, partition: int, before_offset: int) -> None:
        _check(self._lib.rd_kafka_mock_partition_delete_records(self._cluster, topic.encode(), partition,
                                                                before_offset), f"delete records of {topic}")

    def set_coordinator(self, group: str, broker_id: int) -> None:
        _check(self._lib.rd_kafka_mock_coordinator_set(self._cluster, b"group", group.encode(), broker_id),
               f"coordinator of {group}")

    # -- brokers ----------------------------------------------------------------------------------

    def broker_down(self, broker_id: int) -> None:
        """Disconnect the broker and refuse connections. Leaders do not move (as with a network cut)."""
        _check(self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id), f"broker {broker_id} down")

    def broker_up(self, broker_id: int) -> None:
        _check(self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id), f"broker {broker_id} up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        _check(self._lib.rd_kafka_mock_broker_set_rtt(self._cluster, broker_id, rtt_ms), "set rtt")

    # -- protocol -----------------------------------------------------------------------------------

    def set_api_versions(self, api_key: int, min_version: int, max_version: int) -> None:
        """Narrow what the mock advertises and accepts for ``api_key`` (-1, -1: the API is gone)."""
        _check(self._lib.rd_kafka_mock_set_apiversion(self._cluster, api_key, min_version, max_version),
               f"set versions of api {api_key}")

    def push_request_errors(self, api_key: int, errors: Iterable[int]) -> None:
        """The next requests of ``api_key`` (to any broker) fail with ``errors``, one each, in order."""
        codes = list(errors)
        array = (ctypes.c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._cluster, api_key, len(codes), array)

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def push_partition_errors(self, topic: str, partition: int, api_key: int, errors: Iterable[int]) -> None:
        """The next requests of ``api_key`` naming this partition get ``errors`` as its partition error."""
        codes = [ctypes.c_int(code) for code in errors]
        _check(self._lib.rd_kafka_mock_partition_push_request_errors(
            self._cluster, topic.encode(), partition, api_key, len(codes), *codes), "push partition errors")

    def push_broker_errors(self, broker_id: int, api_key: int, errors_and_rtts: Iterable[tuple[int, int]]) -> None:
        """The next requests of ``api_key`` to ``broker_id`` fail with these errors after these delays (ms)."""
        pairs = list(errors_and_rtts)
        flat = [ctypes.c_int(value) for pair in pairs for value in pair]
        _check(self._lib.rd_kafka_mock_broker_push_request_error_rtts(self._cluster, broker_id, api_key,
                                                                       len(pairs), *flat), "push broker errors")


# ---------------------------------------------------------------------------------------------------
# Recording proxies


class RecordingProxies:
    """One TCP proxy per mock broker, on a thread of their own, counting requests by client id, API and version."""

    def __init__(self, upstreams: dict[int, str]) -> None:
        self.requests: Counter[tuple[str, int, int]] = Counter()  # (client id, API key, version)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._ready = threading.Event()
        self.addresses: dict[int, tuple[str, int]] = {}
        self._thread = threading.Thread(target=self._run, args=(upstreams,), name="mock-proxies", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise MockError("recording proxies did not start")

    def _run(self, upstreams: dict[int, str]) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            for broker_id, address in upstreams.items():
                host, port = address.rsplit(":", 1)
                server = await asyncio.start_server(
                    lambda r, w, h=host, p=int(port): self._serve(r, w, h, p), "127.0.0.1", 0)
                self._servers.append(server)
                self.addresses[broker_id] = server.sockets[0].getsockname()[:2]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except (OSError, asyncio.CancelledError):  # the mock broker is down, or the proxies are closing
            writer.close()
            return

        async def requests() -> None:
            while True:
                size_bytes = await reader.readexactly(4)
                (size,) = struct.unpack(">i", size_bytes)
                body = await reader.readexactly(size)
                api_key, api_version, _correlation_id, id_length = struct.unpack_from(">hhih", body, 0)
                client_id = body[10:10 + id_length].decode(errors="replace") if id_length > 0 else ""
                with self._lock:
                    self.requests[(client_id, api_key, api_version)] += 1
                up_writer.write(size_bytes + body)
                await up_writer.drain()

        async def responses() -> None:
            while True:
                data = await up_reader.read(1 << 16)
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()

    def versions_sent(self, client_id_prefix: str = "") -> dict[int, set[int]]:
        """API key -> every version a request of it was sent at, by clients whose id starts with the prefix."""
        with self._lock:
            result: dict[int, set[int]] = {}
            for (client_id, api_key, version) in self.requests:
                if client_id.startswith(client_id_prefix):
                    result.setdefault(api_key, set()).add(version)
            return result

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


__all__ = ["MockCluster", "RecordingProxies", "MockError"]
