"""Listeners with TLS and mTLS, against a real broker process with three listeners: PLAINTEXT, SSL (server
authentication only) and MTLS (SSL with client_auth required), certificates from tests/pki.py.

- Real clients (confluent-kafka, kcat) produce and consume on each listener; Metadata and FindCoordinator give
  every client the address of the listener it came in on.
- With mTLS the connection's principal is the client certificate's CN. Nothing consumes principals yet (ACLs
  are stored, not enforced), so the evidence is the broker's own DEBUG line, written when a TLS connection is
  established from the value the connection then hands to every request (``RequestContext.principal``).
- Large fetches over TLS (no sendfile there: the record sets are read in chunks and encrypted) arrive byte for
  byte as over PLAINTEXT, where sendfile serves them.
- Bad clients (plaintext on a TLS port, TLS on a plaintext port, a certificate from another CA, none where one
  is required) are disconnected with one WARNING line naming the peer, and everyone else is served on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from harness import BrokerProcess, create_topic, http_get, wait_until
from kafka.protocol.consumer import FetchRequest
from pki import CertFiles, CertificateAuthority
from rawclient import RawConnection

from umbra.protocol.codec import SCHEMAS

TIMEOUT = 60
LISTENERS = ("PLAINTEXT", "SSL", "MTLS")


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CertificateAuthority(directory)
        self.server = self.ca.issue_server()
        self.alice = self.ca.issue_client("alice")
        self.mallory = CertificateAuthority(directory / "other", "other CA").issue_client("mallory")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def broker_config(pki: Pki, log_level: str = "DEBUG") -> dict[str, Any]:
    server = {"cert_file": str(pki.server.cert_file), "key_file": str(pki.server.key_file)}
    return {"log_level": log_level, "listeners": [
        {"name": "PLAINTEXT", "address": "127.0.0.1:0", "security_protocol": "PLAINTEXT"},
        {"name": "SSL", "address": "127.0.0.1:0", "security_protocol": "SSL", "tls": server},
        {"name": "MTLS", "address": "127.0.0.1:0", "security_protocol": "SSL",
         "tls": {**server, "ca_file": str(pki.ca.cert_file), "client_auth": "required"}},
    ]}


def client_settings(pki: Pki, listener: str, cert: CertFiles | None = None) -> dict[str, str]:
    """librdkafka settings for a listener (MTLS: as alice unless another certificate is given)."""
    if listener == "PLAINTEXT":
        return {}
    settings = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca.cert_file)}
    cert = cert or (pki.alice if listener == "MTLS" else None)
    if cert is not None:
        settings |= {"ssl.certificate.location": str(cert.cert_file), "ssl.key.location": str(cert.key_file)}
    return settings


def round_trip(broker: BrokerProcess, pki: Pki, listener: str, topic: str, count: int = 200) -> None:
    """Produce ``count`` records on ``listener`` and read them back there in a consumer group (FindCoordinator,
    JoinGroup, OffsetCommit: the whole group protocol over that listener)."""
    bootstrap, settings = broker.listener_bootstrap(listener), client_settings(pki, listener)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **settings})
    sent = [f"{listener}-{i}".encode() for i in range(count)]
    errors: list[object] = []
    for value in sent:
        producer.produce(topic, value, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(TIMEOUT) == 0 and not errors, errors
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"group-{listener}-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **settings})
    received: list[bytes] = []
    try:
        consumer.subscribe([topic])

        def all_read() -> bool:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                received.append(message.value())
            return len(received) >= count

        wait_until(all_read, timeout=TIMEOUT, interval=0, message=lambda: f"{count} records on {listener}, "
                   f"{len(received)} so far")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)


def log_lines(broker: BrokerProcess, pattern: str) -> list[str]:
    return [line for line in broker.log_text().splitlines() if re.search(pattern, line)]


def test_clients_produce_and_consume_on_every_listener_and_mtls_names_the_principal(
        broker_factory: Any, pki: Pki) -> None:
    broker = broker_factory("tls", config=broker_config(pki))
    _, body = http_get(broker.admin_url + "/v1/health")
    assert json.loads(body)["listeners"] == {name: broker.listener_bootstrap(name) for name in LISTENERS}
    for listener in LISTENERS:
        bootstrap = broker.listener_bootstrap(listener)
        metadata = AdminClient({"bootstrap.servers": bootstrap, **client_settings(pki, listener)}).list_topics(
            timeout=TIMEOUT)
        # Metadata answers with the address of the listener the client came in on
        assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [bootstrap]
        create_topic(broker.bootstrap, f"on-{listener.lower()}", partitions=2)
        round_trip(broker, pki, listener, f"on-{listener.lower()}")

    mtls = log_lines(broker, r"DEBUG umbra\.connection: connection \S+ on listener MTLS: ")
    assert mtls and all(line.endswith("principal User:alice") for line in mtls), mtls
    assert all(re.search(r": TLSv1\.[23], principal", line) for line in mtls), mtls
    ssl_only = log_lines(broker, r"DEBUG umbra\.connection: connection \S+ on listener SSL: ")
    assert ssl_only and all(line.endswith("principal User:ANONYMOUS") for line in ssl_only), ssl_only
    assert not log_lines(broker, r" (WARNING|ERROR) |Traceback")


# --- large fetches: chunked through TLS, sendfile on PLAINTEXT ----------------------------------------------

FETCH = 1
RECORDS = 600
VALUE_BYTES = 20_000  # 12 MB: one response far larger than any socket buffer
MAX_BYTES = 32 << 20


def _value(i: int) -> bytes:
    return random.Random(i).randbytes(VALUE_BYTES)


def _sendfile_bytes(broker: BrokerProcess) -> float:
    _, body = http_get(broker.admin_url + "/metrics")
    match = re.search(rb"^umbra_fetch_sendfile_bytes_total (\S+)$", body, re.MULTILINE)
    assert match, "umbra_fetch_sendfile_bytes_total is not exported"
    return float(match.group(1))


def _fetch_request(topic: str) -> bytes:
    """One Fetch v12 of the whole partition from offset 0."""
    request = SCHEMAS[FETCH].request[12](
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=MAX_BYTES, isolation_level=0, session_id=0,
        session_epoch=-1, rack_id="", forgotten_topics_data=[],
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchTopic.FetchPartition(
            partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1, log_start_offset=-1,
            partition_max_bytes=MAX_BYTES)])])
    request.with_header(correlation_id=7, client_id="tls-fetch-test")
    return bytes(request.encode(header=True, framed=True))


def _fetch_response(sock: socket.socket, topic: str) -> bytes:
    """The response frame of one Fetch of the whole partition, raw."""
    sock.sendall(_fetch_request(topic))
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return bytes(_read_exactly(sock, size))


def _read_exactly(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, 1 << 20))
        if n == 0:
            raise ConnectionError(f"broker closed the connection after {got} of {size} bytes")
        got += n
    return buf


def _tls_socket(pki: Pki, address: str, cert: CertFiles | None = None) -> ssl.SSLSocket:
    host, _, port = address.rpartition(":")
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    if cert is not None:
        context.load_cert_chain(cert.cert_file, cert.key_file)
    return context.wrap_socket(socket.create_connection((host, int(port)), timeout=TIMEOUT), server_hostname=host)


def test_large_fetches_over_tls_arrive_whole(broker_factory: Any, pki: Pki) -> None:
    broker = broker_factory("big", config=broker_config(pki, log_level="INFO"))
    create_topic(broker.bootstrap, "big", partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 900_000,
                         "compression.type": "none", "acks": "all"})
    for i in range(RECORDS):
        producer.produce("big", _value(i), key=b"%d" % i, partition=0)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0

    before = _sendfile_bytes(broker)
    over_tls = {}
    for listener, cert in (("SSL", None), ("MTLS", pki.alice)):
        with _tls_socket(pki, broker.listener_bootstrap(listener), cert) as sock:
            over_tls[listener] = hashlib.sha256(response := _fetch_response(sock, "big")).digest()
            assert len(response) > RECORDS * VALUE_BYTES
    assert _sendfile_bytes(broker) == before, "a TLS connection must never be served with sendfile"
    host, _, port = broker.bootstrap.rpartition(":")
    with RawConnection(host, int(port), timeout=TIMEOUT) as plain:
        over_plaintext = hashlib.sha256(_fetch_response(plain.sock, "big")).digest()
    assert _sendfile_bytes(broker) > before + 10_000_000, "the PLAINTEXT fetch was not served with sendfile"
    assert over_tls == {"SSL": over_plaintext, "MTLS": over_plaintext}  # byte for byte

    # a reader that goes away in the middle of a large TLS response costs the broker nothing but that connection
    with _tls_socket(pki, broker.listener_bootstrap("SSL")) as sock:
        sock.sendall(_fetch_request("big"))
        _read_exactly(sock, 1 << 20)

    # and a real consumer, with multi-MB fetches over TLS, reads every record intact
    consumer = Consumer({"bootstrap.servers": broker.listener_bootstrap("SSL"), "group.id": "big-tls",
                         "enable.auto.commit": False, "fetch.max.bytes": MAX_BYTES,
                         "max.partition.fetch.bytes": 16 << 20, **client_settings(pki, "SSL")})
    values: dict[int, bytes] = {}
    try:
        consumer.assign([TopicPartition("big", 0, 0)])

        def all_read() -> bool:
            for message in consumer.consume(100, timeout=0.5):
                assert message.error() is None, message.error()
                values[int(message.key())] = message.value()
            return len(values) >= RECORDS

        wait_until(all_read, timeout=TIMEOUT, interval=0, message=lambda: f"{RECORDS} records, {len(values)} so far")
    finally:
        consumer.close()
    assert all(values[i] == _value(i) for i in range(RECORDS))
    assert not log_lines(broker, r" (WARNING|ERROR) |Traceback")


# --- bad clients -----------------------------------------------------------------------------------------------

def _until_closed(sock: socket.socket) -> None:
    """Read until the broker closes the connection (a reset or a TLS alert count as closed)."""
    sock.settimeout(TIMEOUT)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        pass


def _api_versions_request() -> bytes:
    request = SCHEMAS[18].request[0]()
    request.with_header(correlation_id=1, client_id="tls-test")
    return bytes(request.encode(header=True, framed=True))


def _plaintext_request_on(address: str) -> str:
    host, _, port = address.rpartition(":")
    with RawConnection(host, int(port), timeout=TIMEOUT) as connection:
        peer = "{}:{}".format(*connection.sock.getsockname())
        connection.send(18, 0)  # ApiVersions v0, in the clear
        _until_closed(connection.sock)
    return peer


def _tls_client_on(pki: Pki, address: str, cert: CertFiles | None) -> str:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    peer = "{}:{}".format(*sock.getsockname())
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    if cert is not None:
        context.load_cert_chain(cert.cert_file, cert.key_file)
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            # TLS 1.3: the client's handshake ends before the server has checked its certificate
            tls.sendall(_api_versions_request())
            _until_closed(tls)
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        pass  # refused during the handshake
    finally:
        sock.close()
    return peer


def _garbage_after_handshake_on(pki: Pki, address: str) -> str:
    """A TLS client that, once connected, writes a record the broker cannot decrypt."""
    with _tls_socket(pki, address) as tls:
        peer = "{}:{}".format(*tls.getsockname())
        tls.sendall(_api_versions_request())
        with socket.socket(fileno=os.dup(tls.fileno())) as raw:  # under the TLS layer
            raw.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))  # application data no key encrypted
            _until_closed(raw)
    return peer


def test_bad_clients_are_refused_with_one_warning_each_and_the_broker_serves_on(broker_factory: Any,
                                                                               pki: Pki) -> None:
    broker = broker_factory("refusing", config=broker_config(pki, log_level="INFO"))
    attempts = {
        _plaintext_request_on(broker.listener_bootstrap("SSL")):
            r"TLS handshake with {peer} on listener SSL failed: not a TLS client \(plaintext on a TLS listener\?\)",
        _tls_client_on(pki, broker.listener_bootstrap("PLAINTEXT"), None):
            r"closing connection {peer}: request size \d+ is outside .*; it began a TLS handshake on PLAINTEXT "
            r"listener PLAINTEXT",
        _tls_client_on(pki, broker.listener_bootstrap("MTLS"), pki.mallory):
            r"TLS handshake with {peer} on listener MTLS failed: its certificate is not trusted by ca_file",
        _tls_client_on(pki, broker.listener_bootstrap("MTLS"), None):
            r"TLS handshake with {peer} on listener MTLS failed: the client sent no certificate",
        _garbage_after_handshake_on(pki, broker.listener_bootstrap("SSL")):
            r"closing connection {peer} on listener SSL: TLS error: ",
    }
    for peer, expected in attempts.items():
        pattern = expected.format(peer=re.escape(peer))
        wait_until(lambda pattern=pattern: log_lines(broker, pattern), timeout=10, message=f"a line matching {pattern}")
        lines = log_lines(broker, re.escape(peer))
        assert len(lines) == 1 and " WARNING umbra.connection: " in lines[0], lines

    for listener in LISTENERS:  # everyone else is served as before
        create_topic(broker.bootstrap, f"after-{listener.lower()}", partitions=1)
        round_trip(broker, pki, listener, f"after-{listener.lower()}", count=50)
    log = broker.log_text()
    assert "Traceback" not in log and " ERROR " not in log
    assert len(log_lines(broker, r" WARNING ")) == len(attempts)
    assert broker.stop() == 0


# --- kcat --------------------------------------------------------------------------------------------------------

def _kcat(kcat: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([kcat, *args], input=stdin, capture_output=True, timeout=TIMEOUT)


def _kcat_settings(pki: Pki, listener: str, cert: CertFiles | None = None) -> list[str]:
    return [arg for key, value in client_settings(pki, listener, cert).items() for arg in ("-X", f"{key}={value}")]


def test_kcat_over_ssl_and_mtls(broker_factory: Any, pki: Pki, require_kcat: str) -> None:
    broker = broker_factory("kcat", config=broker_config(pki))
    for listener in ("SSL", "MTLS"):
        topic, settings = f"kcat-{listener.lower()}", _kcat_settings(pki, listener)
        create_topic(broker.bootstrap, topic, partitions=1)
        lines = [f"{listener}-{i}" for i in range(100)]
        produced = _kcat(require_kcat, "-b", broker.listener_bootstrap(listener), *settings, "-P", "-t", topic,
                         stdin="\n".join(lines).encode() + b"\n")
        assert produced.returncode == 0, produced.stderr.decode(errors="replace")
        consumed = _kcat(require_kcat, "-b", broker.listener_bootstrap(listener), *settings, "-C", "-t", topic,
                         "-e", "-o", "beginning", "-q")
        assert consumed.returncode == 0, consumed.stderr.decode(errors="replace")
        assert consumed.stdout.decode().splitlines() == lines
    assert all(line.endswith("principal User:alice")
               for line in log_lines(broker, r"connection \S+ on listener MTLS: "))

    refused = _kcat(require_kcat, "-b", broker.listener_bootstrap("MTLS"), *_kcat_settings(pki, "MTLS", pki.mallory),
                    "-L", "-m", "5")
    assert refused.returncode != 0
    wait_until(lambda: log_lines(broker, r"WARNING umbra\.connection: TLS handshake with \S+ on listener MTLS failed: "
                                         r"its certificate is not trusted by ca_file"),
               timeout=10, message="the refusal of mallory's certificate in the log")


# --- kafka-python and aiokafka ---------------------------------------------------------------------------------

def test_kafka_python_over_mtls_and_aiokafka_over_ssl(broker_factory: Any, pki: Pki) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context
    from kafka import KafkaConsumer, KafkaProducer

    broker = broker_factory("python-clients", config=broker_config(pki))
    create_topic(broker.bootstrap, "kafka-python", partitions=1)
    create_topic(broker.bootstrap, "aiokafka", partitions=1)
    sent = [b"record-%d" % i for i in range(100)]

    mtls = {"bootstrap_servers": broker.listener_bootstrap("MTLS"), "security_protocol": "SSL",
            "ssl_cafile": str(pki.ca.cert_file), "ssl_certfile": str(pki.alice.cert_file),
            "ssl_keyfile": str(pki.alice.key_file)}
    producer = KafkaProducer(acks="all", **mtls)
    for value in sent:
        producer.send("kafka-python", value)
    producer.flush(TIMEOUT)
    producer.close()
    consumer = KafkaConsumer("kafka-python", auto_offset_reset="earliest", enable_auto_commit=False, **mtls)
    received: list[bytes] = []
    try:
        def all_read() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(record.value for record in records)
            return len(received) >= len(sent)

        wait_until(all_read, timeout=TIMEOUT, interval=0, message="kafka-python's records")
    finally:
        consumer.close()
    assert received == sent

    async def aiokafka_round_trip() -> list[bytes]:
        settings = {"bootstrap_servers": broker.listener_bootstrap("SSL"), "security_protocol": "SSL",
                    "ssl_context": create_ssl_context(cafile=str(pki.ca.cert_file))}
        producer = AIOKafkaProducer(acks="all", **settings)
        await producer.start()
        try:
            for value in sent:
                await producer.send("aiokafka", value)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("aiokafka", auto_offset_reset="earliest", enable_auto_commit=False, **settings)
        await consumer.start()
        values: list[bytes] = []
        try:
            async with asyncio.timeout(TIMEOUT):
                while len(values) < len(sent):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        values.extend(record.value for record in records)
        finally:
            await consumer.stop()
        return values

    assert asyncio.run(aiokafka_round_trip()) == sent
    assert log_lines(broker, r"connection \S+ on listener MTLS: TLSv1\.[23], principal User:alice")
    assert not log_lines(broker, r" (WARNING|ERROR) |Traceback")


def test_tls_connections_count_in_the_connection_limits_from_their_accept(broker_factory: Any, pki: Pki) -> None:
    broker = broker_factory("limited", config={**broker_config(pki, log_level="INFO"), "max_connections_per_ip": 2})
    address = broker.listener_bootstrap("SSL")
    held = [_tls_socket(pki, address) for _ in range(2)]
    try:
        for sock in held:  # both served
            sock.sendall(_api_versions_request())
            assert struct.unpack(">i", _read_exactly(sock, 4))[0] > 0
        with pytest.raises(OSError):  # a third is closed at its accept, before any handshake
            with _tls_socket(pki, address) as third:
                third.sendall(_api_versions_request())
                _read_exactly(third, 4)
        held.pop().close()

        def served_again() -> bool:
            with _tls_socket(pki, address) as again:
                again.sendall(_api_versions_request())
                return struct.unpack(">i", _read_exactly(again, 4))[0] > 0

        wait_until(served_again, timeout=10, retry_on=(OSError,), message="a TLS connection once a slot is free")
    finally:
        for sock in held:
            sock.close()
    assert log_lines(broker, r"WARNING \S+: refusing connections")
