"""Bounded waits on an asyncio.Event that never lose a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` returns normally when the task is cancelled in the same
loop iteration as the event fires (CPython gh-86296): the cancellation is swallowed and a loop written as
`while True: ... wait_for(...)` keeps running after `task.cancel()`, so whoever awaits it hangs. Every
timed event wait in hacluster goes through `wait_event` instead. Also here: `CoalescedBarrier`, the read
barrier every store engine shares among concurrent readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passed; True if it was set. A cancellation always raises."""
    if event.is_set():
        return True
    # asyncio.timeout waits in this task (no inner task, a third cheaper than asyncio.wait on one: the leader's
    # loops wait once per store change each) and tells its own expiry from a cancellation, which propagates.
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    except TimeoutError:
        return False
    return True


class CoalescedBarrier:
    """Read barriers shared by concurrent readers (each store engine's linearizable reads).

    A caller waits for a round of `run_round` that started after it arrived; one round runs at a time, and
    every caller that arrives during it shares the next one, so a burst of reads costs two rounds, not one
    each. However a round ends — failed, or its task cancelled at shutdown — no waiter is left hanging: a
    failed round fails its waiters, a cancelled one fails them and the next round's with `cancelled()`, and
    the next caller starts a new round."""

    def __init__(self, run_round: Callable[[], Awaitable[object]], cancelled: Callable[[], BaseException]) -> None:
        self._run_round = run_round
        self._cancelled = cancelled
        self._inflight = False
        self._next: asyncio.Future[None] | None = None
        self._task: asyncio.Future[None] | None = None  # kept referenced: the loop holds tasks only weakly

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._inflight:
            self._inflight = True
            first: asyncio.Future[None] = loop.create_future()
            self._task = asyncio.ensure_future(self._run_barriers(first))
            await asyncio.shield(first)
            return
        if self._next is None:
            self._next = loop.create_future()
        await asyncio.shield(self._next)

    async def _run_barriers(self, fut: asyncio.Future[None]) -> None:
        try:
            while True:
                try:
                    await self._run_round()
                    if not fut.done():
                        fut.set_result(None)
                except Exception as exc:
                    _fail(fut, exc)
                if self._next is None:
                    return
                fut, self._next = self._next, None
        finally:
            self._inflight = False
            self._task = None
            gone = self._cancelled()
            _fail(fut, gone)
            if self._next is not None:
                _fail(self._next, gone)
                self._next = None


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()  # marked retrieved: a waiter that was cancelled no longer reads it
