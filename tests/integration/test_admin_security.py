"""The admin API with TLS and authentication: HTTP Basic credentials of a SCRAM user or a client certificate;
reads need DESCRIBE on the cluster and changes ALTER. Refused calls (401, 403) change nothing; the CLI logs in
with --user (password from UMBRA_PASSWORD) and --ca-file."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType
from confluent_kafka.admin import ResourceType as KafkaResourceType
from harness import BrokerProcess, create_topic
from link_api import link_spec
from pki import CertificateAuthority

TIMEOUT = 60
USERS = {"admin": "admin-pw-1f2e", "viewer": "viewer-pw-3d4c"}


def call(broker: BrokerProcess, context: ssl.SSLContext, method: str, path: str, body: Any = None,
         user: str | None = None, password: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if user is not None:
        token = base64.b64encode(f"{user}:{password or USERS[user]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    url = broker.admin_url + path
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def secured(broker_factory: Any, tmp_path: Path) -> tuple[BrokerProcess, BrokerProcess, CertificateAuthority]:
    """A plain source, and a shadow broker whose admin API takes https with authentication, authorization on
    (admin a super user; viewer with DESCRIBE on the cluster), users created offline before its first start."""
    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()
    source = broker_factory("source")
    create_topic(source.bootstrap, "orders", partitions=2)
    shadow = broker_factory("shadow", start=False, config={
        "log_level": "INFO",
        "admin_tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file),
                      "ca_file": str(ca.cert_file), "client_auth": "requested"},
        "admin_authentication": True,
        "authorization": {"enabled": True, "super_users": ["User:admin", "User:ANONYMOUS"]},
    })
    shadow.data_dir.parent.mkdir(parents=True, exist_ok=True)
    for name, password in USERS.items():
        created = subprocess.run([sys.executable, "-m", "umbra", "user", "create", name, "--data-dir",
                                  str(shadow.data_dir), "--mechanism", "SCRAM-SHA-512", "--password-stdin"],
                                 input=password, capture_output=True, text=True, timeout=TIMEOUT)
        assert created.returncode == 0, created.stderr
    shadow.start()
    # ANONYMOUS (the Kafka listener, for this set-up only) grants viewer DESCRIBE on the cluster.
    grant = AclBinding(KafkaResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, "User:viewer", "*",
                       AclOperation.DESCRIBE, AclPermissionType.ALLOW)
    kafka_admin = AdminClient({"bootstrap.servers": shadow.bootstrap})
    for future in kafka_admin.create_acls([grant]).values():
        future.result(timeout=TIMEOUT)
    return source, shadow, ca


def test_credentials_and_rights_decide_and_refusals_change_nothing(secured: Any) -> None:
    source, shadow, ca = secured
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    assert call(shadow, context, "GET", "/v1/health")[0] == 200  # a readiness probe needs no credentials
    status, body = call(shadow, context, "GET", "/v1/shadow-links")
    assert status == 401 and "authentication required" in body["error"], body
    assert call(shadow, context, "GET", "/v1/shadow-links", user="viewer", password="wrong")[0] == 401
    assert call(shadow, context, "GET", "/metrics")[0] == 401
    assert call(shadow, context, "GET", "/v1/shadow-links", user="viewer") == (200, {"links": []})

    spec = link_spec(source)
    for user in (None, "viewer"):
        status, body = call(shadow, context, "POST", "/v1/shadow-links", spec, user=user)
        assert status == (401 if user is None else 403), body
    assert call(shadow, context, "GET", "/v1/shadow-links", user="viewer") == (200, {"links": []})  # unchanged

    status, body = call(shadow, context, "POST", "/v1/shadow-links", spec, user="admin")
    assert status == 201, body
    for user in (None, "viewer"):
        status, body = call(shadow, context, "POST", "/v1/shadow-links/dr/failover", {}, user=user)
        assert status == (401 if user is None else 403), body
    status, described = call(shadow, context, "GET", "/v1/shadow-links/dr", user="viewer")
    assert status == 200 and described["state"] == "ACTIVE", described  # no failover happened
    assert any("User:viewer" in line and "may not POST" in line for line in shadow.log_text().splitlines())


def test_a_client_certificate_authenticates_and_the_cli_logs_in(secured: Any, tmp_path: Path) -> None:
    _, shadow, ca = secured
    admin_cert = ca.issue_client("admin")
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    context.load_cert_chain(str(admin_cert.cert_file), str(admin_cert.key_file))
    assert call(shadow, context, "GET", "/v1/shadow-links") == (200, {"links": []})  # User:admin by its CN

    url = shadow.admin_url
    env = {**os.environ, "UMBRA_PASSWORD": USERS["viewer"]}
    listed = subprocess.run([sys.executable, "-m", "umbra", "shadow", "list", "--admin-url", url, "--user", "viewer",
                             "--ca-file", str(ca.cert_file)], capture_output=True, text=True, env=env,
                            timeout=TIMEOUT)
    assert listed.returncode == 0, listed.stderr
    refused = subprocess.run([sys.executable, "-m", "umbra", "shadow", "list", "--admin-url", url,
                              "--ca-file", str(ca.cert_file)], capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "authentication required" in refused.stderr
    env.pop("UMBRA_PASSWORD")
    no_password = subprocess.run([sys.executable, "-m", "umbra", "shadow", "list", "--admin-url", url, "--user",
                                  "viewer", "--ca-file", str(ca.cert_file)], capture_output=True, text=True, env=env,
                                 stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    assert no_password.returncode == 2 and "UMBRA_PASSWORD" in no_password.stderr, no_password.stderr
