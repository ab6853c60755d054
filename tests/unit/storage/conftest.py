from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from umbra.records.records import build_batch
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

BatchFactory = Callable[..., bytes]


def make_batch(count: int = 1, *, timestamp: int = 1_000, size: int = 10, **kwargs: object) -> bytes:
    records = [(b"k", bytes([i % 256]) * size, [], timestamp + i) for i in range(count)]
    return build_batch(records, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[Callable[..., Log]]:
    opened: list[Log] = []

    def opener(config: LogConfig | None = None, name: str = "topic-0") -> Log:
        log = Log.open(tmp_path / name, "topic", 0, config or LogConfig())
        opened.append(log)
        return log

    yield opener
    for log in opened:
        try:
            log.close()
        except OSError:
            pass
