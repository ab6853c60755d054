"""`umbra shadow ...` end to end against a real source and shadow broker, links surviving a restart of
the shadow broker, and the OpenAPI document the admin API serves.

The CLI runs as an operator runs it (``python -m umbra shadow --admin-url URL ...`` in a subprocess);
what it does is checked through the admin API and ordinary Kafka clients.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from confluent_kafka import KafkaError, Producer
from harness import BrokerProcess, create_topic, http_get, wait_until
from link_api import admin_call, create_link, link_spec, link_status, wait_caught_up
from shadow_helpers_b import (
    TIMEOUT,
    admin,
    high_watermarks,
    link_names,
    produce,
    run_cli,
    topic_partitions,
    topic_states,
    wait_replicated,
)

PARTITION_KEYS = {"topic", "partition", "source_log_start_offset", "source_high_watermark", "shadow_high_watermark",
                  "lag"}


def _spec_yaml(source: BrokerProcess, sync_interval: str, prefixes: list[str]) -> str:
    """A link spec as an operator writes it, in the contract's key names."""
    filters = "".join(f'    - {{include: prefix, name: "{p}"}}\n' for p in prefixes)
    return (
        "name: dr\n"
        "source:\n"
        f'  bootstrap_servers: ["{source.bootstrap}"]\n'
        "  client: {fetch_max_wait_ms: 100, fetch_min_bytes: 1}\n"
        "topics:\n"
        f"  sync_interval: {sync_interval}\n"
        "  filters:\n"
        f"{filters}"
        '    - {exclude: literal, name: "cli-tmp"}\n'
        "  start_at: earliest\n"
        "  synced_properties: [retention.ms, cleanup.policy]\n"
        'consumer_offsets: {enabled: true, interval: 500ms, groups: [{include: prefix, name: ""}]}\n'
        "acls: {enabled: false}\n"
    )


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.stderr == "", result.stderr
    return str(result.stdout)


