"""The kubelet agent: one node's registration, heartbeats, pod watch, pod workers, status and evictions;
`Kubelet` wires the parts, each in a module of its own.

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

Where each part lives: `nodeloops` (registration, lease, node status), `podsource` (list/watch with
failover), `podworker` (pod workers: admission, pulls, starts and restarts, termination, eviction),
`statusmanager` (pod status writes), `usage` (stats summary, memory pressure, the eviction loop), `apicalls`
(paths, errors and back-off bounds they share).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from hacluster.client import ApiClient
from hacluster.config import KubeletConfig
from hacluster.kubelet import nodestatus as ns
from hacluster.kubelet.behaviour import NodeProfile
from hacluster.kubelet.events import EventRecorder, TokenBucket
from hacluster.kubelet.nodeloops import NodeLoops
from hacluster.kubelet.nodepart import NodeContext
from hacluster.kubelet.podsource import PodSource
from hacluster.kubelet.podworker import PodEntry, PodWorkers
from hacluster.kubelet.runtime import Runtime
from hacluster.kubelet.statusmanager import StatusManager
from hacluster.kubelet.usage import UsageMonitor

Obj = dict[str, Any]


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
        self.log_port = log_port
        self.clock = clock
        self.manage_runtime = manage_runtime
        self.jitter_start = jitter_start
        self.own_watch = own_watch
        self.scale = cfg.time_scale
        self.identity = ns.NodeIdentity(node, ns.node_index(node) if index is None else index, runtime.version)
        self.status = StatusManager(api, concurrency=cfg.status_write_concurrency, semaphore=status_semaphore)
        self.events = EventRecorder(api, node, per_object_max=cfg.events_per_pod_max,
                                    writes_per_s_max=cfg.event_writes_per_s_max, clock=clock, bucket=event_bucket)
        ctx = NodeContext(node=node, api=api, runtime=runtime, cfg=cfg, profile=profile, identity=self.identity,
                          clock=clock)
        self.node_loops = NodeLoops(ctx, labels=dict(labels or {}), taints=[dict(t) for t in taints or []],
                                    log_port=log_port)
        self.workers = PodWorkers(ctx, status=self.status, events=self.events)
        self.source = PodSource(node, api, self.workers)
        self.usage = UsageMonitor(ctx, events=self.events, workers=self.workers, node_loops=self.node_loops)
        self.pods = self.workers.pods
        self.registered = self.node_loops.registered
        self.ready = self.node_loops.ready
        self.pressure = self.node_loops.pressure
        self._tasks: list[asyncio.Task[Any]] = []
        runtime.on_change = self.workers.on_runtime_change
        runtime.on_probe_event = self.workers.on_probe_event

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop the pod workers (and, if it owns it, the runtime)."""
        try:
            if self.jitter_start:
                await asyncio.sleep(random.uniform(0, self.cfg.node_lease_renew_s))
            await self._until(stop, self.node_loops.register())
            if stop.is_set():
                return
            loops = [self.status.run(), self.events.run(), self.node_loops.lease_loop(),
                     self.node_loops.node_status_loop(), self.usage.eviction_loop()]
            if self.own_watch:
                loops.append(self.source.watch_loop())
            self._tasks = [asyncio.ensure_future(c) for c in loops]
            self.events.node_event("Normal", "Starting", "Starting kubelet.")
            await stop.wait()
        finally:
            for t in self._tasks:
                t.cancel()
            workers = self.workers.cancel_all()
            await asyncio.gather(*self._tasks, *workers, return_exceptions=True)
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

    # ------------------------------------------------------- what callers ask of the parts
    def find(self, namespace: str, name: str) -> PodEntry | None:
        return self.workers.find(namespace, name)

    def apply_listing(self, items: list[Obj]) -> None:
        """A complete list of this node's pods (a relist), from a watch shared by several nodes."""
        self.source.apply_listing(items)

    def apply_event(self, etype: str, obj: Obj) -> None:
        """One watch event about a pod of this node (for a watch shared by several nodes)."""
        self.source.apply_event(etype, obj)

    def stats_summary(self) -> dict[str, Any]:
        """What this node and its pods use now (the `/stats/summary` endpoint; `kubectl top`)."""
        return self.usage.stats_summary()

    def memory_usage(self) -> tuple[int, dict[str, dict[str, int]]]:
        """Bytes used by pods in total, and per pod per container."""
        return self.usage.memory_usage()

    def check_pressure(self) -> PodEntry | None:
        """One eviction check (see `UsageMonitor.check_pressure`)."""
        return self.usage.check_pressure()

    @property
    def resource_version(self) -> str:
        return self.source.resource_version

    @property
    def relists(self) -> int:
        return self.source.relists

    @property
    def watch_restarts(self) -> int:
        return self.source.watch_restarts

    @property
    def lease_renewals(self) -> int:
        return self.node_loops.lease_renewals

    @property
    def lease_failures(self) -> int:
        return self.node_loops.lease_failures

    @property
    def evictions(self) -> int:
        return self.workers.evictions

    @property
    def node_uid(self) -> str:
        return self.node_loops.node_uid

    @property
    def node_view(self) -> Obj | None:
        return self.node_loops.node_view
