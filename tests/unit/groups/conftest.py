"""A group coordinator on a real offsets Log in tmp_path, with a clock the test moves by hand."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from groups_helpers import Env, ManualClock  # noqa: E402

from umbra.config import BrokerConfig  # noqa: E402


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    config = BrokerConfig(data_dir=tmp_path, group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=1000,
                          group_max_session_timeout_ms=60000, offsets_retention_minutes=60)
    environment = Env(tmp_path, ManualClock(), config)
    yield environment
    for log in environment.logs:
        log.close()
