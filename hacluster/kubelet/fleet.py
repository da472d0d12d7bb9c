"""Many simulated nodes in one process: `hacluster kubelet-fleet --nodes N`, for scale (kwok's niche).

Each node is a full `Kubelet` with the simulated runtime: its own identity (token of
`system:node:<prefix><i>`), Node, Lease, pod watch, pod workers and status writes. What they share: one
aiohttp connection pool (each node has its own session over it, carrying its own token), one image
catalogue and one log server (every node advertises its port). With `shared_watch` the nodes also share
one pod watch (every bound pod, dispatched by spec.nodeName) instead of one watch each: the API server
wakes every watch for every change and filters it per watch, so 1,000 per-node watches cost it far more
than the changes themselves (see scripts/bench-kubelet). Node i prefers master i mod M for its
requests and watch, spreading the load the way a load balancer in front of the API servers would, and
fails over like any kubelet. `report()` gives the figures the benchmark prints.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

import aiohttp

from hacluster.asyncwait import wait_event
from hacluster.client import ApiClient
from hacluster.config import KubeletConfig
from hacluster.kubelet.agent import Kubelet
from hacluster.kubelet.apicalls import list_all
from hacluster.kubelet.behaviour import ImageCatalogue, NodeProfile
from hacluster.kubelet.events import TokenBucket
from hacluster.kubelet.logs import LogServer
from hacluster.kubelet.podworker import PodEntry
from hacluster.kubelet.sim import SimRuntime

log = logging.getLogger(__name__)


class PooledClient(ApiClient):
    """An ApiClient whose session runs over a connection pool shared with other clients."""

    def __init__(self, endpoints: list[str], token: str, connector: aiohttp.BaseConnector, *, prefer: int = 0,
                 **kw: Any) -> None:
        super().__init__(endpoints, token, **kw)
        self._connector = connector
        self.current = prefer % len(self.endpoints)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"},
                                                  connector=self._connector, connector_owner=False)
        return self._session


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit towards `wanted` (bounded by the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@dataclass
class FleetNode:
    name: str
    token: str


class SharedPodWatch:
    """One list+watch of every bound pod (`fieldSelector=spec.nodeName!=`), dispatched to the fleet's nodes by
    spec.nodeName: the `--watch shared` mode, one stream per fleet instead of one per node."""

    def __init__(self, api: ApiClient, kubelets: dict[str, Kubelet]) -> None:
        self.api = api
        self.kubelets = kubelets
        self.resource_version = ""
        self.restarts = 0

    def _node_of(self, obj: dict[str, Any]) -> Kubelet | None:
        return self.kubelets.get((obj.get("spec") or {}).get("nodeName") or "")

    async def run(self) -> None:
        selector = {"fieldSelector": "spec.nodeName!="}
        delay = 0.1
        while True:
            try:
                if not self.resource_version:
                    items, rv = await list_all(self.api, "/api/v1/pods", selector)
                    by_node: dict[str, list[dict[str, Any]]] = {name: [] for name in self.kubelets}
                    for obj in items:
                        node = (obj.get("spec") or {}).get("nodeName") or ""
                        if node in by_node:
                            by_node[node].append(obj)
                    for name, items in by_node.items():
                        self.kubelets[name].apply_listing(items)
                    self.resource_version = rv
                stream = cast(AsyncGenerator[dict[str, Any], None], self.api.watch(
                    "/api/v1/pods", resource_version=self.resource_version, timeout_s=300, params=selector))
                try:
                    async for event in stream:
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                self.resource_version = ""
                            break
                        rv = (obj.get("metadata") or {}).get("resourceVersion", "")
                        if event.get("type") != "BOOKMARK":
                            k = self._node_of(obj)
                            if k is not None:
                                k.apply_event(str(event.get("type")), obj)
                        if rv:
                            self.resource_version = rv
                finally:
                    await stream.aclose()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # API errors and transport errors alike: resume after a bounded pause
                log.info("shared pod watch: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            self.restarts += 1


class Fleet:
    """N simulated kubelets sharing a process. Build, `await start()`, then `await run(stop)`."""

    def __init__(self, nodes: list[FleetNode], endpoints: list[str], cfg: KubeletConfig, profile: NodeProfile,
                 *, catalogue: ImageCatalogue | None = None, connection_limit: int = 0,
                 shared_watch: bool = False, status_writes_in_flight_max: int = 64,
                 event_writes_per_s_max: float = 100.0) -> None:
        self.nodes = nodes
        self.endpoints = endpoints
        self.cfg = cfg
        self.profile = profile
        self.catalogue = catalogue or ImageCatalogue.load(cfg.images_file or None, seed=cfg.seed,
                                                          time_scale=cfg.time_scale)
        # Watches hold a connection each; everything else shares what is left.
        self.connection_limit = connection_limit or ((0 if shared_watch else len(nodes)) + 256)
        self.status_writes_in_flight_max = status_writes_in_flight_max
        self.event_writes_per_s_max = event_writes_per_s_max
        self.shared_watch = shared_watch
        self.watch: SharedPodWatch | None = None
        self.kubelets: list[Kubelet] = []
        self.logs = LogServer(find=self.find, stats=self.stats_summary)
        self._connector: aiohttp.TCPConnector | None = None
        self._clients: list[PooledClient] = []

    def find(self, namespace: str, name: str) -> PodEntry | None:
        for k in self.kubelets:
            e = k.find(namespace, name)
            if e is not None:
                return e
        return None

    def stats_summary(self, node: str) -> dict[str, Any] | None:
        for k in self.kubelets:
            if k.node == node:
                return k.stats_summary()
        return None

    async def start(self) -> None:
        raise_fd_limit(self.connection_limit + 256)
        port = await self.logs.start()
        self._connector = aiohttp.TCPConnector(limit=self.connection_limit, limit_per_host=self.connection_limit)
        # Fleet-wide bounds, like a client's QPS limit: the nodes share them, so a burst of pods does not turn
        # into thousands of simultaneous writes.
        status_sem = asyncio.Semaphore(self.status_writes_in_flight_max)
        events = TokenBucket(self.event_writes_per_s_max)
        for i, n in enumerate(self.nodes):
            api = PooledClient(self.endpoints, n.token, self._connector, prefer=i, request_timeout_s=5.0,
                               deadline_s=15.0)
            self._clients.append(api)
            runtime = SimRuntime(self.catalogue, node=n.name)
            self.kubelets.append(Kubelet(node=n.name, api=api, runtime=runtime, cfg=self.cfg, profile=self.profile,
                                         log_port=port, jitter_start=len(self.nodes) > 20,
                                         own_watch=not self.shared_watch, status_semaphore=status_sem,
                                         event_bucket=events))
        if self.shared_watch:
            self.watch = SharedPodWatch(self._clients[0], {k.node: k for k in self.kubelets})

    async def run(self, stop: asyncio.Event) -> None:
        watch = asyncio.ensure_future(self.watch.run()) if self.watch is not None else None
        try:
            await asyncio.gather(*(k.run(stop) for k in self.kubelets))
        finally:
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            for c in self._clients:
                await c.close()
            if self._connector is not None:
                await self._connector.close()
            await self.logs.stop()

    def report(self) -> dict[str, Any]:
        ks = self.kubelets
        pods = sum(len(k.pods) for k in ks)
        running = 0
        for k in ks:
            for e in k.pods.values():
                d = k.status.desired(e.uid) or {}
                if d.get("phase") == "Running":
                    running += 1
        return {
            "nodes": len(ks), "registered": sum(k.registered.is_set() for k in ks), "pods": pods,
            "running": running, "lease_renewals": sum(k.lease_renewals for k in ks),
            "lease_failures": sum(k.lease_failures for k in ks),
            "status_writes": sum(k.status.writes for k in ks),
            "status_failures": sum(k.status.failures for k in ks),
            "watch_restarts": sum(k.watch_restarts for k in ks) + (self.watch.restarts if self.watch else 0),
            "relists": sum(k.relists for k in ks),
            "events_written": sum(k.events.written for k in ks), "events_dropped": sum(k.events.dropped for k in ks),
        }


async def report_loop(fleet: Fleet, period_s: float, stop: asyncio.Event) -> None:
    """Print one line of figures every `period_s` until `stop`."""
    last = fleet.report()
    t_last = time.monotonic()
    while not stop.is_set():
        await wait_event(stop, period_s)
        now = fleet.report()
        dt = max(1e-6, time.monotonic() - t_last)
        rate = (now["lease_renewals"] - last["lease_renewals"]) / dt
        writes = (now["status_writes"] - last["status_writes"]) / dt
        print(f"fleet: {now['registered']}/{now['nodes']} nodes, {now['pods']} pods ({now['running']} Running), "
              f"{rate:.0f} lease renewals/s ({now['lease_failures']} failed), {writes:.0f} status writes/s "
              f"({now['status_failures']} failed), {now['watch_restarts']} watch restarts", flush=True)
        last, t_last = now, time.monotonic()
