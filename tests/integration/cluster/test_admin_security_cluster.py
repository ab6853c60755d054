"""A shadow cluster whose admin API is https with authentication: its brokers still reach each other (status
gathered from every broker, a failover asked of a broker that is not the controller) with the token they keep in
etcd, while a caller without credentials, or with a forged token, is refused."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness import BrokerProcess, create_topic, wait_until
from link_api import link_spec
from pki import CertificateAuthority

from umbra.devcluster import EtcdServer

TIMEOUT = 60
PASSWORD = "ops-pw-81b2"


def call(broker: BrokerProcess, context: ssl.SSLContext, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.admin_url + path, data=data, method=method,
                                     headers={**({"Content-Type": "application/json"} if data else {}),
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_brokers_call_each_other_and_strangers_are_refused(broker_factory: Any, etcd: EtcdServer,
                                                           tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    created = subprocess.run([sys.executable, "-m", "umbra", "user", "create", "ops", "--mechanism", "SCRAM-SHA-512",
                              "--password-stdin", "--etcd", etcd.url, "--cluster-id", "dr"],
                             input=PASSWORD, capture_output=True, text=True, timeout=TIMEOUT)
    assert created.returncode == 0, created.stderr
    source = broker_factory("source")
    create_topic(source.bootstrap, "orders", partitions=4)
    config = {"admin_tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file),
                            "ca_file": str(ca.cert_file)},
              "admin_authentication": True, "broker_session_timeout_ms": 3000}
    shadow = {n: broker_factory(f"dr-{n}", node_id=n, config=config,
                                extra_args=["--etcd", etcd.url, "--cluster-id", "dr"]) for n in (1, 2)}
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    login = {"Authorization": "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()}

    def both_alive() -> bool:
        status, doc = call(shadow[1], context, "GET", "/v1/cluster", headers=login)
        return status == 200 and sum(b["alive"] for b in doc["brokers"]) == 2

    wait_until(both_alive, timeout=30, message="two live shadow brokers")
    status, body = call(shadow[1], context, "POST", "/v1/shadow-links", link_spec(source), headers=login)
    assert status == 201, body

    def tasks_on_both() -> bool:  # the status is gathered from each broker: peers answer the internal calls
        status, doc = call(shadow[2], context, "GET", "/v1/shadow-links/dr/status", headers=login)
        fetchers = [t for t in doc.get("tasks", []) if t["task"].startswith("fetch-from-source-broker-")]
        return status == 200 and {t["broker"] for t in fetchers} == {1, 2}

    wait_until(tasks_on_both, timeout=TIMEOUT, message="fetch tasks reported by both shadow brokers")

    # Strangers: no credentials, or a forged broker token, on the internal endpoints too.
    assert call(shadow[2], context, "GET", "/v1/shadow-links/dr/status")[0] == 401
    forged = {"X-Umbra-Cluster-Token": "guess"}
    assert call(shadow[1], context, "POST", "/v1/internal/shadow/fence", {"link": "dr"}, headers=forged)[0] == 401
    for broker in shadow.values():
        assert "guess" not in broker.log_text()

    # A failover asked of whichever broker: the fences reach every broker through the peers' admin APIs.
    status, body = call(shadow[2], context, "POST", "/v1/shadow-links/dr/failover", {"all": True}, headers=login)
    assert status in (200, 202), body

    def failed_over() -> bool:
        status, doc = call(shadow[1], context, "GET", "/v1/shadow-links/dr/status", headers=login)
        return status == 200 and doc["state"] == "FAILED_OVER"

    wait_until(failed_over, timeout=TIMEOUT, message="the link failed over")
