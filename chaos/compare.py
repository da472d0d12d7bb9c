"""`hacluster experiment compare`: the quorum experiment's cells on both store engines, side by side.

Each (masters, fault) cell runs once per engine (`chaos.quorum.run_cell`: a fresh cluster behind Toxiproxy,
the same workload, the same fault at the same moment, the same seed), so pysyncobj's Raft inside the
masters and etcd beside them meet exactly the same thing. The figures are the quorum cells' own (from each
run's history, faults and summary); what a client saw while the fault lasted is counted from the history:
writes acknowledged, refused at once with 503, or left with an unknown outcome (504, a timeout), and how
long the refusals and the unknown outcomes took — a 503 at once against a stall.

Writes `results.json`, `report.md` and a self-contained `report.html` into the output directory, each
run's records under `<engine>/cells/`. The conclusions are sentences about the measured numbers.
"""

from __future__ import annotations

import html
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.quorum import FAULT_LABEL, QUICK_TIMING, Timing, run_cell

ENGINES = ("pysyncobj", "etcd")
QUICK_MASTERS = (3,)
QUICK_FAULTS = ("kill-leader", "isolate-leader", "kill-two")
MASTERS = (3, 5)
FAULTS = ("kill-follower", "kill-leader", "pause-leader", "isolate-leader", "kill-two")
TIMING = Timing(before_s=1.0, fault_s=3.0, after_s=1.5)


def run_compare(out: Path, *, quick: bool, say: Callable[[str], None], seed: int = 1) -> dict[str, Any]:
    masters = QUICK_MASTERS if quick else MASTERS
    faults = QUICK_FAULTS if quick else FAULTS
    timing = QUICK_TIMING if quick else TIMING
    t0 = time.monotonic()
    cells: list[dict[str, Any]] = []
    for n in masters:
        for fault in faults:
            for engine in ENGINES:  # the same seed for both engines: the same workload and fault
                cells.append(run_cell(n, fault, 0, seed + n, timing, out / engine, say, engine=engine))
    results = {"quick": quick, "seed": seed, "engines": list(ENGINES), "masters": list(masters),
               "faults": list(faults), "timing": timing.__dict__, "cells": cells,
               "elapsed_s": round(time.monotonic() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(markdown(results))
    (out / "report.html").write_text(html_report(results))
    return results


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f} ms" if x < 1000 else f"{x / 1000:.2f} s"


def seen_during_fault(c: dict[str, Any]) -> str:
    """What a client saw of its writes during the fault, e.g. "ok 210, 4xx ×40, 503 ×120 (2 ms), unknown ×3
    (1.50 s)" (4xx: decided by the store, e.g. a conflict; no connection: clients of a killed master)."""
    w = c.get("writes_during_fault")
    if not w:
        return "–"
    parts = [f"ok {w['ok']}"]
    if w.get("answered_4xx"):
        parts.append(f"4xx ×{w['answered_4xx']}")
    if w["refused_503"]:
        parts.append(f"503 ×{w['refused_503']} ({_ms(w['refused_503_p50_ms'])})")
    if w["unknown"]:
        parts.append(f"unknown ×{w['unknown']} ({_ms(w['unknown_p50_ms'])})")
    if w.get("no_connection"):
        parts.append(f"no connection ×{w['no_connection']}")
    if w["other"]:
        parts.append(f"other ×{w['other']}")
    return ", ".join(parts)


ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("writes answered during the fault", lambda c: _pct(c["availability_during"])),
    ("writes back after the fault starts", lambda c: _s(c["recovery_after_start_s"])),
    ("what clients saw during the fault (median wait)", seen_during_fault),
    ("elections", lambda c: str(c["elections"])),
    ("write latency p50 / p99 before the fault",
     lambda c: f"{_ms(c['latency_p50_ms'])} / {_ms(c['latency_p99_ms'])}"),
    ("acknowledged writes lost", lambda c: str(c["lost_acknowledged_writes"])),
    ("linearizable", lambda c: str(c["linearizable"])),
)


