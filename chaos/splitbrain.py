"""The split-brain experiment: the same partition against Raft and against a deliberately unsafe engine.

Called by `hacluster experiment split-brain`; the report is written by `chaos.splitbrain_report`. For each
engine — pysyncobj's Raft, and `unsafe-async-primary` (primary-backup, asynchronous replication, timeout
failover; `hacluster.unsafe`) — one chaos run (`chaos.runner.run_scenario`) from a fresh cluster behind
Toxiproxy, with the same seed and the same workload (the chaos workload: clients spread over every master,
so on both sides of the cut): after a lead-in the leader/primary is cut off with a minority (N = 2: a 1/1
split) for 10 s; the workload ends as the cut heals, so what each side acknowledged last is still what the
final reads must find. After the heal the runner waits for the copies to converge, reads every key back
from every master and runs the linearizability checker. Everything here reads the run's records only.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.quorum import WORKLOAD
from chaos.runner import run_scenario
from chaos.scenario import Scenario
from chaos.summary import MUTATIONS, lost_acknowledged_writes, paired_ops
from hacluster.consistency.explain import format_violation
from hacluster.consistency.history import Event, load_history, pair_operations
from hacluster.consistency.linearizability import check_operations

RAFT = "pysyncobj"
UNSAFE = "unsafe-async-primary"
ENGINES = (RAFT, UNSAFE)
ENGINE_LABEL = {RAFT: "Raft (pysyncobj)", UNSAFE: "unsafe-async-primary"}
MASTERS_CHOICES = (2, 3, 5)
FAULT_S = 10.0
# The quorum experiment's workload (rate, clients, keys), with every client staying on its master — on both
# sides of the cut — and fewer deletes: a delete that is lost leaves no trace when the other side also ends
# with the key absent, and after a delete every write and cas of the key fails until it is created again.
SPLIT_WORKLOAD = {**WORKLOAD, "stay_on_master": True,
                  "mix": {"create": 1.0, "write": 4.0, "cas": 2.0, "delete": 0.5, "read": 2.0}}


@dataclass(frozen=True)
class Timing:
    """Seconds of workload before the cut, and the cut itself (the workload ends when it heals)."""

    before_s: float
    fault_s: float


QUICK_TIMING = Timing(before_s=2.0, fault_s=FAULT_S)
FULL_TIMING = Timing(before_s=5.0, fault_s=FAULT_S)


def engine_cluster(engine: str) -> dict[str, Any]:
    """The cluster settings of a run on `engine` (the unsafe one must be told that it loses writes)."""
    if engine == RAFT:
        return {}
    return {"store": {"engine": engine, "unsafe_async_primary": {"loses_acknowledged_writes": True}}}


def scenario(engine: str, masters: int, seed: int, timing: Timing) -> Scenario:
    return Scenario.model_validate({
        "name": f"split-brain-{engine}-n{masters}", "masters": masters, "seed": seed,
        "duration_s": timing.before_s + timing.fault_s,
        # clients stay with their master: on both sides of the cut for its whole length
        "workload": SPLIT_WORKLOAD, "sample_period_ms": 100,
        # "split" with target leader: the leader and ⌊(N−1)/2⌋−1 others are cut from the rest (N = 2: 1/1).
        "faults": [{"at_s": timing.before_s, "duration_s": timing.fault_s, "kind": "split", "target": "leader"}],
        "cluster": engine_cluster(engine),
    })


# ------------------------------------------------------------------------------ leaders at once (pure)
def leaders_at_once(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """How many masters led at once, from the sampled status (`raft.jsonl`).

    A master counts as an *acknowledging* leader at a sample when it reports role leader and its commit
    index rose since its previous sample — it was committing (Raft) or applying its own writes (the unsafe
    primary). A deposed Raft leader that still believes it leads but commits nothing is not a second leader;
    the raw count by role is kept beside (`max_by_role`). `spans` are the [start, end) sample times (ns)
    during which two or more acknowledged writes at once."""
    by_time: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        by_time[s["time"]].append(s)
    times = sorted(by_time)
    last_commit: dict[str, int] = {}
    max_ack = max_role = 0
    two_s = 0.0
    spans: list[list[int]] = []
    for i, t in enumerate(times):
        ack = role = 0
        for s in by_time[t]:
            commit = s.get("commit_index")
            if commit is None:
                continue
            rose = s["master"] in last_commit and commit > last_commit[s["master"]]
            last_commit[s["master"]] = commit
            if s.get("role") == "leader":
                role += 1
                ack += 1 if rose else 0
        max_ack, max_role = max(max_ack, ack), max(max_role, role)
        if ack >= 2:
            end = times[i + 1] if i + 1 < len(times) else t
            two_s += (end - t) / 1e9
            if spans and spans[-1][1] == t:
                spans[-1][1] = end
            else:
                spans.append([t, end])
    return {"max_acknowledging": max_ack, "max_by_role": max_role, "two_leaders_s": round(two_s, 2),
            "spans": spans}


# ------------------------------------------------------------------------------ sides (pure)
def writes_by_side(ops: Sequence[dict[str, Any]], minority: Sequence[str], start_ns: int,
                   end_ns: int) -> dict[str, dict[str, Any]]:
    """Mutations invoked during the cut, by the side of the master the client sent them to: attempted,
    acknowledged (ok), and the share answered (ok or refused by the state itself, as `availability`)."""
    out: dict[str, dict[str, Any]] = {side: {"attempted": 0, "acknowledged": 0, "answered": 0}
                                      for side in ("minority", "majority")}
    for o in ops:
        if o["f"] not in MUTATIONS or not start_ns <= o["start"] < end_ns:
            continue
        side = out["minority" if o["node"] in minority else "majority"]
        side["attempted"] += 1
        side["acknowledged"] += 1 if o["type"] == "ok" else 0
        side["answered"] += 1 if o["answered"] else 0
    for side in out.values():
        side["availability"] = round(side["answered"] / side["attempted"], 3) if side["attempted"] else None
    return out


def final_values(events: Iterable[Event]) -> dict[str, dict[str, Any]]:
    """{master: {key: value}} from the final verification reads recorded in the history after the heal."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for ev in events:
        if ev.extra.get("final") and ev.type == "ok" and ev.f == "read":
            out[str(ev.extra.get("node"))][ev.key] = ev.value
    return dict(out)


