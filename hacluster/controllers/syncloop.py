"""The leader-only loop that the ReplicaSet, Deployment and Job controllers share (their base class).

Each of those controllers keeps a set of dirty objects, fed by the store's changes (`take_changes`), and syncs
them one by one (`sync`) through a proposer fenced by the term it leads in (`start`); objects waiting for a
time (minReadySeconds, back-off, a deadline) are in `recheck_at`, owners deleted with objects to collect in
`gone_owners` (`_collect_garbage`: the dependents they controlled are deleted). The loop runs until the
proposer finds the term is over (`NotLeading`) or the task is cancelled, and always stops the controller's
event recorder. `LeaderController`, beneath it, is what the node lifecycle controller shares with them: the
store, the settings, the clock, the event recorder and the fenced proposer of one term.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hacluster.config import ControllersConfig
from hacluster.leader.events import EventRecorder
from hacluster.leader.informer import StoreFollower
from hacluster.leader.proposer import FencedProposer, NotLeading, propose_all
from hacluster.model.commands import AnyCommand, Delete
from hacluster.model.timestamps import rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import DELETED, StoreState, WatchEvent

Obj = dict[str, Any]

IDLE_WAIT_S = 1.0
"""Longest wait without news (a store change wakes the loop earlier; so does the nearest recheck)."""


def controller_ref(obj: Obj) -> Obj | None:
    """The owner reference that names the object's controller, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref  # type: ignore[no-any-return]
    return None


def object_key(obj: Obj) -> str:
    """"namespace/name" of a stored object."""
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class LeaderController:
    """A controller of one leadership term: the store, its settings, a clock, an event recorder reporting as
    `component`, and (from `start`) a proposer fenced by the term."""

    component = "controller"
    """The reporting component of its events and proposals ("replicaset-controller" …)."""

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.recorder = EventRecorder(component=self.component, instance=f"{self.component}-{instance or 'local'}",
                                      clock=clock, queue_max=settings.events_queue_max)
        self.proposer: FencedProposer | None = None

    def start(self, term: int) -> None:
        """Prepare to work in `term`: a proposer fenced by it (run() calls it; so do tests)."""
        self.proposer = FencedProposer(self.store, term, component=self.component,
                                       timeout_s=self.settings.proposal_timeout_s)

    def _proposer(self) -> FencedProposer:
        assert self.proposer is not None
        return self.proposer


class SyncLoop(LeaderController):
    """Base of a leader-only controller that syncs dirty objects as the store changes."""

    kind = "object"
    """What the controller syncs, for its log lines ("replicaset" …)."""
    followed: tuple[str, ...] = ()
    """The resources it follows in the store, the ones it syncs first ("replicasets", "pods")."""
    owner_kind = ""
    """The kind of the objects it syncs, as their dependents' owner references name it ("ReplicaSet" …)."""
    dependents = "pods"
    """The resource its objects control, which the garbage collector deletes when their owner is gone."""
    forget_deleted = False
    """Whether a deleted object leaves the dirty set at once (else its sync finds it gone)."""
    garbage_words = ("pods", "objects")
    """How the garbage collector's log line names the dependents and their deleted owners."""

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str,
                 clock: Callable[[], float]) -> None:
        super().__init__(store, settings, instance=instance, clock=clock)
        self.follower = StoreFollower(store, self.followed)
        self.dirty: set[str] = set()  # "ns/name" of objects to sync
        self.by_uid: dict[str, str] = {}  # uid -> "ns/name" of the objects it syncs
        self.gone_owners: set[str] = set()  # uids of deleted objects whose dependents to collect
        self.recheck_at: dict[str, float] = {}  # objects to re-evaluate at a time (minReadySeconds, back-off …)

    def start(self, term: int) -> None:
        """Prepare to sync in `term`: proposer and a full list (run() calls it; so do tests)."""
        super().start(term)
        self._relist()

    def _relist(self) -> None:
        """Everything anew from a full list: every object dirty, owners of orphaned dependents gone."""
        objs = self.follower.list_all()
        self.by_uid = {o["metadata"]["uid"]: object_key(o) for o in objs[self.followed[0]]}
        self.dirty = set(self.by_uid.values())
        for d in objs[self.dependents]:
            ref = controller_ref(d)
            if ref is not None and ref.get("kind") == self.owner_kind and ref.get("uid") not in self.by_uid:
                self.gone_owners.add(str(ref.get("uid")))

    def take_changes(self) -> None:
        """Mark the objects touched by store changes since the last call as dirty (relisting when the
        store's history no longer reaches back to the last change seen)."""
        events = self.follower.poll()
        if events is None:
            logging.getLogger(type(self).__module__).warning(
                "%s controller fell behind the store's history: relisting", self.kind)
            self._fell_behind()
            return
        for ev in events:
            if ev.resource != self.followed[0]:
                self._dependent_changed(ev)
                continue
            key, uid = object_key(ev.obj), ev.obj["metadata"]["uid"]
            if ev.type == DELETED:
                self.by_uid.pop(uid, None)
                self.gone_owners.add(uid)
                if self.forget_deleted:
                    self.dirty.discard(key)
            else:
                self.by_uid[uid] = key
                self.dirty.add(key)

    def _fell_behind(self) -> None:
        self._relist()

    def _dependent_changed(self, ev: WatchEvent) -> None:
        """A change of another followed resource than the synced one (pods …): mark its owners dirty."""
        raise NotImplementedError

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def _collect_garbage(self) -> None:
        """Delete the dependents (not terminating yet) that the owners in `gone_owners` controlled, unless
        such an owner exists again."""
        gone = set(self.gone_owners)
        self.gone_owners.clear()
        owners, dependents = self.followed[0], self.dependents
        gone -= self.store.read(lambda s: {o["metadata"]["uid"] for o in s.objects[owners].values()})
        if not gone:
            return

        def orphans(s: StoreState) -> list[Obj]:
            return [d for d in s.objects[dependents].values()
                    if (controller_ref(d) or {}).get("uid") in gone and not d["metadata"].get("deletionTimestamp")]
        found = self.store.read(orphans)
        if not found:
            return
        logging.getLogger(type(self).__module__).info("garbage collector: deleting %d %s of deleted %s",
                                                      len(found), *self.garbage_words)
        await propose_all(self._proposer(), self._garbage_commands(found, rfc3339(self.clock())))

    def _garbage_commands(self, found: list[Obj], now_text: str) -> list[AnyCommand]:
        """The commands that collect `found` (deletes, compare-and-set on each UID)."""
        return [Delete(resource=self.dependents, namespace=d["metadata"].get("namespace", ""),
                       name=d["metadata"]["name"], time=now_text, expected_uid=d["metadata"].get("uid", ""))
                for d in found]

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
