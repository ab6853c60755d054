"""KafkaJS (pure JavaScript, its own protocol implementation) against a real umbra broker.

The client is `tests/compat/kafkajs/client.mjs`, run with node once per step; each run prints one
JSON object. KafkaJS is pinned in `kafkajs/package.json` and `package-lock.json` and installed by
`make install` (`npm ci`). Records travel between this file and the script as base64.

A missing `node` follows kcat's convention (the Debian package needs root): skip locally, fail
under CI. A missing or stale `node_modules` always fails, since `make install` installs it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import BrokerProcess, require_command
from roundtrip import PARTITIONS, RECORD_COUNT, ConsumedRecord, SentRecord, check_round_trip, make_records

KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"
CLIENT_SCRIPT = KAFKAJS_DIR / "client.mjs"
NODE_TIMEOUT_SECONDS = 90.0
PAUSE_AT = 1_000  # consumer A commits this many records before consumer B joins
STOP_AFTER = 6_000  # the first group session stops after at least this many committed records
CREATE_TIME = 0  # KafkaJS's TimestampTypes.CREATE_TIME


@dataclass(frozen=True)
class KafkaJS:
    node: str
    bootstrap: str
    env: tuple[tuple[str, str], ...] = ()  # added to the environment (a SASL password)

    def run(self, mode: str, *args: str) -> dict[str, Any]:
        command = [self.node, str(CLIENT_SCRIPT), mode, "--bootstrap", self.bootstrap, *args]
        process = subprocess.Popen(
            command, cwd=KAFKAJS_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, **dict(self.env)},
        )
        try:
            stdout, stderr = process.communicate(timeout=NODE_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()  # by pid; node starts no children
            stdout, stderr = process.communicate()
            pytest.fail(f"kafkajs {mode} timed out after {NODE_TIMEOUT_SECONDS:.0f}s\nstderr:\n{_tail(stderr)}")
        assert process.returncode == 0, f"kafkajs {mode} exited {process.returncode}\nstderr:\n{_tail(stderr)}"
        result: dict[str, Any] = json.loads(stdout)
        return result


def _tail(data: bytes) -> str:
    return data.decode(errors="replace")[-6000:]


def _pinned_kafkajs_version() -> str:
    version: str = json.loads((KAFKAJS_DIR / "package.json").read_text())["dependencies"]["kafkajs"]
    return version


def _node_with_kafkajs() -> str:
    node = require_command("node", "make install installs Debian's nodejs and npm as root")
    installed = KAFKAJS_DIR / "node_modules" / "kafkajs" / "package.json"
    pinned = _pinned_kafkajs_version()
    if not installed.exists():
        pytest.fail(f"KafkaJS is not installed in {KAFKAJS_DIR}: run `make install` (it runs npm ci there)")
    installed_version = json.loads(installed.read_text())["version"]
    if installed_version != pinned:
        pytest.fail(f"KafkaJS {installed_version} is installed but {pinned} is pinned: run `make install`")
    return node


@pytest.fixture
def kafkajs(broker: BrokerProcess) -> KafkaJS:
    return KafkaJS(_node_with_kafkajs(), broker.bootstrap)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def write_records(path: Path, records: list[SentRecord]) -> Path:
    with path.open("w") as file:
        for record in records:
            line = {
                "index": record.index,
                "partition": record.partition,
                "key": _b64(record.key),
                "value": _b64(record.value),
                "headers": [[name, _b64(value)] for name, value in record.headers],
                "timestamp": record.timestamp_ms,
            }
            file.write(json.dumps(line) + "\n")
    return path


def to_consumed(items: list[dict[str, Any]]) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(
            partition=item["partition"],
            offset=item["offset"],
            key=_bytes(item["key"]),
            value=_bytes(item["value"]),
            headers=tuple((name, _bytes(value) or b"") for name, value in item["headers"]),
            timestamp_ms=item["timestamp"],
            create_time=item["timestampType"] == CREATE_TIME,
        )
        for item in items
    ]


def test_admin_create_list_metadata_offsets_delete(kafkajs: KafkaJS, broker: BrokerProcess) -> None:
    topic = "compat-kafkajs-admin"
    created = kafkajs.run("admin-create", "--topic", topic, "--partitions", str(PARTITIONS))

    assert created["created"] is True
    assert created["createdAgain"] is False, "creating an existing topic must answer TOPIC_ALREADY_EXISTS"
    assert topic in created["topics"]
    (described,) = created["metadata"]["topics"]
    assert described["name"] == topic
    partitions = sorted(described["partitions"], key=lambda p: p["partitionId"])
    assert [p["partitionId"] for p in partitions] == list(range(PARTITIONS))
    (cluster_broker,) = created["cluster"]["brokers"]
    assert f"{cluster_broker['host']}:{cluster_broker['port']}" == broker.bootstrap
    for partition in partitions:
        assert partition["partitionErrorCode"] == 0
        assert partition["leader"] == cluster_broker["nodeId"]
        assert partition["replicas"] == partition["isr"] == [cluster_broker["nodeId"]]
    assert created["cluster"]["controller"] == cluster_broker["nodeId"]
    assert sorted((o["partition"], o["low"], o["high"]) for o in created["offsets"]) == [
        (p, "0", "0") for p in range(PARTITIONS)
    ]

    deleted = kafkajs.run("admin-delete", "--topic", topic)
    assert topic not in deleted["topicsAfter"]


@pytest.mark.parametrize("idempotent", [False, True], ids=["acks_all", "idempotent"])
def test_round_trip_group_rebalance_and_resume(kafkajs: KafkaJS, tmp_path: Path, idempotent: bool) -> None:
    """Produce 10,000 records (every other send() GZIP), read them in a group of two, resume in a third.

    The first group session commits synchronously after every batch and reports only committed
    records, so the resumed consumer must start exactly where it stopped: together they read
    every record once.
    """
    topic = f"compat-kafkajs-{'idempotent' if idempotent else 'acks-all'}"
    group = f"{topic}-group"
    base_timestamp_ms = 1_700_000_000_000
    sent = make_records("kafkajs", base_timestamp_ms=base_timestamp_ms)
    records_path = write_records(tmp_path / "records.jsonl", sent)
    kafkajs.run("admin-create", "--topic", topic, "--partitions", str(PARTITIONS))

    produced = kafkajs.run(
        "produce", "--topic", topic, "--records", str(records_path), "--gzip", *(["--idempotent"] if idempotent else [])
    )
    assert produced["gzipChunks"] == produced["chunks"] // 2 > 0
    acknowledged = {index: (partition, offset) for index, partition, offset in produced["acknowledged"]}

    first = kafkajs.run(
        "consume-group",
        "--topic",
        topic,
        "--group",
        group,
        "--pause-at",
        str(PAUSE_AT),
        "--stop-after",
        str(STOP_AFTER),
    )
    resumed = kafkajs.run("consume-resume", "--topic", topic, "--group", group)
    first_records = to_consumed(first["consumed"])
    resumed_records = to_consumed(resumed["consumed"])
    assert STOP_AFTER <= len(first_records) < RECORD_COUNT

    check_round_trip(sent, first_records + resumed_records, acknowledged)
    _check_rebalance(first, topic)
    _check_resume(first_records, resumed)

    sent_per_partition = {p: sum(1 for r in sent if r.partition == p) for p in range(PARTITIONS)}
    target_ms = base_timestamp_ms + 300_000
    inspected = kafkajs.run("admin-inspect", "--topic", topic, "--group", group, "--timestamp", str(target_ms))
    high = {o["partition"]: int(o["high"]) for o in inspected["topicOffsets"]}
    assert high == sent_per_partition
    (group_offsets,) = inspected["groupOffsets"]
    assert {o["partition"]: int(o["offset"]) for o in group_offsets["partitions"]} == high
    assert {o["partition"]: int(o["offset"]) for o in inspected["offsetsByTimestamp"]} == _first_offsets_at_or_after(
        sent, acknowledged, target_ms
    )
    (described,) = inspected["describeGroups"]
    assert (described["groupId"], described["state"], described["members"]) == (group, "Empty", [])
    assert group in {g["groupId"] for g in inspected["listGroups"]["groups"]}
    (config_resource,) = inspected["topicConfigs"]["resources"]
    assert config_resource["errorCode"] == 0
    assert {e["configName"]: e["configValue"] for e in config_resource["configEntries"]}["cleanup.policy"] == "delete"

    deleted = kafkajs.run("admin-delete", "--topic", topic, "--group", group)
    assert topic not in deleted["topicsAfter"]
    assert group not in {g["groupId"] for g in deleted["groupsAfter"]["groups"]}


def _check_rebalance(first: dict[str, Any], topic: str) -> None:
    member_a, member_b = first["members"]
    assert len(member_a["joins"]) >= 2, f"consumer A never rejoined after B arrived: {member_a['joins']}"
    assert member_a["joins"][0]["memberAssignment"] == {topic: list(range(PARTITIONS))}
    last_a = set(member_a["joins"][-1]["memberAssignment"][topic])
    last_b = set(member_b["joins"][-1]["memberAssignment"][topic])
    assert last_a and last_b and not last_a & last_b and last_a | last_b == set(range(PARTITIONS))
    assert member_a["consumed"] >= PAUSE_AT and member_b["consumed"] > 0
    (running,) = first["groupWhileRunning"]
    assert (running["state"], running["protocolType"], running["protocol"]) == (
        "Stable",
        "consumer",
        "RoundRobinAssigner",
    )
    described_assignments = sorted(sorted(m["assignment"][topic]) for m in running["members"])
    assert described_assignments == sorted([sorted(last_a), sorted(last_b)])


def _check_resume(first_records: list[ConsumedRecord], resumed: dict[str, Any]) -> None:
    next_after_first: dict[int, int] = defaultdict(int)
    for record in first_records:
        next_after_first[record.partition] = max(next_after_first[record.partition], record.offset + 1)
    committed = {c["partition"]: int(c["offset"]) for c in resumed["committedBefore"]}
    assert committed == {p: next_after_first[p] for p in committed}, "committed offsets differ from what was read"
    first_resumed: dict[int, int] = {}
    for item in resumed["consumed"]:
        first_resumed.setdefault(item["partition"], item["offset"])
    for partition, offset in first_resumed.items():
        assert offset == committed.get(partition, 0), (
            f"partition {partition}: resumed at {offset}, committed {committed}"
        )


def _first_offsets_at_or_after(
    sent: list[SentRecord], acknowledged: dict[int, tuple[int, int]], target_ms: int
) -> dict[int, int]:
    """What ListOffsets by timestamp must answer: per partition, the first offset whose timestamp >= target."""
    found: dict[int, int] = {}
    for record in sent:
        partition, offset = acknowledged[record.index]
        if record.timestamp_ms >= target_ms and offset < found.get(partition, 1 << 62):
            found[partition] = offset
    return found


def test_over_mtls(broker_factory: Any, tmp_path: Path) -> None:
    """A listener with TLS and client certificates: KafkaJS creates a topic, produces and consumes over it, and
    Metadata gives it that listener's address."""
    from pki import CertificateAuthority

    node = _node_with_kafkajs()
    ca = CertificateAuthority(tmp_path / "pki")
    server, client = ca.issue_server(), ca.issue_client("kafkajs")
    broker = broker_factory("tls", config={"log_level": "DEBUG", "listeners": [
        {"name": "PLAINTEXT", "address": "127.0.0.1:0"},
        {"name": "MTLS", "address": "127.0.0.1:0", "security_protocol": "SSL",
         "tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file), "ca_file": str(ca.cert_file),
                 "client_auth": "required"}},
    ]})
    kafkajs = KafkaJS(node, broker.listener_bootstrap("MTLS"))
    ssl = ["--ssl-ca", str(ca.cert_file), "--ssl-cert", str(client.cert_file), "--ssl-key", str(client.key_file)]
    topic = "compat-kafkajs-mtls"
    created = kafkajs.run("admin-create", "--topic", topic, "--partitions", str(PARTITIONS), *ssl)
    assert created["created"] is True
    (cluster_broker,) = created["cluster"]["brokers"]
    assert f"{cluster_broker['host']}:{cluster_broker['port']}" == broker.listener_bootstrap("MTLS")
    sent = make_records("kafkajs-mtls", count=300)
    produced = kafkajs.run("produce", "--topic", topic, "--records", str(write_records(tmp_path / "r.jsonl", sent)),
                           *ssl)
    acknowledged = {index: (partition, offset) for index, partition, offset in produced["acknowledged"]}
    resumed = kafkajs.run("consume-resume", "--topic", topic, "--group", "mtls-group", *ssl)
    check_round_trip(sent, to_consumed(resumed["consumed"]), acknowledged)
    principals = [line for line in broker.log_text().splitlines() if "on listener MTLS:" in line]
    assert principals and all(line.endswith("principal User:kafkajs") for line in principals), principals


