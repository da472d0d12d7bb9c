"""`hacluster bench dashboard`: what the dashboard costs and how fast it shows a change, at scale.

On a fresh 3-master cluster it creates `nodes` Node objects and `pods` Pods (with a scheduler name nobody
serves, so they stay Pending and the masters only store them), starts the dashboard as `hacluster up
--dashboard` does, waits until the dashboard has listed them all, then measures for `seconds` each:
- the dashboard process's CPU (utime + stime from /proc, as a share of one core) while nothing changes;
- the same while `churn_per_s` pods are relabelled every second (that many watch events to follow);
- the time from a pod create's 201 to the first WebSocket snapshot that counts it (the page's view), over
  `samples` creates.
Prints the figures and writes them as JSON to `out` (figures, not assertions: speed is measured here).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from hacluster.client import ApiClient
from hacluster.cluster import launcher
from hacluster.cluster.processes import ClusterHandle
from hacluster.config import default_config

CONCURRENCY = 48
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _node(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"bench-node-{i}"},
            "status": {"capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}


def _pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-pod-{i}", "labels": {"round": "0"}},
            "spec": {"schedulerName": "bench-unserved",
                     "containers": [{"name": "main", "image": "busybox:1.36"}]}}


async def _many(api: ApiClient, method: str, items: list[tuple[str, Any]], rate_per_s: float = 0) -> None:
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    for it in items:
        queue.put_nowait(it)
    start = time.monotonic()
    done = 0

    async def worker() -> None:
        nonlocal done
        while not queue.empty():
            path, body = queue.get_nowait()
            if rate_per_s:
                delay = start + done / rate_per_s - time.monotonic()
                done += 1
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the churn to its rate
            if method == "POST":
                await api.post(path, body)
            else:
                await api.patch(path, body)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


class _Page:
    """Reads every snapshot the dashboard pushes (as a page does, answering its pings) and tells when one
    with given totals arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.totals: tuple[int, int] = (-1, -1)
        self.arrived = 0.0
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                snap = json.loads(msg.data)
                self.totals = (snap["pods"]["total"], snap["nodes"]["total"])
                self.arrived = time.monotonic()
                self._changed.set()
                self._changed = asyncio.Event()

    async def seen(self, pods: int, nodes: int, timeout_s: float) -> float:
        """The monotonic time a snapshot with at least these totals arrived."""
        deadline = time.monotonic() + timeout_s
        while not (self.totals[0] >= pods and self.totals[1] >= nodes):
            if self.task.done():
                raise RuntimeError("the dashboard closed its WebSocket")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no snapshot with {pods} pods and {nodes} nodes within {timeout_s} s "
                                   f"(last: {self.totals})")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.arrived


async def _measure(handle: launcher.ClusterHandle, url: str, dash_pid: int, *, nodes: int, pods: int,
                   seconds: float, churn_per_s: int, samples: int) -> dict[str, Any]:
    api = ApiClient(list(handle.apis().values()), handle.admin_token, connection_limit=CONCURRENCY)
    ws_url = url.replace("http://", "ws://").replace("/?token=", "/events?token=")
    out: dict[str, Any] = {"nodes": nodes, "pods": pods, "seconds": seconds, "churn_per_s": churn_per_s}
    try:
        t0 = time.monotonic()
        await _many(api, "POST", [("/api/v1/nodes", _node(i)) for i in range(nodes)])
        await _many(api, "POST", [("/api/v1/namespaces/default/pods", _pod(i)) for i in range(pods)])
        out["create_s"] = round(time.monotonic() - t0, 1)
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
            page = _Page(ws)
            t1 = time.monotonic()
            await page.seen(pods, nodes, 120)
            out["listed_after_s"] = round(time.monotonic() - t1, 2)

            c0, w0 = _cpu_s(dash_pid), time.monotonic()
            await asyncio.sleep(seconds)  # the measuring window: nothing changes
            out["cpu_idle_pct_of_core"] = round(100 * (_cpu_s(dash_pid) - c0) / (time.monotonic() - w0), 1)

            n_churn = int(churn_per_s * seconds)
            patches = [(f"/api/v1/namespaces/default/pods/bench-pod-{i % pods}", {"metadata": {"labels": {
                "round": str(1 + i // pods)}}}) for i in range(n_churn)]
            c0, w0 = _cpu_s(dash_pid), time.monotonic()
            churn = asyncio.create_task(_many(api, "PATCH", patches, rate_per_s=churn_per_s))
            await churn
            elapsed = time.monotonic() - w0
            out["churn_achieved_per_s"] = round(n_churn / elapsed, 1)
            out["cpu_churn_pct_of_core"] = round(100 * (_cpu_s(dash_pid) - c0) / elapsed, 1)

            lat = []
            total = pods
            for k in range(samples):
                await api.post("/api/v1/namespaces/default/pods", _pod(pods + k))
                sent = time.monotonic()
                total += 1
                lat.append(1000 * (await page.seen(total, nodes, 10) - sent))
            out["create_to_snapshot_ms"] = {"p50": round(statistics.median(lat), 1),
                                            "max": round(max(lat), 1), "samples": samples}
            page.task.cancel()
        async with aiohttp.ClientSession() as session:
            async with session.get(url.replace("/?token=", "/api/state?token=")) as resp:
                out["snapshot_bytes"] = len(await resp.read())
    finally:
        await api.close()
    return out


def run(state_dir: Path, *, nodes: int, pods: int, seconds: float, churn_per_s: int, samples: int,
        out_path: Path, start_detached: Callable[[ClusterHandle], str]) -> dict[str, Any]:
    """`start_detached` starts the dashboard as a process of the cluster and returns its URL (the CLI passes
    its own, the one `hacluster up --dashboard` uses)."""
    handle = launcher.up(default_config(3), state_dir)
    try:
        url = start_detached(handle)
        pid = handle.pid("dashboard")
        assert pid is not None
        result = asyncio.run(_measure(handle, url, pid, nodes=nodes, pods=pods, seconds=seconds,
                                      churn_per_s=churn_per_s, samples=samples))
    finally:
        launcher.down(state_dir)
    result["cpus"] = os.cpu_count()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    return result
