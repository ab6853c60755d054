"""SCRAM users on a cluster: one ``scram_users`` document in etcd, written by `umbra user --etcd` or by
AlterUserScramCredentials on any broker, and described by every broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from cluster_helpers import BrokerFactory, cluster_broker, umbra
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from harness import BrokerProcess, wait_until

from umbra.cluster.control import parse_endpoints
from umbra.cluster.etcd import change_cluster_document
from umbra.devcluster import EtcdServer

TIMEOUT = 20.0


def described(broker: BrokerProcess) -> dict[str, list[tuple[str, int]]]:
    """Every user the broker describes, with its (mechanism, iterations)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    users = admin.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return {name: sorted((str(i.mechanism), i.iterations) for i in description.scram_credential_infos)
            for name, description in users.items()}


def wait_described(broker: BrokerProcess, predicate: Callable[[dict[str, list[tuple[str, int]]]], bool],
                   message: str) -> None:
    """Each broker reads the document at its next poll of etcd (a third of the session timeout)."""
    wait_until(lambda: predicate(described(broker)), timeout=TIMEOUT, message=message, retry_on=(KafkaException,))


def test_users_live_in_etcd_for_every_broker(broker_factory: BrokerFactory, etcd: EtcdServer,
                                              tmp_path: Path) -> None:
    first, second = (cluster_broker(broker_factory, etcd, "sec", n) for n in (1, 2))
    password_file = tmp_path / "password"
    password_file.write_text("alice-password")
    created = umbra("user", "create", "alice", "--mechanism", "SCRAM-SHA-256", "--iterations", "5000",
                    "--password-file", str(password_file), "--etcd", etcd.url, "--cluster-id", "sec")
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # the cluster's brokers registered: no note about the cluster id
    alice = [(str(ScramMechanism.SCRAM_SHA_256), 5000)]
    wait_described(first, lambda users: users == {"alice": alice}, "broker 1 to describe alice")
    wait_described(second, lambda users: users == {"alice": alice}, "broker 2 to describe alice")

    admin = AdminClient({"bootstrap.servers": first.bootstrap})
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"bob-pw")],
        request_timeout=TIMEOUT)
    futures["bob"].result(timeout=TIMEOUT)
    wait_described(second, lambda users: "bob" in users, "broker 2 to describe bob")

    listed = umbra("user", "list", "--etcd", etcd.url, "--cluster-id", "sec")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "alice  SCRAM-SHA-256 (5000 iterations)\nbob  SCRAM-SHA-512 (4096 iterations)\n"
    document, registered = asyncio.run(change_cluster_document(parse_endpoints(etcd.url), "sec", "scram_users", None))
    text = json.dumps(document)
    assert registered == 2 and "alice" in text and "alice-password" not in text and "bob-pw" not in text

    deleted = umbra("user", "delete", "alice", "--etcd", etcd.url, "--cluster-id", "sec")
    assert deleted.returncode == 0 and deleted.stdout == "deleted user alice\n", deleted.stderr
    wait_described(second, lambda users: "alice" not in users, "broker 2 to forget alice")
    other = umbra("user", "list", "--etcd", etcd.url, "--cluster-id", "nosuch")
    assert other.returncode == 0 and other.stdout == "no SCRAM users\n"
    # A cluster broker's data dir is not where its users live: the offline form refuses it, naming the etcd.
    stopped = second.data_dir
    second.stop()
    offline = umbra("user", "list", "--data-dir", str(stopped))
    assert offline.returncode == 2 and f"--etcd {etcd.url} --cluster-id sec" in offline.stderr, offline.stderr
