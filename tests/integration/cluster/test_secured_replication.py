"""A cluster with no plaintext port: clients on SASL_PLAINTEXT, brokers replicating over a SASL_SSL listener as
their own SCRAM user (``inter_broker``), ACLs enforced. Replication works: acks=all with min.insync.replicas 2
succeeds only if the followers fetch, which they can only do logged in (there is no other port)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness import wait_until
from pki import CertificateAuthority

from umbra.devcluster import EtcdServer

TIMEOUT = 60
PASSWORDS = {"broker": "broker-pw-0d1", "admin": "admin-pw-77e"}


def test_brokers_replicate_over_an_authenticated_listener(broker_factory: Any, etcd: EtcdServer,
                                                          tmp_path: Path) -> None:
    for user, password in PASSWORDS.items():
        created = subprocess.run([sys.executable, "-m", "umbra", "user", "create", user, "--mechanism",
                                  "SCRAM-SHA-512", "--password-stdin", "--etcd", etcd.url, "--cluster-id", "sec"],
                                 input=password, capture_output=True, text=True, timeout=TIMEOUT)
        assert created.returncode == 0, created.stderr
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    secret = tmp_path / "broker.password"
    secret.write_text(PASSWORDS["broker"])
    config = {
        "listeners": [
            {"name": "CLIENT", "address": "127.0.0.1:0", "security_protocol": "SASL_PLAINTEXT",
             "sasl_mechanisms": ["SCRAM-SHA-512"]},
            {"name": "INTERNAL", "address": "127.0.0.1:0", "security_protocol": "SASL_SSL",
             "sasl_mechanisms": ["SCRAM-SHA-512"],
             "tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}},
        ],
        "inter_broker": {"listener": "INTERNAL", "tls": {"ca_file": str(ca.cert_file)},
                         "sasl": {"mechanism": "SCRAM-SHA-512", "username": "broker",
                                  "password_file": str(secret)}},
        "authorization": {"enabled": True, "super_users": ["User:admin", "User:broker"]},
        "offsets_topic_replication_factor": 2, "broker_session_timeout_ms": 3000,
    }
    brokers = {n: broker_factory(f"sec-{n}", node_id=n, config=config,
                                 extra_args=["--etcd", etcd.url, "--cluster-id", "sec"]) for n in (1, 2)}

    def login(user: str) -> dict[str, str]:
        return {"bootstrap.servers": ",".join(b.listener_bootstrap("CLIENT") for b in brokers.values()),
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
                "sasl.password": PASSWORDS[user]}

    admin = AdminClient(login("admin"))
    wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 2, timeout=30, message="two brokers")
    for future in admin.create_topics([NewTopic("secured", 2, 2, config={"min.insync.replicas": "2"})]).values():
        future.result(timeout=TIMEOUT)

    def in_sync() -> bool:
        partitions = admin.list_topics("secured", timeout=10).topics["secured"].partitions
        return len(partitions) == 2 and all(len(p.isrs) == 2 for p in partitions.values())

    wait_until(in_sync, timeout=TIMEOUT, message="both replicas of each partition in sync (followers fetching)")
    producer = Producer({**login("admin"), "acks": "all"})
    errors: list[Any] = []
    for i in range(200):
        producer.produce("secured", f"r{i}".encode(), partition=i % 2,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(TIMEOUT) == 0 and not errors, errors  # acks=all, min.insync.replicas 2: replicated
    consumer = Consumer({**login("admin"), "group.id": f"g-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    try:
        marks = [consumer.get_watermark_offsets(TopicPartition("secured", p), timeout=10)[1] for p in range(2)]
    finally:
        consumer.close()
    assert sum(marks) == 200
