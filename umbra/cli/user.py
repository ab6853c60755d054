"""`umbra user create|list|delete`: the SCRAM users (SASL/SCRAM and SASL/PLAIN), where the brokers keep them.

Two places, one of them per command:
- ``--data-dir DIR``: a stopped single broker's data directory (its control plane's ``scram_users`` document,
  read when the broker starts). A running broker holds the directory's lock, and the command is refused.
- ``--etcd URL --cluster-id ID``: a cluster's document in etcd, changed by compare-and-swap; every broker takes
  it at its next read of the control plane (within a third of the session timeout).

Passwords come from a file, stdin or an environment variable, never from the command line (``ps`` shows
arguments to everyone). Only salted, hashed keys are stored.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from umbra.cluster.control import (
    DataDirLock,
    cluster_of_data_dir,
    parse_endpoints,
    read_local_document,
    write_local_document,
)
from umbra.cluster.metadata import MetadataStore
from umbra.errors import KafkaError
from umbra.security.scram import MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism, derive_credential
from umbra.security.users import SCRAM_USERS_DOCUMENT, ScramUsers, validate_user_name

MECHANISMS = [m.value for m in ScramMechanism]
Change = Callable[[Any], Any]


class UserCliError(Exception):
    """A bad argument or a refused change: one line."""


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="SCRAM users for SASL/SCRAM and SASL/PLAIN: create, list, delete")
    cmds = user.add_subparsers(dest="user_command", required=True, parser_class=parser_class)
    create = cmds.add_parser("create", help="create a user, or set a new password for its mechanisms")
    create.add_argument("name", help="the user name (the principal is User:NAME)")
    create.add_argument("--mechanism", action="append", required=True, choices=MECHANISMS,
                        help="SCRAM-SHA-256 or SCRAM-SHA-512 (repeat for both)")
    password = create.add_mutually_exclusive_group(required=True)
    password.add_argument("--password-file", metavar="FILE", help="read the password from FILE (one line)")
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    password.add_argument("--password-env", metavar="VAR", help="read the password from environment variable VAR")
    create.add_argument("--iterations", type=int, default=MIN_ITERATIONS,
                        help=f"PBKDF2 iterations, {MIN_ITERATIONS}..{MAX_ITERATIONS} (default {MIN_ITERATIONS})")
    _add_place(create)
    listing = cmds.add_parser("list", help="user names and their mechanisms (never a secret)")
    listing.add_argument("--format", choices=("text", "json"), default="text")
    _add_place(listing)
    delete = cmds.add_parser("delete", help="delete a user, or only its credentials for some mechanisms")
    delete.add_argument("name")
    delete.add_argument("--mechanism", action="append", choices=MECHANISMS,
                        help="delete only this mechanism's credential (repeatable; default: the whole user)")
    _add_place(delete)


def _add_place(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="a stopped single broker's data directory")
    parser.add_argument("--etcd", metavar="URL", help="the cluster's etcd: http://HOST:PORT[,http://HOST:PORT...]")
    parser.add_argument("--cluster-id", metavar="ID", help="the cluster's id (with --etcd)")


def run(args: argparse.Namespace) -> int:
    change_document = _place(args)
    if args.user_command == "list":
        users = _users(change_document(None))
        if args.format == "json":
            print(json.dumps({"users": [{"name": name, "credentials": [
                {"mechanism": c.mechanism.value, "iterations": c.iterations} for c in users.credentials(name)]}
                for name in users.names()]}, indent=2))
        elif users.names():
            print("\n".join(f"{name}  {_mechanisms_text(users, name)}" for name in users.names()))
        else:
            print("no SCRAM users")
        return 0
    _check_name(args.name)
    if args.user_command == "create":
        return _create(args, change_document)
    return _delete(args, change_document)


def _create(args: argparse.Namespace, change_document: Callable[[Change | None], Any]) -> int:
    if not MIN_ITERATIONS <= args.iterations <= MAX_ITERATIONS:
        raise UserCliError(f"--iterations: {args.iterations} is not between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    password = _read_password(args)
    credentials = [derive_credential(ScramMechanism(m), password, iterations=args.iterations)
                   for m in dict.fromkeys(args.mechanism)]
    existed: list[bool] = []

    def change(document: Any) -> Any:
        users = _users(document)
        existed[:] = [args.name in users]
        for credential in credentials:
            users = users.with_credential(args.name, credential)
        return users.to_document()

    users = _users(change_document(change))
    print(f"{'updated' if existed[0] else 'created'} user {args.name}: {_mechanisms_text(users, args.name)}")
    return 0


def _delete(args: argparse.Namespace, change_document: Callable[[Change | None], Any]) -> int:
    mechanisms = [ScramMechanism(m) for m in dict.fromkeys(args.mechanism or [])]

    def change(document: Any) -> Any:
        users = _users(document)
        if args.name not in users:
            raise UserCliError(f"there is no user {args.name!r}")
        if not mechanisms:
            return users.without(args.name).to_document()
        for mechanism in mechanisms:
            if users.credential(args.name, mechanism) is None:
                raise UserCliError(f"user {args.name!r} has no {mechanism.value} credential")
            users = users.without(args.name, mechanism)
        return users.to_document()

    users = _users(change_document(change))
    if args.name in users:
        print(f"deleted {', '.join(m.value for m in mechanisms)} of user {args.name}; it keeps "
              f"{_mechanisms_text(users, args.name)}")
    else:
        print(f"deleted user {args.name}")
    return 0


def _mechanisms_text(users: ScramUsers, name: str) -> str:
    return ", ".join(f"{c.mechanism.value} ({c.iterations} iterations)" for c in users.credentials(name))


def _users(document: Any) -> ScramUsers:
    try:
        return ScramUsers.from_document(document)
    except KafkaError as exc:
        raise UserCliError(exc.message) from None


def _check_name(name: str) -> None:
    try:
        validate_user_name(name)
    except ValueError as exc:
        raise UserCliError(str(exc)) from None


def _read_password(args: argparse.Namespace) -> str:
    if args.password_env is not None:
        value = os.environ.get(args.password_env)
        if value is None:
            raise UserCliError(f"--password-env: environment variable {args.password_env} is not set")
        return _non_empty(value, f"environment variable {args.password_env}")
    if args.password_stdin:
        if sys.stdin.isatty():
            return _non_empty(getpass.getpass(f"password for {args.name}: "), "the password typed")
        return _non_empty(_one_line(sys.stdin.buffer.read(), "stdin"), "stdin")
    try:
        data = Path(args.password_file).read_bytes()
    except OSError as exc:
        raise UserCliError(f"--password-file {args.password_file}: {exc.strerror or exc}") from None
    return _non_empty(_one_line(data, f"--password-file {args.password_file}"), f"--password-file {args.password_file}")


def _one_line(data: bytes, source: str) -> str:
    """The text without its final line break (files and pipes end with one)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserCliError(f"{source}: the password is not UTF-8") from None
    return text.removesuffix("\n").removesuffix("\r")


