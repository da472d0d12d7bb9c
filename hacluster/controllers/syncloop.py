"""The leader-only loop that the ReplicaSet, Deployment and Job controllers share (their base class).

Each of those controllers keeps a set of dirty objects, fed by the store's changes (`take_changes`), and syncs
them one by one (`sync`) through a proposer fenced by the term it leads in (`start`); objects waiting for a
time (minReadySeconds, back-off, a deadline) are in `recheck_at`, owners deleted with objects to collect in
`gone_owners` (`_collect_garbage`). The loop runs until the proposer finds the term
is over (`NotLeading`) or the task is cancelled, and always stops the controller's event recorder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from hacluster.leader.events import EventRecorder
from hacluster.leader.informer import StoreFollower
from hacluster.leader.proposer import FencedProposer, NotLeading

IDLE_WAIT_S = 1.0
"""Longest wait without news (a store change wakes the loop earlier; so does the nearest recheck)."""


class SyncLoop:
    """Base of a leader-only controller that syncs dirty objects as the store changes."""

    kind = "object"
    """What the controller syncs, for its log lines ("replicaset" …)."""
    recorder: EventRecorder
    follower: StoreFollower
    dirty: set[str]
    gone_owners: set[str]
    recheck_at: dict[str, float]
    clock: Callable[[], float]
    proposer: FencedProposer | None

    def start(self, term: int) -> None:
        raise NotImplementedError

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def _collect_garbage(self) -> None:
        raise NotImplementedError

    async def sync_dirty(self) -> None:
        """Sync every dirty object (in key order), the re-checks now due and pending garbage collection."""
        now = self.clock()
        for key, when in list(self.recheck_at.items()):
            if when <= now:
                del self.recheck_at[key]
                self.dirty.add(key)
        if self.gone_owners:
            await self._collect_garbage()
        while self.dirty:
            key = min(self.dirty)
            self.dirty.discard(key)
            await self.sync(key)

    def take_changes(self) -> None:
        raise NotImplementedError

    async def run(self, term: int) -> None:
        """Sync as the store changes until cancelled or no longer leading `term`."""
        log = logging.getLogger(type(self).__module__)
        self.start(term)
        assert self.proposer is not None
        events = asyncio.ensure_future(self.recorder.run(self.proposer))
        log.info("%s controller starts in term %d", self.kind, term)
        try:
            while True:
                await self.sync_dirty()
                wait_s = IDLE_WAIT_S
                if self.recheck_at:
                    wait_s = max(0.0, min(wait_s, min(self.recheck_at.values()) - self.clock()))
                await self.follower.wait(wait_s)
                await asyncio.sleep(0)  # a cooperative yield: the wait returns at once while the store changes
                self.take_changes()
        except NotLeading as exc:
            log.info("%s controller stops: %s", self.kind, exc)
        finally:
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)
