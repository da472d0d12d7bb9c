"""The quorum experiment: why control planes run three (or five) masters, never two or four — measured.

Runs the matrix masters × faults, each cell from a fresh cluster behind Toxiproxy under one constant
workload (`chaos.runner.run_scenario`), and compares what was measured with Raft's arithmetic: a quorum is
⌊N/2⌋+1 masters, so ⌊(N−1)/2⌋ failures are tolerated. Called by `hacluster experiment quorum`; the report
is written by `chaos.report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chaos.runner import run_scenario
from chaos.scenario import Scenario

ALL_MASTERS = (1, 2, 3, 4, 5)
ALL_FAULTS = ("none", "kill-follower", "kill-leader", "kill-two", "isolate-leader", "split", "pause-leader")
QUICK_FAULTS = ("kill-leader", "kill-two", "split")
FAULT_LABEL = {"none": "no fault", "kill-follower": "kill a follower", "kill-leader": "kill the leader",
               "kill-two": "kill two masters", "isolate-leader": "isolate the leader",
               "split": "majority/minority or even split", "pause-leader": "pause the leader"}


@dataclass(frozen=True)
class Timing:
    """Seconds of the workload before, during and after the fault of one cell."""

    before_s: float
    fault_s: float
    after_s: float


FULL_TIMING = Timing(before_s=1.0, fault_s=3.0, after_s=1.5)
QUICK_TIMING = Timing(before_s=0.8, fault_s=2.5, after_s=1.0)
WORKLOAD = {"rate_per_s": 150, "concurrency": 8, "keys": 16,
            "mix": {"create": 1.0, "write": 3.0, "cas": 2.0, "delete": 1.0, "read": 2.0}}
# A cell is "available under the fault" when writes are answered again before the fault ends and the
# last second of the fault window answers at least this share of them.
AVAILABLE_SHARE = 0.8


def quorum(n: int) -> int:
    return n // 2 + 1


def tolerated(n: int) -> int:
    return (n - 1) // 2


def masters_lost(n: int, fault: str) -> int | None:
    """How many masters the fault takes away from the side that could still lead (None: not applicable)."""
    if fault == "none":
        return 0
    if fault in ("kill-follower",) and n < 2:
        return None
    if fault in ("kill-follower", "kill-leader", "isolate-leader", "pause-leader"):
        return None if (fault == "isolate-leader" and n < 2) else 1
    if fault == "kill-two":
        return None if n < 2 else 2
    if fault == "split":
        if n < 2:
            return None
        return n // 2  # odd N: the minority ⌊N/2⌋ is cut off; even N: two halves of N/2
    return None


def expected_available(n: int, fault: str) -> bool | None:
    """Raft's prediction: writes continue iff the masters left together still form a quorum."""
    lost = masters_lost(n, fault)
    if lost is None:
        return None
    return n - lost >= quorum(n)


def split_kind(n: int) -> str:
    return "even-split" if n % 2 == 0 else "split"


def cell_scenario(n: int, fault: str, seed: int, timing: Timing) -> Scenario:
    kind = {"split": split_kind(n)}.get(fault, fault)
    faults = [] if fault == "none" else [{"at_s": timing.before_s, "duration_s": timing.fault_s, "kind": kind,
                                          **({"target": "leader"} if kind == "split" else {})}]
    return Scenario.model_validate({
        "name": f"quorum-n{n}-{fault}", "masters": n, "seed": seed,
        "duration_s": timing.before_s + timing.fault_s + timing.after_s,
        "workload": WORKLOAD, "faults": faults, "sample_period_ms": 100,
    })


MUTATIONS = ("create", "write", "cas", "delete")


