"""The kubelet's event recorder: Pulling, Pulled, Created, Started, Killing, BackOff, Failed, Evicted …

Used by the kubelet agent. `pod_event` / `node_event` never block and never fail: events go into a bounded
queue that one sender task writes to the API. The aggregation is `hacluster.model.events.EventCorrelator`'s:
a repeat of the same (object, reason, message) raises the existing Event's `count` and `lastTimestamp`
instead of creating a new one. Bounds: `per_object_max` distinct events per object (more are dropped),
`writes_per_s_max` writes per second (a token bucket, which a fleet shares between its nodes; beyond it
events are dropped), `queue_max` queued writes, and at most `keys_max` remembered events.
Dropped events are counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable
from hacluster.model.events import EventCorrelator

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


class EventRecorder:
    """Bounded, best-effort events of one kubelet (`source.component: kubelet`, `source.host: <node>`): a
    sink over `hacluster.model.events.EventCorrelator` that writes through the API."""

    def __init__(self, api: ApiClient, node: str, *, per_object_max: int = 40, writes_per_s_max: float = 50.0,
                 queue_max: int = 1000, keys_max: int = 20_000, clock: Callable[[], float] = time.time,
                 bucket: TokenBucket | None = None) -> None:
        self.api = api
        self.node = node
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self.correlator = EventCorrelator(component="kubelet", instance=node, host=node, keys_max=keys_max,
                                          per_object_max=per_object_max)
        self._queue: asyncio.Queue[tuple[tuple[str, ...], Obj]] = asyncio.Queue(maxsize=queue_max)
        self._bucket = bucket or TokenBucket(writes_per_s_max)

    # ------------------------------------------------------------------------------- recording
    def pod_event(self, pod: Obj, etype: str, reason: str, message: str, container: str = "",
                  init: bool = False) -> None:
        meta = pod.get("metadata") or {}
        ref: Obj = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""), "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}
        if container:
            ref["fieldPath"] = f"spec.{'initContainers' if init else 'containers'}{{{container}}}"
        self._record(ref, etype, reason, message)

    def node_event(self, etype: str, reason: str, message: str) -> None:
        # The kubelet refers to its Node with the node name as UID, in namespace "default".
        ref = {"kind": "Node", "name": self.node, "uid": self.node, "apiVersion": "v1"}
        self._record(ref, etype, reason, message)

    def forget(self, uid: str) -> None:
        """Drop what is remembered of an object (a deleted pod)."""
        self.correlator.forget_object(uid)

    def _record(self, ref: Obj, etype: str, reason: str, message: str) -> None:
        key = self.correlator.key(ref, etype, reason, message)
        if not self.correlator.admits(key) or not self._bucket.take():
            self.dropped += 1
            return
        c = self.correlator.correlate(key, ref, now=self.clock())
        self.correlator.remember(key, c.event)  # remembered when queued: a repeat is a bump even before it is sent
        meta = c.event["metadata"]
        body = {"count": c.event["count"], "lastTimestamp": c.event["lastTimestamp"]} if c.bump else c.event
        try:
            self._queue.put_nowait(((meta["namespace"], meta["name"], "patch" if c.bump else "create"), body))
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
