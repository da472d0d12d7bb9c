"""Leader-only loops: started when this master becomes the Raft leader, cancelled when it stops being one.

Used by the master process. On becoming leader in term T it first commits `LeaderElected(term=T)` — the
entry that fences every older term in the state machine and creates the system namespaces — and only
then starts each registered loop with `term=T`. Every write those loops make carries `fence_term=T`, so
if this master is deposed while a loop is still running (a paused or partitioned leader that has not yet
noticed), the state machine refuses the write once a newer term has begun.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from hacluster.model.commands import LeaderElected
from hacluster.model.errors import ApiError
from hacluster.model.timestamps import rfc3339
from hacluster.store.api import RaftView, ReplicatedStore, leadership_of

log = logging.getLogger(__name__)

LeaderLoop = Callable[[int], Awaitable[None]]
"""An async function run while this master leads; it receives the term it leads in."""


class LeaderLoops:
    """Runs the registered loops exactly while the local Raft node leads (and has announced its term)."""

    def __init__(self, store: ReplicatedStore, master_id: str, *, clock: Callable[[], float] = time.time,
                 announce_retry_s: float = 0.1) -> None:
        self.store = store
        self.master_id = master_id
        self.clock = clock
        self.announce_retry_s = announce_retry_s
        self._loops: list[tuple[str, LeaderLoop]] = []
        self._task: asyncio.Task[None] | None = None
        self._term: int | None = None
        self.leading_term: int | None = None  # set once LeaderElected committed

    def register(self, name: str, loop: LeaderLoop) -> None:
        self._loops.append((name, loop))

    def on_view(self, view: RaftView) -> None:
        """View listener (event loop thread). Leadership is the store's (`leadership_of`): the Raft leader
        on pysyncobj, the holder of the leadership lease on etcd."""
        lead = leadership_of(self.store, view)
        if lead.leading:
            if self._term != lead.term:
                self._cancel()
                self._term = lead.term
                self._task = asyncio.ensure_future(self._lead(lead.term))
        elif self._term is not None:
            self._cancel()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._term = None
        self.leading_term = None

    async def stop(self) -> None:
        task = self._task
        self._cancel()
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _lead(self, term: int) -> None:
        try:
            await self._lead_term(term)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leading term %d failed", term)

    async def _lead_term(self, term: int) -> None:
        while True:
            lead = leadership_of(self.store)
            if not lead.leading or lead.term != term:
                return
            try:
                result = await self.store.propose(LeaderElected(leader_id=self.master_id, term=term,
                                                                time=rfc3339(self.clock()), fence_term=term))
            except ApiError as exc:
                log.info("announcing leadership of term %d: %s", term, exc)
                await asyncio.sleep(self.announce_retry_s)  # bounded retry while we still lead this term
                continue
            if not result.ok:
                log.info("leadership of term %d refused: %s", term, result.error)
                return
            break
        self.leading_term = term
        log.warning("master %s leads term %d", self.master_id, term)
        tasks = [asyncio.ensure_future(self._supervise(name, fn, term)) for name, fn in self._loops]
        try:
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()

    async def _supervise(self, name: str, fn: LeaderLoop, term: int) -> None:
        """Run one loop; if it fails with a bug, log it and restart it after a pause (still leading)."""
        while True:
            try:
                await fn(term)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader loop %s failed in term %d; restarting", name, term)
                await asyncio.sleep(1.0)