def table(results: dict[str, Any], n: int, fault: str) -> list[list[str]]:
    """Rows of one cell: the figure's name, then one column per engine."""
    by_engine = {c["engine"]: c for c in results["cells"] if c["masters"] == n and c["fault"] == fault}
    return [[label, *(fn(by_engine[e]) if e in by_engine else "–" for e in results["engines"])]
            for label, fn in ROWS]


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def conclusions(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    out = []
    lost = {e: sum(c["lost_acknowledged_writes"] or 0 for c in cells if c["engine"] == e) for e in results["engines"]}
    invalid = [f"{c['engine']} N={c['masters']} {c['fault']}" for c in cells if c["linearizable"] == "invalid"]
    out.append("Acknowledged writes lost: " + ", ".join(f"{e} {n}" for e, n in lost.items())
               + (" — none on either engine." if not any(lost.values()) else " — a bug: both engines must lose none.")
               + (f" Histories not linearizable: {', '.join(invalid)}." if invalid else
                  " Every history was linearizable."))
    recover = {e: _median([c["recovery_after_start_s"] for c in cells if c["engine"] == e
                           and c["fault"] in ("kill-leader", "isolate-leader", "pause-leader")
                           and c["recovery_after_start_s"] is not None]) for e in results["engines"]}
    if all(v is not None for v in recover.values()):
        out.append("After losing its leader (kill, isolate or pause), writes came back in "
                   + " and ".join(f"{_s(v)} on {e}" for e, v in recover.items())
                   + " (median): the time to notice the leader is gone and elect another — pysyncobj's election "
                     "timeout here is 0.3–0.6 s, etcd's 1 s.")
    no_quorum = [c for c in cells if c["fault"] == "kill-two" and c["masters"] == 3]
    seen = {c["engine"]: c.get("writes_during_fault") or {} for c in no_quorum}
    if len(seen) == len(results["engines"]):
        out.append("Without a quorum (two of three masters killed) clients saw: "
                   + "; ".join(f"{e}: {seen_during_fault({'writes_during_fault': w})}" for e, w in seen.items())
                   + ". A refusal with 503 says nothing was done and comes at once; an unknown outcome (504, a "
                     "timeout) leaves the client to find out and comes only at the deadline.")
    follower = [c for c in cells if c["fault"] == "kill-follower"]
    if follower:
        out.append("Losing a follower: writes answered during the fault "
                   + ", ".join(f"{c['engine']} N={c['masters']} {_pct(c['availability_during'])}" for c in follower)
                   + " — a quorum remains, neither engine elects.")
    return out


def markdown(results: dict[str, Any]) -> str:
    engines = results["engines"]
    lines = ["# Store engines side by side: pysyncobj and etcd under the same faults", "",
             f"The quorum experiment's cells, each run once per engine from a fresh cluster with the same seed, "
             f"workload and fault ({results['elapsed_s']} s in all; fault window {results['timing']['fault_s']} s).",
             "", "## Conclusions", ""]
    lines += [f"- {c}" for c in conclusions(results)]
    for n in results["masters"]:
        for fault in results["faults"]:
            lines += ["", f"## {n} masters, {FAULT_LABEL.get(fault, fault)}", "",
                      "| | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
            lines += ["| " + " | ".join(r) + " |" for r in table(results, n, fault)]
    return "\n".join(lines) + "\n"


def html_report(results: dict[str, Any]) -> str:
    engines = results["engines"]
    parts = ["<!doctype html><meta charset='utf-8'><title>hacluster: store engines side by side</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f4f4f4}</style>",
             "<h1>Store engines side by side: pysyncobj and etcd under the same faults</h1>",
             f"<p>{results['elapsed_s']} s in all; fault window {results['timing']['fault_s']} s.</p>",
             "<h2>Conclusions</h2><ul>"]
    parts += [f"<li>{html.escape(c)}</li>" for c in conclusions(results)]
    parts.append("</ul>")
    for n in results["masters"]:
        for fault in results["faults"]:
            parts.append(f"<h2>{n} masters, {html.escape(FAULT_LABEL.get(fault, fault))}</h2><table><tr><th></th>"
                         + "".join(f"<th>{html.escape(e)}</th>" for e in engines) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>"
                      for row in table(results, n, fault)]
            parts.append("</table>")
    return "\n".join(parts) + "\n"


def console_rows(results: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
    """(title, rows) per cell, for the CLI's tables."""
    return [(f"{n} masters, {FAULT_LABEL.get(fault, fault)}", table(results, n, fault))
            for n in results["masters"] for fault in results["faults"]]
