"""`umbra storage ...`: partitions that a storage error took offline, and bringing them back."""

from __future__ import annotations

import argparse
import json
from typing import Any

from umbra.cli.adminapi import admin_command, call


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    cmds = admin_command(sub, "storage", "offline partitions (disk full, I/O errors) and their recovery",
                         "the broker's", parser_class)
    status = cmds.add_parser("status", help="list offline partitions and why")
    status.add_argument("--format", choices=("text", "json"), default="text")
    cmds.add_parser("recover", help="bring offline partitions back from their files (after freeing space)")


def _offline_lines(offline: list[dict[str, Any]]) -> list[str]:
    return [f"  {p['topic']}-{p['partition']}: {p['reason']}" for p in offline]


def run(args: argparse.Namespace) -> int:
    if args.storage_command == "status":
        doc = call(args.admin_url, "GET", "/v1/storage")
        if args.format == "json":
            print(json.dumps(doc, indent=2))
        elif doc["offline"]:
            print("\n".join([f"{len(doc['offline'])} offline partition(s):", *_offline_lines(doc["offline"])]))
        else:
            print("no offline partitions")
        return 0
    doc = call(args.admin_url, "POST", "/v1/storage/recover")
    for p in doc["recovered"]:
        print(f"online again: {p['topic']}-{p['partition']} (log end offset {p['log_end_offset']})")
    if doc["offline"]:
        print("\n".join([f"still offline: {len(doc['offline'])} partition(s):", *_offline_lines(doc["offline"])]))
        return 1
    if not doc["recovered"]:
        print("no offline partitions")
    return 0
