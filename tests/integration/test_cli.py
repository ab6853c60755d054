"""`umbra broker` start-up: bad flags and config files get one clear line; SIGTERM shuts down cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer
from harness import create_topic, wait_until


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "umbra", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("config_text", "flags", "expected"),
    [
        ("retention: 5\n", [], "unknown setting 'retention'"),
        ("listen: nowhere\n", [], "listen: expected HOST:PORT"),
        ("listen: 127.0.0.1:99999\n", [], "listen: port 99999 is outside"),
        ("num_partitions: -3\n", [], "num_partitions: must be positive"),
        ("fsync_before_ack: maybe\n", [], "fsync_before_ack: expected true or false"),
        ("log_message_timestamp_type: Sometime\n", [], "log_message_timestamp_type"),
        ("- just\n- a list\n", [], "expected a mapping"),
        ("key: [unclosed\n", [], "not valid YAML"),
        ("", ["--node-id", "abc"], "node_id: expected an integer"),
        ("", ["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
        ("", ["--set", "nonsense"], "expected KEY=VALUE"),
        ("", ["--set", "no_such_key=1"], "unknown setting 'no_such_key'"),
        ("listeners: [{name: A, address: '127.0.0.1:0', security_protocol: TLS}]\n", [],
         "listeners[0].security_protocol: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
        ("listeners: [{name: SSL, address: '127.0.0.1:0', tls: {cert_file: /absent/s.pem, key_file: /absent/s.key}}]\n",
         [], "listeners[0].tls.cert_file: cannot read /absent/s.pem: No such file or directory"),
        ("listeners: [{name: PLAINTEXT, address: '127.0.0.1:0'}]\n", ["--listen", "127.0.0.1:0"],
         "listen: give either listen (and advertise), the one-PLAINTEXT-listener shorthand, or listeners, not both"),
        ("listeners: [{name: S, address: '127.0.0.1:0', security_protocol: SASL_PLAINTEXT, sasl_mechanisms: [GSSAPI]}]\n",
         [], "listeners[0].sasl_mechanisms: expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ],
)
def test_bad_configuration_is_one_line(tmp_path: Path, config_text: str, flags: list[str], expected: str) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(config_text)
    result = _run("broker", "--data-dir", str(tmp_path / "data"), "--config", str(config), *flags)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("umbra: error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "data").exists(), "nothing is created for a refused configuration"


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    result = _run("broker", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sigterm_flushes_and_exits_cleanly(broker_factory) -> None:
    broker = broker_factory("clean", config={"log_level": "INFO"})
    create_topic(broker.bootstrap, "kept", partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "1"})
    for i in range(100):
        producer.produce("kept", value=b"%d" % i, partition=0)
    assert producer.flush(20) == 0
    assert broker.stop() == 0
    assert "shutdown complete" in broker.log_text()
    broker.restart()
    assert "truncat" not in broker.log_text().split("start #2")[-1].lower()


def test_sigusr1_prints_every_task_and_thread_and_the_broker_serves_on(broker_factory) -> None:
    """What a stuck broker waits for (the test harness asks before it SIGKILLs one that does not stop)."""
    broker = broker_factory("stacks", config={"log_level": "INFO"})
    os.kill(broker.pid, signal.SIGUSR1)
    wait_until(lambda: "--- threads ---" in broker.log_text(), timeout=10, message="the stack dump")
    text = broker.log_text()
    assert "asyncio tasks ---" in text and "Stack for <Task" in text
    assert "Current thread" in text or "Thread 0x" in text
    create_topic(broker.bootstrap, "after-the-dump", partitions=1)  # still serving
    assert broker.stop() == 0


@pytest.mark.parametrize(("metadata", "flags", "expected"), [
    ('{"cluster_id": "someone-else"}', ["--set", "cluster_id=ours"], "belongs to cluster someone-else, not ours"),
    ("{not json", [], "is not readable cluster metadata"),
])
def test_an_unusable_data_dir_is_one_line(tmp_path: Path, metadata: str, flags: list[str], expected: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cluster-metadata.json").write_text(metadata)
    result = _run("broker", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                  *flags)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("umbra: error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (data / "cluster-metadata.json").read_text() == metadata  # left as it was


def test_admin_url_after_the_subcommand_and_from_the_environment(broker, tmp_path: Path) -> None:
    """The order people type: `umbra shadow create --config x --admin-url URL`, and `$UMBRA_ADMIN_URL` for the rest
    (a link from the broker to itself whose filter matches nothing: a real link, with nothing to replicate)."""
    spec = tmp_path / "dr.yaml"
    spec.write_text(f"name: dr\nsource:\n  bootstrap_servers: ['{broker.bootstrap}']\n"
                    "topics:\n  filters: [{include: prefix, name: nothing-matches}]\n")
    created = _run("shadow", "create", "--config", str(spec), "--admin-url", broker.admin_url)
    assert created.returncode == 0 and "created shadow link dr" in created.stdout, created.stderr

    from_env = {**os.environ, "UMBRA_ADMIN_URL": broker.admin_url}
    listed = subprocess.run([sys.executable, "-m", "umbra", "shadow", "list"], capture_output=True, text=True,
                            timeout=30, env=from_env)
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["dr", "ACTIVE"], listed.stderr
    # An explicit flag wins over the environment, before the command as after it.
    wrong_env = {**os.environ, "UMBRA_ADMIN_URL": "http://127.0.0.1:1"}
    deleted = subprocess.run([sys.executable, "-m", "umbra", "--admin-url", broker.admin_url, "shadow", "delete", "dr"],
                             capture_output=True, text=True, timeout=30, env=wrong_env)
    assert deleted.returncode == 0 and "deleted shadow link dr" in deleted.stdout, deleted.stderr
    refused = subprocess.run([sys.executable, "-m", "umbra", "shadow", "list"], capture_output=True, text=True,
                             timeout=30, env=wrong_env)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("umbra: error: cannot reach the admin API at http://127.0.0.1:1: "), line
