"""`umbra cluster ...`: the cluster as a broker sees it (members, controller, partitions' health)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from umbra.cli.adminapi import admin_command, call


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    cmds = admin_command(sub, "cluster", "the cluster: brokers, controller, partitions", "any broker's",
                         parser_class)
    status = cmds.add_parser("status", help="brokers (alive or not), the controller, partition health")
    status.add_argument("--format", choices=("text", "json"), default="text")
    rebalance = cmds.add_parser("rebalance", help="spread replicas and leaders evenly over the live brokers "
                                                  "(ask the controller)")
    rebalance.add_argument("--format", choices=("text", "json"), default="text")


def status_text(doc: dict[str, Any]) -> str:
    controller = doc["controller"] if doc["controller"] is not None else "none elected"
    lines = [f"cluster {doc['cluster_id']}: controller {controller} (epoch {doc['controller_epoch']})"]
    if not doc.get("control_plane_reachable", True):
        lines.append(f"  (broker {doc['node_id']} cannot reach the control plane: this is its last view)")
    lines.append(f"{'NODE':>5}  {'RACK':<10} {'KAFKA':<22} {'ADMIN':<30} ALIVE")
    for b in doc["brokers"]:
        lines.append(f"{b['node_id']:>5}  {b['rack'] or '-':<10} {b['kafka_address']:<22} {b['admin_address']:<30} "
                     f"{'yes' if b['alive'] else 'NO'}")
    parts = doc["partitions"]
    lines.append(f"partitions: {parts['total']} total, {parts['under_replicated']} under-replicated, "
                 f"{parts['offline']} offline")
    for p in doc["under_replicated"]:
        lines.append(f"  {p['topic']}-{p['partition']}: leader {p['leader']}, replicas {p['replicas']}, isr {p['isr']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.cluster_command == "rebalance":
        doc = call(args.admin_url, "POST", "/v1/cluster/rebalance")
        if args.format == "json":
            print(json.dumps(doc, indent=2))
        elif not doc["moves"]:
            print(f"balanced: nothing to move over brokers {doc['brokers']}")
        else:
            print(f"moving {len(doc['moves'])} partition(s) over brokers {doc['brokers']} "
                  "(`umbra cluster status` shows them under-replicated until they catch up):")
            for move in doc["moves"]:
                print(f"  {move['topic']}-{move['partition']} -> replicas {move['replicas']}")
        return 0
    doc = call(args.admin_url, "GET", "/v1/cluster")
    print(json.dumps(doc, indent=2) if args.format == "json" else status_text(doc))
    return 0