def _produce_one(shadow: BrokerProcess, topic: str) -> tuple[KafkaError | None, int]:
    producer = Producer({"bootstrap.servers": shadow.bootstrap, "acks": "all", "message.timeout.ms": 10000})
    reports: list[tuple[KafkaError | None, int]] = []
    producer.produce(topic, value=b"written on the shadow", partition=0,
                     on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert producer.flush(TIMEOUT) == 0
    return reports[0]


def test_cli_create_list_describe_status_update_pause_resume_failover_delete(clusters, tmp_path: Path) -> None:
    source, shadow = clusters
    create_topic(source.bootstrap, "cli-orders", partitions=3)
    create_topic(source.bootstrap, "cli-tmp", partitions=1)
    create_topic(source.bootstrap, "mark-0", partitions=1)
    produce(source, "cli-orders", 90, partitions=3)
    # A second link, on other topics, is the yardstick for "replication had time to happen" below.
    create_link(shadow, link_spec(source, name="marker", prefixes=("mark-",)))

    spec_file = tmp_path / "dr.yaml"
    spec_file.write_text(_spec_yaml(source, "500ms", ["cli-"]))
    out = _ok(run_cli(shadow, "create", "--config", str(spec_file)))
    assert out.strip() == "created shadow link dr (ACTIVE); shadow topics: cli-orders", out

    out = _ok(run_cli(shadow, "list"))
    rows = {line.split()[0]: line.split() for line in out.strip().splitlines()}
    assert sorted(rows) == ["dr", "marker"], out
    assert rows["dr"][1:] == ["ACTIVE", "topics=1", f"source={source.bootstrap}"], out

    described = yaml.safe_load(_ok(run_cli(shadow, "describe", "dr")))
    assert described["name"] == "dr" and described["state"] == "ACTIVE", described
    assert described["spec"]["topics"]["sync_interval"] == "500ms"
    assert described["spec"]["topics"]["filters"] == [{"include": "prefix", "name": "cli-"},
                                                      {"exclude": "literal", "name": "cli-tmp"}]
    assert described["spec"]["topics"]["synced_properties"] == ["retention.ms", "cleanup.policy"]
    assert described["topics"] == {"cli-orders": {"state": "ACTIVE", "reason": ""}}

    wait_caught_up(shadow, {"cli-orders": 3})
    source_hws = high_watermarks(source, "cli-orders", 3)
    doc = json.loads(_ok(run_cli(shadow, "status", "dr", "--format", "json")))
    assert doc["name"] == "dr" and doc["state"] == "ACTIVE"
    assert len(doc["partitions"]) == 3
    for p in doc["partitions"]:
        assert PARTITION_KEYS <= set(p), p
        assert (p["source_log_start_offset"], p["lag"]) == (0, 0), p
        assert p["source_high_watermark"] == p["shadow_high_watermark"] == source_hws[p["partition"]], p

    text = _ok(run_cli(shadow, "status", "dr"))
    assert text.startswith("link dr: ACTIVE\n"), text
    assert re.search(r"TOPIC +PART +STATE +SRC-START +SRC-HW +SHADOW-HW +LAG", text), text
    for partition, hw in enumerate(source_hws):
        assert re.search(rf"cli-orders +{partition} +ACTIVE +0 +{hw} +{hw} +0 ", text), text
    assert text.rstrip().endswith("total lag: 0 records"), text

    # update: a new sync interval and one more filter, which takes effect.
    create_topic(source.bootstrap, "cli2-new", partitions=2)
    spec_file.write_text(_spec_yaml(source, "1s", ["cli-", "cli2-"]))
    assert _ok(run_cli(shadow, "update", "dr", "--config", str(spec_file))).strip() == "updated shadow link dr (ACTIVE)"
    assert yaml.safe_load(_ok(run_cli(shadow, "describe", "dr")))["spec"]["topics"]["sync_interval"] == "1s"
    wait_until(lambda: topic_partitions(shadow).get("cli2-new") == 2, timeout=TIMEOUT, message="cli2-new on the shadow")
    assert "cli-tmp" not in topic_partitions(shadow)

    # pause: topics PAUSED, and replication stops while the source moves on.
    assert _ok(run_cli(shadow, "pause", "dr")).strip() == "shadow link dr: PAUSED"
    assert topic_states(shadow) == {"cli-orders": ("PAUSED", "link paused"), "cli2-new": ("PAUSED", "link paused")}
    paused_hws = high_watermarks(shadow, "cli-orders", 3)
    produce(source, "cli-orders", 60, partitions=3, prefix="while-paused")
    produce(source, "mark-0", 5)
    assert high_watermarks(source, "cli-orders", 3) == [hw + 20 for hw in source_hws]
    wait_replicated(source, shadow, "mark-0", 1)  # the other link replicated what was written later ...
    assert high_watermarks(shadow, "cli-orders", 3) == paused_hws  # ... this one did not move
    assert {p["state"] for p in link_status(shadow)["partitions"]} == {"PAUSED"}
    assert "PAUSED" in _ok(run_cli(shadow, "status", "dr"))

    # resume: it catches up.
    assert _ok(run_cli(shadow, "resume", "dr")).strip() == "shadow link dr: ACTIVE"
    wait_replicated(source, shadow, "cli-orders", 3)
    wait_caught_up(shadow, {"cli-orders": 3, "cli2-new": 2})
    assert set(topic_states(shadow).values()) == {("ACTIVE", "")}

    # failover --all --wait: a progress line, then every topic FAILED_OVER and writable.
    out = _ok(run_cli(shadow, "failover", "dr", "--all", "--wait"))
    assert out.startswith("failing over 2 topic(s) of link dr: cli-orders, cli2-new\n"), out
    assert re.search(r"failover of dr: 2/2 topics FAILED_OVER\n$", out), out
    assert set(topic_states(shadow).values()) == {("FAILED_OVER", "")}
    assert yaml.safe_load(_ok(run_cli(shadow, "describe", "dr")))["state"] == "FAILED_OVER"
    assert _produce_one(shadow, "cli-orders") == (None, high_watermarks(source, "cli-orders", 3)[0])

    # delete (no --force needed now): the link is gone, its topics and the other link stay.
    assert _ok(run_cli(shadow, "delete", "dr")).strip() == "deleted shadow link dr"
    assert link_names(shadow) == ["marker"]
    assert {"cli-orders", "cli2-new"} <= set(topic_partitions(shadow))
    result = run_cli(shadow, "describe", "dr")
    assert result.returncode != 0 and result.stderr.strip() == "umbra: error: shadow link 'dr' does not exist"


def test_links_and_topic_states_survive_a_restart(clusters) -> None:
    source, shadow = clusters
    for topic in ("keep-a", "keep-b", "keep-gone", "idle-a"):
        create_topic(source.bootstrap, topic, partitions=2)
        produce(source, topic, 20, partitions=2)
    create_link(shadow, link_spec(source, prefixes=("keep-",)))
    create_link(shadow, link_spec(source, name="idle", prefixes=("idle-",)))
    wait_caught_up(shadow, {"keep-a": 2, "keep-b": 2, "keep-gone": 2})
    wait_caught_up(shadow, {"idle-a": 2}, name="idle")

    # One topic of each state: ACTIVE, FAILED_OVER, SOURCE_DELETED, and PAUSED (the "idle" link).
    status, _ = admin_call(shadow, "POST", "/v1/shadow-links/dr/failover", {"topics": ["keep-b"]})
    assert status == 202
    source_admin = admin(source)
    source_admin.delete_topics(["keep-gone"], request_timeout=TIMEOUT)["keep-gone"].result(TIMEOUT)
    status, _ = admin_call(shadow, "POST", "/v1/shadow-links/idle/pause")
    assert status == 200
    wait_until(lambda: topic_states(shadow)["keep-b"][0] == "FAILED_OVER"
               and topic_states(shadow)["keep-gone"][0] == "SOURCE_DELETED", timeout=TIMEOUT,
               message=lambda: f"keep-b FAILED_OVER and keep-gone SOURCE_DELETED: {topic_states(shadow)}")
    assert _produce_one(shadow, "keep-b") == (None, high_watermarks(source, "keep-b", 2)[0])
    before = {name: admin_call(shadow, "GET", f"/v1/shadow-links/{name}")[1] for name in ("dr", "idle")}
    assert before["idle"]["state"] == "PAUSED"

    shadow.restart()

    after = {name: admin_call(shadow, "GET", f"/v1/shadow-links/{name}")[1] for name in ("dr", "idle")}
    assert after == before
    assert link_names(shadow) == ["dr", "idle"]
    faulted = before["dr"]["topics"]["keep-gone"]
    assert faulted["state"] == "SOURCE_DELETED" and "no longer exists" in faulted["reason"], faulted
    assert topic_states(shadow) == {"keep-a": ("ACTIVE", ""), "keep-b": ("FAILED_OVER", ""),
                                    "keep-gone": ("SOURCE_DELETED", faulted["reason"])}
    assert topic_states(shadow, "idle") == {"idle-a": ("PAUSED", "link paused")}

    # Replication of the ACTIVE topic resumes; the failed-over one is still ours (writable, not replicated);
    # the ACTIVE one is still read-only.
    produce(source, "keep-b", 10, partitions=2, prefix="not-replicated")
    produce(source, "keep-a", 30, partitions=2, prefix="after-restart")
    assert wait_replicated(source, shadow, "keep-a", 2) == [25, 25]
    wait_caught_up(shadow, {"keep-a": 2})
    assert high_watermarks(shadow, "keep-b", 2) == [11, 10]
    assert _produce_one(shadow, "keep-b") == (None, 11)
    error, _ = _produce_one(shadow, "keep-a")
    assert error is not None and error.code() == KafkaError.TOPIC_EXCEPTION, error
    # The paused link stays paused until resumed, then catches up.
    produce(source, "idle-a", 10, partitions=2)
    status, _ = admin_call(shadow, "POST", "/v1/shadow-links/idle/resume")
    assert status == 200
    assert wait_replicated(source, shadow, "idle-a", 2) == [15, 15]


def test_openapi_document_is_served_and_parses(broker: BrokerProcess) -> None:
    status, body = http_get(broker.admin_url + "/v1/openapi.yaml")
    assert status == 200
    doc = yaml.safe_load(body)
    assert str(doc["openapi"]).startswith("3.")
    for path, methods in {"/v1/shadow-links": {"get", "post"},
                          "/v1/shadow-links/{name}": {"get", "put", "delete"},
                          "/v1/shadow-links/{name}/status": {"get"},
                          "/v1/shadow-links/{name}/pause": {"post"},
                          "/v1/shadow-links/{name}/resume": {"post"},
                          "/v1/shadow-links/{name}/failover": {"post"}}.items():
        assert methods <= set(doc["paths"][path]), (path, sorted(doc["paths"][path]))
    # The API it documents answers there too.
    assert admin_call(broker, "GET", "/v1/shadow-links") == (200, {"links": []})
