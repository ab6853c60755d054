"""Cluster tests: a real etcd per test (the ``etcd`` fixture of tests/conftest.py), started before the brokers."""

from __future__ import annotations

import pytest

from umbra.devcluster import EtcdServer


@pytest.fixture
def broker_factory(etcd: EtcdServer, broker_factory: object) -> object:
    """The brokers of a cluster test stop before its etcd does (they leave the cluster cleanly)."""
    return broker_factory
