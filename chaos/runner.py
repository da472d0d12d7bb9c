"""`hacluster chaos run`: a fresh cluster behind Toxiproxy, a workload, a fault schedule, a recorded run.

Workload, nemesis and checker are separate pieces (as in maelstrom): the workload records what clients saw
(`history.jsonl`), the nemesis records what it did (`faults.jsonl`), a sampler records every master's Raft
status (`raft.jsonl`), every master's audit trail is copied to `audit/`, and the summary (`summary.json`)
and the checkers read only those records. Whatever
happens — the end of the schedule, Ctrl-C, an exception, a step that times out — every fault is undone and
every process is stopped before the run returns.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.jsonlines import JsonLinesFile
from chaos.nemesis import POWER_CUT_STORAGE, FaultLog, Nemesis, run_schedule
from chaos.network import load_network, start_network
from chaos.rollout import RolloutDriver
from chaos.scenario import Scenario
from chaos.summary import summarize
from chaos.watch_recorder import WatchRecorder, record_final
from chaos.workload import HistoryRecorder, Workload, final_reads
from hacluster.apiserver.audit import AUDIT_DIR, log_files
from hacluster.asyncwait import wait_event
from hacluster.cluster import launcher
from hacluster.config import ClusterConfig, default_config, parse_config
from hacluster.consistency.explain import write_explanation
from hacluster.consistency.history import load_history, pair_operations
from hacluster.consistency.invariants import check_run
from hacluster.consistency.linearizability import check_operations

CONVERGE_TIMEOUT_S = 20.0
STEP_TIMEOUT_S = 60.0


@dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]


def cluster_config(scenario: Scenario, masters: int, engine: str | None = None) -> ClusterConfig:
    base = default_config(masters).model_dump(mode="json")
    if engine is not None:  # `--store`: the scenario's own cluster settings may still tune the engine
        base["store"] = {**base.get("store", {}), "engine": engine}
    for section, values in scenario.cluster.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    base["name"] = f"chaos-{scenario.name}"
    return parse_config(base, f"scenario {scenario.name}: cluster")


class RaftSampler:
    """Samples every master's /debug/raft (at its real address: the observer is outside the network)."""

    def __init__(self, handle: launcher.ClusterHandle, path: Path | None, period_s: float) -> None:
        self.handle = handle
        self.path = path
        self.period_s = period_s
        self.samples: list[dict[str, Any]] = []
        self._out = JsonLinesFile(path)

    def sample_once(self) -> list[dict[str, Any]]:
        out = []
        now = time.monotonic_ns()
        for m in self.handle.cfg.masters:
            rec: dict[str, Any] = {"time": now, "master": m.id}
            try:
                d = launcher.http_json(f"{self.handle.api(m.id)}/debug/raft", self.handle.admin_token,
                                       timeout_s=min(0.3, self.period_s * 2))
                rec.update({"role": d["role"], "term": d["term"], "leader": d["leader"],
                            "commit_index": d["commit_index"], "applied_index": d["applied_index"],
                            "quorum": d["quorum"], "revision": d["revision"]})
            except Exception:
                rec.update({"role": "unreachable"})
            out.append(rec)
        return out

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await asyncio.to_thread(self.sample_once)
            self.samples += batch
            for rec in batch:
                self._out.write_line(json.dumps(rec))
            self._out.flush()
            await wait_event(stop, self.period_s)

    def close(self) -> None:
        self._out.close()


def run_scenario(scenario: Scenario, out_dir: Path, *, masters: int | None = None, seed: int | None = None,
                 progress: Callable[[str], None] | None = None, check: bool = True,
                 engine: str | None = None) -> RunResult:
    """Run one scenario from a fresh cluster; everything is stopped when this returns (or raises)."""
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    n = masters or scenario.masters
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("history.jsonl", "faults.jsonl", "raft.jsonl", "summary.json", "watch.jsonl", "watch-replay.jsonl",
                 "final-state.json"):
        (out_dir / name).unlink(missing_ok=True)
    (out_dir / "scenario.json").write_text(json.dumps({**scenario.model_dump(mode="json"), "masters": n}, indent=1))
    say = progress or (lambda s: None)
    state_dir = out_dir / "cluster"
    cfg = cluster_config(scenario, n, engine)
    # Power cuts need masters whose SIGKILL loses the unsynced writes; every other run uses real files.
    storage = POWER_CUT_STORAGE if scenario.has_power_faults else None
    say(f"starting {n} masters behind Toxiproxy" + (f" on {storage} test storage (power cuts) …" if storage else " …"))
    handle = launcher.up(cfg, state_dir, network=start_network, nodes=scenario.nodes, test_storage=storage)
    try:
        return asyncio.run(_run(scenario, handle, out_dir, say, check))
    finally:
        launcher.down(state_dir)
        copy_audit_logs(state_dir, out_dir)


def copy_audit_logs(state_dir: Path, out_dir: Path) -> None:
    """Keep every master's audit trail with the run's record (`OUT/audit/`, read by `hacluster audit --dir`):
    the cluster directory is wiped by the next run in the same place."""
    target = out_dir / AUDIT_DIR
    shutil.rmtree(target, ignore_errors=True)
    files = log_files(state_dir / AUDIT_DIR)
    if files:
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, target / path.name)


