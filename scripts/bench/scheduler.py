"""Benchmark the leader's scheduler through Raft: pods bound per second on a real 3-master cluster.

For each node count (100 and 1,000 by default) a fresh cluster is started with `launcher.up`, the nodes
are registered directly through the API (Node objects with allocatable and a Ready condition; the node
grace period is raised so that no heartbeats are needed), then 5,000 pods (100m CPU, 128Mi each) are
created through the API as fast as `--creators` concurrent clients can, spread over the masters. A watch
on a follower (`fieldSelector=spec.nodeName!=`) timestamps every binding as it is committed.

Printed per run: create rate; bind throughput over the whole run (first to last binding) and while a
backlog of created-but-unbound pods existed; the best and median one-second windows; the scheduler's
backlog when creation ended and how fast it drained; CPU seconds used by each master and by this client;
and checks (every pod bound exactly once, no node over its allocatable). Asserts nothing.

    scripts/bench-scheduler [--nodes 100,1000] [--pods 5000] [--creators 48] [--seed 1] [--keep]
                            [--set inflight_batches_max=4 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, for a run without install

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

from hacluster.cluster import launcher  # noqa: E402
from hacluster.config import ControllersConfig, SchedulerConfig, default_config  # noqa: E402

PODS = "/api/v1/namespaces/default/pods"
ZONES = ("zone-a", "zone-b", "zone-c")
enc = msgspec.json.Encoder()


def node_body(i: int) -> dict[str, Any]:
    name = f"node-{i:04d}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": ZONES[i % 3]}},
            "spec": {},
            "status": {"capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                       "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": now, "lastTransitionTime": now}]}}


def pod_body(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i:05d}", "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def post_all(session: aiohttp.ClientSession, apis: list[str], path: str, bodies: list[dict[str, Any]],
                   workers: int) -> tuple[float, int]:
    """POST every body (retrying 503/504/connection errors, 409 = done); return (seconds, failures)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    failures = 0

    async def worker(w: int) -> None:
        nonlocal failures
        base = apis[w % len(apis)]
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for attempt in range(20):
                try:
                    async with session.post(base + path, data=enc.encode(body)) as r:
                        await r.read()
                        if r.status in (200, 201, 409):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))  # bounded back-off between retries
            else:
                failures += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return time.monotonic() - t0, failures


async def watch_bindings(session: aiohttp.ClientSession, api: str, rv: str, bound: dict[str, tuple[float, str]],
                         expected: int, stop: asyncio.Event) -> None:
    """Record (monotonic time, node) of each pod's first binding seen, resuming the watch as needed."""
    while not stop.is_set() and len(bound) < expected:
        url = f"{api}{PODS}?watch=1&resourceVersion={rv}&fieldSelector=spec.nodeName!%3D&timeoutSeconds=60"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=70)) as r:
                if r.status != 200:  # e.g. 503 while the follower lost sight of the leader
                    await r.read()
                    await asyncio.sleep(0.1)  # bounded pause, then try again
                    continue
                async for line in r.content:
                    ev = json.loads(line)
                    if ev.get("type") == "ERROR":
                        raise RuntimeError(f"watch failed: {ev['object'].get('message')}")
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    name, node = obj["metadata"]["name"], obj["spec"].get("nodeName")
                    if node and ev["type"] in ("ADDED", "MODIFIED"):
                        if name in bound and bound[name][1] != node:
                            raise RuntimeError(f"{name} rebound from {bound[name][1]} to {node}")
                        bound.setdefault(name, (time.monotonic(), node))
                    if len(bound) >= expected:
                        return
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.1)  # bounded pause, then resume from the last revision


def window_rates(times: list[float], width_s: float = 1.0) -> list[int]:
    """Bindings per `width_s` window from the first binding on."""
    if not times:
        return []
    start = times[0]
    counts = [0] * (int((times[-1] - start) / width_s) + 1)
    for t in times:
        counts[int((t - start) / width_s)] += 1
    return counts


