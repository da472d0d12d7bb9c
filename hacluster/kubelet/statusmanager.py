"""The kubelet's status manager: keeps the API's view of each pod's status equal to the kubelet's.

Built by `hacluster.kubelet.agent.Kubelet`; the pod workers (`hacluster.kubelet.podworker`) set the status
they want, the pod source reports what the API holds. A fleet of kubelets may share one write semaphore.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable
from hacluster.kubelet.apicalls import FAST_WRITE, pods_path

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class StatusManager:
    """Keeps the API's view of each pod's status equal to the kubelet's: a write whenever they differ.

    `set` gives the status the kubelet wants; `observe` tells what the API holds (from the watch, with the
    object's resourceVersion). A pod needs a write when its desired status differs from the API's (as last
    observed, unless our own acknowledged write is newer). Writes are PUTs of pods/{name}/status with the pod
    UID as precondition, at most `concurrency` at once, retried after failures with a bounded back-off."""

    def __init__(self, api: ApiClient, *, concurrency: int = 8, deadline_s: float = 10.0,
                 semaphore: asyncio.Semaphore | None = None) -> None:
        self.api = api
        self.deadline_s = deadline_s
        self._sem = semaphore or asyncio.Semaphore(concurrency)
        self._desired: dict[str, tuple[str, str, Obj]] = {}
        self._acked: dict[str, tuple[int, Obj]] = {}
        self._seen: dict[str, tuple[int, Obj]] = {}
        self._dirty: set[str] = set()
        self._inflight: set[str] = set()
        self._changed = asyncio.Event()
        self._settled: dict[str, asyncio.Event] = {}
        self.writes = 0
        self.failures = 0

    def desired(self, uid: str) -> Obj | None:
        d = self._desired.get(uid)
        return d[2] if d else None

    def needs_write(self, uid: str) -> bool:
        d = self._desired.get(uid)
        if d is None:
            return False
        acked, seen = self._acked.get(uid), self._seen.get(uid)
        if seen is not None and (acked is None or seen[0] >= acked[0]):
            return seen[1] != d[2]
        if acked is not None:
            return acked[1] != d[2]
        return True

    def _update(self, uid: str) -> None:
        if self.needs_write(uid):
            self._dirty.add(uid)
            self._changed.set()
        else:
            ev = self._settled.get(uid)
            if ev is not None:
                ev.set()

    def set(self, uid: str, namespace: str, name: str, status: Obj) -> None:
        self._desired[uid] = (namespace, name, status)
        self._update(uid)

    def observe(self, uid: str, resource_version: str, status: Obj | None) -> None:
        try:
            rv = int(resource_version)
        except (TypeError, ValueError):
            rv = 0
        self._seen[uid] = (rv, status or {})
        self._update(uid)

    def forget(self, uid: str) -> None:
        for d in (self._desired, self._acked, self._seen):
            d.pop(uid, None)
        self._dirty.discard(uid)
        ev = self._settled.pop(uid, None)
        if ev is not None:
            ev.set()

    async def flush(self, uid: str, timeout_s: float) -> bool:
        """Wait (bounded) until the pod's desired status has been written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.needs_write(uid) or uid in self._inflight:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ev = self._settled.setdefault(uid, asyncio.Event())
            ev.clear()
            await wait_event(ev, min(remaining, 0.5))
        return uid in self._desired

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            batch = [u for u in self._dirty if u not in self._inflight]
            self._dirty.difference_update(batch)
            for uid in batch:
                self._inflight.add(uid)
                asyncio.ensure_future(self._write(uid))

    async def _write(self, uid: str) -> None:
        retry_in = 0.0
        try:
            async with self._sem:
                d = self._desired.get(uid)
                if d is None or not self.needs_write(uid):
                    return
                namespace, name, status = d
                body = {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": namespace, "uid": uid}, "status": status}
                try:
                    resp = await self.api.put(pods_path(namespace, name) + "/status", body, params=FAST_WRITE,
                                              deadline_s=self.deadline_s)
                except ClientError as exc:
                    if exc.code in (404, 409) and "UID" in str(exc.status.get("message", "")) or exc.code == 404:
                        self.forget(uid)  # the pod is gone (or was replaced by another of the same name)
                        return
                    self.failures += 1
                    retry_in = 1.0
                    log.info("status of pod %s/%s: %s", namespace, name, exc)
                    return
                except (Indeterminate, Unreachable) as exc:
                    self.failures += 1
                    retry_in = 0.5
                    log.info("status of pod %s/%s not written: %s", namespace, name, exc)
                    return
                self.writes += 1
                rv = (resp or {}).get("metadata", {}).get("resourceVersion") if isinstance(resp, dict) else None
                try:
                    rv_int = int(rv) if rv else 0
                except ValueError:
                    rv_int = 0
                if uid in self._desired:
                    self._acked[uid] = (rv_int, status)
        finally:
            self._inflight.discard(uid)
            if retry_in:
                asyncio.get_running_loop().call_later(retry_in, self._retry, uid)
            elif uid in self._desired:
                self._update(uid)

    def _retry(self, uid: str) -> None:
        if uid in self._desired:
            self._dirty.add(uid)
            self._changed.set()

