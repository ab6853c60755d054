"""SASL listeners against a real broker: SASL_SSL with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and
SASL_PLAINTEXT, with users created through AlterUserScramCredentials (KIP-554) on the PLAINTEXT listener.

- Real clients log in and produce and consume: confluent-kafka (SCRAM-SHA-512 and PLAIN over SASL_SSL),
  kcat, kafka-python and aiokafka.
- The principal is the SASL user: with authorization on, alice (READ/WRITE on her topic) may use it and bob may
  not, which also shows the login is what decides.
- A wrong password gets SASL_AUTHENTICATION_FAILED with a message, an unknown mechanism gets the listener's
  list, a request before authentication and a SaslAuthenticate before the handshake close the connection,
  each with a log line naming the peer; the broker serves everyone else on.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from harness import BrokerProcess, create_topic, wait_until
from pki import CertFiles, CertificateAuthority
from rawclient import RawConnection

from umbra.protocol.codec import SCHEMAS

TIMEOUT = 60
PASSWORDS = {"alice": "alice-pw-7c1f", "bob": "bob-pw-93ad"}


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, CertFiles]:
    ca = CertificateAuthority(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue_server()


def sasl_config(ca_server: tuple[CertificateAuthority, CertFiles], **extra: Any) -> dict[str, Any]:
    _, server = ca_server
    tls = {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}
    return {"log_level": "INFO", **extra, "listeners": [
        {"name": "PLAINTEXT", "address": "127.0.0.1:0"},
        {"name": "SASL_SSL", "address": "127.0.0.1:0", "security_protocol": "SASL_SSL",
         "sasl_mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"], "tls": tls},
        {"name": "SASL_PLAINTEXT", "address": "127.0.0.1:0", "security_protocol": "SASL_PLAINTEXT",
         "sasl_mechanisms": ["SCRAM-SHA-256", "PLAIN"]},
    ]}


def create_users(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):  # a user once per request
        upserts = [UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, 4096), password.encode())
                   for name, password in PASSWORDS.items()]
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=TIMEOUT)


def librdkafka(broker: BrokerProcess, ca: CertificateAuthority, listener: str, mechanism: str, user: str,
               password: str | None = None) -> dict[str, str]:
    return {"bootstrap.servers": broker.listener_bootstrap(listener), "security.protocol": listener,
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password or PASSWORDS[user],
            **({"ssl.ca.location": str(ca.cert_file)} if listener == "SASL_SSL" else {})}


def produce_and_consume(settings: dict[str, str], topic: str, count: int = 100) -> None:
    producer = Producer({**settings, "acks": "all"})
    sent = [f"{topic}-{i}".encode() for i in range(count)]
    errors: list[object] = []
    for value in sent:
        producer.produce(topic, value, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(TIMEOUT) == 0 and not errors, errors
    consumer = Consumer({**settings, "group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    received: list[bytes] = []
    try:
        consumer.subscribe([topic])

        def read() -> bool:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                received.append(message.value())
            return len(received) >= count

        wait_until(read, timeout=TIMEOUT, interval=0, message=lambda: f"{count} records, {len(received)} so far")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)


def test_confluent_kafka_over_every_mechanism_and_listener(broker_factory: Any, server_cert: Any) -> None:
    ca, _ = server_cert
    broker = broker_factory("sasl", config=sasl_config(server_cert))
    create_users(broker)
    for listener, mechanism in [("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"),
                                ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN")]:
        topic = f"t-{listener}-{mechanism}".lower()
        create_topic(broker.bootstrap, topic, partitions=2)
        produce_and_consume(librdkafka(broker, ca, listener, mechanism, "alice"), topic)
    refused = [line for line in broker.log_text().splitlines()
               if "login refused" in line or "before SASL authentication" in line]  # the broker's own words
    assert not refused, refused


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_kcat_kafka_python_and_aiokafka_over_sasl_ssl(broker_factory: Any, server_cert: Any, require_kcat: str,
                                                     mechanism: str) -> None:
    ca, _ = server_cert
    broker = broker_factory("sasl-clients", config=sasl_config(server_cert))
    create_users(broker)
    create_topic(broker.bootstrap, "kcat", partitions=1)
    address = broker.listener_bootstrap("SASL_SSL")
    kcat_login = ["-b", address, "-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanism={mechanism}",
                  "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORDS['alice']}",
                  "-X", f"ssl.ca.location={ca.cert_file}"]
    produced = subprocess.run([require_kcat, *kcat_login, "-P", "-t", "kcat"], input=b"one\ntwo\nthree\n",
                              capture_output=True, timeout=TIMEOUT)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run([require_kcat, *kcat_login, "-C", "-t", "kcat", "-o", "beginning", "-c", "3", "-e"],
                              capture_output=True, timeout=TIMEOUT)
    assert consumed.returncode == 0 and consumed.stdout.split() == [b"one", b"two", b"three"], consumed

    import ssl

    from kafka import KafkaConsumer, KafkaProducer

    def login() -> dict[str, Any]:
        return {"bootstrap_servers": address, "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                "ssl_context": ssl.create_default_context(cafile=str(ca.cert_file)),
                "sasl_plain_username": "bob", "sasl_plain_password": PASSWORDS["bob"]}

    create_topic(broker.bootstrap, "python-clients", partitions=1)
    producer = KafkaProducer(**login(), acks="all")
    for i in range(20):
        producer.send("python-clients", f"kp-{i}".encode())
    producer.flush(TIMEOUT)
    producer.close()
    consumer = KafkaConsumer("python-clients", **login(), auto_offset_reset="earliest", consumer_timeout_ms=10_000)
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [f"kp-{i}".encode() for i in range(20)]

    async def aiokafka_round_trip() -> list[bytes]:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        producer = AIOKafkaProducer(**login(), acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait("python-clients", f"aio-{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("python-clients", **login(), auto_offset_reset="earliest")
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(TIMEOUT):
                while len(got) < 40:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += [m.value for records in batch.values() for m in records]
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(aiokafka_round_trip())
    assert got[20:] == [f"aio-{i}".encode() for i in range(20)]


def test_the_sasl_user_is_the_principal_acls_decide_on(broker_factory: Any, server_cert: Any) -> None:
    """Authorization on, alice may read and write her topic, bob has no ACLs: the login decides."""
    ca, _ = server_cert
    config = sasl_config(server_cert, authorization={"enabled": True, "super_users": ["User:ANONYMOUS"]})
    broker = broker_factory("sasl-acls", config=config)  # ANONYMOUS: the PLAINTEXT listener, for the set-up
    create_users(broker)
    create_topic(broker.bootstrap, "alices", partitions=1)
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    bindings = [AclBinding(ResourceType.TOPIC, "alices", ResourcePatternType.LITERAL, "User:alice", "*", op,
                           AclPermissionType.ALLOW) for op in (AclOperation.READ, AclOperation.WRITE)]
    bindings.append(AclBinding(ResourceType.GROUP, "*", ResourcePatternType.LITERAL, "User:alice", "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
    for future in admin.create_acls(bindings).values():
        future.result(timeout=TIMEOUT)
    produce_and_consume(librdkafka(broker, ca, "SASL_SSL", "SCRAM-SHA-512", "alice"), "alices")

    producer = Producer({**librdkafka(broker, ca, "SASL_SSL", "SCRAM-SHA-512", "bob"), "acks": "all",
                         "message.timeout.ms": 10_000})
    errors: list[Any] = []
    producer.produce("alices", b"not bob's", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(TIMEOUT)
    assert errors and errors[0] is not None and "AUTHORIZATION" in errors[0].name(), errors


def _frame(api_key: int, version: int, fields: dict[str, Any], correlation_id: int = 1) -> bytes:
    schema = SCHEMAS[api_key]
    body = schema.request(**fields).encode(version=version)  # type: ignore[call-arg]
    client_id = b"raw"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    if schema.is_flexible(version):
        header += b"\x00"
    return struct.pack(">i", len(header) + len(body)) + header + body


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_bad_logins_and_out_of_order_requests_are_refused_and_others_served(broker_factory: Any,
                                                                            server_cert: Any) -> None:
    ca, _ = server_cert
    broker = broker_factory("sasl-bad", config=sasl_config(server_cert))
    create_users(broker)
    create_topic(broker.bootstrap, "served", partitions=1)

    # A wrong password, and an unknown user: SASL_AUTHENTICATION_FAILED, with the same message for both (no hint
    # that a name is unknown). librdkafka reports it through its error callback.
    for listener, mechanism, user in [("SASL_SSL", "SCRAM-SHA-512", "alice"), ("SASL_PLAINTEXT", "PLAIN", "nobody")]:
        errors: list[Any] = []
        consumer = Consumer({**librdkafka(broker, ca, listener, mechanism, "alice", "wrong"), "sasl.username": user,
                             "group.id": "never", "error_cb": errors.append})
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=10)
        def refused(c: Consumer = consumer, seen: list[Any] = errors) -> bool:
            c.poll(0.1)  # the error callback runs from poll
            return any(e.code() == KafkaError._AUTHENTICATION for e in seen)

        wait_until(refused, timeout=20, message=lambda: f"an authentication error, got {errors}")  # noqa: B023
        consumer.close()
        reason = next(str(e) for e in errors if e.code() == KafkaError._AUTHENTICATION)
        assert "Authentication failed" in reason, reason  # Kafka's wording, for SCRAM and PLAIN alike

    host, port = broker.listener_bootstrap("SASL_PLAINTEXT").rsplit(":", 1)
    # A mechanism the listener does not enable: UNSUPPORTED_SASL_MECHANISM and the list it does.
    with RawConnection(host, int(port)) as conn:
        response = conn.request(17, 1, mechanism="GSSAPI")
        assert response.error_code == 33 and set(response.mechanisms) == {"SCRAM-SHA-256", "PLAIN"}
    # Metadata before authenticating: the connection is closed.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_frame(3, 1, {"topics": None}))
        assert _closed(sock)
    # SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then closed.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_frame(36, 1, {"auth_bytes": b"\0alice\0" + PASSWORDS["alice"].encode()}))
        assert _closed(sock)
    # A stranger's huge frame: refused before the broker buffers it.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", 50 * 1024 * 1024) + b"\0" * 1024)
        assert _closed(sock)

    def logged(pattern: str) -> bool:
        return any(pattern in line for line in broker.log_text().splitlines())

    wait_until(lambda: logged("SASL SCRAM-SHA-512 login refused"), timeout=10, message="the failed login")
    assert logged("SASL PLAIN login refused: Authentication failed: Invalid username or password")
    for pattern in ("Metadata before SASL authentication", "SaslAuthenticate before SaslHandshake",
                    "outside 0..524288"):
        assert logged(pattern), pattern
    # Everyone else is served on.
    produce_and_consume(librdkafka(broker, ca, "SASL_SSL", "SCRAM-SHA-512", "alice"), "served")


def test_a_user_created_offline_logs_in_at_the_first_start(broker_factory: Any, server_cert: Any,
                                                          tmp_path: Path) -> None:
    """``umbra user create`` on a stopped broker's data dir: the first super user exists before the first start
    (as kafka-storage format --add-scram)."""
    ca, _ = server_cert
    broker = broker_factory("sasl-offline", config=sasl_config(server_cert), start=False)
    broker.data_dir.parent.mkdir(parents=True, exist_ok=True)  # the data dir itself is new: the CLI makes it
    password_file = tmp_path / "admin.password"
    password_file.write_text("admin-pw-offline\n")
    created = subprocess.run(
        [sys.executable, "-m", "umbra", "user", "create", "admin", "--data-dir", str(broker.data_dir),
         "--mechanism", "SCRAM-SHA-512", "--password-file", str(password_file)],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert created.returncode == 0, created.stderr
    broker.start()
    create_topic(broker.bootstrap, "first", partitions=1)
    settings = librdkafka(broker, ca, "SASL_SSL", "SCRAM-SHA-512", "alice", "admin-pw-offline")
    produce_and_consume({**settings, "sasl.username": "admin"}, "first", count=10)
