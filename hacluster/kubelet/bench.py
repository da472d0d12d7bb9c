"""Benchmark of the kubelets on real local clusters (3 masters on 127.0.0.1): `scripts/bench-kubelet`.

1. Pod startup latency (create -> Running, as a watching client sees it): 10 simulated kubelet processes
   (`hacluster up --nodes 10`, time scale 1, so every duration is the real one), 100 pods. The image is
   pulled on every node first (Kubernetes' SLO excludes image pulls), then pods are created 10 at a time
   (a) bound to a node by the client (spec.nodeName) and (b) left to the scheduler when it runs.
   Kubernetes' SLO: p99 <= 5 s; the target here is p99 <= 1 s.
2. Fleet scale: `hacluster kubelet-fleet` with N simulated nodes in one process (Kubernetes' timings: Lease
   renewed every 10 s, node-monitor grace period 40 s), P pods bound round-robin, then a steady period in
   which every node must stay Ready (no flap to Unknown) and every pod Running. Reports registration and
   start-up times, lease renewals/s and the masters' CPU. `--fleet-watch per-node` gives each node its own
   pod watch (as kubelets do); `shared` uses one watch for the whole fleet (see the report on the API
   server's per-watch filtering cost).

    scripts/bench-kubelet [--startup-pods 100] [--startup-nodes 10] [--fleet-nodes 1000] [--fleet-pods 10000]
                          [--fleet-watch shared|per-node] [--steady-s 60] [--skip-startup] [--skip-fleet]
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

from hacluster.client import ApiClient
from hacluster.cluster import launcher
from hacluster.config import ControllersConfig, KubeletConfig, RaftConfig, default_config
from hacluster.kubelet.apicalls import list_all
from hacluster.kubelet.fleet import raise_fd_limit
from hacluster.model.conditions import ready_status

PODS = "/api/v1/namespaces/default/pods"
IMAGE = "registry.k8s.io/pause:3.9"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pod(name: str, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": IMAGE}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def client(handle: launcher.ClusterHandle, rotate: int = 0, **kw: Any) -> ApiClient:
    eps = list(handle.apis().values())
    eps = eps[rotate % len(eps):] + eps[:rotate % len(eps)]
    return ApiClient(eps, handle.admin_token, **kw)


async def count(api: ApiClient, path: str, selector: str = "") -> int:
    params = {"limit": "1", "resourceVersion": "0"}
    if selector:
        params["fieldSelector"] = selector
    page = await api.get(path, params=params)
    return len(page["items"]) + int(page["metadata"].get("remainingItemCount") or 0)


async def create_all(handle: launcher.ClusterHandle, pods: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """Create pods `concurrency` at a time through all masters; return name -> time the create was sent."""
    apis = [client(handle, i, connection_limit=concurrency) for i in range(3)]
    sem = asyncio.Semaphore(concurrency)
    sent: dict[str, float] = {}

    async def one(i: int, body: dict[str, Any]) -> None:
        async with sem:
            name = body["metadata"]["name"]
            sent[name] = time.time()
            for _ in range(10):
                try:
                    await apis[i % 3].post(PODS, body)
                    return
                except Exception as exc:  # a retry after an unknown outcome may find it created
                    if "AlreadyExists" in str(exc):
                        return
                    await asyncio.sleep(0.2)
            raise RuntimeError(f"could not create {name}")

    await asyncio.gather(*(one(i, p) for i, p in enumerate(pods)))
    for a in apis:
        await a.close()
    return sent


# ------------------------------------------------------------------------------------- startup
async def watch_running(handle: launcher.ClusterHandle, names: set[str], seen: dict[str, float],
                        stop: asyncio.Event) -> None:
    api = client(handle, 0)
    rv = (await api.get(PODS, params={"limit": "1"}))["metadata"]["resourceVersion"]
    try:
        while not stop.is_set():
            try:
                async for ev in api.watch(PODS, resource_version=rv, timeout_s=60):
                    obj = ev.get("object") or {}
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    name = obj.get("metadata", {}).get("name")
                    st = obj.get("status") or {}
                    if name in names and name not in seen and st.get("phase") == "Running" and all(
                            "running" in (cs.get("state") or {}) for cs in st.get("containerStatuses") or [{}]):
                        seen[name] = time.time()
                    if stop.is_set():
                        return
            except Exception:
                await asyncio.sleep(0.1)
    finally:
        await api.close()


async def startup_round(handle: launcher.ClusterHandle, label: str, n: int, nodes: list[str] | None) -> list[float]:
    names = [f"{label}-{i}" for i in range(n)]
    seen: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(watch_running(handle, set(names), seen, stop))
    await asyncio.sleep(0.5)
    bodies = [pod(name, nodes[i % len(nodes)] if nodes else None) for i, name in enumerate(names)]
    sent = await create_all(handle, bodies, concurrency=10)
    deadline = time.monotonic() + 60
    while len(seen) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    watcher.cancel()
    missing = [x for x in names if x not in seen]
    if missing:
        print(f"  {label}: {len(missing)} pods never seen Running within 60 s (e.g. {missing[:3]})")
    return [seen[x] - sent[x] for x in names if x in seen]


async def startup(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    cfg = default_config(3).model_copy(update={"kubelet": KubeletConfig(time_scale=1.0)})
    sd = root / "startup"
    handle = launcher.up(cfg, sd, nodes=args.startup_nodes, runtime="sim", ready_timeout_s=60)
    out: dict[str, Any] = {}
    try:
        nodes = [f"node-{i + 1}" for i in range(args.startup_nodes)]
        warm = await startup_round(handle, "warm", len(nodes), nodes)  # pulls the image on every node
        print(f"  warm-up (with image pull): {len(warm)} pods, max {max(warm):.2f} s")
        for label, target in (("bound", nodes), ("scheduled", None)):
            lat = await startup_round(handle, label, args.startup_pods, target)
            if not lat:
                print(f"  {label}: no pod started (is the scheduler running?)")
                continue
            row = {"pods": len(lat), "p50_s": round(pct(lat, 50), 3), "p90_s": round(pct(lat, 90), 3),
                   "p99_s": round(pct(lat, 99), 3), "max_s": round(max(lat), 3),
                   "mean_s": round(statistics.mean(lat), 3)}
            out[label] = row
            print(f"  {label:9s}: {row['pods']} pods  p50 {row['p50_s']:.3f} s  p90 {row['p90_s']:.3f} s  "
                  f"p99 {row['p99_s']:.3f} s  max {row['max_s']:.3f} s")
    finally:
        launcher.down(sd)
    return out


# --------------------------------------------------------------------------------------- fleet
async def node_controller_events(api: ApiClient) -> tuple[int, int]:
    """(NodeNotReady, TaintManagerEviction) events of the node lifecycle controller, each counted with its
    repeats: a node that flapped to NotReady/Unknown, a pod evicted from such a node."""
    flaps = evictions = 0
    events, _ = await list_all(api, "/api/v1/events", {"fieldSelector": "source=node-controller"})
    for e in events:
        if e.get("reason") == "NodeNotReady" and e["involvedObject"].get("kind") == "Node":
            flaps += int(e.get("count") or 1)
        elif e.get("reason") == "TaintManagerEviction":
            evictions += int(e.get("count") or 1)
    return flaps, evictions



def fleet_log_rates(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text().splitlines() if ln.startswith("fleet:")]
    except OSError:
        return []


async def fleet(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    n, p = args.fleet_nodes, args.fleet_pods
    raise_fd_limit(4 * n + 1024)  # inherited by the masters: each holds a watch per node in per-node mode
    cfg = default_config(3).model_copy(update={
        "kubelet": KubeletConfig(fleet_nodes=n, node_lease_renew_s=10.0, node_status_update_s=10.0,
                                 node_status_report_s=300.0),
        "controllers": ControllersConfig(node_monitor_period_s=5.0, node_monitor_grace_period_s=40.0),
        # Five busy processes share this machine's cores: longer election timeouts keep a starved
        # leader's late heartbeats from being taken for its death.
        "raft": RaftConfig(election_timeout_ms_min=1000, election_timeout_ms_max=2000, heartbeat_ms=100,
                           leader_fallback_ms=3000, quorum_contact_ms=2000, connection_timeout_ms=3000),
    })
    sd = root / "fleet"
    handle = launcher.up(cfg, sd, ready_timeout_s=60)
    out: dict[str, Any] = {"nodes": n, "pods": p, "watch": args.fleet_watch}
    try:
        argv = [sys.executable, "-m", "hacluster.cli.main", "kubelet-fleet", "--nodes", str(n), "--config",
                str(handle.config_path.resolve()), "--watch", args.fleet_watch, "--report-every-s", "5"]
        launcher.spawn(handle.state_dir, "kubelet-fleet", argv)
        api = client(handle, 0, deadline_s=30.0, request_timeout_s=20.0)
        t0 = time.monotonic()
        masters = [handle.pid(m.id) or 0 for m in handle.cfg.masters]
        fleet_pid = handle.pid("kubelet-fleet") or 0
        while True:
            listing = await api.get("/api/v1/nodes", params={"resourceVersion": "0"})
            ready = sum(1 for x in listing["items"] if ready_status(x) == "True")
            if ready >= n:
                break
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"only {ready}/{n} nodes Ready after 300 s")
            await asyncio.sleep(2)
        out["nodes_ready_s"] = round(time.monotonic() - t0, 1)
        print(f"  {n} nodes Ready after {out['nodes_ready_s']} s")
        t1 = time.monotonic()
        bodies = [pod(f"f-{i}", f"fleet-{i % n + 1}") for i in range(p)]
        await create_all(handle, bodies, concurrency=16)
        out["create_s"] = round(time.monotonic() - t1, 1)
        print(f"  {p} pods created in {out['create_s']} s ({p / max(out['create_s'], 1e-6):.0f}/s)")
        while True:
            running, total = await count(api, PODS, "status.phase=Running"), await count(api, PODS)
            if running >= total:
                break
            if time.monotonic() - t1 > 900:
                raise RuntimeError(f"only {running}/{total} pods Running after 900 s")
            await asyncio.sleep(2)
        out["all_running_s"] = round(time.monotonic() - t1, 1)
        print(f"  all {total} pods Running {out['all_running_s']} s after the first create"
              + (f" ({p - total} evicted by the node lifecycle controller)" if total < p else ""))
        cpu0 = [cpu_seconds(x) for x in masters] + [cpu_seconds(fleet_pid)]
        s0 = time.monotonic()
        not_ready: set[str] = set()
        min_running = p
        while time.monotonic() - s0 < args.steady_s:
            await asyncio.sleep(5)
            listing = await api.get("/api/v1/nodes", params={"resourceVersion": "0"})
            for x in listing["items"]:
                if ready_status(x) != "True":
                    not_ready.add(x["metadata"]["name"])
            min_running = min(min_running, await count(api, PODS, "status.phase=Running"))
        dt = time.monotonic() - s0
        cpu1 = [cpu_seconds(x) for x in masters] + [cpu_seconds(fleet_pid)]
        usage = [round((b - a) / dt, 2) for a, b in zip(cpu0, cpu1, strict=True)]
        rates = fleet_log_rates(sd / "logs" / "kubelet-fleet.log")
        flaps, evictions = await node_controller_events(api)
        out.update({"steady_s": round(dt), "nodes_ever_not_ready": len(not_ready), "min_running": min_running,
                    "master_cpu": usage[:3], "fleet_cpu": usage[3], "fleet_report": rates[-1] if rates else "",
                    "node_not_ready_events": flaps, "taint_evictions": evictions})
        print(f"  steady {out['steady_s']} s: {len(not_ready)} nodes ever not Ready, at least {min_running}/{p} "
              f"pods Running; CPU (cores) masters {usage[:3]}, fleet {usage[3]}")
        print(f"  whole run: {flaps} NodeNotReady and {evictions} TaintManagerEviction events from the node "
              "lifecycle controller")
        if rates:
            print(f"  {rates[-1]}")
        await api.close()
    finally:
        launcher.down(sd)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--startup-pods", type=int, default=100)
    ap.add_argument("--startup-nodes", type=int, default=10)
    ap.add_argument("--fleet-nodes", type=int, default=1000)
    ap.add_argument("--fleet-pods", type=int, default=10000)
    ap.add_argument("--fleet-watch", choices=["shared", "per-node"], default="shared")
    ap.add_argument("--steady-s", type=float, default=60.0)
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-kubelet-") as tmp:
        root = Path(tmp)
        if not args.skip_startup:
            print(f"pod startup latency: {args.startup_pods} pods, {args.startup_nodes} sim nodes, 3 masters")
            results["startup"] = asyncio.run(startup(args, root))
        if not args.skip_fleet:
            print(f"fleet: {args.fleet_nodes} nodes, {args.fleet_pods} pods, {args.fleet_watch} pod watch, 3 masters")
            results["fleet"] = asyncio.run(fleet(args, root))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
