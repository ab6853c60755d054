"""Calls to a broker's admin HTTP API, shared by the `umbra` subcommands that talk to a running broker."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:9644"


class AdminError(Exception):
    """An admin API call failed; the message is one line."""


ADMIN_URL_ENV = "UMBRA_ADMIN_URL"


class _AdminSubcommands:
    """Subcommand parsers that each accept ``--admin-url`` too, so it works before or after the subcommand."""

    def __init__(self, action: Any, whose: str) -> None:
        self._action = action
        self._whose = whose

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        _add_admin_url(parser, self._whose)
        return parser


def _add_admin_url(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--admin-url", default=argparse.SUPPRESS,
                        help=f"{whose} admin API (default ${ADMIN_URL_ENV}, else {DEFAULT_ADMIN_URL})")


def admin_command(sub: Any, name: str, help_text: str, whose: str,
                  parser_class: type[argparse.ArgumentParser]) -> _AdminSubcommands:
    """Add the subcommand ``name`` that talks to a broker's admin API; returns its own subcommand parsers
    (the chosen one lands in ``<name>_command``). ``--admin-url`` is accepted before or after the
    subcommand; without it, ``$UMBRA_ADMIN_URL``, then the default."""
    command = sub.add_parser(name, help=help_text)
    _add_admin_url(command, whose)
    return _AdminSubcommands(command.add_subparsers(dest=f"{name}_command", required=True,
                                                    parser_class=parser_class), whose)


def resolve_admin_url(args: argparse.Namespace) -> None:
    """Fill ``args.admin_url`` from the flag, the environment or the default."""
    url = getattr(args, "admin_url", None) or os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL
    args.admin_url = url


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