def first_violation(history: Path) -> str | None:
    """The checker's explanation of the earliest linearizability violation of the run, or None."""
    events = load_history(history)
    result = check_operations(pair_operations(events, source=str(history)), time_limit_s=60.0)
    violations = sorted(result.violations, key=lambda v: v.prefix_end_time_ns)
    return format_violation(violations[0], result.time_origin_ns) if violations else None


# ------------------------------------------------------------------------------ one run, the experiment
def run_engine(engine: str, masters: int, seed: int, timing: Timing, out: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    run_dir = out / "runs" / f"{engine}-n{masters}"
    say(f"{ENGINE_LABEL[engine]}: {masters} masters, leader cut off with a minority for {timing.fault_s:g} s …")
    result = run_scenario(scenario(engine, masters, seed, timing), run_dir, check=True)
    s = result.summary
    faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines() if line.strip()]
    start = next(f for f in faults if f["event"] == "start")
    end = next((f for f in faults if f["event"] == "end"), None)
    minority = [m for m in start["targets"] if m != "|"]
    samples = _samples(run_dir)
    majority = sorted({r["master"] for r in samples} - set(minority))
    # the summary's pairing of invokes and completions: one rule for its figures and these
    events = load_history(run_dir / "history.jsonl")
    ops = paired_ops(events)
    # every lost write, by the summary's rule (its summary.json keeps the first 20)
    lost = lost_acknowledged_writes(events, final_values(events))
    for w in lost:  # which master acknowledged the lost mutation (its side of the cut)
        w["acknowledged_by"] = next((o["node"] for o in ops if o["key"] == w["key"]
                                     and o["start"] == w["invoke_time_ns"]), None)
    end_ns = end["time"] if end else max((o["end"] or o["start"]) for o in ops)
    sides = writes_by_side(ops, minority, start["time"], end_ns)
    leaders = leaders_at_once(samples)
    checker = s.get("checker") or {}
    row = {
        "engine": engine, "masters": masters, "seed": seed, "dir": str(run_dir.relative_to(out)),
        "max_leaders_at_once": leaders["max_acknowledging"],
        "max_leaders_at_once_by_role": leaders["max_by_role"],
        "two_leaders_s": leaders["two_leaders_s"],
        "two_leaders_spans_s": [[round((a - start["time"]) / 1e9, 2), round((b - start["time"]) / 1e9, 2)]
                                for a, b in leaders["spans"]],
        "acknowledged_writes": sum(1 for o in ops if o["f"] in MUTATIONS and o["type"] == "ok"),
        "lost_acknowledged_writes": s["lost_acknowledged_writes"],
        "lost_writes": lost,
        "linearizable": checker.get("linearizable"),
        "first_violation": first_violation(run_dir / "history.jsonl") if checker.get("linearizable") == "invalid"
        else None,
        "availability": s["faults"][0]["availability_during"] if s["faults"] else None,
        "sides": {"minority": minority, "majority": majority},
        "writes_during_fault": sides,
        "recovery_after_start_s": s["faults"][0]["recovery_after_start_s"] if s["faults"] else None,
        "converged_after_heal": s.get("converged_after_heal"),
        "final_state_identical_on_all_masters": s.get("final_state_identical_on_all_masters"),
        "ops": s["ops"],
    }
    say(f"{ENGINE_LABEL[engine]}: leaders at once {row['max_leaders_at_once']} (by role "
        f"{row['max_leaders_at_once_by_role']}), minority acknowledged {sides['minority']['acknowledged']} of "
        f"{sides['minority']['attempted']} writes, majority {sides['majority']['acknowledged']} of "
        f"{sides['majority']['attempted']}; lost {row['lost_acknowledged_writes']}, linearizable "
        f"{row['linearizable']}")
    return row


def _samples(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "raft.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_experiment(out: Path, *, quick: bool = False, masters: int = 3, seed: int = 5,
                   engines: Sequence[str] = ENGINES, say: Callable[[str], None] = print) -> dict[str, Any]:
    if masters not in MASTERS_CHOICES:
        raise ValueError(f"masters must be one of {', '.join(map(str, MASTERS_CHOICES))} (got {masters})")
    timing = QUICK_TIMING if quick else FULL_TIMING
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = [run_engine(engine, masters, seed, timing, out, say) for engine in engines]
    results = {"quick": quick, "masters": masters, "seed": seed, "timing": timing.__dict__, "workload": SPLIT_WORKLOAD,
               "elapsed_s": round(time.monotonic() - started, 1), "engines": rows}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
