"""A `ReplicatedStore` with a single, unreplicated copy of the state machine, in this process.

For tests of the API server, scheduler and controllers that need the store's behaviour but not Raft
(`tests/api`), and for property tests that compare Raft against a plain model. It can be switched
"unavailable" to exercise the 503 path without sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from hacluster.asyncwait import wait_event
from hacluster.model import commands as cmds
from hacluster.model.commands import AnyCommand
from hacluster.model.errors import BadRequest, Unavailable
from hacluster.store.api import RaftView
from hacluster.store.state import Result, StoreLimits, StoreState

T = TypeVar("T")


class LocalStore:
    """Applies every proposal at once to one StoreState; always the leader of term `term`."""

    def __init__(self, limits: StoreLimits | None = None, *, master_id: str = "m1", term: int = 1) -> None:
        self.state = StoreState(limits)
        self.id = master_id
        self.term = term
        self.available = True
        self.proposals: list[AnyCommand] = []
        self._event = asyncio.Event()
        self._listeners: list[Callable[[RaftView], None]] = []

    async def propose(self, command: AnyCommand, *, timeout_s: float | None = None) -> Result:
        if not self.available:
            raise Unavailable(f"hacluster master {self.id}: no quorum (test store switched off)", retry_after_s=1)
        # Through the encoding the Raft log uses, so a command that could not be replicated fails here too.
        try:
            command = cmds.as_replicated(command)
        except cmds.CommandEncodingError as exc:
            raise BadRequest(str(exc)) from exc
        self.proposals.append(command)
        result = self.state.apply(command)
        ev, self._event = self._event, asyncio.Event()
        ev.set()
        return result

    async def linearizable_barrier(self) -> None:
        if not self.available:
            raise Unavailable(f"hacluster master {self.id}: no quorum (test store switched off)", retry_after_s=1)

    def read(self, fn: Callable[[StoreState], T]) -> T:
        return fn(self.state)

    async def wait_for_change(self, after_revision: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.state.revision <= after_revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not await wait_event(self._event, remaining):
                break
        return self.state.revision

    def view(self) -> RaftView:
        return RaftView(self.id, "leader" if self.available else "follower", self.term,
                        self.id if self.available else None, self.state.revision, self.state.revision,
                        self.available)

    def add_view_listener(self, fn: Callable[[RaftView], None]) -> None:
        self._listeners.append(fn)

    def set_available(self, available: bool) -> None:
        self.available = available
        for fn in self._listeners:
            fn(self.view())
