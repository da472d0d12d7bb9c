"""The kubelet agent: one node's registration, heartbeats, pod watch, pod workers, status and evictions.

Run by `hacluster kubelet` (one `Kubelet` per process) and by `hacluster kubelet-fleet` (many in one
process, sharing an HTTP session and a log server). `Kubelet.run(stop)` runs until `stop` is set:
- registers the Node (capacity, allocatable, labels, taints, addresses, nodeInfo, conditions, the log
  endpoint's port), re-registering if the Node is deleted;
- renews its Lease in kube-node-lease every `node_lease_renew_s`; posts node status when a condition
  changes (compared with the Node the API holds) or at least every `node_status_report_s`;
- lists and watches its pods (`fieldSelector=spec.nodeName=<node>`), resuming from the last
  resourceVersion and relisting after 410; the API client moves between masters on connection errors,
  503 and 504. A pod is forgotten only once the API says it is gone (a DELETED event, or absent from a
  relist), so no pod it runs is ever lost track of;
- runs one worker per pod (like the kubelet's pod workers): admits it, pulls images (serialized,
  with the image-pull back-off), starts containers through the runtime, restarts them per restartPolicy with
  the crash-loop back-off, stops them on deletion (SIGTERM, SIGKILL after the grace period) and then
  confirms the deletion (DELETE with gracePeriodSeconds=0);
- writes each pod's status (computed by the pure `hacluster.kubelet.status.pod_status`) through
  `pods/{name}/status` whenever what the API shows differs from it, retrying failed writes;
- checks memory every `eviction_interval_s`: below the hard threshold it reports MemoryPressure (the node
  lifecycle controller then taints the node) and evicts the first pod of the kubelet's ranking, one per
  interval.
Every wait, queue and retry is bounded; failures are logged and retried, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from hacluster.asyncwait import wait_event
from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable, retry_after_s
from hacluster.config import KubeletConfig
from hacluster.kubelet import eviction as ev
from hacluster.kubelet import nodestatus as ns
from hacluster.kubelet import stats
from hacluster.kubelet.backoff import BackOff, go_duration
from hacluster.kubelet.behaviour import NodeProfile
from hacluster.kubelet.events import EventRecorder, TokenBucket
from hacluster.kubelet.runtime import EXITED, ContainerRecord, Runtime, StartError
from hacluster.kubelet.status import TERMINAL_PHASES, PodFacts, freeze_for_eviction, pod_status, rfc3339, should_restart
from hacluster.model.quantity import QuantityError, parse_quantity

log = logging.getLogger(__name__)
Obj = dict[str, Any]
ApiErrors = (ClientError, Indeterminate, Unreachable)

POD_RESYNC_S = 60.0
"""Longest a pod worker sleeps without a reason (the kubelet's periodic resync: 1 min)."""
POD_WORKER_BACKOFF_S = 10.0
"""Delay before a pod whose sync failed is synced again (Kubernetes' pod worker backOffPeriod; scaled)."""
WATCH_TIMEOUT_S = (240, 360)
"""A watch asks the server to close it after a random time in this range, then resumes."""
RETRY_S = (0.1, 2.0)
"""Bounds of the back-off between failed API calls of the heartbeat, watch and registration loops."""
EVICTION_GRACE_S = 1.0
"""Grace period of a pod evicted at a hard threshold (Kubernetes' immediateEvictionGracePeriodSeconds)."""
FORCE_DELETE_GRACE_S = 2.0
"""Grace period for the containers of a pod deleted from the API without the kubelet's confirmation."""
CONFIRM_FLUSH_S = 10.0
"""How long a terminated pod's final status may take to be written before its deletion is confirmed."""


def _pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


FAST_WRITE = {"resourceVersion": "0"}
"""On an update, lets the API server read the object from its local state instead of first waiting for a Raft
read barrier: the write itself is a compare-and-set on the resourceVersion it read, so a stale read only
costs a retry (which does wait for the barrier)."""
LIST_PAGE_SIZE = 500
"""Items per page when the kubelet lists pods (Kubernetes' reflectors list in pages of 500)."""
LIST_PAGES_MAX = 1000
"""Most pages one list may take (500,000 objects) before it is given up as malformed."""


async def list_all(api: ApiClient, path: str, params: dict[str, str]) -> tuple[list[Obj], str]:
    """Every object a list returns, following `continue` tokens page by page; and the list's resourceVersion.
    (A list without a limit is cut at the server's list_limit_max: reading only its first page would make
    the rest look deleted.)"""
    items: list[Obj] = []
    cont = ""
    rv = ""
    for _ in range(LIST_PAGES_MAX):
        q = dict(params, limit=str(LIST_PAGE_SIZE))
        if cont:
            q["continue"] = cont
        page = await api.get(path, params=q)
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        rv = rv or str(meta.get("resourceVersion", ""))
        cont = str(meta.get("continue") or "")
        if not cont:
            return items, rv
    raise ValueError(f"list of {path} did not end after {LIST_PAGES_MAX} pages")


def go_ms_duration(seconds: float) -> str:
    """Go's Duration.String() of a duration truncated to milliseconds: 523ms, 1.163s, 1m1.2s."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    m, rem_ms = divmod(ms, 60_000)
    secs = f"{rem_ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{m}m{secs}s" if m else f"{secs}s"


# ----------------------------------------------------------------------------------- statuses
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
                    resp = await self.api.put(_pods_path(namespace, name) + "/status", body, params=FAST_WRITE,
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


# -------------------------------------------------------------------------------------- pods
@dataclass
class PodEntry:
    """Everything one kubelet keeps about one pod it runs."""

    uid: str
    namespace: str
    name: str
    pod: Obj
    runtime: Runtime
    rv: int = 0
    gone: bool = False
    admitted: bool | None = None
    sandbox_ready: bool = False
    pod_ip: str = ""
    start_time: str = ""
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    pulling: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    pulled: set[tuple[str, int]] = field(default_factory=set)
    stopping: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    attempt_base: dict[str, int] = field(default_factory=dict)
    terminal: tuple[str, str, str] | None = None
    disruption: Obj | None = None
    frozen: tuple[ContainerRecord, ...] | None = None
    pod_is_terminal: bool = False
    confirmed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_wake: float | None = None
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    clock: Callable[[], float] = time.time

    def wake_at(self, t: float) -> None:
        """Make the pod's worker sync again at `t` (wall-clock seconds) at the latest."""
        if self.next_wake is not None and self.next_wake <= t and self.timer is not None:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.next_wake = t
        self.timer = asyncio.get_running_loop().call_later(max(0.0, t - self.clock()), self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.next_wake = None
        self.wake.set()

    def waiting_reason(self, container: str) -> str:
        return self.waiting.get(container, ("", ""))[0]

    @property
    def deleting(self) -> bool:
        return bool((self.pod.get("metadata") or {}).get("deletionTimestamp"))


def _requests(pod: Obj) -> tuple[int, int]:
    """(cpu millis, memory bytes) the pod requests: the sum of its containers, or its largest init container."""
    def one(c: Obj) -> tuple[int, int]:
        req = ((c.get("resources") or {}).get("requests") or {})
        try:
            cpu = parse_quantity(req.get("cpu", "0")).millis()
            mem = parse_quantity(req.get("memory", "0")).units()
        except QuantityError:
            return 0, 0
        return cpu, mem
    spec = pod.get("spec") or {}
    cpu = mem = 0
    for c in spec.get("containers") or []:
        a, b = one(c)
        cpu, mem = cpu + a, mem + b
    for c in spec.get("initContainers") or []:
        a, b = one(c)
        cpu, mem = max(cpu, a), max(mem, b)
    return cpu, mem


# ------------------------------------------------------------------------------------ kubelet
class Kubelet:
    """One node's agent. Build it, then `await run(stop)`."""

    def __init__(self, *, node: str, api: ApiClient, runtime: Runtime, cfg: KubeletConfig, profile: NodeProfile,
                 labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
                 log_port: int = 0, clock: Callable[[], float] = time.time, index: int | None = None,
                 manage_runtime: bool = True, jitter_start: bool = False, own_watch: bool = True,
                 status_semaphore: asyncio.Semaphore | None = None, event_bucket: TokenBucket | None = None) -> None:
        self.node = node
        self.api = api
        self.runtime = runtime
        self.cfg = cfg
        self.profile = profile
        self.labels = dict(labels or {})
        self.taints = [dict(t) for t in taints or []]
        self.log_port = log_port
        self.clock = clock
        self.manage_runtime = manage_runtime
        self.jitter_start = jitter_start
        self.own_watch = own_watch
        self.scale = cfg.time_scale
        self.identity = ns.NodeIdentity(node, ns.node_index(node) if index is None else index, runtime.version)
        self.pods: dict[str, PodEntry] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        self.status = StatusManager(api, concurrency=cfg.status_write_concurrency, semaphore=status_semaphore)
        self.events = EventRecorder(api, node, per_object_max=cfg.events_per_pod_max,
                                    writes_per_s_max=cfg.event_writes_per_s_max, clock=clock, bucket=event_bucket)
        self.crash_backoff = BackOff(cfg.crashloop_backoff_initial_s * self.scale,
                                     cfg.crashloop_backoff_max_s * self.scale, time_scale=self.scale)
        self.pull_backoff = BackOff(cfg.image_pull_backoff_initial_s * self.scale,
                                    cfg.image_pull_backoff_max_s * self.scale, time_scale=self.scale)
        self._pull_sem = asyncio.Semaphore(cfg.max_parallel_image_pulls)
        self.node_uid = ""
        self.node_view: Obj | None = None
        self.pressure = {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False}
        self._pressure_seen_at = 0.0
        self._node_dirty = asyncio.Event()
        self._last_post = 0.0
        self._ip_counter = 0
        self.registered = asyncio.Event()
        self.ready = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self.watch_restarts = 0
        self.lease_renewals = 0
        self.lease_failures = 0
        self.evictions = 0
        self._tasks: list[asyncio.Task[Any]] = []
        runtime.on_change = self._on_runtime_change
        runtime.on_probe_event = self._on_probe_event

    # ----------------------------------------------------------------------------- lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop the pod workers (and, if it owns it, the runtime)."""
        try:
            if self.jitter_start:
                await asyncio.sleep(random.uniform(0, self.cfg.node_lease_renew_s))
            await self._until(stop, self._register())
            if stop.is_set():
                return
            loops = [self.status.run(), self.events.run(), self._lease_loop(), self._node_status_loop(),
                     self._eviction_loop()]
            if self.own_watch:
                loops.append(self._watch_loop())
            self._tasks = [asyncio.ensure_future(c) for c in loops]
            self.events.node_event("Normal", "Starting", "Starting kubelet.")
            await stop.wait()
        finally:
            for t in self._tasks:
                t.cancel()
            for e in list(self.pods.values()):
                if e.task is not None:
                    e.task.cancel()
                for t in list(e.pulling.values()) + list(e.stopping.values()):
                    t.cancel()
            await asyncio.gather(*self._tasks, *(e.task for e in self.pods.values() if e.task),
                                 return_exceptions=True)
            if self.manage_runtime:
                await self.runtime.close()

    @staticmethod
    async def _until(stop: asyncio.Event, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            elif (exc := task.exception()) is not None:
                raise exc

    def find(self, namespace: str, name: str) -> PodEntry | None:
        uid = self.by_name.get((namespace, name))
        return self.pods.get(uid) if uid else None

    # ---------------------------------------------------------------------------- node object
    def _node_status(self, old_conditions: list[Obj]) -> Obj:
        return ns.node_status(self.identity, self.profile, pressure=self.pressure, ready=True,
                              old_conditions=old_conditions, kubelet_port=self.log_port,
                              images=self.runtime.images(), now=self.clock())

    def _profile_taints(self) -> list[Obj]:
        return [t.model_dump() for t in self.profile.taints] + self.taints

    async def _register(self) -> None:
        """Create the Node (or adopt the existing one, refreshing its labels), then post its status."""
        delay = RETRY_S[0]
        path = f"/api/v1/nodes/{self.node}"
        while True:
            try:
                body = ns.node_object(self.identity, self.profile, labels=self.labels, taints=self._profile_taints(),
                                      status=self._node_status([]))
                try:
                    node = await self.api.post("/api/v1/nodes", body)
                except ClientError as exc:
                    if exc.code != 409:
                        raise
                    current = await self.api.get(path)
                    labels = ns.node_labels(self.identity, self.profile, self.labels)
                    if any((current.get("metadata", {}).get("labels") or {}).get(k) != v for k, v in labels.items()):
                        current = await self.api.patch(path, {"metadata": {"labels": labels}})
                    node = await self.api.patch(path + "/status", {"status": self._node_status(
                        (current.get("status") or {}).get("conditions") or [])})
                except Indeterminate:
                    await asyncio.sleep(delay)  # the create may have happened: the next attempt finds out (409)
                    continue
                self.node_uid = node["metadata"]["uid"]
                self.node_view = node
                self._last_post = time.monotonic()
                self.registered.set()
                self.ready.set()
                log.info("node %s registered", self.node)
                return
            except ApiErrors as exc:
                log.warning("registering node %s: %s", self.node, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_S[1])

    async def _node_status_loop(self) -> None:
        path = f"/api/v1/nodes/{self.node}"
        while True:
            await wait_event(self._node_dirty, self.cfg.node_status_update_s)
            self._node_dirty.clear()
            try:
                await self._sync_node_status(path)
            except ApiErrors as exc:
                log.info("node status of %s: %s", self.node, exc)
                await asyncio.sleep(RETRY_S[0])
                self._node_dirty.set()

    async def _sync_node_status(self, path: str) -> None:
        try:
            current = await self.api.get(path, params={"resourceVersion": "0"})
        except ClientError as exc:
            if exc.code != 404:
                raise
            log.warning("node %s was deleted: registering again", self.node)
            await self._register()
            return
        self.node_view = current
        old = current.get("status") or {}
        new = self._node_status(old.get("conditions") or [])
        changed = (ns.conditions_differ(old.get("conditions") or [], new["conditions"])
                   or any(old.get(k) != new[k] for k in ("capacity", "allocatable", "daemonEndpoints", "addresses",
                                                         "nodeInfo", "images")))
        if changed or time.monotonic() - self._last_post >= self.cfg.node_status_report_s:
            self.node_view = await self.api.patch(path + "/status", {"status": new})
            self._last_post = time.monotonic()
            self.ready.set()
        else:
            self.ready.set()
        # The memory-pressure taint follows the MemoryPressure condition; as in Kubernetes, the node lifecycle
        # controller (hacluster.controllers.nodelifecycle) adds and removes it, not the kubelet.

    async def _lease_loop(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{ns.LEASE_NAMESPACE}/leases"
        rv = ""
        period = self.cfg.node_lease_renew_s
        while True:
            started = time.monotonic()
            try:
                body = ns.lease_object(self.node, self.node_uid, self.cfg.node_lease_duration_s, self.clock(), rv)
                if rv:
                    lease = await self.api.put(f"{path}/{self.node}", body, params=FAST_WRITE,
                                               deadline_s=max(period, 2.0))
                else:
                    try:
                        current = await self.api.get(f"{path}/{self.node}", deadline_s=max(period, 2.0))
                        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                        lease = await self.api.put(f"{path}/{self.node}", body, deadline_s=max(period, 2.0))
                    except ClientError as exc:
                        if exc.code != 404:
                            raise
                        body["metadata"].pop("resourceVersion", None)
                        lease = await self.api.post(path, body, deadline_s=max(period, 2.0))
                rv = lease["metadata"]["resourceVersion"]
                self.lease_renewals += 1
            except ApiErrors as exc:
                self.lease_failures += 1
                rv = ""  # re-read the lease next time (a conflict, or an outcome we do not know)
                log.info("lease of %s not renewed: %s", self.node, exc)
                await asyncio.sleep(min(period, 0.5))
                continue
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    # ------------------------------------------------------------------------------ the watch
    async def _watch_loop(self) -> None:
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        delay = RETRY_S[0]
        while True:
            try:
                if not self.resource_version:
                    await self._relist(selector)
                timeout = random.randint(*WATCH_TIMEOUT_S)
                stream = cast(AsyncGenerator[Obj, None], self.api.watch(
                    "/api/v1/pods", resource_version=self.resource_version, timeout_s=timeout, params=selector))
                try:
                    expired = await self._consume(stream)
                finally:
                    await stream.aclose()
                self.watch_restarts += 1
                delay = RETRY_S[0]
                if expired:
                    await asyncio.sleep(RETRY_S[0])
            except ClientError as exc:
                self.watch_restarts += 1
                if exc.code == 410:
                    self.resource_version = ""
                log.info("pod watch of %s: %s", self.node, exc)
                await asyncio.sleep(max(delay, retry_after_s(exc)))  # a 429 (watch cap) asks for a pause
                delay = min(delay * 2, RETRY_S[1])
            except (TimeoutError, Indeterminate, Unreachable, OSError, ValueError) as exc:
                self.watch_restarts += 1
                log.info("pod watch of %s: %s: %s", self.node, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])
            except Exception as exc:  # aiohttp's ClientError family and payload errors
                if not _is_transport_error(exc):
                    raise
                self.watch_restarts += 1
                log.info("pod watch of %s: %s: %s", self.node, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_S[1])

    async def _consume(self, stream: AsyncIterator[Obj]) -> bool:
        """Apply watch events until the stream ends; True if it ended with an error (410: relist)."""
        async for event in stream:
            etype = str(event.get("type") or "")
            obj = event.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    self.resource_version = ""  # too old: relist
                return True
            rv = (obj.get("metadata") or {}).get("resourceVersion", "")
            if etype == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            self.apply_event(etype, obj)
            if rv:
                self.resource_version = rv
        return False

    async def _relist(self, selector: dict[str, str]) -> None:
        items, rv = await list_all(self.api, "/api/v1/pods", selector)
        self.apply_listing(items)
        self.resource_version = rv

    def apply_listing(self, items: list[Obj]) -> None:
        """A complete list of this node's pods (a relist): adopt what is new, forget what the API no longer has."""
        self.relists += 1
        present = set()
        for obj in items:
            present.add(obj["metadata"]["uid"])
            self._upsert(obj)
        for uid, e in list(self.pods.items()):
            if uid not in present and not e.gone:
                self._pod_gone(e.pod)

    def apply_event(self, etype: str, obj: Obj) -> None:
        """One watch event about a pod of this node (for a watch shared by several nodes)."""
        if etype == "DELETED":
            self._pod_gone(obj)
        elif etype in ("ADDED", "MODIFIED"):
            self._upsert(obj)

    def _upsert(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid", "")
        if (obj.get("spec") or {}).get("nodeName") != self.node or not uid:
            return
        try:
            rv = int(meta.get("resourceVersion", "0"))
        except ValueError:
            rv = 0
        e = self.pods.get(uid)
        if e is None:
            e = PodEntry(uid=uid, namespace=meta.get("namespace", ""), name=meta.get("name", ""), pod=obj,
                         runtime=self.runtime, rv=rv, clock=self.clock)
            self._adopt(e)
            self.pods[uid] = e
            self.by_name[(e.namespace, e.name)] = uid
            e.task = asyncio.ensure_future(self._pod_worker(e))
            e.wake.set()
        elif rv >= e.rv:
            changed = _spec_changed(e.pod, obj)
            e.pod, e.rv = obj, rv
            if changed:
                e.wake.set()
        self.status.observe(uid, meta.get("resourceVersion", ""), obj.get("status"))

    def _adopt(self, e: PodEntry) -> None:
        """A pod the API says we run but we have no record of (a new pod, or one from before a restart of
        this kubelet): keep its IP and start time, and count on from its restart counts."""
        status = e.pod.get("status") or {}
        if status.get("podIP"):
            e.pod_ip = status["podIP"]
            e.sandbox_ready = True
        e.start_time = status.get("startTime") or ""
        for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            if cs.get("containerID"):
                e.attempt_base[cs.get("name", "")] = int(cs.get("restartCount") or 0) + 1

    def _pod_gone(self, obj: Obj) -> None:
        uid = (obj.get("metadata") or {}).get("uid", "")
        e = self.pods.get(uid)
        if e is None:
            return
        e.gone = True
        e.pod = obj if obj.get("spec") else e.pod
        e.wake.set()

    def _on_runtime_change(self, uid: str) -> None:
        e = self.pods.get(uid)
        if e is not None:
            e.wake.set()

    # ---------------------------------------------------------------------------- pod workers
    async def _pod_worker(self, e: PodEntry) -> None:
        try:
            while True:
                await wait_event(e.wake, POD_RESYNC_S * random.uniform(0.8, 1.2))
                e.wake.clear()
                try:
                    if await self._sync(e):
                        return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sync of pod %s/%s failed", e.namespace, e.name)
                    e.wake_at(self.clock() + 1.0)
        finally:
            if e.timer is not None:
                e.timer.cancel()

    def _requeue_after_error(self, e: PodEntry) -> None:
        """A sync that ended in an error (a failed pull, a container in back-off) is retried after the pod
        worker's back-off period, 10 s jittered by up to 50 % (scaled), as Kubernetes' pod workers do."""
        e.wake_at(self.clock() + POD_WORKER_BACKOFF_S * self.scale * random.uniform(1.0, 1.5))

    def _publish(self, e: PodEntry) -> None:
        if e.admitted is False and e.terminal is not None:
            # A pod rejected at admission never ran: phase, reason and message only (as the kubelet's rejectPod).
            api = e.pod.get("status") or {}
            phase, reason, message = e.terminal
            status: Obj = {"phase": phase, "conditions": api.get("conditions") or [], "reason": reason,
                           "message": message}
            if api.get("qosClass"):
                status["qosClass"] = api["qosClass"]
            self.status.set(e.uid, e.namespace, e.name, status)
            return
        records = tuple(self.runtime.containers(e.uid))
        facts = PodFacts(records=e.frozen if e.frozen is not None else records, waiting=dict(e.waiting),
                         sandbox_ready=e.sandbox_ready, pod_ip=e.pod_ip, host_ip="127.0.0.1",
                         start_time=e.start_time, terminal=e.terminal, disruption=e.disruption,
                         pod_is_terminal=e.pod_is_terminal)
        status = pod_status(e.pod, facts, self.clock(), self.status.desired(e.uid))
        self.status.set(e.uid, e.namespace, e.name, status)

    def _phase(self, e: PodEntry) -> str:
        d = self.status.desired(e.uid)
        return str((d or e.pod.get("status") or {}).get("phase", ""))

    async def _sync(self, e: PodEntry) -> bool:
        """One pass over one pod; True once the pod is gone and cleaned up."""
        now = self.clock()
        records = self.runtime.containers(e.uid)
        live = [r for r in records if r.state != EXITED]
        if e.gone:
            self._cancel_pulls(e)
            for r in live:
                self._stop(e, r, FORCE_DELETE_GRACE_S * self.scale, event=not e.confirmed)
            if live or e.stopping:
                return False
            self.runtime.remove_pod(e.uid)
            self.crash_backoff.forget_prefix(e.uid)
            self.pull_backoff.forget_prefix(e.uid)
            self.events.forget(e.uid)
            self.status.forget(e.uid)
            self.pods.pop(e.uid, None)
            if self.by_name.get((e.namespace, e.name)) == e.uid:
                del self.by_name[(e.namespace, e.name)]
            return True
        phase_now = self._phase(e)
        if e.admitted is None:
            if phase_now in TERMINAL_PHASES:
                e.admitted = True  # finished before we saw it: nothing to run
            elif not e.deleting:
                self._admit(e)
        if e.deleting or e.terminal is not None:
            return await self._terminate(e, live)
        if phase_now in TERMINAL_PHASES:
            self._publish(e)
            return False
        spec = e.pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        if not e.sandbox_ready:
            e.sandbox_ready = True
            self._ip_counter += 1
            e.pod_ip = self.identity.pod_ip(self._ip_counter)
        if not e.start_time:
            e.start_time = rfc3339(now) or ""
        self._publish(e)
        by_name: dict[tuple[bool, str], ContainerRecord] = {}
        for r in records:
            key = (r.init, r.name)
            if key not in by_name or r.attempt >= by_name[key].attempt:
                by_name[key] = r
        init_done = True
        for c in spec.get("initContainers") or []:
            latest = by_name.get((True, c.get("name", "")))
            if latest is not None and latest.state == EXITED and latest.exit_code == 0:
                continue
            init_done = False
            if latest is None:
                await self._start(e, c, self._first_attempt(e, c), init=True)
            elif should_restart(policy, latest, init=True):
                await self._restart(e, c, latest, init=True)
            break
        if init_done:
            for c in spec.get("containers") or []:
                latest = by_name.get((False, c.get("name", "")))
                if latest is None:
                    await self._start(e, c, self._first_attempt(e, c), init=False)
                elif should_restart(policy, latest):
                    await self._restart(e, c, latest, init=False)
        self._publish(e)
        return False

    def _first_attempt(self, e: PodEntry, c: Obj) -> int:
        return e.attempt_base.get(c.get("name", ""), 0)

    def _admit(self, e: PodEntry) -> None:
        """Kubernetes' admission on the node: do the pod's requests fit what is left of allocatable?"""
        e.admitted = True
        alloc = self.profile.allocatable()
        cpu_cap = parse_quantity(alloc.get("cpu", "0")).millis()
        mem_cap = parse_quantity(alloc.get("memory", "0")).units()
        pods_cap = int(parse_quantity(alloc.get("pods", "110")).units())
        used_cpu = used_mem = used_pods = 0
        for other in self.pods.values():
            if other is e or other.gone or other.terminal is not None or not other.admitted:
                continue
            if self._phase(other) in TERMINAL_PHASES:
                continue
            a, b = _requests(other.pod)
            used_cpu, used_mem, used_pods = used_cpu + a, used_mem + b, used_pods + 1
        cpu, mem = _requests(e.pod)
        rejection = None
        if used_pods + 1 > pods_cap:
            rejection = ("pods", 1, used_pods, pods_cap)
        elif cpu and used_cpu + cpu > cpu_cap:
            rejection = ("cpu", cpu, used_cpu, cpu_cap)
        elif mem and used_mem + mem > mem_cap:
            rejection = ("memory", mem, used_mem, mem_cap)
        if rejection is not None:
            res, req, used, cap = rejection
            msg = (f"Pod was rejected: Node didn't have enough resource: {res}, requested: {req}, used: {used}, "
                   f"capacity: {cap}")
            e.admitted = False
            e.terminal = ("Failed", f"OutOf{res}", msg)
            self.events.pod_event(e.pod, "Warning", f"OutOf{res}",
                                  f"Node didn't have enough resource: {res}, requested: {req}, used: {used}, "
                                  f"capacity: {cap}")

    # ------------------------------------------------------------------------ start / restart
    async def _start(self, e: PodEntry, c: Obj, attempt: int, *, init: bool) -> None:
        name = c.get("name", "")
        image = c.get("image", "")
        if name in e.pulling:
            return
        now = self.clock()
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        present = self.runtime.image_present(image)
        if policy == "Never" and not present:
            msg = f'Container image "{image}" is not present with pull policy of Never'
            e.waiting[name] = ("ErrImageNeverPull", msg)
            self.events.pod_event(e.pod, "Warning", "ErrImageNeverPull", msg, name, init)
            self._requeue_after_error(e)
            return
        need_pull = policy == "Always" or (policy == "IfNotPresent" and not present)
        if need_pull and (name, attempt) not in e.pulled:
            key = f"{e.uid}/{image}"
            if self.pull_backoff.in_backoff_since_update(key, now):
                e.waiting[name] = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                self.events.pod_event(e.pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', name, init)
                self.events.pod_event(e.pod, "Warning", "Failed", "Error: ImagePullBackOff", name, init)
                self._requeue_after_error(e)
                return
            self.events.pod_event(e.pod, "Normal", "Pulling", f'Pulling image "{image}"', name, init)
            e.pulling[name] = asyncio.ensure_future(self._pull(e, c, attempt, key, init))
            return
        if not need_pull and (name, attempt) not in e.pulled:
            self.events.pod_event(e.pod, "Normal", "Pulled", f'Container image "{image}" already present on machine',
                                  name, init)
        e.pulled.discard((name, attempt))
        try:
            await self.runtime.start_container(e.pod, c, attempt, init=init, image_id="")
        except StartError as err:
            e.waiting[name] = (err.reason, err.message)
            self.events.pod_event(e.pod, "Warning", "Failed", f"Error: {err.message}", name, init)
            self._requeue_after_error(e)
            return
        e.waiting.pop(name, None)
        self.events.pod_event(e.pod, "Normal", "Created", f"Created container {name}", name, init)
        self.events.pod_event(e.pod, "Normal", "Started", f"Started container {name}", name, init)

    async def _pull(self, e: PodEntry, c: Obj, attempt: int, key: str, init: bool) -> None:
        """Pull one container's image (node-wide serialized), then sync the pod again: at once after a
        success or a cancellation (the pod is being deleted), after the pod worker's back-off after a failure."""
        name, image = c.get("name", ""), c.get("image", "")
        queued = self.clock()
        failed = False
        try:
            async with self._pull_sem:
                result = await self.runtime.pull_image(e.pod, c, attempt)
            waited = self.clock() - queued
            if result.ok:
                e.pulled.add((name, attempt))
                self.events.pod_event(
                    e.pod, "Normal", "Pulled",
                    f'Successfully pulled image "{image}" in {go_ms_duration(result.duration_s / self.scale)} '
                    f'({go_ms_duration(waited / self.scale)} including waiting). Image size: {result.size_bytes} '
                    "bytes.", name, init)
            else:
                failed = True
                self.pull_backoff.next(key, self.clock())
                e.waiting[name] = ("ErrImagePull", result.message)
                self.events.pod_event(e.pod, "Warning", "Failed", f'Failed to pull image "{image}": {result.message}',
                                      name, init)
                self.events.pod_event(e.pod, "Warning", "Failed", "Error: ErrImagePull", name, init)
        finally:
            e.pulling.pop(name, None)
            if not failed:
                e.wake.set()
        if failed:
            self._publish(e)  # ErrImagePull shows until the next sync, as in Kubernetes
            self._requeue_after_error(e)

    async def _restart(self, e: PodEntry, c: Obj, latest: ContainerRecord, *, init: bool) -> None:
        name = c.get("name", "")
        if name in e.pulling:
            return
        if (name, latest.attempt + 1) in e.pulled:  # this restart was already allowed; its image is pulled
            await self._start(e, c, latest.attempt + 1, init=init)
            return
        key = f"{e.uid}/{'init/' if init else ''}{name}"
        now = self.clock()
        finished = latest.finished_at or now
        if self.crash_backoff.in_backoff_since(key, finished, now):
            delay = self.crash_backoff.get(key)
            e.waiting[name] = ("CrashLoopBackOff", f"back-off {go_duration(self.crash_backoff.nominal_s(delay))} "
                                                   f"restarting failed container={name} pod={e.name}_{e.namespace}"
                                                   f"({e.uid})")
            self.events.pod_event(e.pod, "Warning", "BackOff", f"Back-off restarting failed container {name} in pod "
                                  f"{e.name}_{e.namespace}({e.uid})", name, init)
            e.wake_at(finished + delay + 0.001)  # restart as soon as the back-off ends (Kubernetes: on a later resync)
            return
        self.crash_backoff.next(key, now, finished)
        await self._start(e, c, latest.attempt + 1, init=init)

    # ------------------------------------------------------------------------- termination
    def _cancel_pulls(self, e: PodEntry) -> None:
        for t in e.pulling.values():
            t.cancel()

    def _stop(self, e: PodEntry, r: ContainerRecord, grace_s: float, *, event: bool = True) -> None:
        if r.id in e.stopping:
            return
        if event:
            self.events.pod_event(e.pod, "Normal", "Killing", f"Stopping container {r.name}", r.name, r.init)

        async def stop() -> None:
            try:
                await self.runtime.stop_container(r.id, grace_s)
            finally:
                e.stopping.pop(r.id, None)
                e.wake.set()

        e.stopping[r.id] = asyncio.ensure_future(stop())

    def _deletion_grace_s(self, e: PodEntry) -> float:
        meta, spec = e.pod.get("metadata") or {}, e.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(grace) * self.scale

    async def _terminate(self, e: PodEntry, live: list[ContainerRecord]) -> bool:
        """A pod being deleted, evicted or rejected: stop its containers; once stopped, write the final status
        and, for a deletion, confirm it."""
        self._cancel_pulls(e)
        grace = self._deletion_grace_s(e) if e.deleting else EVICTION_GRACE_S * self.scale
        if e.terminal is not None and e.admitted is False:
            grace = 0.0
        for r in live:
            self._stop(e, r, grace)
        if live or e.stopping or e.pulling:
            self._publish(e)
            return False
        if e.deleting:
            e.pod_is_terminal = True
        self._publish(e)
        if e.deleting and not e.confirmed:
            await self.status.flush(e.uid, CONFIRM_FLUSH_S)
            try:
                await self.api.delete(_pods_path(e.namespace, e.name),
                                      {"gracePeriodSeconds": 0, "preconditions": {"uid": e.uid}}, deadline_s=10.0)
                e.confirmed = True
            except ClientError as exc:
                if exc.code in (404, 409):
                    e.confirmed = True  # already gone, or a new pod took the name
                else:
                    log.info("confirming deletion of %s/%s: %s", e.namespace, e.name, exc)
                    e.wake_at(self.clock() + 1.0)
            except (Indeterminate, Unreachable) as exc:
                log.info("confirming deletion of %s/%s: %s", e.namespace, e.name, exc)
                e.wake_at(self.clock() + 0.5)
        return False

    # ------------------------------------------------------------------------------ eviction
    def memory_usage(self) -> tuple[int, dict[str, dict[str, int]]]:
        """Bytes used by pods in total, and per pod per container."""
        per_pod = {}
        total = 0
        for uid, e in self.pods.items():
            if e.gone:
                continue
            usage = self.runtime.memory_by_container(uid)
            per_pod[uid] = usage
            total += sum(usage.values())
        return total, per_pod

    def _on_probe_event(self, uid: str, container: str, etype: str, reason: str, message: str) -> None:
        """A probe failed, or a liveness failure stops a container: the pod event the kubelet's prober writes."""
        e = self.pods.get(uid)
        if e is not None and not e.gone:
            self.events.pod_event(e.pod, etype, reason, message, container=container)

    def stats_summary(self) -> dict[str, Any]:
        """What this node and its pods use now (the `/stats/summary` endpoint; `kubectl top`)."""
        pods = []
        for uid, e in self.pods.items():
            if e.gone:
                continue
            pods.append((e.namespace, e.name, uid, self.runtime.memory_by_container(uid),
                         self.runtime.cpu_millis_by_container(uid)))
        return stats.summary(self.node, pods, parse_quantity(self.profile.base_memory_used).units(), self.clock())

    def check_pressure(self) -> PodEntry | None:
        """One eviction check: update MemoryPressure; evict (and return) the first ranked pod if below the
        threshold."""
        now = self.clock()
        total, per_pod = self.memory_usage()
        capacity = self.profile.capacity_units("memory")
        base = parse_quantity(self.profile.base_memory_used).units()
        threshold_text = self.profile.eviction_hard_memory_available
        threshold = parse_quantity(threshold_text).units()
        available = ev.memory_available(capacity, base, total)
        if available < threshold:
            self._pressure_seen_at = now
            if not self.pressure["MemoryPressure"]:
                self.pressure["MemoryPressure"] = True
                self.events.node_event("Normal", "NodeHasInsufficientMemory",
                                       f"Node {self.node} status is now: NodeHasInsufficientMemory")
                self._node_dirty.set()
            self.events.node_event("Warning", "EvictionThresholdMet", "Attempting to reclaim memory")
            candidates = []
            for uid, usage in per_pod.items():
                e = self.pods[uid]
                if e.deleting or e.terminal is not None or not usage:
                    continue
                candidates.append(ev.pod_usage(e.pod, usage))
            ranked = ev.rank_for_memory(candidates)
            if ranked:
                victim = ranked[0]
                e = self.pods[victim.uid]
                message = ev.eviction_message(victim, threshold_text, available)
                self._evict(e, message)
                return e
        elif self.pressure["MemoryPressure"] and \
                now - self._pressure_seen_at >= self.cfg.eviction_pressure_transition_s * self.scale:
            self.pressure["MemoryPressure"] = False
            self.events.node_event("Normal", "NodeHasSufficientMemory",
                                   f"Node {self.node} status is now: NodeHasSufficientMemory")
            self._node_dirty.set()
        return None

    def _evict(self, e: PodEntry, message: str) -> None:
        self.evictions += 1
        e.frozen = freeze_for_eviction(self.runtime.containers(e.uid))
        e.terminal = ("Failed", ev.REASON, message)
        e.disruption = ev.disruption_condition(message)
        self.events.pod_event(e.pod, "Warning", ev.REASON, message)
        e.wake.set()

    async def _eviction_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.eviction_interval_s * self.scale)
            try:
                self.check_pressure()
            except Exception:
                log.exception("eviction check of %s failed", self.node)


_VOLATILE_META = ("resourceVersion", "managedFields", "generation")


def _spec_changed(old: Obj, new: Obj) -> bool:
    """Whether anything but the status (and bookkeeping metadata) differs: only such changes make the kubelet
    sync a pod (a status-only change is a "reconcile", as in Kubernetes' pod config)."""
    if old.get("spec") != new.get("spec"):
        return True
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(k) != b.get(k) for k in set(a) | set(b) if k not in _VOLATILE_META)


def _is_transport_error(exc: BaseException) -> bool:
    import aiohttp

    return isinstance(exc, (aiohttp.ClientError, aiohttp.ClientPayloadError))
