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


async def test_a_coalesced_barrier_serves_a_burst_of_readers_with_two_rounds() -> None:
    """Readers arriving while a round runs share the next round (one that started after they arrived); a
    failed round fails exactly its own waiters."""
    from hacluster.asyncwait import CoalescedBarrier

    gates: list[asyncio.Future[None]] = []

    async def run_round() -> None:
        gate = asyncio.get_running_loop().create_future()
        gates.append(gate)
        await gate

    barrier = CoalescedBarrier(run_round, lambda: RuntimeError("cancelled"))
    first = asyncio.ensure_future(barrier.wait())
    await asyncio.sleep(0)
    burst = [asyncio.ensure_future(barrier.wait()) for _ in range(5)]
    await asyncio.sleep(0)
    assert len(gates) == 1 and not first.done()
    gates[0].set_result(None)
    await asyncio.wait_for(first, 1)
    for _ in range(10):
        if len(gates) == 2:
            break
        await asyncio.sleep(0)
    assert len(gates) == 2 and not any(f.done() for f in burst), "the burst waits for a round of its own"
    gates[1].set_exception(OSError("round failed"))
    done, _ = await asyncio.wait(burst, timeout=1)
    assert done == set(burst) and all(isinstance(f.exception(), OSError) for f in burst)
    assert len(gates) == 2
