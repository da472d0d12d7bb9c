"""Admission of API requests on one master: in-flight limits, per-user fair queueing and a reserved share
for system users, in the spirit of Kubernetes' max-in-flight filter and API Priority and Fairness.

Used by the API server's middleware (`hacluster.apiserver.frontdoor`), which asks `FlowControl.admit` for a
seat before running a handler and releases it after. Two pools of seats, as kube-apiserver has:
`api.max_requests_inflight` for reads and `api.max_mutating_requests_inflight` for writes. Long-running
requests (watches, followed logs) take no seat, as in Kubernetes; their own cap is per user
(`api.max_watches_per_user`, `WatchCaps`).

In each pool a share of the seats (`api.system_reserved_share`) is kept for system users (kubelets and other
`system:` identities) so that nodes keep their leases and statuses flowing while somebody floods the API;
system users may also use the shared seats. When no seat is free a request waits in its user's queue
(at most `api.queue_length_per_user` requests, at most `api.queue_wait_s`); a freed seat goes to the waiting
user who holds the fewest seats of that pool, the oldest request first among equals — so one user flooding
a master holds at most its fair part of the seats once others ask. A request whose user's queue is full is
refused at once, and one that waited too long is refused then: both with `TooManyRequests` (429,
`Retry-After: 1`), before anything is proposed — a definite failure.

Pure bookkeeping on the event loop: no I/O, no clock other than the wait deadline.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from hacluster.model import errors as E

RETRY_AFTER_S = 1
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SYSTEM_PREFIX = "system:"
ANONYMOUS = "system:anonymous"


def is_long_running(method: str, path: str, query: dict[str, str]) -> bool:
    """Watches and followed logs, which Kubernetes' in-flight limits do not count."""
    if method != "GET":
        return False
    segments = [s for s in path.split("/") if s]
    prefix = 2 if segments[:1] == ["api"] else 3  # /api/v1/watch/… or /apis/GROUP/VERSION/watch/…
    if segments[prefix:prefix + 1] == ["watch"] or query.get("watch", "").lower() in ("true", "1"):
        return True
    return bool(segments) and segments[-1] == "log" and query.get("follow", "").lower() in ("true", "1")


def is_system_user(name: str, groups: tuple[str, ...]) -> bool:
    """Kubelets (`system:node:*`, group `system:nodes`) and other `system:` identities, except anonymous."""
    return name != ANONYMOUS and (name.startswith(SYSTEM_PREFIX) or "system:nodes" in groups)


def too_many_requests(message: str = "Too many requests, please try again later.") -> E.TooManyRequests:
    return E.TooManyRequests(message, retry_after_s=RETRY_AFTER_S)


@dataclass(eq=False)
class _Waiter:
    user: str
    system: bool
    order: int
    future: asyncio.Future[None]


@dataclass
class Pool:
    """The seats of one kind of request (reads or writes) and the users waiting for them."""

    name: str
    limit: int
    reserved_for_system: int
    in_use: int = 0
    in_use_by_others: int = 0  # seats held by non-system users
    held: dict[str, int] = field(default_factory=dict)  # seats per user
    queues: dict[str, deque[_Waiter]] = field(default_factory=dict)
    admitted: int = 0
    rejected: int = 0

    def can_seat(self, system: bool) -> bool:
        if self.in_use >= self.limit:
            return False
        return system or self.in_use_by_others < self.limit - self.reserved_for_system

    def take(self, user: str, system: bool) -> None:
        self.in_use += 1
        if not system:
            self.in_use_by_others += 1
        self.held[user] = self.held.get(user, 0) + 1
        self.admitted += 1

    def give_back(self, user: str, system: bool) -> None:
        self.in_use -= 1
        if not system:
            self.in_use_by_others -= 1
        left = self.held.get(user, 0) - 1
        if left > 0:
            self.held[user] = left
        else:
            self.held.pop(user, None)

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())


class Seat:
    """A seat held by one admitted request; `release()` it exactly once when the request ends."""

    def __init__(self, control: FlowControl | None, pool: Pool | None, user: str, system: bool) -> None:
        self._control = control
        self._pool = pool
        self._user = user
        self._system = system

    def release(self) -> None:
        if self._control is not None and self._pool is not None:
            control, self._control = self._control, None
            control._release(self._pool, self._user, self._system)


class FlowControl:
    """Seats for reads and writes of one master; `admit` raises `TooManyRequests` when none can be had."""

    def __init__(self, *, max_inflight: int, max_mutating_inflight: int, system_reserved_share: float,
                 queue_length_per_user: int, queue_wait_s: float) -> None:
        self.reads = Pool("readOnly", max_inflight, _reserved(max_inflight, system_reserved_share))
        self.writes = Pool("mutating", max_mutating_inflight,
                           _reserved(max_mutating_inflight, system_reserved_share))
        self.queue_length_per_user = queue_length_per_user
        self.queue_wait_s = queue_wait_s
        self._order = itertools.count()

    def pool_for(self, method: str) -> Pool:
        return self.writes if method in MUTATING_METHODS else self.reads

    async def admit(self, method: str, user: str, groups: tuple[str, ...] = ()) -> Seat:
        """A seat for one request of `user`, at once or after a bounded wait in the user's queue. Raises
        `TooManyRequests` when the user's queue is full or the wait ran out (nothing was done)."""
        pool = self.pool_for(method)
        system = is_system_user(user, groups)
        if not pool.waiting() and pool.can_seat(system):
            pool.take(user, system)
            return Seat(self, pool, user, system)
        queue = pool.queues.setdefault(user, deque())
        if len(queue) >= self.queue_length_per_user:
            pool.rejected += 1
            if not queue:
                del pool.queues[user]
            raise too_many_requests()
        waiter = _Waiter(user, system, next(self._order), asyncio.get_running_loop().create_future())
        queue.append(waiter)
        self._dispatch(pool)  # a seat may be free for this user although others wait for theirs
        try:
            async with asyncio.timeout(self.queue_wait_s):
                await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done():  # seated just as the wait ran out: keep the seat
                return Seat(self, pool, user, system)
            self._forget(pool, waiter)
            pool.rejected += 1
            raise too_many_requests() from None
        except asyncio.CancelledError:
            if waiter.future.done():
                self._release(pool, user, system)
            else:
                self._forget(pool, waiter)
            raise
        return Seat(self, pool, user, system)

    def _release(self, pool: Pool, user: str, system: bool) -> None:
        pool.give_back(user, system)
        self._dispatch(pool)

    @staticmethod
    def _forget(pool: Pool, waiter: _Waiter) -> None:
        queue = pool.queues.get(waiter.user)
        if queue is not None:
            try:
                queue.remove(waiter)
            except ValueError:
                pass
            if not queue:
                del pool.queues[waiter.user]

    @staticmethod
    def _dispatch(pool: Pool) -> None:
        """Hand free seats to waiting requests: the user holding the fewest seats first, then the oldest."""
        while pool.queues:
            best: _Waiter | None = None
            for user, queue in pool.queues.items():
                head = queue[0]
                if not pool.can_seat(head.system):
                    continue
                if best is None or (pool.held.get(user, 0), head.order) < (pool.held.get(best.user, 0), best.order):
                    best = head
            if best is None:
                return
            queue = pool.queues[best.user]
            queue.popleft()
            if not queue:
                del pool.queues[best.user]
            pool.take(best.user, best.system)
            best.future.set_result(None)


def _reserved(limit: int, share: float) -> int:
    """Seats kept for system users: the share rounded up, but never every seat of the pool."""
    if limit <= 1 or share <= 0:
        return 0
    return min(limit - 1, max(1, round(limit * share)))
