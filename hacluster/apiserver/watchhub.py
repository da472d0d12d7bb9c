"""Watch fan-out of one master: each committed change is read once and handed only to the watches that
may want it.

Used by the API server's watch handler. Without it every change woke every watch, and each re-read the
history under the store lock — with a thousand kubelets each watching `spec.nodeName=<itself>`, that alone
saturated a master. The hub keeps an index of watches by (resource, node name) for pod watches that select
one node, and a list per resource for the others; a change of a pod goes to the watches of the node it is
bound to before and after the change, plus the unindexed ones. Each watch has a bounded queue
(`watch_queue_max`); a watch that falls that far behind is ended, and its client resumes from the last
resourceVersion it saw, as with Kubernetes' watch cache.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from hacluster.store.api import ReplicatedStore
from hacluster.store.state import StoreState, WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_WAIT_S = 10.0


def _node_of(obj: Obj | None) -> str:
    if not obj:
        return ""
    return str((obj.get("spec") or {}).get("nodeName") or "")


@dataclass(eq=False)
class Subscription:
    """One watch: what it selects coarsely (the handler filters finely) and its queue of changes."""

    resource: str
    prefix: str  # "namespace/" or "" for every namespace
    node: str | None  # pods of one node (spec.nodeName=...), or None
    start_revision: int  # changes up to this revision were handed over as a backlog
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=lambda: asyncio.Queue())
    overflowed: bool = False  # fell `queue_max` changes behind; None in the queue ends the watch


class WatchHub:
    """Reads the store's history once per change and routes each change to the interested subscriptions."""

    def __init__(self, store: ReplicatedStore, queue_max: int) -> None:
        self.store = store
        self.queue_max = queue_max
        self._by_node: dict[tuple[str, str], set[Subscription]] = {}
        self._general: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._dispatched = 0

    def subscribe(self, resource: str, prefix: str, node: str | None,
                  from_revision: int) -> tuple[Subscription, list[WatchEvent]] | None:
        """Register a watch that has seen every change up to `from_revision`; return it with the changes
        after that revision that are already committed (its backlog), or None when some of them have left
        the history (410). Runs without awaiting, so nothing can slip between backlog and queue."""
        def take(s: StoreState) -> tuple[int, list[WatchEvent] | None]:
            return s.revision, s.events_since(from_revision)

        revision, backlog = self.store.read(take)
        if backlog is None:
            return None
        # A client may know a later revision than this master has applied (it watched another master, and
        # this one is still replaying its journal after a restart): the changes up to `from_revision` it
        # has seen, so they must not reach it again when this master applies them.
        sub = Subscription(resource, prefix, node, max(revision, from_revision))
        if node is not None:
            self._by_node.setdefault((resource, node), set()).add(sub)
        else:
            self._general.setdefault(resource, set()).add(sub)
        if self._task is None or self._task.done():
            self._dispatched = max(self._dispatched, revision)
            self._task = asyncio.ensure_future(self._dispatch())
        return sub, backlog

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.node is not None:
            subs = self._by_node.get((sub.resource, sub.node))
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_node[(sub.resource, sub.node)]
        else:
            subs = self._general.get(sub.resource)
            if subs is not None:
                subs.discard(sub)

    def _deliver(self, sub: Subscription, ev: WatchEvent) -> None:
        if ev.revision <= sub.start_revision or sub.overflowed or not ev.key.startswith(sub.prefix):
            return
        if sub.queue.qsize() >= self.queue_max:
            self._end(sub)  # its client resumes from the last revision it saw
            return
        sub.queue.put_nowait(ev)

    @staticmethod
    def _end(sub: Subscription) -> None:
        if not sub.overflowed:
            sub.overflowed = True
            sub.queue.put_nowait(None)

    def end_all(self, spread_s: float = 0.0) -> None:
        """End every watch, spread over `spread_s` so that their clients do not all relist at once."""
        loop = asyncio.get_event_loop()
        for sub in self._all():
            if spread_s > 0:
                loop.call_later(random.uniform(0, spread_s), self._end, sub)
            else:
                self._end(sub)

    async def _dispatch(self) -> None:
        try:
            while self._by_node or any(self._general.values()):
                await self.store.wait_for_change(self._dispatched, _WAIT_S)
                since = self._dispatched
                events = self.store.read(lambda s: s.events_since(since))  # noqa: B023 (called at once)
                if events is None:  # this dispatcher fell out of the history: end every watch
                    for sub in self._all():
                        self._end(sub)
                    self._dispatched = self.store.read(lambda s: s.revision)
                    continue
                for ev in events:
                    self._dispatched = ev.revision
                    general = self._general.get(ev.resource)
                    if general:
                        for sub in list(general):
                            self._deliver(sub, ev)
                    if self._by_node:
                        nodes = {_node_of(ev.obj), _node_of(ev.prev)}
                        for node in nodes:
                            for sub in list(self._by_node.get((ev.resource, node), ())):
                                self._deliver(sub, ev)
                await asyncio.sleep(0)  # let the handlers drain between batches
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watch dispatcher failed; open watches end and clients resume")
            for sub in self._all():
                self._end(sub)

    def _all(self) -> list[Subscription]:
        out: list[Subscription] = []
        for subs in self._by_node.values():
            out.extend(subs)
        for subs in self._general.values():
            out.extend(subs)
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
