"""`umbra` command line. Errors are one line on stderr naming the problem, exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from umbra import __version__
from umbra.cli import cluster as cluster_cli
from umbra.cli import dev as dev_cli
from umbra.cli import shadow as shadow_cli
from umbra.cli import storage as storage_cli
from umbra.cli import user as user_cli
from umbra.cli.adminapi import ADMIN_OPTIONS, AdminError, add_admin_options, resolve_admin_url
from umbra.cluster.control import ControlPlaneError
from umbra.cluster.metadata import DataDirError
from umbra.config import BrokerConfig, ConfigError, build_config, load_yaml
from umbra.devcluster import DevClusterError

SWITCH_INTERVAL_S = 0.001


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Every parser of the command line, the subcommands' too: so the global options (``--version`` here, the
    admin API's where a command talks to one) work before or after the subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"umbra {__version__}")

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise CliError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="umbra", description="umbra: a Kafka-API broker with shadow links")
    add_admin_options(parser, "with shadow, cluster and storage: a broker's")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    broker = sub.add_parser("broker", help="run a broker")
    broker.add_argument("--config", help="YAML file of settings (flags override it)")
    broker.add_argument("--data-dir", help="directory for logs and metadata")
    broker.add_argument("--listen", help="Kafka listener HOST:PORT (default 127.0.0.1:9092)")
    broker.add_argument("--advertise", help="HOST:PORT clients are told to connect to (default: --listen)")
    broker.add_argument("--admin-listen", help="admin HTTP listener HOST:PORT (default 127.0.0.1:9644)")
    broker.add_argument("--node-id", help="broker id (default 1)")
    broker.add_argument("--etcd", help="the control plane: http://HOST:PORT[,http://HOST:PORT...] (default: none, "
                                       "this broker alone)")
    broker.add_argument("--cluster-id", help="the cluster's id (required with --etcd; keys live under it)")
    broker.add_argument("--rack", help="this broker's rack (broker.rack)")
    broker.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other setting, e.g. --set fsync_before_ack=true (repeatable)")
    shadow_cli.add_parser(sub, _Parser)
    storage_cli.add_parser(sub, _Parser)
    cluster_cli.add_parser(sub, _Parser)
    user_cli.add_parser(sub, _Parser)
    dev_cli.add_parser(sub, _Parser)
    return parser


def broker_config_from_args(args: argparse.Namespace) -> BrokerConfig:
    file_values: dict[str, Any] = load_yaml(Path(args.config)) if args.config else {}
    flags: dict[str, Any] = {}
    for name in ("data_dir", "listen", "advertise", "admin_listen", "node_id", "etcd", "cluster_id", "rack"):
        value = getattr(args, name)
        if value is not None:
            flags[name] = value
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        flags[key] = value
    config = build_config(file_values, flags)
    _check_log_defaults(config)
    return config


def _check_log_defaults(config: BrokerConfig) -> None:
    """The log settings must make a valid topic config too (e.g. a segment must hold a batch)."""
    from umbra.cluster.configs import log_config_for
    from umbra.errors import KafkaError

    try:
        log_config_for(config, {}, {})
    except (KafkaError, ValueError) as exc:
        raise ConfigError(f"log settings: {exc}") from None


def run_broker(config: BrokerConfig) -> int:
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        pass
    from umbra.app import BrokerApp
    from umbra.tasks import dump_stacks

    # Worker threads (the log cleaner decoding records, the shadow writer) hold the GIL for up to the switch
    # interval at a time; 5 ms by default is 5 ms the event loop, and every client, waits. 1 ms is measured
    # in benchmarks/loop_stalls.py.
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def serve() -> None:
        app = BrokerApp(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump_stacks, sys.stdout)
        try:
            await app.start()
            await stop.wait()
        finally:
            await app.stop()

    asyncio.run(serve())
    return 0


# The commands that talk to a broker's admin API, and so take its options.
_ADMIN_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "shadow": shadow_cli.run, "cluster": cluster_cli.run, "storage": storage_cli.run}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        admin_command = _ADMIN_COMMANDS.get(args.command)
        if admin_command is not None:
            resolve_admin_url(args)
            return admin_command(args)
        given = [flag for name, flag in ADMIN_OPTIONS.items() if name in vars(args)]
        if given:  # given before a command that has no admin API to talk to
            raise CliError(f"{given[0]} is for the {', '.join(_ADMIN_COMMANDS)} commands, not {args.command}")
        if args.command == "broker":
            return run_broker(broker_config_from_args(args))
        if args.command == "dev":
            return dev_cli.run(args)
        if args.command == "user":
            return user_cli.run(args)
    except (CliError, ConfigError, AdminError, ControlPlaneError, DevClusterError, user_cli.UserCliError) as exc:
        print(f"umbra: error: {exc}", file=sys.stderr)
        return 2
    except DataDirError as exc:
        print(f"umbra: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"umbra: error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0
