"""Driving shadow links over the admin API: the spec the tests use, create, status, wait until caught up.

A plain module (not the conftest) so that test helper modules can import it by name.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from harness import BrokerProcess, wait_until


def admin_call(broker: BrokerProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(HTTP status, decoded JSON) of an admin API call on ``broker``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.admin_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def link_spec(source: BrokerProcess, name: str = "dr", prefixes: tuple[str, ...] = ("",),
              excludes: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "source": {"bootstrap_servers": [source.bootstrap],
                   "client": {"fetch_max_wait_ms": 100}},
        "topics": {"sync_interval": "500ms",
                   "filters": [{"include": "prefix", "name": p} for p in prefixes]
                   + [{"exclude": "literal", "name": e} for e in excludes]},
        "consumer_offsets": {"enabled": True, "interval": "500ms"},
        "acls": {"enabled": True, "interval": "500ms"},
    }
    spec.update(overrides)
    return spec


def create_link(shadow: BrokerProcess, spec: dict[str, Any]) -> dict[str, Any]:
    status, body = admin_call(shadow, "POST", "/v1/shadow-links", spec)
    assert status == 201, body
    return body


def link_status(shadow: BrokerProcess, name: str = "dr") -> dict[str, Any]:
    status, body = admin_call(shadow, "GET", f"/v1/shadow-links/{name}/status")
    assert status == 200, body
    return body


def wait_caught_up(shadow: BrokerProcess, topics: dict[str, int], name: str = "dr",
                   timeout: float = 60) -> dict[str, Any]:
    """Wait until every partition of ``topics`` ({topic: partition count}) is replicated with lag 0."""
    def caught_up() -> dict[str, Any] | None:
        doc = link_status(shadow, name)
        parts = {(p["topic"], p["partition"]): p for p in doc["partitions"]}
        for topic, count in topics.items():
            for partition in range(count):
                p = parts.get((topic, partition))
                if p is None or p["source_high_watermark"] < 0 or p["lag"] != 0 \
                        or p["shadow_high_watermark"] != p["source_high_watermark"]:
                    return None
        return doc

    return wait_until(caught_up, timeout=timeout, interval=0.2,
                      message=lambda: f"link {name} caught up: {json.dumps(link_status(shadow, name))[:2000]}")
