"""Producer id allocation for idempotent producers, persisted in blocks so ids never repeat."""

from __future__ import annotations

import json
import os
from pathlib import Path

BLOCK = 1000


class ProducerIdManager:
    FILE = "producer-ids.json"

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / self.FILE
        self._next = 0
        self._block_end = 0
        if self._path.exists():
            self._next = self._block_end = int(json.loads(self._path.read_text())["block_end"])

    def ensure_above(self, producer_id: int) -> None:
        """Never hand out ``producer_id`` or anything below it (replicated or recovered ids)."""
        if producer_id >= self._next:
            self._next = producer_id + 1
            if self._next > self._block_end:
                self._reserve(self._next)

    def next_id(self) -> int:
        if self._next >= self._block_end:
            self._reserve(self._next)
        pid = self._next
        self._next += 1
        return pid

    def _reserve(self, start: int) -> None:
        end = start + BLOCK
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump({"block_end": end}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)
        self._block_end = end
