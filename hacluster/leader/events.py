"""Kubernetes Events written by the leader-only loops, with a bounded queue and aggregation of repeats.

Each loop (scheduler, node lifecycle, ReplicaSet) owns one `EventRecorder` per term: `emit()` never
blocks and never fails — it queues the event, or drops it (counted in `dropped`) when `queue_max` events
are already waiting, as client-go's broadcaster drops under pressure. `run(proposer)` writes what is
queued in Batch proposals fenced by the loop's term.

Like client-go's EventCorrelator, an event repeating an earlier one (same involved object, type, reason
and message) is not created again: the earlier Event's `count` is bumped and its `lastTimestamp` moved,
so a pod that fails to schedule every few seconds keeps one FailedScheduling event. The recorder
remembers the last `cache_max` events it wrote; after a leader change the new leader starts afresh.

Events are core/v1 Events named `<object>.<hex nanoseconds>` as Kubernetes names them, in the object's
namespace ("default" for cluster-scoped objects such as nodes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.ids import new_uid
from hacluster.leader.proposer import BATCH_OVERHEAD_BYTES, MAX_ENTRY_BYTES, FencedProposer, encoded_size
from hacluster.model.commands import AnyCommand, Batch, Create, Replace
from hacluster.model.timestamps import rfc3339, rfc3339_micro

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NORMAL, WARNING = "Normal", "Warning"
BATCH_MAX_EVENTS = 100
IDLE_WAIT_S = 1.0

AggregateKey = tuple[str, str, str, str, str]


def object_reference(obj: Obj) -> Obj:
    """An `involvedObject` reference to a stored object."""
    meta = obj.get("metadata") or {}
    ref: Obj = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
                "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


@dataclass
class _Pending:
    obj: Obj
    replace: bool  # True: bump an Event this recorder wrote before


class EventRecorder:
    """Queues and writes Events for one component (see the module docstring)."""

    def __init__(self, *, component: str, instance: str, clock: Callable[[], float] = time.time,
                 queue_max: int = 1000, cache_max: int = 4096, batch_max: int = BATCH_MAX_EVENTS) -> None:
        self.component = component
        self.instance = instance
        self.clock = clock
        self.queue_max = queue_max
        self.cache_max = cache_max
        self.batch_max = batch_max
        self.dropped = 0
        self.written = 0
        self._pending: OrderedDict[AggregateKey, _Pending] = OrderedDict()
        self._written: OrderedDict[AggregateKey, Obj] = OrderedDict()
        self._last_ns = 0
        self._wake = asyncio.Event()

    # --------------------------------------------------------------------------------- producing
    def emit(self, involved: Obj, etype: str, reason: str, message: str, *, action: str = "") -> None:
        """Queue an event about `involved` (a stored object); never blocks, drops when the queue is full."""
        ref = object_reference(involved)
        key: AggregateKey = (ref.get("namespace", ""), ref["kind"], ref["uid"] or ref["name"], etype,
                             reason + "\x00" + message)
        now = self.clock()
        pending = self._pending.get(key)
        if pending is not None:
            pending.obj["count"] = int(pending.obj.get("count", 1)) + 1
            pending.obj["lastTimestamp"] = rfc3339(now)
            pending.obj["involvedObject"] = ref
            return
        if len(self._pending) >= self.queue_max:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s: event queue full (%d), dropped %d events so far", self.component, self.queue_max,
                            self.dropped)
            return
        earlier = self._written.get(key)
        if earlier is not None:
            obj = dict(earlier)
            obj["metadata"] = dict(earlier["metadata"])
            obj["count"] = int(earlier.get("count", 1)) + 1
            obj["lastTimestamp"] = rfc3339(now)
            obj["involvedObject"] = ref
            self._pending[key] = _Pending(obj, replace=True)
        else:
            self._pending[key] = _Pending(self._new_event(ref, etype, reason, message, action, now), replace=False)
        self._wake.set()

    def _new_event(self, ref: Obj, etype: str, reason: str, message: str, action: str, now: float) -> Obj:
        stamp_ns = max(int(now * 1e9), self._last_ns + 1)
        self._last_ns = stamp_ns
        namespace = ref.get("namespace") or "default"
        ts = rfc3339(now)
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref['name']}.{stamp_ns:x}", "namespace": namespace, "uid": new_uid(),
                         "creationTimestamp": ts},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": etype,
            "eventTime": rfc3339_micro(now),
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        if action:
            event["action"] = action
        return event

    @property
    def queued(self) -> int:
        return len(self._pending)

    # --------------------------------------------------------------------------------- writing
    async def flush(self, proposer: FencedProposer) -> int:
        """Write up to `batch_max` queued events in one proposal; return how many were taken."""
        if not self._pending:
            return 0
        taken: list[tuple[AggregateKey, _Pending]] = []
        commands: list[AnyCommand] = []
        size = BATCH_OVERHEAD_BYTES
        while self._pending and len(taken) < self.batch_max:
            key, p = next(iter(self._pending.items()))
            meta = p.obj["metadata"]
            command: AnyCommand
            if p.replace:
                command = Replace(resource="events", namespace=meta["namespace"], name=meta["name"], obj=p.obj)
            else:
                command = Create(resource="events", namespace=meta["namespace"], obj=p.obj)
            n = encoded_size(command)
            if taken and size + n > MAX_ENTRY_BYTES:
                break
            del self._pending[key]
            taken.append((key, p))
            commands.append(command)
            size += n
        result = await proposer.propose(Batch(commands=commands))
        results = result.results if result.ok else tuple(result for _ in taken)
        for (key, p), r in zip(taken, results, strict=True):
            if r.ok and r.obj is not None:
                self.written += 1
                self._remember(key, r.obj)
            elif p.replace and r.error is not None and r.error.reason == "NotFound":
                # The earlier event expired from the store: write it anew (keeping its count).
                self._written.pop(key, None)
                if key not in self._pending and len(self._pending) < self.queue_max:
                    fresh = self._new_event(p.obj["involvedObject"], p.obj["type"], p.obj["reason"],
                                            p.obj["message"], p.obj.get("action", ""), self.clock())
                    fresh["count"] = p.obj.get("count", 1)
                    self._pending[key] = _Pending(fresh, replace=False)
            else:
                log.info("%s: event %s not written: %s", self.component, p.obj["metadata"]["name"],
                         r.error.message if r.error else "?")
        return len(taken)

    def _remember(self, key: AggregateKey, obj: Obj) -> None:
        self._written[key] = obj
        self._written.move_to_end(key)
        while len(self._written) > self.cache_max:
            self._written.popitem(last=False)

    async def run(self, proposer: FencedProposer) -> None:
        """Write queued events until cancelled (or NotLeading from the proposer)."""
        while True:
            if not self._pending:
                self._wake.clear()
                if not await wait_event(self._wake, IDLE_WAIT_S):
                    continue
            await self.flush(proposer)
            await asyncio.sleep(0)  # a cooperative yield between batches (a local store answers at once)
