"""A local cluster for development and tests: an etcd (Debian's ``etcd``) and N `umbra broker` processes on free
loopback ports. `umbra dev cluster` runs it; the tests start their etcd with :class:`EtcdServer`.

Every process is started by this module and stopped by pid: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

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
                 extra: list[str] | None = None) -> None:
        super().__init__(f"broker-{node_id}", work_dir / f"broker-{node_id}.log")
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
        command = [sys.executable, "-m", "umbra", "broker", "--etcd", self.etcd, "--cluster-id", self.cluster_id,
                   "--node-id", str(self.node_id), "--data-dir", str(self.work_dir / f"broker-{self.node_id}"),
                   "--listen", self.bootstrap, "--admin-listen", f"{LOOPBACK}:{self.admin_port}", *self.extra]
        if self.rack is not None:
            command += ["--rack", self.rack]
        self._spawn(command)

        def ready() -> bool:
            self.check_alive()
            return _http_ok(self.admin_url + "/v1/health")

        _wait(f"{self.name} to answer {self.admin_url}/v1/health", ready, timeout)
        return self


class DevCluster:
    """etcd (unless one is given) and ``brokers`` brokers, started in order and stopped in reverse."""

    def __init__(self, data_dir: Path, brokers: int, *, etcd: str | None = None, cluster_id: str = "dev") -> None:
        self.data_dir = data_dir
        self.etcd_server = EtcdServer(data_dir) if etcd is None else None
        self.etcd_url = etcd or (self.etcd_server.url if self.etcd_server else "")
        self.brokers = [ClusterBroker(data_dir, i + 1, self.etcd_url, cluster_id) for i in range(brokers)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self) -> None:
        try:
            if self.etcd_server is not None:
                self.etcd_server.start()
            for broker in self.brokers:
                broker.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for broker in reversed(self.brokers):
            broker.stop()
        if self.etcd_server is not None:
            self.etcd_server.stop()
