"""How much an observer delays the Raft tick thread (heartbeats): 3 masters, each in its own process (one
RaftStore: its tick thread and an event loop sharing the GIL, as in `hacluster master`), a store of
--objects pods, the leader applying a write every --write-ms, and on every master the read `/debug/raft`
makes (revision, fingerprint, fencing term) every --poll-ms, as the chaos `RaftSampler` polls it.

Measured on each master's tick thread: the gaps between consecutive ticks (a heartbeat can go out only on
a tick, so a gap is a heartbeat delay), and how long the observer's read held the store lock. Compare runs
before/after a change by pointing PYTHONPATH at the other checkout (run with the project's venv python).

    scripts/bench-observer-stall [--objects 20000] [--seconds 10] [--out FILE.json]

Prints one line per master and writes the figures as JSON (default observer-stall.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

from hacluster.cluster import launcher
from hacluster.config import ClusterConfig, MasterConfig
from hacluster.model import commands as C
from hacluster.model.errors import Timeout, Unavailable
from hacluster.raft.replicated_store import RaftStore

T0 = "2026-01-01T00:00:00Z"
LOAD_BATCH = 200
SETUP_TIMEOUT_S = 120.0


def _pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "default", "uid": f"uid-{i}", "creationTimestamp": T0,
                         "labels": {"app": "bench", "shard": str(i % 16)}},
            "spec": {"schedulerName": "none", "containers": [{"name": "c", "image": "registry.local/x:1",
                                                              "resources": {"requests": {"cpu": "10m"}}}]}}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _master(cfg: ClusterConfig, mid: str, args: argparse.Namespace, out: Any) -> None:
    store = RaftStore(cfg, mid, data_dir=None)
    store.start(asyncio.get_running_loop())
    assert store._sync is not None
    ticks: list[float] = []
    store._sync.addOnTickCallback(lambda: ticks.append(time.perf_counter()))
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while store.view().leader is None or not store.view().quorum:
        if time.monotonic() > deadline:
            raise SystemExit(f"{mid}: no leader")
        await asyncio.sleep(0.02)
    leading = store.view().role == "leader"
    target = args.objects + 4  # the bootstrap namespaces, then the pods
    if leading:
        view = store.view()
        await store.propose(C.LeaderElected(leader_id=mid, term=view.term, time=T0, fence_term=view.term),
                            timeout_s=10)
        for start in range(0, args.objects, LOAD_BATCH):
            batch = [C.Create(resource="pods", namespace="default", obj=_pod(i))
                     for i in range(start, min(args.objects, start + LOAD_BATCH))]
            while True:  # elections can happen while loading on a busy machine: retry (an AlreadyExists is fine)
                try:
                    await store.propose(C.Batch(commands=batch), timeout_s=10)
                    break
                except (Unavailable, Timeout):
                    if time.monotonic() > deadline or store.view().role != "leader":
                        raise SystemExit(f"{mid}: lost the lead while loading; run again") from None
                    await asyncio.sleep(0.1)
    while store.read(lambda s: s.revision) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"{mid}: store not loaded")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let every master finish loading before measuring
    ticks.clear()
    term_at_start = store.view().term
    holds: list[float] = []
    stop = time.monotonic() + args.seconds

    async def observe() -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            store.read(lambda s: (s.revision, s.fingerprint(), s.term_seen, s.fenced_refusals))
            holds.append(time.perf_counter() - t)
            await asyncio.sleep(args.poll_ms / 1000)

    async def write() -> None:
        i = 0
        while leading and time.monotonic() < stop:
            obj = _pod(i % args.objects)
            obj["metadata"]["annotations"] = {"bench": str(i)}
            try:
                await store.propose(C.Replace(resource="pods", namespace="default", name=obj["metadata"]["name"],
                                              obj=obj), timeout_s=2)
            except Exception:  # counted by the gaps it causes; the bench goes on
                pass
            i += 1
            await asyncio.sleep(args.write_ms / 1000)

    await asyncio.gather(observe(), write())
    window = list(ticks)
    gaps_ms = [(b - a) * 1000 for a, b in zip(window, window[1:], strict=False)]
    heartbeat_ms = cfg.raft.heartbeat_ms
    out.put({"master": mid, "role": "leader" if leading else "follower", "ticks": len(window),
             "tick_gap_ms_p50": round(statistics.median(gaps_ms), 2) if gaps_ms else None,
             "tick_gap_ms_p99": round(_percentile(gaps_ms, 0.99), 2),
             "tick_gap_ms_max": round(max(gaps_ms), 2) if gaps_ms else None,
             "gaps_over_heartbeat": sum(1 for g in gaps_ms if g > heartbeat_ms),
             "observer_read_ms_p50": round(statistics.median(holds) * 1000, 3) if holds else None,
             "observer_read_ms_max": round(max(holds) * 1000, 3) if holds else None,
             "elections_while_measuring": store.view().term - term_at_start, "term": store.view().term})
    await asyncio.sleep(1.0)  # keep serving the others until they are done too
    store.stop()


def _run(cfg_json: str, mid: str, args: argparse.Namespace, out: Any) -> None:
    cfg = ClusterConfig.model_validate_json(cfg_json)
    asyncio.run(_master(cfg, mid, args, out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=100.0)
    ap.add_argument("--write-ms", type=float, default=20.0)
    ap.add_argument("--out", default="observer-stall.json")
    args = ap.parse_args()
    taken: set[int] = set()
    masters = []
    for i in range(3):
        api, raft = launcher.free_port(taken), launcher.free_port(taken)
        taken |= {api, raft}
        masters.append(MasterConfig(id=f"m{i + 1}", api_port=api, raft_port=raft))
    cfg = ClusterConfig(masters=tuple(masters))
    out: Any = mp.Queue()
    procs = [mp.Process(target=_run, args=(cfg.model_dump_json(), m.id, args, out)) for m in masters]
    for p in procs:
        p.start()
    rows = []
    deadline = time.monotonic() + SETUP_TIMEOUT_S + args.seconds + 30
    while len(rows) < len(procs) and time.monotonic() < deadline:
        try:
            rows.append(out.get(timeout=1.0))
        except Exception:
            if not any(p.is_alive() for p in procs):
                break
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    rows.sort(key=lambda r: r["master"])
    for r in rows:
        print(f"{r['master']} {r['role']:8} tick gap p50 {r['tick_gap_ms_p50']} ms, p99 {r['tick_gap_ms_p99']} ms, "
              f"max {r['tick_gap_ms_max']} ms, {r['gaps_over_heartbeat']} gaps > heartbeat; observer read "
              f"p50 {r['observer_read_ms_p50']} ms, max {r['observer_read_ms_max']} ms; "
              f"{r['elections_while_measuring']} elections while measuring (term {r['term']})")
    result = {"objects": args.objects, "seconds": args.seconds, "poll_ms": args.poll_ms, "write_ms": args.write_ms,
              "heartbeat_ms": cfg.raft.heartbeat_ms, "tick_ms": cfg.raft.tick_ms, "masters": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if len(rows) == len(procs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
