"""Start, stop, crash and restart real `umbra broker` processes for tests and benchmarks.

A `BrokerProcess` owns one OS process, found and signalled by its pid only. It picks free loopback
ports, writes the broker's stdout and stderr to a log file in its work directory, and waits for
readiness (`GET /v1/health` answers 200 and the Kafka port accepts a connection) with a deadline.
On a failed start it raises `BrokerStartError` carrying the tail of that log.

A config with `listeners` replaces `--listen`: each listener whose address has port 0 gets a free port
picked here (kept across restarts), `port` and `bootstrap` are the first listener's, and
`listener_bootstrap(name)` gives any listener's `host:port`.

Nothing here sleeps to synchronise: every wait polls a condition until a deadline (`wait_until`).

This module imports only the standard library (and PyYAML, a runtime dependency, when a config
file is written), so benchmarks and scripts can use it as well as tests. The Kafka helpers at the
bottom import confluent-kafka lazily.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.05
PORT_CLASH_MARKERS = ("address already in use", "errno 98")
# Set to a checkout's root, brokers run that checkout's umbra (benchmarks compare commits with it).
BROKER_SOURCE_ENV = "UMBRA_BROKER_SOURCE"

T = TypeVar("T")


class BrokerStartError(RuntimeError):
    """The broker did not become ready; the message ends with the tail of its log."""


# ---------------------------------------------------------------------------------------------
# Polling


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = POLL_INTERVAL_SECONDS,
    message: str | Callable[[], str] = "condition",
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Raises `TimeoutError` naming `message` when `timeout` seconds pass first. Exceptions of the
    types in `retry_on` count as "not yet" (the last one is chained to the TimeoutError); any
    other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except retry_on as error:
            last_error = error
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {text}{detail}") from last_error
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Ports and probes


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ports that were free a moment ago. All sockets are held open together, so they differ."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tcp_port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP error statuses are returned, not raised. An https URL (an admin API with
    admin_tls) is read without checking its test certificate: tests that check it use their CA."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---------------------------------------------------------------------------------------------
# Broker processes

_live_brokers: dict[int, BrokerProcess] = {}


def _kill_leftover_brokers() -> None:
    # Last line of defence if a test runner dies between start and teardown: kill by pid.
    for pid, broker in list(_live_brokers.items()):
        if broker.running:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


atexit.register(_kill_leftover_brokers)


class BrokerProcess:
    """One `umbra broker` process on loopback ports, with its own data directory and log file."""

    def __init__(
        self,
        work_dir: Path | str,
        *,
        name: str = "broker",
        node_id: int | None = None,
        config: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        advertise: str | None = None,
    ) -> None:
        self.name = name
        self.work_dir = Path(work_dir)
        self.data_dir = self.work_dir / "data"
        self.log_path = self.work_dir / f"{name}.log"
        self.node_id = node_id
        self.config = dict(config) if config is not None else None
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.host = host
        self.advertise = advertise
        if self.advertise is not None and self._listener_specs():
            raise ValueError("advertise is the shorthand listener's: give each listener its own advertise")
        self.port: int | None = None
        self.admin_port: int | None = None
        self.listener_ports: dict[str, int] = {}  # listener name -> port, with a config of listeners
        self.start_count = 0
        self.last_exit_code: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # -- addresses -----------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """`host:port` of the Kafka listener, for `bootstrap.servers`."""
        self._require_ports()
        return f"{self.host}:{self.port}"

    def listener_bootstrap(self, name: str) -> str:
        """`host:port` of the listener called `name` (a config with `listeners`)."""
        self._require_ports()
        for spec in self._listener_specs():
            if spec["name"] == name:
                return f"{str(spec['address']).rpartition(':')[0]}:{self.listener_ports[name]}"
        raise KeyError(f"{self.name} has no listener {name!r}")

    @property
    def admin_address(self) -> str:
        self._require_ports()
        return f"{self.host}:{self.admin_port}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin HTTP API, without a trailing slash (https with ``admin_tls``)."""
        scheme = "https" if self.config is not None and self.config.get("admin_tls") else "http"
        return f"{scheme}://{self.admin_address}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _require_ports(self) -> None:
        if self.port is None or self.admin_port is None:
            raise RuntimeError(f"{self.name} has no ports yet: start it first")

    # -- lifecycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        self._require_ports()
        args = [
            sys.executable, "-m", "umbra", "broker",
            "--data-dir", str(self.data_dir),
            "--admin-listen", self.admin_address,
        ]  # fmt: skip
        if not self._listener_specs():
            args += ["--listen", self.bootstrap]
        if self.node_id is not None:
            args += ["--node-id", str(self.node_id)]
        if self.advertise is not None:
            args += ["--advertise", self.advertise]
        if self.config is not None:
            args += ["--config", str(self._write_config())]
        return args + self.extra_args

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> BrokerProcess:
        """Start the broker and wait until it is ready.

        The first start picks new free ports, and picks again if the broker reports that a port
        was taken meanwhile. Later starts (restarts) keep the same ports and data directory.
        """
        if self.running:
            raise RuntimeError(f"{self.name} is already running as pid {self.pid}")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        keep_ports = self.port is not None
        deadline = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            if not keep_ports:
                self._pick_ports()
            self._spawn()
            try:
                self.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
                return self
            except BrokerStartError as error:
                port_clash = not self.running and self._log_mentions_port_clash()
                self._kill_and_reap()
                if not port_clash or attempts >= 5 or time.monotonic() >= deadline:
                    raise error
                self._log_note(f"port clash on attempt {attempts}, retrying")

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Poll until `/v1/health` answers 200 and the Kafka port accepts connections."""

        def ready() -> bool:
            if not self.running:
                raise BrokerStartError(self._failure_text(f"exited with code {self._exit_code()} before it was ready"))
            status, _ = http_get(self.admin_url + "/v1/health", timeout=1.0)
            return status == 200 and tcp_port_open(self.host, self.port or 0)

        try:
            wait_until(
                ready,
                timeout=timeout,
                interval=0.1,
                message=f"{self.name} to answer {self.admin_url}/v1/health",
                retry_on=(OSError, http.client.HTTPException),
            )
        except TimeoutError as error:
            raise BrokerStartError(self._failure_text(f"not ready after {timeout:.0f}s: {error}")) from None

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (None if never started).

        A clean shutdown returns 0; a process that had to be killed returns -9.
        """
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._log_note(f"did not exit within {timeout:.0f}s of SIGTERM; its stacks (SIGUSR1), then SIGKILL")
                self._signal(signal.SIGUSR1)  # the broker prints what each task and thread is waiting for
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=2)
                self._kill_and_reap()
        return self._reaped()

    def kill9(self) -> None:
        """SIGKILL the broker (a crash: no flush, no clean shutdown) and reap it."""
        if not self.running:
            raise RuntimeError(f"{self.name} is not running")
        self._kill_and_reap()

    def restart(self, timeout: float = START_TIMEOUT_SECONDS) -> BrokerProcess:
        """Stop the broker if it runs, then start it again on the same ports and data directory."""
        if self.running:
            self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- logs ----------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        command = self.command()
        self.start_count += 1
        self._log_file = open(self.log_path, "ab", buffering=0)  # closed in _reaped()
        banner = f"\n===== harness: start #{self.start_count} of {self.name}: {' '.join(command)}\n"
        self._log_file.write(banner.encode())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **self.extra_env}
        if os.environ.get(BROKER_SOURCE_ENV):  # benchmarks: brokers from another checkout (an older commit)
            env["PYTHONPATH"] = os.environ[BROKER_SOURCE_ENV]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
            env=env,
        )
        _live_brokers[self._process.pid] = self
        self._log_note(f"pid {self._process.pid}")

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _kill_and_reap(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._signal(signal.SIGKILL)
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self._reaped()

    def _reaped(self) -> int | None:
        assert self._process is not None
        code = self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        _live_brokers.pop(self._process.pid, None)
        self.last_exit_code = code
        if self._log_file is not None:
            self._log_note(f"pid {self._process.pid} exited with code {code}")
            self._log_file.close()
            self._log_file = None
        return code

    def _exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def _log_note(self, text: str) -> None:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.write(f"===== harness: {self.name}: {text}\n".encode())

    def _log_mentions_port_clash(self) -> bool:
        tail = self.log_tail(40).lower()
        return any(marker in tail for marker in PORT_CLASH_MARKERS)

    def _failure_text(self, what: str) -> str:
        return f"{self.name} (pid {self.pid}) {what}\n--- tail of {self.log_path} ---\n{self.log_tail(60)}"

    def _listener_specs(self) -> list[dict[str, Any]]:
        return list((self.config or {}).get("listeners") or [])

    def _pick_ports(self) -> None:
        specs = self._listener_specs()
        if not specs:
            self.port, self.admin_port = free_ports(2, self.host)
            return
        to_pick = [spec["name"] for spec in specs if str(spec["address"]).endswith(":0")]
        self.admin_port, *picked = free_ports(1 + len(to_pick), self.host)
        chosen = dict(zip(to_pick, picked, strict=True))
        self.listener_ports = {spec["name"]: chosen.get(spec["name"]) or int(str(spec["address"]).rpartition(":")[2])
                               for spec in specs}
        self.port = self.listener_ports[specs[0]["name"]]

    def _write_config(self) -> Path:
        import yaml

        config = dict(self.config or {})
        if self._listener_specs():
            config["listeners"] = [
                {**spec, "address": f"{str(spec['address']).rpartition(':')[0]}:{self.listener_ports[spec['name']]}"}
                for spec in self._listener_specs()
            ]
        path = self.work_dir / f"{self.name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        return path

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self.running and self._process else "stopped"
        return f"<BrokerProcess {self.name} {self.host}:{self.port} {state}>"


def stop_all(brokers: Iterable[BrokerProcess]) -> list[BaseException]:
    """Stop every broker, even if some stops fail; returns the errors instead of raising."""
    errors: list[BaseException] = []
    for broker in brokers:
        try:
            broker.stop()
        except BaseException as error:  # keep stopping the rest
            errors.append(error)
    return errors


# ---------------------------------------------------------------------------------------------
# External tools


def find_command(name: str) -> str | None:
    return shutil.which(name)


def require_command(name: str, how_to_install: str) -> str:
    """Path of a test tool. Skips the test when it is missing, except under CI, where that is a failure."""
    import pytest

    path = find_command(name)
    if path is None:
        message = f"{name} is not installed ({how_to_install})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# ---------------------------------------------------------------------------------------------
# Kafka helpers (confluent-kafka, imported lazily)


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 3,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> None:
    """Create `topic` with CreateTopics and wait until Metadata shows every partition with a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new_topic = NewTopic(
        topic, num_partitions=partitions, replication_factor=replication_factor, config=dict(config or {})
    )
    futures = admin.create_topics([new_topic], operation_timeout=timeout, request_timeout=timeout)
    futures[topic].result(timeout=timeout)
    wait_for_topic(bootstrap, topic, partitions, timeout=timeout, admin=admin)


def wait_for_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 20.0, admin: Any = None) -> None:
    """Poll Metadata until `topic` has `partitions` partitions, each with a leader and no error."""
    if admin is None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})

    def topic_ready() -> bool:
        metadata = admin.list_topics(topic=topic, timeout=5)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or len(described.partitions) != partitions:
            return False
        return all(p.error is None and p.leader >= 0 for p in described.partitions.values())

    wait_until(topic_ready, timeout=timeout, interval=0.1, message=f"topic {topic} with {partitions} partitions")
