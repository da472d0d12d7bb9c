"""The quorum experiment's report: `report.md`, a self-contained `report.html` (plots embedded) and PNGs.

Reads only `results.json` and each cell's records (history, faults, Raft samples). Conclusions are
written from the measured numbers: each sentence states what was measured, and says so when a
measurement disagrees with Raft's arithmetic.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from chaos.quorum import FAULT_LABEL, masters_lost, quorum, tolerated  # noqa: E402

ROLE_COLOR = {"leader": "#2ca02c", "follower": "#1f77b4", "candidate": "#ff7f0e", "unreachable": "#bbbbbb"}
MARK_DISAGREES = "disagrees with theory"


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_cell(cell_dir: Path, title: str, out_png: Path,
              marks: Sequence[tuple[int, int, str]] = ()) -> None:
    """ok/fail/info operations per second with the fault window shaded, each master's role and term below.
    `marks`: (start, end) monotonic ns and a label, hatched across both panels (the split-brain experiment
    marks the times two leaders acknowledged writes at once)."""
    hist = [e for e in _load_jsonl(cell_dir / "history.jsonl") if not e.get("final")]
    raft = _load_jsonl(cell_dir / "raft.jsonl")
    faults = _load_jsonl(cell_dir / "faults.jsonl")
    if not hist:
        return
    t0 = hist[0]["time"]
    t_end = max(e["time"] for e in hist)
    n_bins = int((t_end - t0) / 1e9 * 4) + 1  # 250 ms bins
    series = {k: [0.0] * n_bins for k in ("ok", "refused", "unavailable", "info")}
    for e in hist:
        if e["type"] == "invoke":
            continue
        b = int((e["time"] - t0) / 0.25e9)
        err = str(e.get("error", ""))
        kind = e["type"] if e["type"] in ("ok", "info") else ("refused" if err[:3] in ("400", "404", "409", "422")
                                                               else "unavailable")
        series[kind][b] += 4  # per second
    xs = [i * 0.25 for i in range(n_bins)]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colors = {"ok": "#2ca02c", "refused": "#98df8a", "unavailable": "#d62728", "info": "#9467bd"}
    bottom = [0.0] * n_bins
    for k in ("ok", "refused", "unavailable", "info"):
        ax1.bar(xs, series[k], width=0.25, bottom=bottom, color=colors[k], align="edge",
                label={"ok": "ok", "refused": "fail (state refused)", "unavailable": "fail (503/refused)",
                       "info": "info (unknown)"}[k])
        bottom = [b + v for b, v in zip(bottom, series[k], strict=True)]
    starts = {f["fault"]: f for f in faults if f["event"] == "start"}
    ends = {f["fault"]: f for f in faults if f["event"] == "end"}
    for i, s in starts.items():
        a = (s["time"] - t0) / 1e9
        b = ((ends[i]["time"] if i in ends else t_end) - t0) / 1e9
        for ax in (ax1, ax2):
            ax.axvspan(a, b, color="#ffcccc", alpha=0.5, zorder=0)
        ax1.text(a, ax1.get_ylim()[1] * 0.92 if ax1.get_ylim()[1] else 1, f" {s['kind']} {' '.join(s['targets'])}",
                 fontsize=7, va="top")
    for a_ns, b_ns, label in marks:
        a, b = (a_ns - t0) / 1e9, (b_ns - t0) / 1e9
        for ax in (ax1, ax2):
            ax.axvspan(a, b, facecolor="none", edgecolor="#d62728", hatch="////", linewidth=0, zorder=1)
        ax2.text(a, -0.55, label, fontsize=6, color="#d62728", va="bottom")
    ax1.set_ylabel("ops/s")
    ax1.legend(fontsize=6, loc="lower left", ncol=4)
    ax1.set_title(title, fontsize=9)
    masters = sorted({r["master"] for r in raft})
    for row, m in enumerate(masters):
        pts = [r for r in raft if r["master"] == m]
        for r in pts:
            x = (r["time"] - t0) / 1e9
            ax2.scatter([x], [row], s=6, color=ROLE_COLOR.get(r.get("role", ""), "#bbbbbb"), marker="s")
        terms_shown = set()
        for r in pts:
            if r.get("term") is not None and r["term"] not in terms_shown and r.get("role") == "leader":
                terms_shown.add(r["term"])
                ax2.text((r["time"] - t0) / 1e9, row + 0.25, f"t{r['term']}", fontsize=6)
    ax2.set_yticks(range(len(masters)))
    ax2.set_yticklabels(masters, fontsize=7)
    ax2.set_ylim(-0.6, len(masters) - 0.2)
    ax2.set_xlabel("seconds (green leader, blue follower, orange candidate, grey unreachable; tN = term)",
                   fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return mean(v) if v else None


def plot_availability(results: dict[str, Any], out_png: Path) -> None:
    by = defaultdict(list)
    for c in results["cells"]:
        by[(c["fault"], c["masters"])].append(c["availability_during"])
    faults = [f for f in results["faults"]]
    ns = results["masters"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(1, len(faults))
    for i, f in enumerate(faults):
        xs, ys = [], []
        for j, n in enumerate(ns):
            v = _mean(by.get((f, n), []))
            if v is not None:
                xs.append(j + i * width)
                ys.append(v * 100)
        ax.bar(xs, ys, width=width, label=FAULT_LABEL.get(f, f))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ns))])
    ax.set_xticklabels([f"N={n}" for n in ns])
    ax.set_ylabel("writes answered during fault (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def plot_latency(results: dict[str, Any], out_png: Path) -> None:
    ns = results["masters"]
    p50 = [_mean([c["latency_p50_ms"] for c in results["cells"] if c["masters"] == n]) for n in ns]
    p99 = [_mean([c["latency_p99_ms"] for c in results["cells"] if c["masters"] == n]) for n in ns]
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = list(range(len(ns)))
    ax.bar([x - 0.2 for x in xs], [v or 0 for v in p50], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [v or 0 for v in p99], width=0.4, label="p99")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"N={n}\nquorum {quorum(n)}" for n in ns], fontsize=7)
    ax.set_ylabel("write latency without faults (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------- the text
def measured_tolerance(cells: list[dict[str, Any]], n: int) -> tuple[int, int]:
    """(tolerance, largest k tested): the largest k such that every run that took k masters away (kills,
    pauses, isolation — not splits) stayed available, and the largest k any run took away."""
    tol, tested = 0, 0
    for k in (1, 2):
        ks = [c for c in cells if c["masters"] == n and masters_lost(n, c["fault"]) == k and c["fault"] != "split"]
        if not ks:
            break
        tested = k
        if all(c["measured_available"] for c in ks):
            tol = k
        else:
            break
    return tol, tested


def _avail_word(v: bool | None) -> str:
    return "n/a" if v is None else ("available" if v else "unavailable")


def _fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.0f}%"


def _fmt_s(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} s"


def conclusions(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    ns = set(results["masters"])

    def cs(n: int, fault: str) -> list[dict[str, Any]]:
        return [c for c in cells if c["masters"] == n and c["fault"] == fault]

    def all_avail(n: int, faults: tuple[str, ...]) -> bool | None:
        sel = [c for f in faults for c in cs(n, f)]
        return None if not sel else all(c["measured_available"] for c in sel)

    one_down = ("kill-leader", "kill-follower", "isolate-leader", "pause-leader")
    out = []
    lost = sum(c["lost_acknowledged_writes"] for c in cells)
    two = [c for c in cells if c["two_leaders_in_one_term"]]
    out.append(f"Across {len(cells)} runs, {lost} acknowledged writes were lost and "
               f"{'no' if not two else len(two)} run{'s' if len(two) != 1 else ''} saw two masters lead in the same "
               "term: Raft's cost of a lost quorum was unavailability, not split-brain or lost data."
               if not lost and not two else
               f"Across {len(cells)} runs, {lost} acknowledged writes were lost and {len(two)} runs saw two leaders "
               "in one term — this contradicts Raft's guarantees; see the cells marked below.")
    if 1 in ns:
        a = all_avail(1, ("kill-leader",))
        if a is not None:
            out.append("One master has no HA: killing it stopped every write until it came back." if not a else
                       f"One master: killing it {MARK_DISAGREES}: writes continued.")
    if 2 in ns:
        a = all_avail(2, one_down)
        if a is not None:
            n_cells = [c for f in one_down for c in cs(2, f)]
            out.append("Two masters tolerate nothing: losing either one (leader or follower) left the other without "
                       f"a majority of 2 — {sum(not c['measured_available'] for c in n_cells)} of {len(n_cells)} "
                       "single-master faults stopped writes. With two machines that can each stop the cluster, two "
                       "masters fail more often than one." if not a else
                       f"Two masters survived a single-master fault, which {MARK_DISAGREES}.")
    if 3 in ns:
        a1, a2 = all_avail(3, one_down), all_avail(3, ("kill-two",))
        rec = _mean([c["recovery_after_start_s"] for c in cs(3, "kill-leader")])
        if a1 is not None:
            out.append(("Three masters tolerate one failure: with the leader killed, writes were answered again "
                        f"after {_fmt_s(rec)} (one election)" if a1 else
                        f"Three masters did not survive every single-master fault, which {MARK_DISAGREES}")
                       + (", and killing two stopped them." if a2 is False else "." if a2 is None else
                          f"; killing two did not stop them, which {MARK_DISAGREES}."))
    if 4 in ns:
        a1, a2 = all_avail(4, one_down), all_avail(4, ("kill-two",))
        split = cs(4, "split")
        lat3 = _mean([c["latency_p50_ms"] for c in cells if c["masters"] == 3])
        lat4 = _mean([c["latency_p50_ms"] for c in cells if c["masters"] == 4])
        parts = []
        if a1 is not None:
            parts.append("Four masters tolerate one failure, the same as three" if a1 and a2 is not True else
                         f"Four masters' tolerance {MARK_DISAGREES}")
        if lat3 is not None and lat4 is not None:
            parts.append(f"with a larger quorum (3 of 4) and writes {'slower' if lat4 > lat3 else 'no faster'} "
                         f"than three masters' (p50 {lat4:.1f} ms vs {lat3:.1f} ms)")
        if split:
            avail = any(c["measured_available"] for c in split)
            terms = [(c["max_term"], c["elections"]) for c in split]
            rising = any(e > 0 for _, e in terms)
            parts.append(f"; a 2/2 split stalled every write for the whole fault while terms "
                          f"{'kept rising' if rising else 'stayed put (PreVote: no side finds a majority)'} "
                          f"({', '.join(f'{e} elections, term {t}' for t, e in terms)}): no side can elect a "
                          "leader, so nothing progresses — and nothing splits." if not avail else
                          f"; a 2/2 split kept writes going, which {MARK_DISAGREES}.")
        if parts:
            clauses = ", ".join(p for p in parts if not p.startswith(";"))
            out.append(clauses + "".join(p for p in parts if p.startswith(";")))
    if 5 in ns:
        a2 = all_avail(5, ("kill-two",))
        if a2 is not None:
            out.append("Five masters tolerate two failures: with two killed, the other three still formed a "
                       "majority and writes continued." if a2 else
                       f"Five masters did not survive two failures, which {MARK_DISAGREES}.")
    return out


def tolerance_table(results: dict[str, Any]) -> list[list[str]]:
    cells = results["cells"]
    rows = []
    for n in results["masters"]:
        theory = tolerated(n)
        measured, tested = measured_tolerance(cells, n)
        if measured == theory:
            verdict, shown = "agrees", str(measured)
        elif measured == tested and theory > tested:
            verdict, shown = f"agrees as far as tested (up to {tested} failure(s))", f"≥ {measured}"
        else:
            verdict, shown = MARK_DISAGREES, str(measured)
        rows.append([str(n), str(quorum(n)), str(theory), shown, verdict])
    return rows


def cell_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in results["cells"]:
        verdict = "–" if c["agrees"] is None else ("agrees" if c["agrees"] else MARK_DISAGREES)
        rows.append([str(c["masters"]), FAULT_LABEL.get(c["fault"], c["fault"]), str(c["repeat"]),
                     _avail_word(c["expected_available"]), _avail_word(c["measured_available"]), verdict,
                     _fmt_pct(c["availability_during"]), _fmt_pct(c["availability_after"]),
                     _fmt_s(c["recovery_after_start_s"]), _fmt_s(c["recovery_after_heal_s"]),
                     str(c["elections"]), str(c["max_term"]),
                     "–" if c["latency_p50_ms"] is None else f"{c['latency_p50_ms']}/{c['latency_p99_ms']}",
                     str(c["lost_acknowledged_writes"]), "yes" if c["two_leaders_in_one_term"] else "no"])
    return rows


CELL_HEADER = ["N", "fault", "rep", "theory", "measured", "verdict", "avail. during", "avail. after",
               "recovered after start", "after heal", "elections", "max term", "p50/p99 ms (no fault)",
               "lost writes", "2 leaders/term"]
TOL_HEADER = ["N", "quorum ⌊N/2⌋+1", "tolerated failures, theory ⌊(N−1)/2⌋", "tolerated failures, measured",
              "verdict"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = []
    for r in rows:
        bad = any(MARK_DISAGREES in x for x in r)
        tds = "".join(f"<td>{html.escape(x)}</td>" for x in r)
        trs.append(f"<tr{' class=bad' if bad else ''}>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(trs)}</table>"


def write_report(out: Path, results: dict[str, Any]) -> dict[str, Path]:
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    cell_pngs = []
    for c in results["cells"]:
        png = plots / f"cell-{Path(c['dir']).name}.png"
        plot_cell(out / c["dir"], f"N={c['masters']} {FAULT_LABEL.get(c['fault'], c['fault'])} "
                                  f"(repeat {c['repeat']}): {_avail_word(c['measured_available'])}", png)
        if png.exists():
            cell_pngs.append((c, png))
    # The two summary charts sit beside report.md, the per-run timelines in plots/.
    plot_availability(results, out / "availability.png")
    plot_latency(results, out / "latency.png")
    concl = conclusions(results)
    tol = tolerance_table(results)
    md = ["# Why three masters: the quorum experiment", "",
          f"{len(results['cells'])} runs ({'quick' if results['quick'] else 'full'} matrix, {results['repeats']} "
          f"repeat(s), seed {results['seed']}), each on a fresh local cluster behind Toxiproxy under the same "
          f"workload ({results['workload']['rate_per_s']} ops/s, {results['workload']['concurrency']} clients); "
          f"fault windows of {results['timing']['fault_s']} s; finished in {results['elapsed_s']} s.", "",
          "## Conclusions (from the measured numbers)", ""] + [f"- {c}" for c in concl] + [
          "", "## Fault tolerance by cluster size", "", _md_table(TOL_HEADER, tol), "",
          "## Every run", "", _md_table(CELL_HEADER, cell_rows(results)), "",
          "A run counts as *available* when writes were answered again before the fault ended and at least "
          "80% of the writes started in the fault's last second were answered (acknowledged, or refused by the "
          "state itself such as AlreadyExists) rather than refused with 503 or left without an outcome.", "",
          "## Plots", "", "![availability](availability.png)", "", "![latency](latency.png)", ""]
    md += [f"![{Path(p).stem}](plots/{p.name})" for _, p in cell_pngs]
    (out / "report.md").write_text("\n".join(md) + "\n")

    def img(p: Path) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'

    body = [f"<h1>Why three masters: the quorum experiment</h1><p>{html.escape(md[2])}</p>",
            "<h2>Conclusions (from the measured numbers)</h2><ul>" +
            "".join(f"<li>{html.escape(c)}</li>" for c in concl) + "</ul>",
            "<h2>Fault tolerance by cluster size</h2>" + _html_table(TOL_HEADER, tol),
            "<h2>Availability and latency</h2>" + img(out / "availability.png") + img(out / "latency.png"),
            "<h2>Every run</h2>" + _html_table(CELL_HEADER, cell_rows(results)),
            "<h2>Timelines</h2>" + "".join(img(p) for _, p in cell_pngs)]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>hacluster quorum experiment</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ccc;padding:2px 6px}tr.bad{background:#fdd}img{max-width:100%}</style></head>"
            "<body>" + "".join(body) + "</body></html>")
    (out / "report.html").write_text(page)
    return {"md": out / "report.md", "html": out / "report.html"}


def console_table(results: dict[str, Any]) -> str:
    return _md_table(TOL_HEADER, tolerance_table(results))
