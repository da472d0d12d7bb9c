"""Following the leader's local store: a consistent list of a few resources, then every change in order.

Used by the scheduler and the controllers, which run on the Raft leader and therefore read its local
state machine directly (no HTTP, no watch stream): `list_all()` takes the objects and the revision in one
read, `poll()` returns the changes since, and `wait()` blocks until something new was applied. When the
store's bounded watch history no longer reaches back to the last revision seen, `poll()` returns None and
the caller relists — the same contract as a Kubernetes informer that receives 410 Gone.

Objects handed out are the store's own (shared, immutable by convention): copy before changing them.
"""

from __future__ import annotations

from typing import Any

from hacluster.store.api import ReplicatedStore
from hacluster.store.state import StoreState, WatchEvent

Obj = dict[str, Any]


class StoreFollower:
    """List-then-follow over `resources` (store bucket names such as "pods") of the local store."""

    def __init__(self, store: ReplicatedStore, resources: tuple[str, ...]) -> None:
        self.store = store
        self.resources = frozenset(resources)
        self.revision = 0
        """The revision up to which the caller has seen everything (set by list_all() and poll())."""

    def list_all(self) -> dict[str, list[Obj]]:
        """Every object of the followed resources, read atomically; following resumes after it."""
        names = sorted(self.resources)

        def snap(s: StoreState) -> tuple[int, dict[str, list[Obj]]]:
            return s.revision, {r: list((s.objects.get(r) or {}).values()) for r in names}

        self.revision, objs = self.store.read(snap)
        return objs

    def poll(self) -> list[WatchEvent] | None:
        """Changes of the followed resources since the last list_all()/poll(), in order; None when some of
        them have left the store's history (call list_all() again)."""
        since = self.revision
        events = self.store.read(lambda s: s.events_since(since))
        if events is None:
            return None
        if events:
            self.revision = events[-1].revision
        return [e for e in events if e.resource in self.resources]

    def behind(self) -> bool:
        """True if the store has applied changes this follower has not polled yet."""
        return bool(self.store.read(lambda s: s.revision > self.revision))

    async def wait(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until the store has changes beyond what was polled; True if so."""
        revision = await self.store.wait_for_change(self.revision, timeout_s)
        return revision > self.revision
