"""A real etcd (Debian's etcd-server) per test, on free loopback ports, stopped by pid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import require_command

from umbra.devcluster import EtcdServer


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    require_command("etcd", "make install installs Debian's etcd-server as root")
    server = EtcdServer(tmp_path / "etcd").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_factory(etcd: EtcdServer, broker_factory: object) -> object:
    """The brokers of a cluster test stop before its etcd does (they leave the cluster cleanly)."""
    return broker_factory
