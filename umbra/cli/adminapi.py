"""Calls to a broker's admin HTTP API, shared by the `umbra` subcommands that talk to a running broker."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:9644"


class AdminError(Exception):
    """An admin API call failed; the message is one line."""


def admin_command(sub: Any, name: str, help_text: str, whose: str,
                  parser_class: type[argparse.ArgumentParser]) -> Any:
    """Add the subcommand ``name`` that talks to a broker's admin API; returns its own subcommand parsers
    (the chosen one lands in ``<name>_command``)."""
    command = sub.add_parser(name, help=help_text)
    command.add_argument("--admin-url", default=DEFAULT_ADMIN_URL,
                         help=f"{whose} admin API (default {DEFAULT_ADMIN_URL})")
    return command.add_subparsers(dest=f"{name}_command", required=True, parser_class=parser_class)


def call(base: str, method: str, path: str, body: Any = None) -> Any:
    url = base.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise AdminError(str(message)) from None
    except urllib.error.URLError as exc:
        raise AdminError(f"cannot reach the admin API at {base}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise AdminError(f"admin API at {base}: {exc}") from None
