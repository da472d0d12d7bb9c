"""Soak run (`scripts/soak`, not in CI): mixed writes on a 3-master cluster for a long while, with a fault every
minute, and each master's resident memory, open files and journal size sampled every 10 s.

What it shows: the masters' footprint is flat after warm-up — the journal keeps only the entries after the
latest snapshot (log compaction), and nothing else grows with the number of writes. The run is one chaos
scenario built here (the chaos runner's workload, nemesis and summary, without the linearizability checker,
which a long history would keep busy for minutes); the samples come from /proc and each master's
`/debug/raft` journal figures. Every loop is bounded by `--minutes`.

Writes `OUT/soak.json` (the samples and the run's summary) and `OUT/soak.png`, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from chaos.runner import run_scenario
from chaos.scenario import Scenario
from hacluster.cluster import launcher

SAMPLE_PERIOD_S = 10.0
FAULT_KINDS = ("kill-leader", "isolate-leader", "pause", "isolate", "kill-follower", "latency")
"""The fault of each minute, in turn (each lasts 10 s and is healed)."""


def scenario(minutes: float, rate: float, seed: int) -> Scenario:
    faults = []
    for i in range(int(minutes)):
        kind = FAULT_KINDS[i % len(FAULT_KINDS)]
        fault: dict[str, Any] = {"at_s": 30 + 60 * i, "duration_s": 10, "kind": kind}
        if kind in ("pause", "isolate"):
            fault["target"] = "m2"
        if kind == "latency":
            fault["latency_ms"] = 50
        if fault["at_s"] + fault["duration_s"] < minutes * 60:
            faults.append(fault)
    return Scenario.model_validate({
        "name": "soak", "description": "mixed writes with a fault every minute (scripts/soak)",
        "masters": 3, "seed": seed, "duration_s": minutes * 60, "sample_period_ms": 1000,
        "workload": {"rate_per_s": rate, "concurrency": 16, "keys": 64,
                     "mix": {"create": 2, "write": 4, "cas": 2, "read": 1, "delete": 1}},
        "faults": faults,
    })


def _proc(pid: int) -> tuple[float, int] | None:
    """(resident MiB, open file descriptors) of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, fds


def sample_masters(state_dir: Path, t0: float) -> list[dict[str, Any]]:
    """One sample per master that runs now (a killed master has none until it is back)."""
    try:
        handle = launcher.load_handle(state_dir)
    except launcher.LauncherError:
        return []
    rows = []
    for m in handle.cfg.masters:
        pid = handle.pid(m.id)
        got = _proc(pid) if pid else None
        if got is None:
            continue
        journal: dict[str, Any] = {}
        try:
            journal = launcher.http_json(f"{handle.api(m.id)}/debug/raft?fingerprint=0", handle.admin_token,
                                         timeout_s=2.0).get("journal") or {}
        except (OSError, ValueError):
            pass
        rows.append({"t_s": round(time.monotonic() - t0, 1), "master": m.id, "pid": pid, "rss_mib": round(got[0], 1),
                     "open_files": got[1], "journal_bytes": journal.get("bytes"),
                     "journal_entries": journal.get("entries")})
    return rows


def _sampler(state_dir: Path, t0: float, stop: threading.Event, out: list[dict[str, Any]]) -> None:
    while not stop.wait(SAMPLE_PERIOD_S):
        out.extend(sample_masters(state_dir, t0))


def _flatness(samples: list[dict[str, Any]], key: str, warmup_s: float) -> dict[str, Any]:
    """Per master: the median of the first and of the last third after warm-up (flat when they agree)."""
    out: dict[str, Any] = {}
    for mid in sorted({s["master"] for s in samples}):
        vals = [s[key] for s in samples if s["master"] == mid and s["t_s"] >= warmup_s and s[key] is not None]
        if len(vals) < 3:
            continue
        third = max(1, len(vals) // 3)
        out[mid] = {"first": statistics.median(vals[:third]), "last": statistics.median(vals[-third:]),
                    "max": max(vals)}
    return out


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, key, label in zip(axes, ("rss_mib", "open_files", "journal_bytes"),
                              ("resident memory (MiB)", "open files", "journal (MiB)"), strict=True):
        for mid in sorted({s["master"] for s in samples}):
            pts = [(s["t_s"] / 60, s[key]) for s in samples if s["master"] == mid and s[key] is not None]
            if key == "journal_bytes":
                pts = [(t, v / 2**20) for t, v in pts]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=mid)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    axes[-1].set_xlabel("minutes (a fault every minute)")
    fig.suptitle("hacluster soak: 3 masters under mixed writes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="length of the run (default 20)")
    ap.add_argument("--rate", type=float, default=150.0, help="operations per second asked (default 150)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("out/soak"))
    args = ap.parse_args()
    if not 1 <= args.minutes <= 120:
        print("error: --minutes must be between 1 and 120", file=sys.stderr)
        return 2
    sc = scenario(args.minutes, args.rate, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    t0 = time.monotonic()
    sampler = threading.Thread(target=_sampler, args=(args.out / "cluster", t0, stop, samples), daemon=True)
    sampler.start()
    print(f"soak: {args.minutes:g} min, {len(sc.faults)} faults, ≤ {args.rate:g} ops/s; samples every "
          f"{SAMPLE_PERIOD_S:g} s into {args.out}")
    try:
        result = run_scenario(sc, args.out, progress=lambda s: print(f"  {s}", flush=True), check=False)
    finally:
        stop.set()
        sampler.join(timeout=SAMPLE_PERIOD_S + 5)
    summary = json.loads((result.out_dir / "summary.json").read_text())
    warmup_s = min(120.0, args.minutes * 60 / 4)
    report = {"minutes": args.minutes, "faults": len(sc.faults), "sample_period_s": SAMPLE_PERIOD_S,
              "warmup_s": warmup_s, "samples": samples,
              "flatness": {k: _flatness(samples, k, warmup_s) for k in ("rss_mib", "open_files", "journal_bytes")},
              "summary": {k: summary.get(k) for k in ("ops", "lost_acknowledged_writes", "leader_changes",
                                                      "final_state_identical_on_all_masters", "raft_fsync")}}
    (args.out / "soak.json").write_text(json.dumps(report, indent=1))
    plot(samples, args.out / "soak.png")
    print(f"{'t (min)':>8} {'master':>6} {'RSS MiB':>8} {'files':>6} {'journal MiB':>12} {'entries':>8}")
    for s in samples:
        jb = f"{s['journal_bytes'] / 2**20:.1f}" if s["journal_bytes"] is not None else "-"
        print(f"{s['t_s'] / 60:8.1f} {s['master']:>6} {s['rss_mib']:8.1f} {s['open_files']:6d} {jb:>12} "
              f"{s['journal_entries'] if s['journal_entries'] is not None else '-':>8}")
    for key, per in report["flatness"].items():
        print(f"{key} after warm-up (median of first third -> last third, max): " + ", ".join(
            f"{mid} {v['first']:g} -> {v['last']:g} (max {v['max']:g})" for mid, v in per.items()))
    print(f"run: {report['summary']}")
    print(f"wrote {args.out / 'soak.json'} and {args.out / 'soak.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
