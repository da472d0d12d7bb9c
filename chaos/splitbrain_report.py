"""The split-brain experiment's report: `report.md`, a self-contained `report.html` and one timeline per engine.

Reads `results.json` and each run's records. The timelines are the quorum experiment's (`chaos.report.
plot_cell`: operations per second by outcome, each master's role beneath, the cut shaded), with the times
two leaders acknowledged writes at once hatched. Every conclusion is a sentence about measured numbers;
where a measurement contradicts what the engine's design predicts, the sentence says so.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from chaos.report import plot_cell
from chaos.splitbrain import ENGINE_LABEL, RAFT, UNSAFE, leaders_at_once

LOST_LISTED_MAX = 20


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%"


def _side(row: dict[str, Any], side: str) -> dict[str, Any]:
    counts: dict[str, Any] = row["writes_during_fault"][side]
    return counts


def _acked(row: dict[str, Any], side: str) -> str:
    s = _side(row, side)
    return f"{s['acknowledged']} of {s['attempted']}"


def _side_cell(row: dict[str, Any], side: str) -> str:
    return f"{_acked(row, side)} ({_pct(_side(row, side)['availability'])} answered)"


def _names(ids: list[str]) -> str:
    return ", ".join(ids) or "none"


def conclusions(results: dict[str, Any]) -> list[str]:
    rows = {r["engine"]: r for r in results["engines"]}
    n = results["masters"]
    out: list[str] = []
    raft, unsafe = rows.get(RAFT), rows.get(UNSAFE)
    if raft is not None:
        ok = (raft["lost_acknowledged_writes"] == 0 and raft["linearizable"] == "valid"
              and raft["max_leaders_at_once"] <= 1)
        minority_acked = _side(raft, "minority")["acknowledged"]
        by_role = raft["max_leaders_at_once_by_role"]
        deposed = (f" ({by_role} by role: a deposed leader that has not noticed yet commits nothing)"
                   if by_role > raft["max_leaders_at_once"] else "")
        lin = "linearizable" if raft["linearizable"] == "valid" else f"{raft['linearizable']} for the checker"
        sentence = (f"Raft: the side cut off with the leader ({_names(raft['sides']['minority'])}) acknowledged "
                    f"{_acked(raft, 'minority')} writes during the cut, the other side "
                    f"({_names(raft['sides']['majority'])}) {_acked(raft, 'majority')}; at most "
                    f"{raft['max_leaders_at_once']} leader acknowledged writes at any instant{deposed}, "
                    f"{raft['lost_acknowledged_writes']} acknowledged writes were lost and the history is {lin}.")
        if not ok:
            sentence += " This contradicts Raft's guarantees."
        out.append(sentence)
        if n > 2 and minority_acked == 0 and ok:
            out.append(f"Raft traded the minority side's availability for safety: its writes were refused "
                       f"({_pct(_side(raft, 'minority')['availability'])} answered there) while the majority "
                       f"elected a new leader and went on ({_pct(_side(raft, 'majority')['availability'])} "
                       f"answered); overall {_pct(raft['availability'])} of the writes during the cut were "
                       "answered, and none was lost.")
    if unsafe is not None:
        both = _side(unsafe, "minority")["acknowledged"] > 0 and _side(unsafe, "majority")["acknowledged"] > 0
        lost = unsafe["lost_acknowledged_writes"]
        sentence = (f"unsafe-async-primary: the old primary's side ({_names(unsafe['sides']['minority'])}) "
                    f"acknowledged {_acked(unsafe, 'minority')} writes during the cut and the other side "
                    f"{_acked(unsafe, 'majority')}; {unsafe['max_leaders_at_once']} primaries acknowledged writes "
                    f"at once for {unsafe['two_leaders_s']:.1f} s; after the heal {lost} acknowledged writes "
                    "were lost (the last acknowledged value of a key gone from a master, listed below) and the "
                    + ("checker found the history not linearizable." if unsafe["linearizable"] == "invalid" else
                       f"checker's verdict is {unsafe['linearizable']}."))
        if not (both and lost > 0):
            sentence += (" This run did not show the split-brain the design allows (both sides acknowledging, "
                         "writes lost); a longer cut or more load would.")
        out.append(sentence)
    if raft is not None and unsafe is not None:
        out.append(f"Side by side: Raft answered {_pct(raft['availability'])} of the writes during the cut and lost "
                   f"{raft['lost_acknowledged_writes']}; the unsafe engine answered {_pct(unsafe['availability'])} "
                   f"— available on both sides — and lost {unsafe['lost_acknowledged_writes']}.")
        if n == 2:
            stalled = raft["availability"] is not None and raft["availability"] < 0.2
            split = unsafe["max_leaders_at_once"] >= 2
            out.append("With two masters a 1/1 cut leaves no majority anywhere: "
                       + ("Raft stalled every write until the heal" if stalled else
                          f"Raft still answered {_pct(raft['availability'])} of the writes, which its quorum rule "
                          "does not predict")
                       + (", while the unsafe engine split into two primaries that both acknowledged writes."
                          if split else ", and the unsafe engine did not split in this run."))
    return out


HEADER = ["engine", "masters", "leaders at once (by role)", "two leaders for", "acknowledged writes",
          "minority side: writes acknowledged", "majority side: writes acknowledged", "availability during the cut",
          "lost acknowledged writes", "linearizable"]


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    return [[ENGINE_LABEL.get(r["engine"], r["engine"]), str(r["masters"]),
             f"{r['max_leaders_at_once']} ({r['max_leaders_at_once_by_role']})", f"{r['two_leaders_s']:.1f} s",
             str(r["acknowledged_writes"]), _side_cell(r, "minority"), _side_cell(r, "majority"),
             _pct(r["availability"]),
             str(r["lost_acknowledged_writes"]), str(r["linearizable"])] for r in results["engines"]]


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _lost_lines(row: dict[str, Any]) -> list[str]:
    """One line per key: its last acknowledged mutation, and the masters that ended without it."""
    by_key: dict[tuple[str, str, str, str, str], list[str]] = {}
    for w in row["lost_writes"]:
        found = "the pod absent" if w["found"] is None else repr(w["found"])
        by = f" by {w['acknowledged_by']}" if w.get("acknowledged_by") else ""
        by_key.setdefault((w["key"], w["op"], repr(w["expected"]), by, found), []).append(w["master"])
    lines = [f"{key}: {op} {expected} was acknowledged last{by}, but {', '.join(masters)} "
             f"end{'s' if len(masters) == 1 else ''} with {found}"
             for (key, op, expected, by, found), masters in sorted(by_key.items())][:LOST_LISTED_MAX]
    listed = sum(len(m) for m in by_key.values())
    if row["lost_acknowledged_writes"] > listed:
        lines.append(f"… and {row['lost_acknowledged_writes'] - listed} more (key × master; summary.json of the run "
                     "lists the first 20)")
    return lines


def _timeline(out: Path, row: dict[str, Any]) -> Path | None:
    run_dir = out / row["dir"]
    samples_path = run_dir / "raft.jsonl"
    samples = [json.loads(x) for x in samples_path.read_text().splitlines() if x.strip()] \
        if samples_path.exists() else []
    marks = [(a, b, "2 leaders") for a, b in leaders_at_once(samples)["spans"]]
    png = out / f"timeline-{row['engine']}.png"
    plot_cell(run_dir, f"{ENGINE_LABEL.get(row['engine'], row['engine'])}, {row['masters']} masters: leader cut off "
                       f"with a minority (shaded); hatched: two leaders acknowledging writes", png, marks)
    return png if png.exists() else None


def write_report(out: Path, results: dict[str, Any]) -> dict[str, Path]:
    pngs = {r["engine"]: _timeline(out, r) for r in results["engines"]}
    concl = conclusions(results)
    rows = table_rows(results)
    t = results["timing"]
    intro = (f"{len(results['engines'])} runs ({'quick' if results['quick'] else 'full'}, seed {results['seed']}, "
             f"{results['masters']} masters), each on a fresh local cluster behind Toxiproxy under the same "
             f"workload ({results['workload']['rate_per_s']} ops/s, {results['workload']['concurrency']} clients "
             f"spread over every master, so on both sides of the cut); after {t['before_s']:g} s the leader "
             f"(primary) was cut off with a minority for {t['fault_s']:g} s, then healed; the workload ended "
             f"at the heal, the copies were left to reconcile and every key was read back from every master. "
             f"Finished in {results['elapsed_s']} s.")
    md = ["# Split-brain: Raft against an unsafe primary-backup engine", "", intro, "",
          "## Conclusions (from the measured numbers)", ""] + [f"- {c}" for c in concl] + [
          "", "## Measured", "", _md_table(rows), "",
          "*Leaders at once* counts masters that reported the leader (primary) role **and** whose commit index "
          "rose since the previous sample (100 ms): masters acknowledging writes. The raw count by role is in "
          "brackets. A side's writes are those its clients sent to its masters during the cut; *answered* "
          "counts acknowledged ones and those the state refused (AlreadyExists, NotFound, a failed "
          "compare-and-set), not 503s or unknown outcomes. *Lost acknowledged writes*: per key and master, the "
          "key's final value is not one its last "
          "acknowledged mutation (or one of unknown outcome) could have left — the rule of every chaos run's "
          "summary.", ""]
    html_sections = []
    for r in results["engines"]:
        label = ENGINE_LABEL.get(r["engine"], r["engine"])
        lost = _lost_lines(r)
        md += [f"## {label}", ""]
        md += [f"Lost acknowledged writes ({r['lost_acknowledged_writes']}):", ""] + [f"- {x}" for x in lost] \
            if lost else ["No acknowledged write was lost.", ""]
        md += [""]
        if r.get("first_violation"):
            md += ["The checker's explanation of the first violation:", "", "```", r["first_violation"], "```", ""]
        else:
            md += [f"Linearizability: {r['linearizable']}.", ""]
        png = pngs.get(r["engine"])
        if png is not None:
            md += [f"![{label}]({png.name})", ""]
        img = (f'<img alt="{html.escape(label)}" src="data:image/png;base64,'
               f'{base64.b64encode(png.read_bytes()).decode()}">' if png is not None else "")
        html_sections.append(
            f"<h2>{html.escape(label)}</h2>"
            + (f"<p>Lost acknowledged writes ({r['lost_acknowledged_writes']}):</p><ul>"
               + "".join(f"<li>{html.escape(x)}</li>" for x in lost) + "</ul>" if lost
               else "<p>No acknowledged write was lost.</p>")
            + (f"<p>The checker's explanation of the first violation:</p><pre>{html.escape(r['first_violation'])}"
               "</pre>" if r.get("first_violation")
               else f"<p>Linearizability: {html.escape(str(r['linearizable']))}.</p>")
            + img)
    (out / "report.md").write_text("\n".join(md) + "\n")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>hacluster split-brain experiment</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px}pre{font-size:11px;overflow-x:auto;background:#f6f6f6}"
            "img{max-width:100%}</style></head><body>"
            "<h1>Split-brain: Raft against an unsafe primary-backup engine</h1>"
            f"<p>{html.escape(intro)}</p><h2>Conclusions (from the measured numbers)</h2><ul>"
            + "".join(f"<li>{html.escape(c)}</li>" for c in concl) + "</ul>"
            f"<h2>Measured</h2><table><tr>{th}</tr>{trs}</table>" + "".join(html_sections) + "</body></html>")
    (out / "report.html").write_text(page)
    return {"md": out / "report.md", "html": out / "report.html"}


def console_table(results: dict[str, Any]) -> str:
    return _md_table(table_rows(results))