def _writes(history: Path, start_ns: int, end_ns: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(invoke, completion) of every write invoked in [start, end), in the order they completed."""
    opened: dict[int, dict[str, Any]] = {}
    for line in history.read_text().splitlines():
        e = json.loads(line)
        if e.get("final"):
            continue
        if e["type"] == "invoke":
            opened[e["process"]] = e
            continue
        inv = opened.pop(e["process"], None)
        if inv is not None and inv["f"] in MUTATIONS and start_ns <= inv["time"] < end_ns:
            yield inv, e


def _latencies_ms(history: Path, start_ns: int, end_ns: int) -> list[float]:
    """Latencies of acknowledged writes invoked in [start, end) (no fault active)."""
    return [(e["time"] - inv["time"]) / 1e6 for inv, e in _writes(history, start_ns, end_ns) if e["type"] == "ok"]


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * p))], 2)


def _available_at_end(history: Path, fault_end_ns: int, window_ns: int) -> float | None:
    """Share of mutations invoked in the last `window` of the fault that were answered."""
    total = answered = 0
    for _, e in _writes(history, fault_end_ns - window_ns, fault_end_ns):
        total += 1
        err = str(e.get("error", ""))
        if e["type"] == "ok" or (e["type"] == "fail" and err[:3] in ("400", "404", "409", "422")):
            answered += 1
    return answered / total if total else None


def answers_during(history: Path, start_ns: int, end_ns: int) -> dict[str, Any]:
    """What clients saw of the writes they invoked in [start, end): how many were acknowledged, decided
    otherwise (a 4xx: a conflict, not found — the store answered), refused with 503 (nothing done), found no
    master to connect to (clients of a killed master), ended with an unknown outcome (504, a timeout) or got
    another answer; and how long a refusal and an unknown outcome took (median ms) — 503 at once against a
    stall."""
    counts = {"ok": 0, "answered_4xx": 0, "refused_503": 0, "no_connection": 0, "unknown": 0, "other": 0}
    waited: dict[str, list[float]] = {"refused_503": [], "unknown": []}
    for inv, e in _writes(history, start_ns, end_ns):
        err = str(e.get("error", ""))
        kind = ("ok" if e["type"] == "ok" else "unknown" if e["type"] == "info"
                else "refused_503" if err.startswith("503") else "answered_4xx" if err[:1] == "4"
                else "no_connection" if err.startswith("connect") else "other")
        counts[kind] += 1
        if kind in waited:
            waited[kind].append((e["time"] - inv["time"]) / 1e6)
    return {**counts, "refused_503_p50_ms": _pct(waited["refused_503"], 0.5),
            "unknown_p50_ms": _pct(waited["unknown"], 0.5)}


def run_cell(n: int, fault: str, repeat: int, seed: int, timing: Timing, out: Path,
             say: Callable[[str], None], engine: str | None = None) -> dict[str, Any]:
    """One cell from a fresh cluster; `engine` (`--store`) picks the store engine, else the default."""
    sc = cell_scenario(n, fault, seed, timing)
    cell_dir = out / "cells" / f"{engine + '-' if engine else ''}n{n}-{fault}-r{repeat}"
    result = run_scenario(sc, cell_dir, check=True, engine=engine)
    s = result.summary
    history = cell_dir / "history.jsonl"
    first = json.loads(history.read_text().splitlines()[0])["time"] if history.stat().st_size else 0
    fault_rec = s["faults"][0] if s["faults"] else None
    faults_file = [json.loads(line) for line in (cell_dir / "faults.jsonl").read_text().splitlines()] \
        if (cell_dir / "faults.jsonl").exists() else []
    start_ev = next((f for f in faults_file if f["event"] == "start"), None)
    end_ev = next((f for f in faults_file if f["event"] == "end"), None)
    lat_end = start_ev["time"] if start_ev else first + int((timing.before_s + timing.fault_s + timing.after_s) * 1e9)
    lat = _latencies_ms(history, first, lat_end)
    if start_ev and end_ev:
        share = _available_at_end(history, end_ev["time"], int(1e9))
        recovered = fault_rec["recovery_after_start_s"] if fault_rec else None
        measured = bool(share is not None and share >= AVAILABLE_SHARE and recovered is not None
                        and recovered < timing.fault_s)
    else:
        share = s["availability"]
        measured = bool(share is not None and share >= AVAILABLE_SHARE)
    expected = expected_available(n, fault)
    cell = {
        "engine": result.summary.get("store_engine") or engine or "pysyncobj",
        "masters": n, "fault": fault, "repeat": repeat, "seed": seed, "dir": str(cell_dir.relative_to(out)),
        "quorum": quorum(n), "tolerated": tolerated(n),
        "expected_available": expected, "measured_available": measured,
        "agrees": None if expected is None else expected == measured,
        "availability_during": fault_rec["availability_during"] if fault_rec else s["availability"],
        "availability_after": fault_rec["availability_after"] if fault_rec else None,
        "availability_last_second_of_fault": share if start_ev else None,
        "recovery_after_start_s": fault_rec["recovery_after_start_s"] if fault_rec else None,
        "recovery_after_heal_s": fault_rec["recovery_after_heal_s"] if fault_rec else None,
        "targets": fault_rec["targets"] if fault_rec else [],
        "elections": s["elections"], "max_term": s["max_term"], "leader_changes": s["leader_changes"],
        "latency_p50_ms": _pct(lat, 0.5), "latency_p99_ms": _pct(lat, 0.99), "latency_samples": len(lat),
        "lost_acknowledged_writes": s["lost_acknowledged_writes"],
        "two_leaders_in_one_term": bool(s["terms_with_two_leaders"]),
        "linearizable": (s.get("checker") or {}).get("linearizable"),
        "ops": s["ops"],
        "writes_during_fault": answers_during(history, start_ev["time"], end_ev["time"])
        if start_ev and end_ev else None,
    }
    say(f"N={n} {fault:15} r{repeat}: measured {'available' if measured else 'unavailable':11} "
        f"(theory: {'n/a' if expected is None else 'available' if expected else 'unavailable'}), "
        f"lost {cell['lost_acknowledged_writes']}, elections {cell['elections']}, max term {cell['max_term']}")
    return cell


def run_experiment(out: Path, *, quick: bool = False, repeats: int | None = None, seed: int = 1,
                   masters: tuple[int, ...] = ALL_MASTERS, faults: tuple[str, ...] | None = None,
                   fault_s: float | None = None, say: Callable[[str], None] = print,
                   engine: str | None = None) -> dict[str, Any]:
    timing = QUICK_TIMING if quick else FULL_TIMING
    if fault_s is not None:
        # Longer windows than the ten-minute budget allows show steadier figures; the lead-in and the
        # tail keep their lengths.
        timing = replace(timing, fault_s=fault_s)
    faults = faults or (QUICK_FAULTS if quick else ALL_FAULTS)
    reps = repeats or (1 if quick else 2)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cells = []
    for r in range(reps):
        for n in masters:
            for fault in faults:
                if masters_lost(n, fault) is None:
                    continue
                cells.append(run_cell(n, fault, r, seed + 1000 * r + n, timing, out, say, engine))
    results = {"engine": engine or "pysyncobj",
               "quick": quick, "repeats": reps, "seed": seed, "masters": list(masters), "faults": list(faults),
               "timing": timing.__dict__, "workload": WORKLOAD, "elapsed_s": round(time.monotonic() - started, 1),
               "cells": cells}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results
