"""A cancellation that arrives as the awaited event fires must still cancel the waiting task (on Python 3.11
`asyncio.wait_for` swallows it, and a loop around it then never stops)."""

import asyncio

import pytest

from hacluster.asyncwait import wait_event


async def test_cancel_in_the_same_iteration_as_the_event_is_not_swallowed():
    event = asyncio.Event()

    async def loop_until_cancelled() -> int:
        rounds = 0
        while rounds < 1000:  # bounded: a swallowed cancellation shows up as a return, not as a hang
            await wait_event(event, 10.0)
            event.clear()
            rounds += 1
        return rounds

    task = asyncio.ensure_future(loop_until_cancelled())
    await asyncio.sleep(0)  # the task is now waiting on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeout_and_set():
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await wait_event(event, 10.0) is True
    assert await wait_event(event, 0) is True
