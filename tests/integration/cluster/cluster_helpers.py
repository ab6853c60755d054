"""Helpers of the cluster tests: brokers on a test's etcd, and their cluster status through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from harness import BrokerProcess, wait_until

from umbra.devcluster import EtcdServer

SESSION_MS = 3000  # short leases, so that a dead broker drops out within seconds
BrokerFactory = Callable[..., BrokerProcess]


def cluster_broker(factory: BrokerFactory, etcd: EtcdServer, cluster_id: str, node_id: int,
                   config_extra: dict[str, Any] | None = None, **kw: Any) -> BrokerProcess:
    config = {"broker_session_timeout_ms": SESSION_MS, "group_initial_rebalance_delay_ms": 0, **(config_extra or {})}
    return factory(f"{cluster_id}-{node_id}", node_id=node_id, config=config,
                   extra_args=["--etcd", etcd.url, "--cluster-id", cluster_id, *kw.pop("extra_args", [])], **kw)


def umbra(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "umbra", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def status(broker: BrokerProcess) -> dict[str, Any]:
    done = umbra("cluster", "status", "--format", "json", "--admin-url", broker.admin_url)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def alive(doc: dict[str, Any]) -> dict[int, bool]:
    return {b["node_id"]: b["alive"] for b in doc["brokers"]}


def status_when(broker: BrokerProcess, predicate: Callable[[dict[str, Any]], bool], message: str,
                timeout: float = 30) -> dict[str, Any]:
    """Poll the broker's cluster status until ``predicate`` holds; that status."""
    return dict(wait_until(lambda: doc if predicate(doc := status(broker)) else None, timeout=timeout,
                           message=message))
