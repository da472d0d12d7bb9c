"""Kubernetes Events written by the leader-only loops, with a bounded queue and aggregation of repeats.

Each loop (scheduler, node lifecycle, ReplicaSet) owns one `EventRecorder` per term: `emit()` never
blocks and never fails — it queues the event, or drops it (counted in `dropped`) when `queue_max` events
are already waiting, as client-go's broadcaster drops under pressure. `run(proposer)` writes what is
queued in Batch proposals fenced by the loop's term.

The aggregation is `hacluster.model.events.EventCorrelator`'s (shared with the kubelet): an event repeating
an earlier one (same involved object, type, reason and message) is not created again: the earlier Event's
`count` is bumped and its `lastTimestamp` moved, so a pod that fails to schedule every few seconds keeps
one FailedScheduling event. The recorder remembers the last `cache_max` events it wrote;
after a leader change the new leader starts afresh.

Events are core/v1 Events named `<object>.<hex nanoseconds>` as Kubernetes names them, in the object's
namespace ("default" for cluster-scoped objects such as nodes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.ids import new_uid
from hacluster.leader.proposer import BATCH_OVERHEAD_BYTES, MAX_ENTRY_BYTES, FencedProposer, encoded_size
from hacluster.model.commands import AnyCommand, Batch, Create, Replace
from hacluster.model.events import EventCorrelator, EventKey, bumped, object_reference
from hacluster.store.state import Result

log = logging.getLogger(__name__)
Obj = dict[str, Any]

NORMAL, WARNING = "Normal", "Warning"
BATCH_MAX_EVENTS = 100
IDLE_WAIT_S = 1.0

__all__ = ["NORMAL", "WARNING", "EventRecorder", "object_reference"]


@dataclass
class TakenEvents:
    """Events taken from the queue to be proposed: their queue keys and their commands, in order."""

    keys: list[tuple[EventKey, _Pending]] = field(default_factory=list)
    commands: list[AnyCommand] = field(default_factory=list)


@dataclass
class _Pending:
    obj: Obj
    replace: bool  # True: bump an Event this recorder wrote before


class EventRecorder:
    """Queues and writes Events for one component (see the module docstring): a sink over
    `hacluster.model.events.EventCorrelator` that writes in fenced Batch proposals."""

    def __init__(self, *, component: str, instance: str, clock: Callable[[], float] = time.time,
                 queue_max: int = 1000, cache_max: int = 4096, batch_max: int = BATCH_MAX_EVENTS) -> None:
        self.component = component
        self.instance = instance
        self.clock = clock
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.dropped = 0
        self.written = 0
        self.correlator = EventCorrelator(component=component, instance=instance, keys_max=cache_max,
                                          new_uid=new_uid)
        self._pending: OrderedDict[EventKey, _Pending] = OrderedDict()
        self._wake = asyncio.Event()

    # --------------------------------------------------------------------------------- producing
    def emit(self, involved: Obj, etype: str, reason: str, message: str, *, action: str = "") -> None:
        """Queue an event about `involved` (a stored object); never blocks, drops when the queue is full."""
        ref = object_reference(involved)
        key = self.correlator.key(ref, etype, reason, message)
        now = self.clock()
        pending = self._pending.get(key)
        if pending is not None:  # not written yet: the queued one counts this occurrence too
            pending.obj = bumped(pending.obj, ref, now)
            return
        if len(self._pending) >= self.queue_max:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s: event queue full (%d), dropped %d events so far", self.component, self.queue_max,
                            self.dropped)
            return
        c = self.correlator.correlate(key, ref, now=now, action=action)
        self._pending[key] = _Pending(c.event, replace=c.bump)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._pending)

    # --------------------------------------------------------------------------------- writing
    async def flush(self, proposer: FencedProposer) -> int:
        """Write up to `batch_max` queued events in one proposal; return how many were taken."""
        taken = self.take()
        if not taken.commands:
            return 0
        result = await proposer.propose(Batch(commands=taken.commands))
        self.settle(taken, result.results if result.ok else tuple(result for _ in taken.commands))
        return len(taken.commands)

    def take(self, room_bytes: int = MAX_ENTRY_BYTES - BATCH_OVERHEAD_BYTES) -> TakenEvents:
        """Take up to `batch_max` queued events (at most `room_bytes` of commands) to be proposed — by `flush`,
        or by a loop that adds them to its own batch (one Raft entry instead of two); hand the results to
        `settle`."""
        taken = TakenEvents()
        size = 0
        # With a whole entry to fill, the first event is taken whatever its size (the queue never sticks on
        # it); a loop's batch with less room leaves what does not fit for the next proposal.
        whole_entry = room_bytes >= MAX_ENTRY_BYTES - BATCH_OVERHEAD_BYTES
        while self._pending and len(taken.keys) < self.batch_max:
            key, p = next(iter(self._pending.items()))
            meta = p.obj["metadata"]
            command: AnyCommand
            if p.replace:
                command = Replace(resource="events", namespace=meta["namespace"], name=meta["name"], obj=p.obj)
            else:
                command = Create(resource="events", namespace=meta["namespace"], obj=p.obj)
            n = encoded_size(command)
            if size + n > room_bytes and (taken.keys or not whole_entry):
                break
            del self._pending[key]
            taken.keys.append((key, p))
            taken.commands.append(command)
            size += n
        return taken

    def settle(self, taken: TakenEvents, results: Sequence[Result]) -> None:
        """What the store answered to the events of `take`, in order."""
        for (key, p), r in zip(taken.keys, results, strict=True):
            if r.ok and r.obj is not None:
                self.written += 1
                self.correlator.remember(key, r.obj)
            elif p.replace and r.error is not None and r.error.reason == "NotFound":
                # The earlier event expired from the store: write it anew (keeping its count).
                self.correlator.forget(key)
                if key not in self._pending and len(self._pending) < self.queue_max:
                    fresh = self.correlator.new_event(key, p.obj["involvedObject"], now=self.clock(),
                                                      action=p.obj.get("action", ""))
                    fresh["count"] = p.obj.get("count", 1)
                    self._pending[key] = _Pending(fresh, replace=False)
                    self._wake.set()
            else:
                log.info("%s: event %s not written: %s", self.component, p.obj["metadata"]["name"],
                         r.error.message if r.error else "?")

    async def run(self, proposer: FencedProposer) -> None:
        """Write queued events until cancelled (or NotLeading from the proposer)."""
        while True:
            if not self._pending:
                self._wake.clear()
                if not await wait_event(self._wake, IDLE_WAIT_S):
                    continue
            await self.flush(proposer)
            await asyncio.sleep(0)  # a cooperative yield between batches (a local store answers at once)
