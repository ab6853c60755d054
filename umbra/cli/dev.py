"""`umbra dev cluster`: etcd and N brokers on free loopback ports, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from umbra.devcluster import DevCluster, DevClusterError


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="development helpers")
    cmds = dev.add_subparsers(dest="dev_command", required=True, parser_class=parser_class)
    cluster = cmds.add_parser("cluster", help="run etcd and N brokers on free loopback ports until Ctrl-C")
    cluster.add_argument("--brokers", type=int, default=3, help="how many brokers (default 3)")
    cluster.add_argument("--data-dir", required=True, help="directory for etcd's and every broker's data and logs")
    cluster.add_argument("--etcd", help="use this etcd (http://HOST:PORT) instead of starting one")
    cluster.add_argument("--cluster-id", default="dev", help="the cluster id (default dev)")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.brokers <= 64:
        raise DevClusterError(f"--brokers: {args.brokers} is not between 1 and 64")
    cluster = DevCluster(Path(args.data_dir), args.brokers, etcd=args.etcd, cluster_id=args.cluster_id)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster.start()
    try:
        print(f"etcd: {cluster.etcd_url}", flush=True)
        print(f"bootstrap servers: {cluster.bootstrap_servers}", flush=True)
        for broker in cluster.brokers:
            print(f"broker {broker.node_id}: kafka {broker.bootstrap}, admin {broker.admin_url}, pid {broker.pid}, "
                  f"log {broker.log_path}", flush=True)
        print(f"cluster status: umbra cluster --admin-url {cluster.brokers[0].admin_url} status", flush=True)
        print("Ctrl-C or SIGTERM stops everything.", flush=True)
        reported: set[int] = set()
        while not stop.wait(0.5):  # a broker that dies (kill -9 in a failure drill) is reported, not replaced
            for broker in cluster.brokers:
                if broker.node_id not in reported and not broker.running():
                    reported.add(broker.node_id)
                    code = broker.process.returncode if broker.process else None
                    print(f"broker {broker.node_id} exited (code {code}); see {broker.log_path}", flush=True)
    finally:
        print("stopping ...", flush=True)
        cluster.stop()
    print("stopped", flush=True)
    return 0
