"""Stopping asyncio tasks for certain.

On Python 3.11 a cancellation can be lost: ``asyncio.wait_for`` returns the result of an inner future that
finished in the same loop iteration as the cancel (gh-86296, fixed in 3.12), and the cancelled task runs on.
umbra uses ``asyncio.timeout`` instead, but a library it awaits (grpc, aiohttp) may still swallow one, and a
shutdown that waits for such a task waits for ever. ``cancel_and_wait`` cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
from collections.abc import Iterable
from typing import TextIO, TypeVar

log = logging.getLogger(__name__)

RECANCEL_INTERVAL_S = 0.5

T = TypeVar("T")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[T]]) -> None:
    """Cancel ``tasks`` and return once every one has finished, cancelling again any that ran on after a
    cancellation. Their exceptions are retrieved (a task that failed before it was cancelled is not an error
    of the shutdown)."""
    owned = list(tasks)
    pending = {task for task in owned if not task.done()}
    rounds = 0
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_INTERVAL_S)
        rounds += 1
        if pending and rounds == 4:
            log.warning("still stopping after %.0f s: %s", rounds * RECANCEL_INTERVAL_S,
                        ", ".join(sorted(task.get_name() for task in pending)))
    for task in owned:
        if not task.cancelled():
            task.exception()


def dump_stacks(stream: TextIO) -> None:
    """Every asyncio task's stack and every thread's (``kill -USR1`` on a broker, as ``jstack`` on a JVM):
    what a broker that does not stop, or does not answer, is waiting for."""
    tasks = asyncio.all_tasks()
    print(f"--- {len(tasks)} asyncio tasks ---", file=stream)
    for task in sorted(tasks, key=lambda t: t.get_name()):
        task.print_stack(limit=12, file=stream)
    print("--- threads ---", file=stream, flush=True)
    faulthandler.dump_traceback(file=stream, all_threads=True)