@pytest.mark.parametrize("mechanism", ["scram-sha-512", "plain"])
def test_over_sasl_ssl(broker_factory: Any, tmp_path: Path, mechanism: str) -> None:
    """SASL_SSL with SCRAM-SHA-512 and with PLAIN: KafkaJS logs in as a user created with AlterUserScramCredentials, creates a
    topic, produces and consumes; a wrong password is refused."""
    from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
    from pki import CertificateAuthority

    node = _node_with_kafkajs()
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    broker = broker_factory("sasl", config={"log_level": "INFO", "listeners": [
        {"name": "PLAINTEXT", "address": "127.0.0.1:0"},
        {"name": "SASL_SSL", "address": "127.0.0.1:0", "security_protocol": "SASL_SSL",
         "sasl_mechanisms": ["SCRAM-SHA-512", "PLAIN"],
         "tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}},
    ]})
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsert = UserScramCredentialUpsertion("kafkajs", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                          b"kafkajs-secret")
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    login = ["--ssl-ca", str(ca.cert_file), "--sasl-mechanism", mechanism, "--sasl-username", "kafkajs"]
    kafkajs = KafkaJS(node, broker.listener_bootstrap("SASL_SSL"), (("KAFKAJS_SASL_PASSWORD", "kafkajs-secret"),))
    topic = f"compat-kafkajs-sasl-{mechanism}"
    assert kafkajs.run("admin-create", "--topic", topic, "--partitions", str(PARTITIONS), *login)["created"] is True
    sent = make_records("kafkajs-sasl", count=300)
    produced = kafkajs.run("produce", "--topic", topic, "--records", str(write_records(tmp_path / "r.jsonl", sent)),
                           *login)
    acknowledged = {index: (partition, offset) for index, partition, offset in produced["acknowledged"]}
    resumed = kafkajs.run("consume-resume", "--topic", topic, "--group", "sasl-group", *login)
    check_round_trip(sent, to_consumed(resumed["consumed"]), acknowledged)

    wrong = KafkaJS(node, broker.listener_bootstrap("SASL_SSL"), (("KAFKAJS_SASL_PASSWORD", "not-it"),))
    command = [wrong.node, str(CLIENT_SCRIPT), "admin-create", "--bootstrap", wrong.bootstrap, "--topic", "never",
               "--partitions", "1", *login]
    refused = subprocess.run(command, cwd=KAFKAJS_DIR, capture_output=True, timeout=NODE_TIMEOUT_SECONDS,
                             env={**os.environ, "KAFKAJS_SASL_PASSWORD": "not-it"})
    assert refused.returncode != 0
    assert b"SASL" in refused.stderr or b"authentication" in refused.stderr.lower(), _tail(refused.stderr)
