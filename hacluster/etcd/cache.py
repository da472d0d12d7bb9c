"""The watch cache of the etcd engine: a `StoreState` that mirrors etcd instead of applying commands.

`EtcdStore` fills it from one list of the whole keyspace (`load`) and then from one etcd watch on it
(`observe`, one call per etcd revision). Everything the API server, scheduler and controllers read —
gets, lists, `resourceVersion=0` reads, watch fan-out — is served from here, as kube-apiserver serves
them from its watch cache; a linearizable read first waits until this cache has caught up with a
revision etcd reported after the read arrived (`EtcdStore.linearizable_barrier`).

Unlike the pysyncobj engine's state machine, one etcd revision may change several objects (a transaction)
and revisions of keys outside the objects' layout (the leadership key) are skipped: `events_since` looks
revisions up rather than counting them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hacluster.store.frozen import freeze
from hacluster.store.state import ADDED, DELETED, MODIFIED, Obj, StoreLimits, StoreState, WatchEvent


@dataclass(frozen=True, slots=True)
class Change:
    """One key changed at one revision: the object after (None: deleted) and before (None: created)."""

    plural: str
    key: str
    obj: Obj | None
    prev: Obj | None


class WatchCache(StoreState):
    """Objects, revision and watch history as etcd last reported them to this master."""

    def __init__(self, limits: StoreLimits | None = None) -> None:
        super().__init__(limits)
        self.leader_holder = ""
        """Value of the leadership key (`layout.leader_key`): the master whose leader loops run."""
        self.leader_create_revision = 0
        """Create revision of the leadership key (0: nobody holds it): the term of the leader loops."""

    def load(self, revision: int, objects: list[tuple[str, str, Obj, int]]) -> None:
        """Replace everything with a full list taken at `revision` ((plural, key, object, create revision)).
        The watch history restarts there: a watch from an older revision gets 410 Expired."""
        for bucket in self.objects.values():
            bucket.clear()
        self._digests.clear()
        self._digest_sum = 0
        self.event_keys.clear()
        self.history.clear()
        events: list[tuple[int, str]] = []
        for plural, key, obj, create_revision in objects:
            stored = freeze(obj)
            self.objects[plural][key] = stored
            self._set_digest(plural, key, stored)
            if plural == "events":
                events.append((create_revision, key))
        for _, key in sorted(events):  # expiry takes the oldest first, as the state machine orders them
            self.event_keys[key] = None
        self.revision = revision
        self.history_floor = revision

    def observe(self, revision: int, changes: list[Change]) -> None:
        """Apply what etcd's watch reported for `revision` (in order) and record the watch events."""
        self.revision = max(self.revision, revision)
        for c in changes:
            bucket = self.objects[c.plural]
            if c.obj is None:
                prev = bucket.pop(c.key, None)
                if prev is None:
                    continue
                last = dict(prev)
                last["metadata"] = dict(prev["metadata"])
                last["metadata"]["resourceVersion"] = str(revision)
                self._set_digest(c.plural, c.key, None)
                self._record(DELETED, c.plural, c.key, freeze(last), prev)
                if c.plural == "events":
                    self.event_keys.pop(c.key, None)
                continue
            stored = freeze(c.obj)
            before = bucket.get(c.key)
            bucket[c.key] = stored
            self._set_digest(c.plural, c.key, stored)
            self._record(MODIFIED if before is not None else ADDED, c.plural, c.key, stored, before)
            if c.plural == "events" and before is None:
                self.event_keys[c.key] = None

    def advance(self, revision: int) -> None:
        """etcd is at `revision` with nothing more for the objects (a revision of another key, a progress
        notification)."""
        self.revision = max(self.revision, revision)

    def events_since(self, revision: int) -> list[WatchEvent] | None:
        """Every change after `revision`, or None when some of them have left the history (410)."""
        if revision < self.history_floor:
            return None
        if revision >= self.revision:
            return []
        # Revisions are neither dense nor one per event: walk back from the newest (watchers resume near it).
        tail = list(itertools.takewhile(lambda ev: ev.revision > revision, reversed(self.history)))
        tail.reverse()
        return tail
