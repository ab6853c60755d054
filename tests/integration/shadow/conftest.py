"""Two real brokers, a source and a shadow (the helpers that drive shadow links are in link_api.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from harness import BrokerProcess

# Short intervals so that tests converge quickly; the product defaults are seconds.
FAST_GROUP_CONFIG = {"group_initial_rebalance_delay_ms": 0}


@pytest.fixture
def clusters(broker_factory: Callable[..., BrokerProcess]) -> tuple[BrokerProcess, BrokerProcess]:
    source = broker_factory("source", node_id=1, config=FAST_GROUP_CONFIG)
    shadow = broker_factory("shadow", node_id=2, config=FAST_GROUP_CONFIG)
    return source, shadow
