"""`umbra shadow ...`: shadow links over the shadow cluster's admin HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from umbra.cli.adminapi import AdminError, admin_command
from umbra.cli.adminapi import call as _call

STATUS_TEXT_EVENTS = 8  # the most recent link events that `status` prints


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    cmds = admin_command(sub, "shadow", "shadow links (run against the shadow cluster)", "the shadow cluster's",
                         parser_class)
    create = cmds.add_parser("create", help="create a link from a YAML spec")
    create.add_argument("--config", required=True, help="the link spec (YAML)")
    cmds.add_parser("list", help="list links")
    for name in ("describe", "pause", "resume"):
        cmds.add_parser(name, help=f"{name} a link").add_argument("name")
    status = cmds.add_parser("status", help="replication status, per partition")
    status.add_argument("name")
    status.add_argument("--format", choices=("text", "json"), default="text")
    update = cmds.add_parser("update", help="replace a link's spec")
    update.add_argument("name")
    update.add_argument("--config", required=True)
    failover = cmds.add_parser("failover", help="make shadow topics writable (per topic, or --all)")
    failover.add_argument("name")
    group = failover.add_mutually_exclusive_group(required=True)
    group.add_argument("--topic", action="append", dest="topics", metavar="TOPIC")
    group.add_argument("--all", action="store_true")
    failover.add_argument("--wait", action="store_true",
                          help="block until every named topic is FAILED_OVER and writable on its partitions' leaders")
    failover.add_argument("--timeout", type=float, default=120.0, help="seconds --wait may take (default 120)")
    delete = cmds.add_parser("delete", help="delete a link")
    delete.add_argument("name")
    delete.add_argument("--force", action="store_true", help="fail over active topics first")


def _load_spec(path: str) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise AdminError(f"--config {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise AdminError(f"--config {path}: not valid YAML") from None


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def status_text(doc: dict[str, Any]) -> str:
    lines = [f"link {doc['name']}: {doc['state']}"]
    capabilities = doc.get("source_capabilities") or {}
    if capabilities.get("api_versions"):
        fetch = sorted({v.get("Fetch") for v in capabilities["api_versions"].values() if v.get("Fetch") is not None})
        lines.append(f"  source: Fetch v{'/'.join(map(str, fetch)) or '?'} with brokers "
                     f"{', '.join(capabilities['api_versions'])}")
        for effect in capabilities.get("degraded", {}).values():
            lines.append(f"    degraded: {effect}")
    for task in doc.get("tasks", []):
        reason = f" ({task['reason']})" if task.get("reason") else ""
        on = f" on broker {task['broker']}" if task.get("broker") is not None else ""
        lines.append(f"  task {task['task']}{on}: {task['state']}{reason}")
    for topic in doc.get("topics", []):
        reason = f" ({topic['reason']})" if topic.get("reason") else ""
        lines.append(f"  topic {topic['topic']}: {topic['state']}{reason}")
    events = doc.get("events") or []
    if events:
        lines.append("  recent events:")
        for event in events[-STATUS_TEXT_EVENTS:]:
            when = time.strftime("%H:%M:%S", time.localtime(event["time_ms"] / 1000))
            lines.append(f"    {when} {event['level']:<7} {event['event']}")
    if doc.get("partitions"):
        lines.append(f"  {'TOPIC':<24} {'PART':>4} {'STATE':<16} {'SRC-START':>10} {'SRC-HW':>10} {'SHADOW-HW':>10} "
                     f"{'LAG':>8} {'LAST-BATCH':>10} {'SRC-LEADER':>10} {'BROKER':>6}")
        for p in doc["partitions"]:
            ago = p.get("ms_since_last_batch")
            leader = p.get("source_broker")
            lines.append(f"  {p['topic']:<24} {p['partition']:>4} {p.get('state', ''):<16} "
                         f"{p['source_log_start_offset']:>10} {p['source_high_watermark']:>10} "
                         f"{p['shadow_high_watermark']:>10} {'?' if p['lag'] is None else p['lag']:>8} "
                         f"{'-' if ago is None else f'{ago / 1000:.1f}s':>10} {'-' if leader is None else leader:>10} "
                         f"{'-' if p.get('broker') is None else p['broker']:>6}")
            if p.get("reason") and p.get("state") != "ACTIVE":
                lines.append(f"      {p['reason']}")
    unknown = sum(p["lag"] is None for p in doc.get("partitions", []))
    total = f"  total lag: {sum(p['lag'] or 0 for p in doc.get('partitions', []))} records"
    if unknown:
        total += f" (and {unknown} partition{'s' * (unknown != 1)} whose source high watermark is not known yet)"
    lines.append(total)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    base = args.admin_url
    cmd = args.shadow_command
    if cmd == "create":
        doc = _call(base, "POST", "/v1/shadow-links", _load_spec(args.config))
        print(f"created shadow link {doc['name']} ({doc['state']}); shadow topics: "
              f"{', '.join(doc['topics']) or 'none yet'}")
    elif cmd == "list":
        links = _call(base, "GET", "/v1/shadow-links")["links"]
        if not links:
            print("no shadow links")
        for link in links:
            print(f"{link['name']:<20} {link['state']:<14} topics={link['topics']:<5} source={','.join(link['source'])}")
    elif cmd == "describe":
        print(yaml.safe_dump(_call(base, "GET", f"/v1/shadow-links/{_quote(args.name)}"), sort_keys=False), end="")
    elif cmd == "status":
        doc = _call(base, "GET", f"/v1/shadow-links/{_quote(args.name)}/status")
        print(json.dumps(doc, indent=2) if args.format == "json" else status_text(doc))
    elif cmd == "update":
        doc = _call(base, "PUT", f"/v1/shadow-links/{_quote(args.name)}", _load_spec(args.config))
        print(f"updated shadow link {doc['name']} ({doc['state']})")
    elif cmd in ("pause", "resume"):
        doc = _call(base, "POST", f"/v1/shadow-links/{_quote(args.name)}/{cmd}")
        print(f"shadow link {doc['name']}: {doc['state']}")
    elif cmd == "failover":
        body = {"all": True} if args.all else {"topics": args.topics}
        started = _call(base, "POST", f"/v1/shadow-links/{_quote(args.name)}/failover", body)
        topics = started["topics"]
        print(f"failing over {len(topics)} topic(s) of link {args.name}: {', '.join(topics) or '-'}")
        if args.wait:
            return _wait_failed_over(base, args.name, set(topics), args.timeout)
    elif cmd == "delete":
        suffix = "?force=true" if args.force else ""
        _call(base, "DELETE", f"/v1/shadow-links/{_quote(args.name)}{suffix}")
        print(f"deleted shadow link {args.name}")
    return 0


def _wait_failed_over(base: str, name: str, topics: set[str], timeout: float) -> int:
    """Until every topic is FAILED_OVER and every partition of them is writable on its leader (on a cluster,
    each partition's leader reports it: a broker down during the failover holds none up once another leads)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = _call(base, "GET", f"/v1/shadow-links/{_quote(name)}/status")
        states = {t["topic"]: t["state"] for t in doc.get("topics", []) if t["topic"] in topics}
        done = sum(1 for s in states.values() if s == "FAILED_OVER")
        pending = [p for p in doc.get("partitions", []) if p["topic"] in topics and not p.get("writable", True)]
        writable = f"; {len(pending)} partition(s) not writable on a leader yet" if pending and done else ""
        print(f"\rfailover of {name}: {done}/{len(topics)} topics FAILED_OVER{writable}", end="", flush=True)
        if done == len(topics) and not pending:
            print()
            return 0
        if time.monotonic() > deadline:
            print()
            waiting = sorted(t for t, s in states.items() if s != "FAILED_OVER") or sorted(
                f"{p['topic']}-{p['partition']} (leader {p.get('broker')})" for p in pending)
            print(f"umbra: error: failover of {name} not finished after {timeout:.0f}s: {', '.join(waiting)}",
                  file=sys.stderr)
            return 1
        time.sleep(0.2)