def _non_empty(password: str, source: str) -> str:
    if not password:
        raise UserCliError(f"{source}: the password is empty")
    return password


def _place(args: argparse.Namespace) -> Callable[[Change | None], Any]:
    """How to read (None) or change the users document, from --data-dir or --etcd/--cluster-id."""
    if (args.data_dir is None) == (args.etcd is None):
        raise UserCliError("give either --data-dir DIR (a stopped broker) or --etcd URL --cluster-id ID (a cluster)")
    if args.data_dir is not None:
        if args.cluster_id is not None:
            raise UserCliError("--cluster-id goes with --etcd, not --data-dir")
        data_dir = Path(args.data_dir)
        # create on a new data dir makes it (the first super user before the first start, as kafka-storage format)
        if not data_dir.is_dir() and not (args.user_command == "create" and data_dir.parent.is_dir()
                                          and not data_dir.exists()):
            raise UserCliError(f"--data-dir {data_dir}: no such directory")
        cluster = cluster_of_data_dir(data_dir)
        if cluster is not None:  # its users live in etcd: a document written here would be ignored
            raise UserCliError(f"--data-dir {data_dir} belongs to a broker of cluster {cluster[1]!r} on etcd "
                               f"{cluster[0]}: use --etcd {cluster[0]} --cluster-id {cluster[1]}")
        return lambda change: _change_local(data_dir, change)
    if args.cluster_id is None:
        raise UserCliError("--etcd needs --cluster-id ID (the cluster's keys live under it)")
    try:
        endpoints = parse_endpoints(args.etcd)
    except ValueError as exc:
        raise UserCliError(f"--etcd: {exc}") from None
    return lambda change: _change_in_etcd(endpoints, args.cluster_id, change)


def _change_local(data_dir: Path, change: Change | None) -> Any:
    if change is None:
        return read_local_document(data_dir, SCRAM_USERS_DOCUMENT)
    data_dir.mkdir(exist_ok=True)
    lock = DataDirLock.acquire(data_dir, "stop the broker first, or use --etcd for a cluster")
    try:
        value = change(read_local_document(data_dir, SCRAM_USERS_DOCUMENT))
        write_local_document(data_dir, SCRAM_USERS_DOCUMENT, value)
    finally:
        lock.release()
    if not (data_dir / MetadataStore.FILE).exists():
        _note(f"no broker has used {data_dir} yet: the users are there when one starts on it")
    return value


def _change_in_etcd(endpoints: list[tuple[str, int]], cluster_id: str, change: Change | None) -> Any:
    from umbra.cluster.etcd import change_cluster_document  # grpc loads only for a cluster

    value, registered = asyncio.run(change_cluster_document(endpoints, cluster_id, SCRAM_USERS_DOCUMENT, change))
    if not registered and change is not None:
        _note(f"no broker has registered in cluster {cluster_id!r} yet: is --cluster-id right?")
    return value


def _note(text: str) -> None:
    print(f"umbra: note: {text}", file=sys.stderr)
