"""The kubelet's pod workers: one task per pod, like the kubelet's pod workers. A worker admits its pod,
pulls images (node-wide serialized, with the image-pull back-off), starts containers through the runtime,
restarts them per restartPolicy with the crash-loop back-off, stops them on deletion or eviction (SIGTERM,
SIGKILL after the grace period), then confirms the deletion (DELETE with gracePeriodSeconds=0); after every
pass it hands the pod's status (computed by the pure `hacluster.kubelet.status.pod_status`) to the status
manager.

Built by `hacluster.kubelet.agent.Kubelet`; the pod source (`hacluster.kubelet.podsource`) feeds it the
pods of its node (`upsert`, `pod_gone`), the usage monitor (`hacluster.kubelet.usage`) asks it to evict.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hacluster.asyncwait import wait_event
from hacluster.client import ClientError, Indeterminate, Unreachable
from hacluster.format.durations import go_duration
from hacluster.kubelet import eviction as ev
from hacluster.kubelet.apicalls import pods_path
from hacluster.kubelet.backoff import BackOff
from hacluster.kubelet.events import EventRecorder
from hacluster.kubelet.nodepart import NodeContext, NodePart
from hacluster.kubelet.runtime import EXITED, ContainerRecord, Runtime, StartError
from hacluster.kubelet.status import TERMINAL_PHASES, PodFacts, freeze_for_eviction, pod_status, should_restart
from hacluster.kubelet.statusmanager import StatusManager
from hacluster.model.quantity import QuantityError, parse_quantity
from hacluster.model.timestamps import rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# Constants of Kubernetes' kubelet, not settings (the resync period and the failed-sync back-off are in
# `hacluster.config.KubeletConfig`):
EVICTION_GRACE_S = 1.0
"""Grace period of a pod evicted at a hard threshold (Kubernetes' immediateEvictionGracePeriodSeconds)."""
FORCE_DELETE_GRACE_S = 2.0
"""Grace period for the containers of a pod deleted from the API without the kubelet's confirmation."""
CONFIRM_FLUSH_S = 10.0
"""How long a terminated pod's final status may take to be written before its deletion is confirmed."""


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


def pod_requests(pod: Obj) -> tuple[int, int]:
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


class PodWorkers(NodePart):
    """The pods one kubelet runs (`pods`, by UID) and the worker of each."""

    def __init__(self, ctx: NodeContext, *, status: StatusManager, events: EventRecorder) -> None:
        super().__init__(ctx)
        cfg = ctx.cfg
        self.status = status
        self.events = events
        self.pods: dict[str, PodEntry] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        self.crash_backoff = BackOff(cfg.crashloop_backoff_initial_s * self.scale,
                                     cfg.crashloop_backoff_max_s * self.scale, time_scale=self.scale)
        self.pull_backoff = BackOff(cfg.image_pull_backoff_initial_s * self.scale,
                                    cfg.image_pull_backoff_max_s * self.scale, time_scale=self.scale)
        self._pull_sem = asyncio.Semaphore(cfg.max_parallel_image_pulls)
        self._ip_counter = 0
        self.evictions = 0

    def find(self, namespace: str, name: str) -> PodEntry | None:
        uid = self.by_name.get((namespace, name))
        return self.pods.get(uid) if uid else None

    def cancel_all(self) -> list[asyncio.Task[None]]:
        """Cancel every pod worker and its pulls and stops; the worker tasks, for the caller to await."""
        for e in list(self.pods.values()):
            if e.task is not None:
                e.task.cancel()
            for t in list(e.pulling.values()) + list(e.stopping.values()):
                t.cancel()
        return [e.task for e in self.pods.values() if e.task]

    # ------------------------------------------------------------------------- pods of the node
    def upsert(self, obj: Obj) -> None:
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
            changed = spec_changed(e.pod, obj)
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

    def pod_gone(self, obj: Obj) -> None:
        uid = (obj.get("metadata") or {}).get("uid", "")
        e = self.pods.get(uid)
        if e is None:
            return
        e.gone = True
        e.pod = obj if obj.get("spec") else e.pod
        e.wake.set()

    def on_runtime_change(self, uid: str) -> None:
        e = self.pods.get(uid)
        if e is not None:
            e.wake.set()


    def on_probe_event(self, uid: str, container: str, etype: str, reason: str, message: str) -> None:
        """A probe failed, or a liveness failure stops a container: the pod event the kubelet's prober writes."""
        e = self.pods.get(uid)
        if e is not None and not e.gone:
            self.events.pod_event(e.pod, etype, reason, message, container=container)


    # ---------------------------------------------------------------------------- pod workers
    async def _pod_worker(self, e: PodEntry) -> None:
        try:
            while True:
                await wait_event(e.wake, self.cfg.pod_resync_s * random.uniform(0.8, 1.2))
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
        e.wake_at(self.clock() + self.cfg.pod_worker_backoff_s * self.scale * random.uniform(1.0, 1.5))

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
            e.start_time = rfc3339(now)
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
            a, b = pod_requests(other.pod)
            used_cpu, used_mem, used_pods = used_cpu + a, used_mem + b, used_pods + 1
        cpu, mem = pod_requests(e.pod)
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
                pulled_in = go_duration(result.duration_s / self.scale, resolution_s=0.001)
                with_wait = go_duration(waited / self.scale, resolution_s=0.001)
                self.events.pod_event(
                    e.pod, "Normal", "Pulled",
                    f'Successfully pulled image "{image}" in {pulled_in} ({with_wait} including waiting). Image '
                    f"size: {result.size_bytes} bytes.", name, init)
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
                await self.api.delete(pods_path(e.namespace, e.name),
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
    def evict(self, e: PodEntry, message: str) -> None:
        self.evictions += 1
        e.frozen = freeze_for_eviction(self.runtime.containers(e.uid))
        e.terminal = ("Failed", ev.REASON, message)
        e.disruption = ev.disruption_condition(message)
        self.events.pod_event(e.pod, "Warning", ev.REASON, message)
        e.wake.set()



VOLATILE_META = ("resourceVersion", "managedFields", "generation")


def spec_changed(old: Obj, new: Obj) -> bool:
    """Whether anything but the status (and bookkeeping metadata) differs: only such changes make the kubelet
    sync a pod (a status-only change is a "reconcile", as in Kubernetes' pod config)."""
    if old.get("spec") != new.get("spec"):
        return True
    a, b = old.get("metadata") or {}, new.get("metadata") or {}
    return any(a.get(k) != b.get(k) for k in set(a) | set(b) if k not in VOLATILE_META)

