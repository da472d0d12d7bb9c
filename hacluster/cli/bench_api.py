"""`hacluster bench api`: API throughput, latency and leader failover of a fresh local 3-master cluster.

Prints figures; asserts nothing. Load comes from this process (asyncio + aiohttp), on the same machine as
the cluster, so the figures include the client's own CPU use — as the etcd baselines in the README do.
With `--out FILE` the same figures are written as JSON: `fsync` (the masters' `raft.fsync`, set by
`--fsync/--no-fsync`), `pre_vote`, `check_quorum`, `elections_during_load`, `terms`, `failover`
(`trials`, `median_s`, …), `levels` (`operation`, `clients`, `target`, `ops_per_s`, `p50_ms`, `p99_ms`,
`answers`, and `cpu_ms_per_op`: per master its role and the CPU ms per successful operation of its Raft
thread, its event loop's thread, the rest and in total), `cpu_per_master` and `client_cpu_s` (CPU seconds
during the load levels), `cpu_ms_per_create_16` (stored creates at 16 clients spread: the leader's and the
followers' CPU ms per create by thread), `fsync_latency` (count and the bucket bounds of p50/p90/p99 from
the masters' histograms), `scheduled_vs_stored` (scheduled over stored creates/s per client count),
`loadavg_at_start` (the machine's load average before the cluster started: figures from a loaded machine
are not comparable) and `raft_gaps` (per master, from /debug/raft: how often the leader's appends arrived
late and the Raft thread was starved during the load levels — what an election under load comes from).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from rich.console import Console
from rich.table import Table

from hacluster.cluster import etcd_members, launcher
from hacluster.config import ClusterConfig, default_config, with_engine
from hacluster.raft.replicated_store import RAFT_THREAD_NAME

PAD = "x" * 700  # makes a pod ~1 KB of JSON


NO_SCHEDULER = "bench-no-scheduler"  # a scheduler name nobody serves: the pod is only stored


def _pod(name: str, scheduler: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx:1.25"}]}
    if scheduler:
        spec["schedulerName"] = scheduler
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": {"pad": PAD}}, "spec": spec}


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


async def _load(apis: list[str], token: str, clients: int, seconds: float, kind: str, tag: str,
                scheduler: str | None = None) -> dict[str, Any]:
    enc = msgspec.json.Encoder()
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lat: list[float] = []
    codes: Counter[str] = Counter()
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(headers=hdr, connector=aiohttp.TCPConnector(limit=0)) as s:
        async def worker(w: int) -> None:
            i = 0
            base = apis[w % len(apis)]
            while time.monotonic() < stop:
                i += 1
                t0 = time.monotonic()
                try:
                    if kind == "create":
                        req = s.post(f"{base}/api/v1/namespaces/default/pods",
                                     data=enc.encode(_pod(f"{tag}-{w}-{i}", scheduler)))
                    else:
                        req = s.get(f"{base}/api/v1/namespaces/default/pods/bench-get-{w % 16}")
                    async with req as r:
                        await r.read()
                        codes[str(r.status)] += 1
                        if r.status in (200, 201):
                            lat.append(time.monotonic() - t0)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    codes[type(exc).__name__] += 1
        await asyncio.gather(*(worker(w) for w in range(clients)))
    return {"ok": len(lat), "rate": len(lat) / seconds, "p50": _pct(lat, 0.5), "p99": _pct(lat, 0.99),
            "codes": dict(codes)}


async def _first_ack_after(apis: list[str], token: str, tag: str, timeout_s: float = 15.0) -> float:
    enc = msgspec.json.Encoder()
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    t0 = time.monotonic()
    i = 0
    async with aiohttp.ClientSession(headers=hdr) as s:
        while time.monotonic() - t0 < timeout_s:
            for base in apis:
                i += 1
                try:
                    async with s.post(f"{base}/api/v1/namespaces/default/pods", data=enc.encode(_pod(f"{tag}-{i}")),
                                      timeout=aiohttp.ClientTimeout(total=3)) as r:
                        await r.read()
                        if r.status == 201:
                            return time.monotonic() - t0
                except (TimeoutError, aiohttp.ClientError):
                    pass
            await asyncio.sleep(0.01)  # pacing of the probe, not synchronisation
    return float("nan")


def _cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc (None if it is gone)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_by_master(handle: launcher.ClusterHandle) -> dict[str, float | None]:
    cpu = {m.id: _cpu_s(handle.pid(m.id)) for m in handle.cfg.masters}
    if etcd_members.runs_members(handle.cfg):  # on etcd the members' CPU is the store's share
        cpu |= {etcd_members.member_name(m.id): _cpu_s(launcher.read_pid(handle.state_dir,
                                                                         etcd_members.member_name(m.id)))
                for m in handle.cfg.masters}
    return cpu


THREAD_ROLES = ("raft", "loop", "other")
"""A master's threads: `raft` (pysyncobj's tick thread, named RAFT_THREAD_NAME), `loop` (the main thread,
which runs the event loop: HTTP, decoding, validation, encoding) and `other` (the rest, threads that
ended included: the process's total minus the two)."""


def thread_cpu_s(pid: int | None) -> dict[str, float] | None:
    """CPU seconds (user + system) a master has used per thread role, from /proc (None if it is gone)."""
    total = _cpu_s(pid)
    if pid is None or total is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    out = {"raft": 0.0, "loop": 0.0}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile: its time is in `other`
        name = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if task.name == str(pid):
            out["loop"] += used
        elif name == RAFT_THREAD_NAME:
            out["raft"] += used
    out["other"] = max(0.0, total - out["raft"] - out["loop"])
    return out


def threads_by_master(handle: launcher.ClusterHandle) -> dict[str, dict[str, float] | None]:
    return {m.id: thread_cpu_s(handle.pid(m.id)) for m in handle.cfg.masters}


def cpu_ms_per_op(before: dict[str, dict[str, float] | None], after: dict[str, dict[str, float] | None],
                  ops: int, roles: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per master: its Raft role during the level and the CPU milliseconds each thread role (and the whole
    process) spent per successful operation; a master gone or restarted during the level is left out."""
    out: dict[str, dict[str, Any]] = {}
    if ops <= 0:
        return out
    for mid, a in after.items():
        b = before.get(mid)
        if a is None or b is None or a["raft"] < b["raft"] or a["loop"] < b["loop"]:
            continue  # gone, or restarted (its counters started again)
        row: dict[str, Any] = {"role": roles.get(mid, "?")}
        for k in THREAD_ROLES:  # `other` is a difference of clock-tick counts: it can dip by a tick
            row[k] = round(max(0.0, a[k] - b[k]) * 1000 / ops, 3)
        row["total"] = round(sum(row[k] for k in THREAD_ROLES), 3)
        out[mid] = row
    return out


def _raft_gaps(handle: launcher.ClusterHandle) -> dict[str, dict[str, Any]]:
    """Each master's election counters from /debug/raft (empty for a master that does not answer)."""
    out: dict[str, dict[str, Any]] = {}
    for m in handle.cfg.masters:
        try:
            out[m.id] = dict(launcher.http_json(f"{handle.api(m.id)}/debug/raft", handle.admin_token).get(
                "elections") or {})
        except (OSError, ValueError):
            out[m.id] = {}
    return out


def _gap_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed during the load levels: counters differenced, gap buckets differenced per threshold."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict):
            out[key] = {k: v - (old or {}).get(k, 0) for k, v in value.items()}
        elif isinstance(value, int) and isinstance(old, int):
            out[key] = value - old
    return out


def _kill_leader(handle: launcher.ClusterHandle, trial: int) -> tuple[str, list[str]]:
    """SIGKILL the leader (pysyncobj: the Raft leader master; etcd: the etcd leader member); what was killed
    and the API servers to write through meanwhile."""
    if handle.cfg.store.engine == "etcd":
        rows = [r for r in etcd_members.member_rows(handle) if r["role"] == "leader"]
        if not rows:
            etcd_members.wait_members(handle, 30)
            rows = [r for r in etcd_members.member_rows(handle) if r["role"] == "leader"]
        os.kill(int(rows[0]["pid"]), signal.SIGKILL)
        return f"etcd member {rows[0]['id']}", list(handle.apis().values())
    leader = launcher.leader_of(handle)
    if leader is None:
        launcher.wait_ready(handle, 30)
        leader = launcher.leader_of(handle)
    assert leader is not None
    os.kill(int(leader["pid"]), signal.SIGKILL)
    return f"master {leader['id']}", [a for mid, a in handle.apis().items() if mid != leader["id"]]


def _restart(handle: launcher.ClusterHandle, killed: str) -> None:
    kind, mid = killed.rsplit(" ", 1)
    if kind == "etcd member":
        etcd_members.start_member(handle, mid)
        etcd_members.wait_members(handle, 30)
    else:
        launcher.start_master(handle, mid)
    launcher.wait_ready(handle, 30)


def run(state_dir: Path, *, seconds: float = 8.0, trials: int = 5, fsync: bool = True,
        out: Path | None = None, engine: str = "pysyncobj") -> int:
    console = Console()
    durability = ("etcd fsyncs its WAL" if engine == "etcd"
                  else f"journal fsync {'on' if fsync else 'off (raft.fsync: false)'}")
    console.print(f"[bold]hacluster bench api[/]: fresh 3-master cluster on {engine} in {state_dir}, "
                  f"{os.cpu_count()} CPUs, {durability}")
    cfg = with_engine(default_config(3), engine)
    cfg = cfg.model_copy(update={"raft": cfg.raft.model_copy(update={"fsync": fsync})})
    load_at_start = os.getloadavg()
    console.print(f"load average at the start: {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}"
                  " (the figures below are only comparable with runs under the same load)")
    handle = launcher.up(cfg, state_dir)
    results: dict[str, Any] = _settings(cfg) | {"cpus": os.cpu_count(), "seconds_per_level": seconds,
                                                "store_engine": engine,
                                                "loadavg_at_start": [round(x, 2) for x in load_at_start]}
    try:
        token = handle.admin_token
        apis = list(handle.apis().values())
        # Failover first, on a fresh cluster (as etcd's figure was measured), then the load levels.
        times = []
        for trial in range(trials):
            killed, survivors = _kill_leader(handle, trial)
            dt = asyncio.run(_first_ack_after(survivors, token, f"fo{trial}"))
            times.append(dt)
            console.print(f"  failover trial {trial + 1}: leader ({killed}) SIGKILLed -> first acknowledged "
                          f"write through a survivor after {dt:.3f} s")
            _restart(handle, killed)
        ok = [t for t in times if t == t]
        results["failover"] = {"trials": [t if t == t else None for t in times],
                               "median_s": statistics.median(ok) if ok else None,
                               "min_s": min(ok) if ok else None, "max_s": max(ok) if ok else None}
        if ok:
            console.print(f"[bold]leader failover[/] ({len(ok)} trials): min {min(ok):.3f} s, median "
                          f"{statistics.median(ok):.3f} s, max {max(ok):.3f} s")
        table = Table(title="pod creates (~1 KB) and linearizable gets")
        for col in ("operation", "clients", "target", "ops/s", "p50 ms", "p99 ms", "answers"):
            table.add_column(col)
        # "stored": the API and Raft path alone (a scheduler name nobody serves); "scheduled": default pods,
        # which the leader's scheduler also handles — with no nodes, each gets its Unschedulable status and
        # a FailedScheduling event, as in Kubernetes: about 3.5 store changes per create.
        launcher.wait_ready(handle, 30)
        terms_before = max((r["term"] or 0) for r in launcher.cluster_status(handle))
        levels: list[dict[str, Any]] = []
        gaps_before = _raft_gaps(handle)
        cpu_before, client_before, wall_before = _cpu_by_master(handle), _own_cpu_s(), time.monotonic()
        for what, scheduler in (("create pod, stored", NO_SCHEDULER), ("create pod, scheduled", None)):
            for clients in (1, 16, 64):
                for target in ("spread", "leader"):
                    if scheduler is None and target == "leader":
                        continue
                    leader = launcher.leader_of(handle)
                    targets = apis if target == "spread" else [leader["api"]] if leader else apis
                    tag = f"b{clients}{target[0]}{'s' if scheduler else 'd'}"
                    roles = _roles(handle)
                    threads_before = threads_by_master(handle)
                    r = asyncio.run(_load(targets, token, clients, seconds, "create", tag, scheduler))
                    r["cpu"] = cpu_ms_per_op(threads_before, threads_by_master(handle), r["ok"], roles)
                    _add_level(table, levels, what, clients, target, r)
        asyncio.run(_seed_gets(apis[0], token))
        roles, threads_before = _roles(handle), threads_by_master(handle)
        r = asyncio.run(_load(apis, token, 16, seconds, "get", "g"))
        r["cpu"] = cpu_ms_per_op(threads_before, threads_by_master(handle), r["ok"], roles)
        _add_level(table, levels, "get pod (linearizable)", 16, "spread", r)
        cpu_after, client_after, wall = _cpu_by_master(handle), _own_cpu_s(), time.monotonic() - wall_before
        gaps_after = _raft_gaps(handle)
        console.print(table)
        console.print(_cpu_table(levels))
        ratios = scheduled_vs_stored(levels)
        if ratios:
            console.print("scheduled creates / stored creates (spread): " + ", ".join(
                f"{c} clients {x:.2f}" for c, x in ratios.items()))
        terms_after = max((r["term"] or 0) for r in launcher.cluster_status(handle))
        console.print(f"elections during the load levels: {terms_after - terms_before} "
                      f"(term {terms_before} -> {terms_after})")
        fsync_figures = None
        if engine != "etcd":  # etcd fsyncs its own WAL; the masters keep no journal
            fsync_line, fsync_figures = _fsync_summary(handle, fsync)
            console.print(fsync_line)
        cpu = {mid: _used(cpu_before[mid], cpu_after[mid]) for mid in cpu_after}
        console.print(f"CPU during the load levels ({wall:.0f} s): " + ", ".join(
            f"{mid} {c:.1f} s ({100 * c / wall:.0f} %)" if c is not None else f"{mid} restarted"
            for mid, c in cpu.items()) + f", client {client_after - client_before:.1f} s")
        gaps = {mid: _gap_delta(gaps_before.get(mid, {}), gaps_after.get(mid, {})) for mid in gaps_after}
        console.print("Raft timing during the load levels (leader's appends arriving > 300 ms apart / Raft "
                      "ticks > 100 ms apart): " + ", ".join(
                          f"{mid} {g.get('leader_contact_gaps_over_ms', {}).get('300', '?')} / "
                          f"{g.get('tick_gaps_over_ms', {}).get('100', '?')}" for mid, g in gaps.items()))
        results.update({
            "elections_during_load": terms_after - terms_before, "terms": [terms_before, terms_after],
            "levels": levels, "cpu_per_master": cpu, "client_cpu_s": client_after - client_before,
            "load_wall_s": wall, "raft_gaps": gaps, "fsync_latency": fsync_figures,
            "scheduled_vs_stored": {str(c): round(x, 3) for c, x in ratios.items()},
            "cpu_ms_per_create_16": _per_create_summary(levels, 16),
        })
        if out is not None:
            out.write_text(json.dumps(results, indent=2) + "\n")
            console.print(f"results written to {out}")
        return 0
    finally:
        launcher.down(state_dir)


FSYNC_HISTOGRAM = "hacluster_raft_journal_fsync_duration_seconds"


def _fsync_summary(handle: launcher.ClusterHandle, fsync: bool) -> tuple[str, dict[str, Any] | None]:
    """One line, and the same as JSON: the journal's fsync mode and, summed over the masters' /metrics
    histograms, how many fsyncs ran and the bucket bounds of their median and 99th percentile."""
    if not fsync:
        return "journal fsync: off (raft.fsync: false): entries were acknowledged without fsync", None
    buckets: dict[float, float] = {}
    for api in handle.apis().values():
        req = urllib.request.Request(f"{api}/metrics", headers={"Authorization": f"Bearer {handle.admin_token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(FSYNC_HISTOGRAM + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                upper = float("inf") if le == "+Inf" else float(le)
                buckets[upper] = buckets.get(upper, 0.0) + float(line.rsplit(" ", 1)[1])
    figures = fsync_percentiles(buckets)
    if figures is None:
        return "journal fsync: on; no fsync recorded", None

    def bound(key: str) -> str:
        b = figures[key]
        return "> 8 s" if b is None else f"<= {b:g} ms"
    return (f"journal fsync: on; {figures['count']:.0f} fsyncs on 3 masters, p50 {bound('p50_le_ms')}, "
            f"p99 {bound('p99_le_ms')}"), figures


def fsync_percentiles(buckets: dict[float, float]) -> dict[str, Any] | None:
    """From a cumulative Prometheus histogram (upper bound in seconds -> count): how many fsyncs, and the
    upper bounds (ms) of the buckets holding the median, the 90th and the 99th percentile (None: past the
    last finite bucket)."""
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None

    def bound(q: float) -> float | None:
        b = next(b for b in sorted(buckets) if buckets[b] >= q * total)
        return None if b == float("inf") else round(b * 1000, 3)
    return {"count": int(total), "p50_le_ms": bound(0.5), "p90_le_ms": bound(0.9), "p99_le_ms": bound(0.99)}


def _roles(handle: launcher.ClusterHandle) -> dict[str, str]:
    return {r["id"]: r["role"] for r in launcher.cluster_status(handle)}


def scheduled_vs_stored(levels: list[dict[str, Any]]) -> dict[int, float]:
    """Per client count: scheduled creates/s over stored creates/s, both spread over the masters."""
    rate = {(lv["operation"], lv["clients"]): lv["ops_per_s"] for lv in levels if lv["target"] == "spread"}
    out: dict[int, float] = {}
    for (op, clients), stored in rate.items():
        scheduled = rate.get(("create pod, scheduled", clients))
        if op == "create pod, stored" and scheduled is not None and stored:
            out[clients] = scheduled / stored
    return out


def _per_create_summary(levels: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """CPU ms per stored create at `clients` clients spread, by role: the leader's and the followers' mean."""
    for lv in levels:
        if lv["operation"] == "create pod, stored" and lv["clients"] == clients and lv["target"] == "spread":
            out: dict[str, Any] = {}
            for role in ("leader", "follower"):
                rows = [row for row in lv.get("cpu_ms_per_op", {}).values() if row.get("role") == role]
                if rows:
                    out[role] = {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in (*THREAD_ROLES, "total")}
            return out
    return {}


def _cpu_table(levels: list[dict[str, Any]]) -> Table:
    """CPU ms per operation of the leader's and the followers' (mean) Raft and event-loop threads."""
    table = Table(title="CPU ms per operation (followers: their mean)")
    for col in ("operation", "clients", "target", "leader raft", "leader loop", "follower raft", "follower loop"):
        table.add_column(col)

    def mean(rows: list[dict[str, Any]], key: str) -> str:
        return f"{sum(r[key] for r in rows) / len(rows):.2f}" if rows else "–"
    for lv in levels:
        rows = list(lv.get("cpu_ms_per_op", {}).values())
        lead = [r for r in rows if r.get("role") == "leader"]
        rest = [r for r in rows if r.get("role") != "leader"]
        table.add_row(lv["operation"], str(lv["clients"]), lv["target"], mean(lead, "raft"), mean(lead, "loop"),
                      mean(rest, "raft"), mean(rest, "loop"))
    return table


def _settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Which Raft modes the figures are for."""
    return {"fsync": cfg.raft.fsync, "pre_vote": cfg.raft.pre_vote,
            "check_quorum": cfg.raft.check_quorum}


def _used(before: float | None, after: float | None) -> float | None:
    """CPU seconds between two readings; None if the process was gone or replaced (a restart resets it)."""
    if before is None or after is None or after < before:
        return None
    return after - before


def _finite(x: float) -> float | None:
    return x if x == x else None  # NaN (no successful answer at all) is not JSON


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _add_level(table: Table, levels: list[dict[str, Any]], operation: str, clients: int, target: str,
               r: dict[str, Any]) -> None:
    table.add_row(operation, str(clients), target, f"{r['rate']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
                  _codes(r["codes"]))
    level = {"operation": operation, "clients": clients, "target": target, "ops_per_s": r["rate"],
             "p50_ms": _finite(r["p50"]), "p99_ms": _finite(r["p99"]), "answers": dict(r["codes"])}
    if "cpu" in r:
        level["cpu_ms_per_op"] = r["cpu"]
    levels.append(level)


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(codes.items()))


async def _seed_gets(api: str, token: str) -> None:
    enc = msgspec.json.Encoder()
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=hdr) as s:
        for i in range(16):
            async with s.post(f"{api}/api/v1/namespaces/default/pods", data=enc.encode(_pod(f"bench-get-{i}"))) as r:
                await r.read()
