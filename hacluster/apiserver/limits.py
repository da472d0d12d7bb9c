"""Bounds on slow and hostile clients of one master's API, other than admission (`flowcontrol`):
- `server_options`: what the aiohttp server is started with — the idle/header deadline of a connection;
- `WatchCaps`: how many watches one user may hold open (one more is a 429);
- `drop_if_stalled`: a watcher whose connection stops taking writes is cut off, so that its handler (and
  the memory its backlog holds) does not hang on a client that never reads.

Used by the API server's middleware (`hacluster.apiserver.frontdoor`) and by the master process
(`hacluster.cluster.master`) when it starts the server.

Why aiohttp's `keepalive_timeout` is the header deadline: aiohttp arms that timer when a connection opens
and again after each answer, and when it fires closes the connection if no complete request head has
arrived. A client trickling its headers one byte at a time is thus cut off at the same deadline as an idle
keep-alive connection; a test (`tests/api/test_frontdoor.py`) fails if an aiohttp upgrade changes that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol, cast

from hacluster.apiserver.flowcontrol import too_many_requests
from hacluster.config import ApiConfig

log = logging.getLogger(__name__)


def server_options(api: ApiConfig) -> dict[str, Any]:
    """Keyword arguments of `web.AppRunner` (passed on to aiohttp's request handler of each connection)."""
    return {"keepalive_timeout": api.idle_connection_timeout_s}


class WatchCaps:
    """Open watches per user on this master, each below `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self.refused = 0

    def acquire(self, user: str) -> None:
        """Count one more watch of `user`; raise `TooManyRequests` (nothing opened) past the cap."""
        n = self.open.get(user, 0)
        if n >= self.limit:
            self.refused += 1
            raise too_many_requests(f"too many watches open for user {user!r} on this master (limit "
                                    f"{self.limit}): close some or watch through another master")
        self.open[user] = n + 1

    def release(self, user: str) -> None:
        n = self.open.get(user, 0) - 1
        if n > 0:
            self.open[user] = n
        else:
            self.open.pop(user, None)


class WriteTransport(Protocol):
    """What the stalled-watcher monitor needs of a connection: asyncio's transports and uvloop's (which are
    not `asyncio.Transport` instances) both have it."""

    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


def monitor_stalled(transport: object, stalled_after_s: float) -> asyncio.Task[None] | None:
    """Start `drop_if_stalled` for this connection (None when it is not a socket transport); cancel the task
    when the watch ends."""
    if not all(hasattr(transport, m) for m in ("get_write_buffer_size", "is_closing", "abort")):
        return None
    return asyncio.ensure_future(drop_if_stalled(cast(WriteTransport, transport), stalled_after_s))


async def drop_if_stalled(transport: WriteTransport, stalled_after_s: float, on_drop: Any = None) -> None:
    """Run beside a watch handler until cancelled: abort the connection once its write buffer has stayed
    non-empty for `stalled_after_s` (the client stopped reading and the socket buffers are full). Aborting
    makes the handler's pending write fail with a connection error, after which it unsubscribes. The check
    runs four times per period: a client that drains its buffer at least that often is never dropped."""
    period = max(0.05, stalled_after_s / 4)
    stalled_since: float | None = None
    loop = asyncio.get_running_loop()
    while not transport.is_closing():
        await asyncio.sleep(period)  # a periodic monitor, not a wait for an event
        if transport.get_write_buffer_size() == 0:
            stalled_since = None
            continue
        now = loop.time()
        if stalled_since is None:
            stalled_since = now
        elif now - stalled_since >= stalled_after_s:
            log.info("dropping a watcher that has not read for %.1f s", now - stalled_since)
            if on_drop is not None:
                on_drop()
            transport.abort()
            return
