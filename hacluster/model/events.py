"""Kubernetes event aggregation, pure: the one correlator behind the kubelet's and the leader's Event recorders.

Like client-go's EventCorrelator, an event that repeats one written before (same involved object, field
path, type, reason and message: the `EventKey`) is not created again: the earlier Event's `count` is bumped
and its `lastTimestamp` moved. `EventCorrelator` keeps a bounded LRU of the Events written (`keys_max`),
optionally limits how many distinct Events one object may have (`per_object_max`), and builds the Event
objects (core/v1, named `<object>.<hex nanoseconds>` as Kubernetes names them, in the object's namespace or
"default" for cluster-scoped objects). It does no I/O and reads no clock: the caller passes `now` (seconds
since the epoch) and, for Events written straight to the store, a UID source.

Used by `hacluster/kubelet/events.py` (writes through the API, token bucket) and
`hacluster/leader/events.py` (batched fenced proposals); each is a sink that decides when and how to write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from hacluster.model.timestamps import rfc3339, rfc3339_micro

Obj = dict[str, Any]


class EventKey(NamedTuple):
    """What makes two events the same Event (a repeat bumps the count of the first)."""

    namespace: str
    kind: str
    object: str  # the involved object's UID, or its name when it has none
    field_path: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Correlation:
    """What to write for one event: a new Event, or (`bump`) the Event written before with a higher count."""

    key: EventKey
    event: Obj
    bump: bool


def object_reference(obj: Obj) -> Obj:
    """An `involvedObject` reference to a stored object."""
    meta = obj.get("metadata") or {}
    ref: Obj = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""), "name": meta.get("name", ""),
                "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


def bumped(event: Obj, ref: Obj, now: float) -> Obj:
    """A copy of `event` counting one more occurrence at `now`, about the latest `ref` of its object."""
    obj = dict(event)
    obj["metadata"] = dict(event["metadata"])
    obj["count"] = int(event.get("count", 1)) + 1
    obj["lastTimestamp"] = rfc3339(now)
    obj["involvedObject"] = ref
    return obj


class EventCorrelator:
    """Aggregates the events of one reporting component (see the module docstring).

    `component` and `instance` fill `source.component`, `reportingComponent` and `reportingInstance`;
    `host`, when given, `source.host` (the kubelet's node). `new_uid`, when given, stamps new Events with
    `metadata.uid`, `metadata.creationTimestamp` and `eventTime` (the leader writes them straight to the
    store); without it they are left to the API server and `eventTime` is null, as the kubelet's are.
    """

    def __init__(self, *, component: str, instance: str, host: str = "", keys_max: int,
                 per_object_max: int | None = None, new_uid: Callable[[], str] | None = None) -> None:
        self.component = component
        self.instance = instance
        self.host = host
        self.keys_max = keys_max
        self.per_object_max = per_object_max
        self.new_uid = new_uid
        self._written: OrderedDict[EventKey, Obj] = OrderedDict()
        self._per_object: dict[str, int] = {}
        self._last_ns = 0

    @staticmethod
    def key(ref: Obj, etype: str, reason: str, message: str) -> EventKey:
        return EventKey(str(ref.get("namespace", "")), str(ref.get("kind", "")),
                        str(ref.get("uid", "") or ref.get("name", "")), str(ref.get("fieldPath", "")),
                        etype, reason, message)

    def admits(self, key: EventKey) -> bool:
        """False when `key` would be a new Event of an object that already has `per_object_max` of them."""
        if self.per_object_max is None or key in self._written:
            return True
        return self._per_object.get(key.object, 0) < self.per_object_max

    def correlate(self, key: EventKey, ref: Obj, *, now: float, action: str = "") -> Correlation:
        """A bump of the Event written before under `key`, else a new Event; remembers nothing."""
        earlier = self._written.get(key)
        if earlier is not None:
            return Correlation(key, bumped(earlier, ref, now), bump=True)
        return Correlation(key, self.new_event(key, ref, now=now, action=action), bump=False)

    def new_event(self, key: EventKey, ref: Obj, *, now: float, action: str = "") -> Obj:
        """A new Event (count 1) for `key` about `ref`, named uniquely after `now`."""
        stamp_ns = max(int(now * 1e9), self._last_ns + 1)
        self._last_ns = stamp_ns
        ts = rfc3339(now)
        meta: Obj = {"name": f"{ref.get('name', 'x')}.{stamp_ns:x}", "namespace": ref.get("namespace") or "default"}
        if self.new_uid is not None:
            meta["uid"] = self.new_uid()
            meta["creationTimestamp"] = ts
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        event: Obj = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": meta,
            "involvedObject": ref,
            "reason": key.reason,
            "message": key.message,
            "source": source,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": key.type,
            "eventTime": rfc3339_micro(now) if self.new_uid is not None else None,
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        if action:
            event["action"] = action
        return event

    # ------------------------------------------------------------------------ what was written
    def remember(self, key: EventKey, event: Obj) -> None:
        """Record `event` as the latest written under `key` (the least recently written beyond `keys_max` are
        forgotten); a new key counts against its object's `per_object_max`."""
        if key not in self._written and self.per_object_max is not None:
            self._per_object[key.object] = self._per_object.get(key.object, 0) + 1
        self._written[key] = event
        self._written.move_to_end(key)
        while len(self._written) > self.keys_max:
            self._written.popitem(last=False)

    def forget(self, key: EventKey) -> None:
        """Forget the Event written under `key` (it is gone from the store)."""
        self._written.pop(key, None)

    def forget_object(self, uid: str) -> None:
        """Forget every Event about the object `uid` (a deleted pod) and its per-object count."""
        self._per_object.pop(uid, None)
        for k in [k for k in self._written if k.object == uid]:
            del self._written[k]

    def __len__(self) -> int:
        return len(self._written)
