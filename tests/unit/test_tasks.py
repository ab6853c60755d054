"""cancel_and_wait: a task that swallows a cancellation (as asyncio.wait_for can on 3.11) still stops."""

from __future__ import annotations

import asyncio

from umbra.tasks import cancel_and_wait


async def _swallows_the_first_cancel(started: asyncio.Event, swallowed: list[int]) -> None:
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        swallowed.append(1)  # runs on, as a loop whose wait_for lost the cancellation would
    await asyncio.sleep(3600)


def test_a_task_that_swallowed_a_cancellation_is_cancelled_again() -> None:
    async def scenario() -> list[int]:
        started, swallowed = asyncio.Event(), []
        task = asyncio.create_task(_swallows_the_first_cancel(started, swallowed))
        await started.wait()
        async with asyncio.timeout(10):
            await cancel_and_wait([task])
        assert task.cancelled()
        return swallowed

    assert asyncio.run(scenario()) == [1]


def test_a_task_that_failed_before_the_stop_does_not_fail_the_stop() -> None:
    async def fails() -> None:
        raise ValueError("before the stop")

    async def scenario() -> None:
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancel_and_wait([task])  # its exception is retrieved: no "never retrieved" warning
        assert isinstance(task.exception(), ValueError)

    asyncio.run(scenario())
