"""Listeners on a cluster: every broker registers each listener's address in etcd, and a client is given every
broker's address on the listener it came in on (Kafka's rule), so a TLS client is steered to TLS ports only."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from cluster_helpers import BrokerFactory, alive, cluster_broker, status_when
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from harness import create_topic, http_get, wait_until
from pki import CertificateAuthority

from umbra.devcluster import EtcdServer

TIMEOUT = 60


def test_clients_get_the_addresses_of_their_listener_on_every_broker(broker_factory: BrokerFactory, etcd: EtcdServer,
                                                                    tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    listeners = [{"name": "PLAINTEXT", "address": "127.0.0.1:0"},
                 {"name": "SSL", "address": "127.0.0.1:0",
                  "tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}}]
    brokers = [cluster_broker(broker_factory, etcd, "tls", n, {"listeners": listeners,
                                                               "offsets_topic_replication_factor": 2})
               for n in (1, 2)]
    status_when(brokers[0], lambda d: alive(d) == {1: True, 2: True}, "both brokers alive")
    _, body = http_get(brokers[0].admin_url + "/v1/cluster")
    registered = {b["node_id"]: b["listeners"] for b in json.loads(body)["brokers"]}
    assert registered == {b.node_id: {"PLAINTEXT": b.bootstrap, "SSL": b.listener_bootstrap("SSL")} for b in brokers}

    tls = {"security.protocol": "SSL", "ssl.ca.location": str(ca.cert_file)}
    for listener, settings in (("PLAINTEXT", {}), ("SSL", tls)):
        admin = AdminClient({"bootstrap.servers": brokers[0].listener_bootstrap(listener), **settings})
        wanted = {b.listener_bootstrap(listener) for b in brokers}
        wait_until(lambda admin=admin, wanted=wanted: {f"{m.host}:{m.port}" for m in
                                                      admin.list_topics(timeout=10).brokers.values()} == wanted,
                   timeout=TIMEOUT, message=f"Metadata on {listener} naming both brokers' {listener} addresses")

    # Partitions led by both brokers, produced and consumed in a group through the SSL listeners only.
    create_topic(brokers[0].bootstrap, "spread", partitions=4, replication_factor=2)
    bootstrap = brokers[1].listener_bootstrap("SSL")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **tls})
    sent = [b"value-%d" % i for i in range(200)]
    for i, value in enumerate(sent):
        producer.produce("spread", value, partition=i % 4)
    assert producer.flush(TIMEOUT) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tls-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", **tls})
    received: list[bytes] = []
    try:
        consumer.subscribe(["spread"])

        def all_read() -> bool:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message.value())
            return len(received) >= len(sent)

        wait_until(all_read, timeout=TIMEOUT, interval=0, message=lambda: f"200 records, {len(received)} so far")
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)
