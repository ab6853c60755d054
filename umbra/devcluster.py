"""A local cluster for development and tests: an etcd (Debian's ``etcd``) and N `umbra broker` processes on free
loopback ports. `umbra dev cluster` runs it; the tests start their etcd with :class:`EtcdServer`; `make demo`
(umbra/demo.py) runs two clusters on one etcd.

Every process is started by this module and stopped by pid: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


class DevClusterError(Exception):
    """A process did not start; the message is one line, plus the tail of its log where there is one."""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if time.monotonic() > deadline:
            raise DevClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class _Process:
    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _spawn(self, command: list[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)  # Ctrl-C reaches us, not them: we stop them

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise DevClusterError(f"{self.name} exited with code {self.process.returncode} during start-up\n"
                                  f"--- {self.log_path} ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM by pid, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL by pid (a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class EtcdServer(_Process):
    """A one-member etcd on free loopback ports, its data in ``work_dir``."""

    def __init__(self, work_dir: Path, name: str = "etcd") -> None:
        super().__init__(name, work_dir / f"{name}.log")
        self.work_dir = work_dir
        self.client_port, self.peer_port = free_ports(2)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.client_port}"

    def start(self, timeout: float = 30.0) -> EtcdServer:
        binary = shutil.which("etcd")
        if binary is None:
            raise DevClusterError("etcd is not installed: `make install` installs Debian's etcd-server, or "
                                  "give --etcd URL of a running one")
        peer = f"http://{LOOPBACK}:{self.peer_port}"
        self._spawn([binary, "--name", self.name, "--data-dir", str(self.work_dir / f"{self.name}.data"),
                     "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
                     "--log-level", "warn"])

        def ready() -> bool:
            self.check_alive()
            return _http_ok(self.url + "/health")

        _wait(f"etcd to answer {self.url}/health", ready, timeout)
        return self


class ClusterBroker(_Process):
    """One `umbra broker` of a cluster on etcd."""

    def __init__(self, work_dir: Path, node_id: int, etcd: str, cluster_id: str, *, rack: str | None = None,
                 extra: list[str] | None = None, name: str | None = None) -> None:
        super().__init__(name or f"broker-{node_id}", work_dir / f"broker-{node_id}.log")
        self.work_dir = work_dir
        self.node_id = node_id
        self.etcd = etcd
        self.cluster_id = cluster_id
        self.rack = rack
        self.extra = extra or []
        self.port, self.admin_port = free_ports(2)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    def start(self, timeout: float = 60.0) -> ClusterBroker:
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def spawn(self) -> None:
        """Start the process; :meth:`wait_healthy` waits for its admin API."""
        command = [sys.executable, "-m", "umbra", "broker", "--etcd", self.etcd, "--cluster-id", self.cluster_id,
                   "--node-id", str(self.node_id), "--data-dir", str(self.work_dir / f"broker-{self.node_id}"),
                   "--listen", self.bootstrap, "--admin-listen", f"{LOOPBACK}:{self.admin_port}", *self.extra]
        if self.rack is not None:
            command += ["--rack", self.rack]
        self._spawn(command)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            self.check_alive()
            return _http_ok(self.admin_url + "/v1/health")

        _wait(f"{self.name} to answer {self.admin_url}/v1/health", ready, timeout)

    def cluster_status(self) -> dict[str, Any]:
        """This broker's view of its cluster (GET /v1/cluster: brokers alive or not, the controller, ...)."""
        with urllib.request.urlopen(self.admin_url + "/v1/cluster", timeout=10) as response:
            return dict(json.loads(response.read()))


BROKER_CONFIG_FILE = "broker.yaml"


class DevCluster:
    """etcd (unless one is given) and ``brokers`` brokers (node ids 1 to N), started together and stopped in
    reverse. ``extra`` are more `umbra broker` arguments for every broker (e.g. ``["--set", "KEY=VALUE"]``);
    ``name`` prefixes the brokers' names in messages ("source broker 2").

    When ``data_dir`` holds a ``broker.yaml``, every broker is started with ``--config`` it: how settings reach
    the brokers of `umbra dev cluster` (e.g. ``default_replication_factor: 3``). The flags win over it."""

    def __init__(self, data_dir: Path, brokers: int, *, etcd: str | None = None, cluster_id: str = "dev",
                 extra: list[str] | None = None, name: str | None = None) -> None:
        self.data_dir = data_dir
        self.cluster_id = cluster_id
        self.etcd_server = EtcdServer(data_dir) if etcd is None else None
        self.etcd_url = etcd or (self.etcd_server.url if self.etcd_server else "")
        config_file = data_dir / BROKER_CONFIG_FILE
        arguments = (["--config", str(config_file)] if config_file.is_file() else []) + (extra or [])
        self.brokers = [ClusterBroker(data_dir, i + 1, self.etcd_url, cluster_id, extra=arguments,
                                      name=f"{name} broker {i + 1}" if name else None) for i in range(brokers)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def live_bootstrap_servers(self) -> str:
        """The brokers whose process runs (after a kill, clients are given only those)."""
        return ",".join(b.bootstrap for b in self.brokers if b.running())

    def broker(self, node_id: int) -> ClusterBroker:
        return next(b for b in self.brokers if b.node_id == node_id)

    def start(self, timeout: float = 60.0) -> None:
        """Start etcd, then every broker at once; wait for each to answer its health check, then for all of them
        to see each other (until then, the controller would create topics over fewer brokers, or refuse them)."""
        try:
            if self.etcd_server is not None:
                self.etcd_server.start()
            for broker in self.brokers:
                broker.spawn()
            for broker in self.brokers:
                broker.wait_healthy(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Until every running broker sees every running broker alive and the same controller (the controller's
        own view included: it assigns new topics' replicas over the brokers it sees); returns the controller."""
        running = [b for b in self.brokers if b.running()]
        wanted = {b.node_id for b in running}

        def controller() -> int | None:
            seen: set[int | None] = set()
            for broker in running:
                broker.check_alive()
                try:
                    doc = broker.cluster_status()
                except (urllib.error.URLError, OSError, ValueError):
                    return None
                if not wanted <= {b["node_id"] for b in doc["brokers"] if b["alive"]}:
                    return None
                seen.add(doc["controller"])
            return seen.pop() if len(seen) == 1 else None

        found: list[int] = []

        def ready() -> bool:
            node = controller()
            if node is not None:
                found.append(node)
            return node is not None

        _wait(f"the {len(running)} brokers of cluster {self.cluster_id} to see each other and one controller", ready,
              timeout)
        return found[-1]

    def stop(self) -> None:
        for broker in reversed(self.brokers):
            broker.stop()
        if self.etcd_server is not None:
            self.etcd_server.stop()
