"""Calls to a broker's admin HTTP API, shared by the `umbra` subcommands that talk to a running broker."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:9644"


class AdminError(Exception):
    """An admin API call failed; the message is one line."""


ADMIN_URL_ENV = "UMBRA_ADMIN_URL"
PASSWORD_ENV = "UMBRA_PASSWORD"


@dataclass(frozen=True)
class AdminEndpoint:
    """A broker's admin API and how to reach it: the URL, a SCRAM user's credentials (HTTP Basic), the CA that
    signed an https admin API's certificate, and a client certificate. ``str()`` is the URL."""

    url: str
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __str__(self) -> str:
        return self.url

    def headers(self) -> dict[str, str]:
        if self.user is None:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise AdminError(f"--ca-file/--cert-file: cannot load them: {exc}") from None
        return context


# The admin API's options, by their attribute name: accepted before the command (`umbra --admin-url URL shadow
# list`), between it and its subcommand, and after the subcommand.
ADMIN_OPTIONS = {"admin_url": "--admin-url", "user": "--user", "ca_file": "--ca-file", "cert_file": "--cert-file",
                 "key_file": "--key-file"}


class _AdminSubcommands:
    """Subcommand parsers that each accept ``--admin-url`` too, so it works before or after the subcommand."""

    def __init__(self, action: Any, whose: str) -> None:
        self._action = action
        self._whose = whose

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        add_admin_options(parser, self._whose)
        return parser


def add_admin_options(parser: argparse.ArgumentParser, whose: str) -> None:
    """Add the admin API's options to ``parser``. They default to absent (SUPPRESS), so that a parser deeper in
    the command line never overwrites a value given before it."""
    parser.add_argument("--admin-url", default=argparse.SUPPRESS,
                        help=f"{whose} admin API (default ${ADMIN_URL_ENV}, else {DEFAULT_ADMIN_URL})")
    parser.add_argument("--user", default=argparse.SUPPRESS,
                        help=f"a SCRAM user of the cluster (the password from ${PASSWORD_ENV}, else a prompt)")
    parser.add_argument("--ca-file", default=argparse.SUPPRESS, help="the CA of an https admin API's certificate")
    parser.add_argument("--cert-file", default=argparse.SUPPRESS, help="a client certificate (with --key-file)")
    parser.add_argument("--key-file", default=argparse.SUPPRESS, help="the client certificate's key")


def admin_command(sub: Any, name: str, help_text: str, whose: str,
                  parser_class: type[argparse.ArgumentParser]) -> _AdminSubcommands:
    """Add the subcommand ``name`` that talks to a broker's admin API; returns its own subcommand parsers
    (the chosen one lands in ``<name>_command``). ``--admin-url`` is accepted before or after the
    subcommand; without it, ``$UMBRA_ADMIN_URL``, then the default."""
    command = sub.add_parser(name, help=help_text)
    add_admin_options(command, whose)
    return _AdminSubcommands(command.add_subparsers(dest=f"{name}_command", required=True,
                                                    parser_class=parser_class), whose)


def resolve_admin_url(args: argparse.Namespace) -> None:
    """Make ``args.admin_url`` an :class:`AdminEndpoint`: the URL from the flag, the environment or the default,
    and the credentials and certificates the flags name. The password is never an argument."""
    url, source = getattr(args, "admin_url", None), "--admin-url"  # an explicit flag wins over the environment
    if url is None:
        url, source = os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL, f"${ADMIN_URL_ENV}"
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise AdminError(f"{source} {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    user = getattr(args, "user", None)
    password = None
    if user is not None:
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise AdminError(f"--user {user}: set {PASSWORD_ENV} (no terminal to ask for the password)")
            password = getpass.getpass(f"password for {user}: ")
    cert_file, key_file = getattr(args, "cert_file", None), getattr(args, "key_file", None)
    if (cert_file is None) != (key_file is None):
        raise AdminError("--cert-file and --key-file go together")
    args.admin_url = AdminEndpoint(url, user, password, getattr(args, "ca_file", None), cert_file, key_file)


def call(base: AdminEndpoint | str, method: str, path: str, body: Any = None) -> Any:
    endpoint = base if isinstance(base, AdminEndpoint) else AdminEndpoint(base)
    url = endpoint.url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {**endpoint.headers(), **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60, context=endpoint.ssl_context()) as response:
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
