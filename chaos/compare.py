"""`hacluster experiment compare`: the same chaos scenarios on both store engines, side by side.

Each (engine, scenario) cell is one `chaos.runner.run_scenario` from a fresh cluster with the scenario's
own seed, so both engines meet the same workload and the same fault schedule; the cells' figures come from
each run's `summary.json` and nothing is computed here that the chaos summary does not already say.
Writes `compare.json` and `compare.md` into the output directory, the runs' records under
`<engine>/<scenario>/`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.runner import run_scenario
from chaos.scenario import load_scenario

ENGINES = ("pysyncobj", "etcd")
SCENARIOS = ("leader-isolation", "kill-leader-loop", "pause-leader")
QUICK_SCENARIOS = ("leader-isolation",)


def cell(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that the comparison shows."""
    recovery = [f["recovery_after_start_s"] for f in summary.get("faults", [])
                if f.get("recovery_after_start_s") is not None]
    checker = summary.get("checker") or {}
    return {
        "ops": summary.get("ops"),
        "availability": summary.get("availability"),
        "longest_unavailability_s": summary.get("longest_unavailability_s"),
        "write_recovery_after_fault_median_s": statistics.median(recovery) if recovery else None,
        "lost_acknowledged_writes": summary.get("lost_acknowledged_writes"),
        "terms_with_two_leaders": summary.get("terms_with_two_leaders"),
        "linearizable": checker.get("linearizable"),
        "invariants": (checker.get("invariants") or {}).get("verdict"),
        "same_state_after_heal": summary.get("final_state_identical_on_all_masters"),
    }


def run_compare(out: Path, *, quick: bool, say: Callable[[str], None],
                scenarios: tuple[str, ...] | None = None) -> dict[str, Any]:
    names = scenarios or (QUICK_SCENARIOS if quick else SCENARIOS)
    t0 = time.monotonic()
    cells: list[dict[str, Any]] = []
    for name in names:
        sc = load_scenario(name)
        for engine in ENGINES:
            say(f"{name} on {engine} …")
            result = run_scenario(sc, out / engine / name, engine=engine)
            cells.append({"scenario": name, "engine": engine, **cell(result.summary)})
    results = {"scenarios": list(names), "engines": list(ENGINES), "cells": cells,
               "elapsed_s": round(time.monotonic() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "compare.md").write_text(markdown(results))
    return results


ROWS = (("ops ok / fail / info", lambda c: "{ok} / {fail} / {info}".format(**(c["ops"] or {}))),
        ("availability of writes", lambda c: _pct(c["availability"])),
        ("longest unavailability", lambda c: _s(c["longest_unavailability_s"])),
        ("writes back after a fault starts (median)", lambda c: _s(c["write_recovery_after_fault_median_s"])),
        ("acknowledged writes lost", lambda c: str(c["lost_acknowledged_writes"])),
        ("terms with two leaders", lambda c: str(c["terms_with_two_leaders"] or "none")),
        ("linearizable / invariants", lambda c: f"{c['linearizable']} / {c['invariants']}"),
        ("same state after heal", lambda c: str(c["same_state_after_heal"])))


def table_rows(results: dict[str, Any], scenario: str) -> list[tuple[str, ...]]:
    by_engine = {c["engine"]: c for c in results["cells"] if c["scenario"] == scenario}
    return [(label, *(fn(by_engine[e]) if e in by_engine else "-" for e in results["engines"]))
            for label, fn in ROWS]


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Store engines side by side", "",
             f"Same scenarios, seeds and workloads on each engine ({results['elapsed_s']} s in all).", ""]
    for sc in results["scenarios"]:
        lines += [f"## {sc}", "", "| | " + " | ".join(results["engines"]) + " |",
                  "|---|" + "---|" * len(results["engines"])]
        lines += ["| " + " | ".join(r) + " |" for r in table_rows(results, sc)]
        lines.append("")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"
