"""Bounded waits on an asyncio.Event that never lose a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` returns normally when the task is cancelled in the same
loop iteration as the event fires (CPython gh-86296): the cancellation is swallowed and a loop written as
`while True: ... wait_for(...)` keeps running after `task.cancel()`, so whoever awaits it hangs. Every
timed event wait in hacluster goes through `wait_event` instead.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passed; True if it was set. A cancellation always raises."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, timeout_s))
    finally:
        waiter.cancel()
    return bool(done)
