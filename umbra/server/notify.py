"""Wake long-polling fetches when data is appended to a partition they wait on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

TopicPartition = tuple[str, int]


class AppendNotifier:
    def __init__(self) -> None:
        self._waiters: dict[TopicPartition, set[asyncio.Future[None]]] = {}

    def notify(self, tp: TopicPartition) -> None:
        waiters = self._waiters.pop(tp, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, partitions: Iterable[TopicPartition], timeout: float) -> bool:
        """Wait until one of ``partitions`` gets an append, or ``timeout`` seconds. True if woken."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(partitions)
        for tp in keys:
            self._waiters.setdefault(tp, set()).add(fut)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation on 3.11
                await fut
            return True
        except TimeoutError:
            return False
        finally:
            for tp in keys:
                waiters = self._waiters.get(tp)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[tp]
