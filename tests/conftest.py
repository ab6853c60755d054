"""Fixtures shared by every test folder: real broker processes, started and stopped by pid.

- `broker`: one `umbra broker` for the test, on free loopback ports, in the test's tmp dir.
- `broker_factory`: start several (`broker_factory(name="b1", node_id=1, config={...})`).

Every broker a test started is stopped at teardown (SIGTERM, then SIGKILL after a deadline), even
when the test failed. When a test fails, the tail of each of its brokers' logs is added to the
failure report.

Import helpers in tests with `from harness import BrokerProcess, wait_until, create_topic`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    # So `import harness` works under any pytest import mode, and for tests in any sub-folder.
    sys.path.insert(0, str(_TESTS_DIR))

from harness import BrokerProcess, require_command, stop_all  # noqa: E402

from umbra.devcluster import EtcdServer  # noqa: E402

BrokerFactory = Callable[..., BrokerProcess]
_BROKERS_ATTRIBUTE = "_umbra_brokers"

# Pure unit tests get a short per-test timeout, so a hang costs CI seconds rather than the
# suite-wide limit (`make test` passes --timeout). A test's own @pytest.mark.timeout wins.
UNIT_TEST_TIMEOUT_SECONDS = 60


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unit_dir = _TESTS_DIR / "unit"
    for item in items:
        if item.path.is_relative_to(unit_dir) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TEST_TIMEOUT_SECONDS))


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerFactory]:
    started: list[BrokerProcess] = []
    setattr(request.node, _BROKERS_ATTRIBUTE, started)

    def start_broker(name: str | None = None, *, start: bool = True, **options: Any) -> BrokerProcess:
        name = name or f"broker{len(started)}"
        if any(existing.name == name for existing in started):
            raise ValueError(f"a broker named {name!r} was already started in this test")
        broker = BrokerProcess(tmp_path / name, name=name, **options)
        started.append(broker)
        if start:
            broker.start()
        return broker

    yield start_broker

    errors = stop_all(reversed(started))
    if errors:
        raise errors[0]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd (Debian's etcd-server) for the test, on free loopback ports, stopped by pid."""
    require_command("etcd", "make install installs Debian's etcd-server as root")
    server = EtcdServer(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    return broker_factory("broker")


@pytest.fixture
def require_kcat() -> str:
    """Path of kcat. Skips when it is missing, except under CI, where a missing tool is a failure."""
    return require_command("kcat", "make install installs it from Debian as root")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for broker in getattr(item, _BROKERS_ATTRIBUTE, ()):
            report.sections.append((f"log tail of {broker.name} ({broker.log_path})", broker.log_tail(80)))
    return report