async def _run(scenario: Scenario, handle: launcher.ClusterHandle, out_dir: Path, say: Callable[[str], None],
               check: bool) -> RunResult:
    net = load_network(handle)
    endpoints = await asyncio.to_thread(net.api_endpoints, "workload")
    recorder = HistoryRecorder(out_dir / "history.jsonl")
    faults = FaultLog(out_dir / "faults.jsonl")
    nemesis = Nemesis(handle, net, seed=scenario.seed, log=faults)
    sampler = RaftSampler(handle, out_dir / "raft.jsonl", scenario.sample_period_ms / 1000)
    workload = Workload(scenario.workload, endpoints, handle.admin_token, recorder, seed=scenario.seed)
    stop = asyncio.Event()
    sampler_stop = asyncio.Event()
    sampler_task = asyncio.ensure_future(sampler.run(sampler_stop))
    watcher = WatchRecorder(await asyncio.to_thread(net.api_endpoints, "watch"), handle.admin_token,
                            out_dir / "watch.jsonl")
    watch_task = asyncio.ensure_future(watcher.run(sampler_stop))
    rollout: RolloutDriver | None = None
    if scenario.rollout is not None:
        rollout = RolloutDriver(scenario.rollout, await asyncio.to_thread(net.api_endpoints, "rollout"),
                                handle.admin_token)
        say(f"creating deployment {scenario.rollout.deployment} ({scenario.rollout.replicas} replicas) …")
        await rollout.prepare()
    t0 = time.monotonic()
    t0_ns = time.monotonic_ns()
    say(f"running {scenario.name} for {scenario.duration_s:g} s: {len(scenario.faults)} fault(s), "
        f"{scenario.workload.concurrency} clients at ≤ {scenario.workload.rate_per_s:g} ops/s")
    work = asyncio.ensure_future(workload.run(stop, scenario.duration_s))
    sched = asyncio.ensure_future(run_schedule(nemesis, scenario.faults, t0, stop))
    ticker = asyncio.ensure_future(_progress(say, workload, nemesis, t0, scenario.duration_s, stop))
    updates = asyncio.ensure_future(rollout.run(t0, stop, scenario.duration_s) if rollout is not None
                                    else asyncio.sleep(0))
    try:
        await asyncio.wait({work}, timeout=scenario.duration_s + scenario.workload.request_timeout_s + 5)
        if not work.done():
            say("workload did not finish in time: cancelling it (open operations are recorded as info)")
        elif not work.cancelled() and work.exception() is not None:
            raise work.exception()  # type: ignore[misc]  # a bug in the workload: fail the run, after the heal
    finally:
        stop.set()
        for task in (work, sched, ticker, updates):
            task.cancel()
        await asyncio.gather(work, sched, ticker, updates, return_exceptions=True)
        await asyncio.to_thread(nemesis.heal_all)
    t_end_ns = time.monotonic_ns()
    say("healed; waiting for the masters to converge …")
    converged = await asyncio.to_thread(_wait_converged, handle, CONVERGE_TIMEOUT_S)
    finals = await final_reads(handle.apis(), handle.admin_token, scenario.workload.keys, recorder,
                               first_process=10_000_000)
    sampler_stop.set()
    await sampler_task
    sampler.close()
    await watch_task
    watch_summary = await record_final(watcher, handle.apis(), handle.admin_token, out_dir)
    recorder.close()
    summary = summarize(recorder.events, faults.records, sampler.samples, finals, t0_ns, t_end_ns)
    summary.update({"storage": launcher.recorded_test_storage(handle.state_dir) or "disk",
                    "raft_fsync": handle.cfg.raft.fsync, "store_engine": handle.cfg.store.engine})
    summary.update({"scenario": scenario.name, "masters": len(handle.cfg.masters), "seed": scenario.seed,
                    "converged_after_heal": converged, "workload_lists": dict(workload.stats.lists),
                    "watch": watch_summary})
    if rollout is not None:
        say("checking the rollouts …")
        summary["rollout"] = await rollout.finish(handle.apis())
    if check:
        summary["checker"] = _check(out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return RunResult(out_dir, summary)


def _check(out_dir: Path) -> dict[str, Any]:
    """Linearizability of the recorded history, with an explanation when it fails, and the invariants."""
    path = out_dir / "history.jsonl"
    events = load_history(path)  # read once: for the check and, when it fails, for the explanation
    result = check_operations(pair_operations(events, source=str(path)), time_limit_s=60.0)
    verdict: dict[str, Any] = {"linearizable": result.verdict}
    if result.verdict == "invalid":
        write_explanation(result, events, out_dir / "check")
        verdict["explanation"] = str(out_dir / "check" / "explanation.txt")
    verdict["invariants"] = check_run(out_dir)
    verdict["ok"] = result.verdict == "valid" and verdict["invariants"]["verdict"] == "ok"
    return verdict


def _wait_converged(handle: launcher.ClusterHandle, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = launcher.cluster_status(handle, timeout_s=0.5)
        fps = {r.get("fingerprint") for r in rows}
        if len(fps) == 1 and None not in fps and any(r["role"] == "leader" for r in rows):
            return True
        time.sleep(0.1)
    return False


async def _progress(say: Callable[[str], None], workload: Workload, nemesis: Nemesis, t0: float,
                    duration_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await wait_event(stop, 1.0)
        c = workload.stats.completed
        active = ", ".join(f"{f.spec.kind}→{'/'.join(f.targets)}" for f in nemesis.active.values()) or "none"
        say(f"t={time.monotonic() - t0:5.1f}/{duration_s:g}s  ok {c['ok']}  fail {c['fail']}  info {c['info']}  "
            f"faults: {active}")