async def run_one(nodes: int, pods: int, creators: int, seed: int, keep: bool,
                  scheduler: dict[str, Any]) -> dict[str, Any]:
    cfg = default_config(3)
    cfg = cfg.model_copy(update={
        "scheduler": SchedulerConfig(seed=seed, **scheduler),
        # Nodes registered by the benchmark have no kubelet renewing a Lease: keep them healthy.
        "controllers": ControllersConfig(node_monitor_grace_period_s=3600.0),
    })
    state = Path(tempfile.mkdtemp(prefix=f"bench-scheduler-{nodes}-"))
    handle = launcher.up(cfg, state)
    try:
        token = handle.admin_token
        rows = {r["id"]: r for r in launcher.cluster_status(handle)}
        leader = next(r for r in rows.values() if r["role"] == "leader")
        follower = next(r for r in rows.values() if r["role"] != "leader")
        apis = list(handle.apis().values())
        pids = {mid: handle.pid(mid) for mid in rows}
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
            reg_s, reg_fail = await post_all(session, apis, "/api/v1/nodes", [node_body(i) for i in range(nodes)],
                                            creators)
            async with session.get(f"{follower['api']}{PODS}") as r:
                rv = (await r.json())["metadata"]["resourceVersion"]
            bound: dict[str, tuple[float, str]] = {}
            stop = asyncio.Event()
            watcher = asyncio.ensure_future(watch_bindings(session, follower["api"], rv, bound, pods, stop))
            cpu0 = {m: cpu_seconds(p) for m, p in pids.items() if p}
            me0 = time.process_time()
            t0 = time.monotonic()
            create_s, create_fail = await post_all(session, apis, PODS, [pod_body(i) for i in range(pods)],
                                                   creators)
            created_at = time.monotonic()
            backlog = pods - len(bound)
            try:
                await asyncio.wait_for(watcher, timeout=300)
            except TimeoutError:
                stop.set()
            done_at = time.monotonic()
            cpu1 = {m: cpu_seconds(p) for m, p in pids.items() if p}
            me1 = time.process_time()
            async with session.get(f"{leader['api']}{PODS}") as r:
                items = (await r.json())["items"]
            async with session.get(f"{leader['api']}/api/v1/nodes") as r:
                node_items = (await r.json())["items"]
        times = sorted(t for t, _ in bound.values())
        per_node: dict[str, int] = {}
        for p in items:
            n = p["spec"].get("nodeName")
            if n:
                per_node[n] = per_node.get(n, 0) + 100
        over = [n for n, m in per_node.items() if m > 32_000]
        windows = window_rates(times)
        after = [t for t in times if t > created_at]
        return {
            "nodes": nodes, "pods": pods, "registered_s": reg_s, "register_failures": reg_fail,
            "create_s": create_s, "create_rate": pods / create_s, "create_failures": create_fail,
            "bound": len(bound), "bound_in_store": sum(1 for p in items if p["spec"].get("nodeName")),
            "first_bind_s": times[0] - t0 if times else float("nan"),
            "last_bind_s": times[-1] - t0 if times else float("nan"),
            "bind_rate": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan"),
            "best_1s": max(windows) if windows else 0,
            "median_1s": statistics.median(windows) if windows else 0,
            "backlog_at_create_end": backlog,
            "drain_rate": len(after) / (after[-1] - created_at) if after else float("nan"),
            "cpu_s": {m: cpu1[m] - cpu0[m] for m in cpu1}, "client_cpu_s": me1 - me0,
            "wall_s": done_at - t0, "leader": leader["id"], "over_allocatable": over,
            "nodes_in_store": len(node_items), "state": str(state), "load": os.getloadavg()[0],
        }
    finally:
        if not keep:
            launcher.down(state)
            import shutil

            shutil.rmtree(state, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    cpu = ", ".join(f"{m}{'*' if m == r['leader'] else ''} {s:.1f}" for m, s in sorted(r["cpu_s"].items()))
    print(f"\n{r['nodes']:,} nodes, {r['pods']:,} pods  (nodes registered in {r['registered_s']:.1f} s)")
    print(f"  created           {r['create_rate']:8.0f} pods/s   ({r['create_s']:.1f} s, "
          f"{r['create_failures']} failed)")
    print(f"  bound             {r['bind_rate']:8.0f} pods/s   first→last binding "
          f"({r['first_bind_s']:.2f} s → {r['last_bind_s']:.2f} s after the first create)")
    print(f"  1-s windows       best {r['best_1s']}, median {r['median_1s']:.0f} bindings")
    print(f"  backlog           {r['backlog_at_create_end']} pods unbound when creation ended, drained at "
          f"{r['drain_rate']:.0f} pods/s")
    print(f"  CPU seconds       {cpu} (leader *), client {r['client_cpu_s']:.1f}, over {r['wall_s']:.1f} s wall")
    ok = r["bound"] == r["pods"] == r["bound_in_store"] and not r["over_allocatable"]
    print(f"  checks            {'OK' if ok else 'FAILED'}: {r['bound_in_store']}/{r['pods']} bound once, "
          f"{len(r['over_allocatable'])} nodes over allocatable")
    print(f"  machine load      {r['load']:.1f} (1-min load average at the end; this machine has {os.cpu_count()} "
          "CPUs, and other work on it slows every figure)")
    if "state" in r and os.path.exists(r["state"]):
        print(f"  cluster kept in   {r['state']} (hacluster down --state-dir {r['state']})")


def main() -> None:
    ap = argparse.ArgumentParser(prog="scripts/bench-scheduler", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="100,1000", help="comma-separated node counts")
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--creators", type=int, default=48, help="concurrent API clients creating pods")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="leave the clusters running")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a scheduler setting, e.g. --set inflight_batches_max=4")
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    print(f"bench-scheduler: 3 masters, {args.pods} pods, {args.creators} creating clients, "
          f"{os.cpu_count()} CPUs")
    for n in (int(x) for x in args.nodes.split(",")):
        report(asyncio.run(run_one(n, args.pods, args.creators, args.seed, args.keep, overrides)))


if __name__ == "__main__":
    main()
