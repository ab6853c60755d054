"""Helpers for the group coordinator tests: a manual clock, a real offsets Log, join requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from umbra.config import BrokerConfig
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.membership import JoinRequest
from umbra.storage.config import LogConfig
from umbra.storage.log import Log

T = TypeVar("T")


@dataclass
class ManualClock:
    now: int = 1_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


@dataclass
class Env:
    path: Path
    clock: ManualClock
    config: BrokerConfig
    logs: list[Log] = field(default_factory=list)

    def open_log(self) -> Log:
        log = Log.open(self.path / "__consumer_offsets-0", "__consumer_offsets", 0, LogConfig(retention_ms=-1))
        self.logs.append(log)
        return log

    async def coordinator(self) -> GroupCoordinator:
        coordinator = GroupCoordinator(self.open_log(), self.config, None, clock=self.clock)
        await coordinator.start()
        return coordinator


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def join_request(group: str = "g", member_id: str = "", *, instance: str | None = None, session: int = 10000,
                 rebalance: int = 5000, protocols: list[tuple[str, bytes]] | None = None,
                 require_known_member_id: bool = True, protocol_type: str = "consumer") -> JoinRequest:
    return JoinRequest(group, member_id, instance, session, rebalance, protocol_type,
                       protocols if protocols is not None else [("range", b"sub")], client_id="client",
                       client_host="/127.0.0.1", require_known_member_id=require_known_member_id)


async def settle() -> None:
    """Let tasks that were just woken run (no timing involved: a few trips through the loop)."""
    for _ in range(5):
        await asyncio.sleep(0)
