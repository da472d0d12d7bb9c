"""The kubelet's event recorder: Pulling, Pulled, Created, Started, Killing, BackOff, Failed, Evicted …

Used by the kubelet agent. `pod_event` / `node_event` never block and never fail: events go into a bounded
queue that one sender task writes to the API. Like Kubernetes' event correlator, a repeat of the same
(object, reason, message) raises the existing Event's `count` and `lastTimestamp` instead of creating a new
one. Bounds: `per_object_max` distinct events per object (more are dropped), `writes_per_s_max` writes per
second (a token bucket, which a fleet shares between its nodes; beyond it events are dropped), `queue_max`
queued writes, and at most `keys_max` remembered events. Dropped events are counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable
from hacluster.model.timestamps import rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class TokenBucket:
    """At most `rate_per_s` tokens a second, `burst` at once; may be shared by several recorders."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else rate_per_s
        self._tokens = self.burst
        self._refilled = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate_per_s)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first: str


class EventRecorder:
    """Bounded, best-effort events of one kubelet (`source.component: kubelet`, `source.host: <node>`)."""

    def __init__(self, api: ApiClient, node: str, *, per_object_max: int = 40, writes_per_s_max: float = 50.0,
                 queue_max: int = 1000, keys_max: int = 20_000, clock: Callable[[], float] = time.time,
                 bucket: TokenBucket | None = None) -> None:
        self.api = api
        self.node = node
        self.per_object_max = per_object_max
        self.keys_max = keys_max
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self._queue: asyncio.Queue[tuple[tuple[str, ...], Obj]] = asyncio.Queue(maxsize=queue_max)
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self._per_object: dict[str, int] = {}
        self._bucket = bucket or TokenBucket(writes_per_s_max)
        self._seq = 0

    # ------------------------------------------------------------------------------- recording
    def pod_event(self, pod: Obj, etype: str, reason: str, message: str, container: str = "",
                  init: bool = False) -> None:
        meta = pod.get("metadata") or {}
        ref: Obj = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""), "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}
        if container:
            ref["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        self._record(ref, meta.get("namespace", "default"), etype, reason, message)

    def node_event(self, etype: str, reason: str, message: str) -> None:
        # The kubelet refers to its Node with the node name as UID, in namespace "default".
        ref = {"kind": "Node", "name": self.node, "uid": self.node, "apiVersion": "v1"}
        self._record(ref, "default", etype, reason, message)

    def forget(self, uid: str) -> None:
        """Drop what is remembered of an object (a deleted pod)."""
        self._per_object.pop(uid, None)
        for k in [k for k in self._seen if k[0] == uid]:
            del self._seen[k]

    def _record(self, ref: Obj, namespace: str, etype: str, reason: str, message: str) -> None:
        uid = str(ref.get("uid", ""))
        key = (uid, str(ref.get("fieldPath", "")), etype, reason, message)
        now = rfc3339(self.clock())
        seen = self._seen.get(key)
        if seen is None and self._per_object.get(uid, 0) >= self.per_object_max:
            self.dropped += 1
            return
        if not self._bucket.take():
            self.dropped += 1
            return
        if seen is None:
            self._seq += 1
            name = f"{ref.get('name', 'x')}.{int(self.clock() * 1e9) + self._seq:x}"
            seen = _Seen(name, namespace, 1, now)
            self._seen[key] = seen
            self._per_object[uid] = self._per_object.get(uid, 0) + 1
            while len(self._seen) > self.keys_max:
                self._seen.popitem(last=False)
            body: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
                         "involvedObject": ref, "reason": reason, "message": message,
                         "source": {"component": "kubelet", "host": self.node}, "firstTimestamp": now,
                         "lastTimestamp": now, "count": 1, "type": etype, "eventTime": None,
                         "reportingComponent": "kubelet", "reportingInstance": self.node}
        else:
            seen.count += 1
            self._seen.move_to_end(key)
            body = {"count": seen.count, "lastTimestamp": now}
        try:
            self._queue.put_nowait(((seen.namespace, seen.name, "create" if seen.count == 1 else "patch"), body))
        except asyncio.QueueFull:
            self.dropped += 1

    # ---------------------------------------------------------------------------------- sending
    async def run(self) -> None:
        """Write queued events until cancelled."""
        while True:
            (namespace, name, verb), body = await self._queue.get()
            path = f"/api/v1/namespaces/{namespace}/events"
            try:
                if verb == "create":
                    await self.api.post(path, body, deadline_s=5.0)
                else:
                    await self.api.patch(f"{path}/{name}", body, deadline_s=5.0)
                self.written += 1
            except (ClientError, Indeterminate, Unreachable) as exc:
                self.dropped += 1
                log.debug("event %s/%s not written: %s", namespace, name, exc)
