"""Checker results for people: a plain-text explanation, a PNG timeline and a self-contained HTML page.

`run_check` is what the CLI calls: it loads a history, checks it, prints a short verdict (and, when the
history is not linearizable, the explanation) and returns the exit code. `write_explanation` is used by
it and by the chaos runner to leave `explanation.txt`, `timeline-<key>.png` and `timeline.html` beside a
failed run's history. Matplotlib is imported only when a timeline is drawn, with the Agg canvas (no
display, no pyplot global state).
"""

from __future__ import annotations

import base64
import html
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hacluster.consistency.history import Event, HistoryError, Operation, load_history, pair_operations
from hacluster.consistency.linearizability import (
    CheckResult,
    UnknownModelError,
    Verdict,
    Violation,
    check_operations,
    describe_call,
    describe_operation,
    format_time,
    format_value,
)

EXIT_CODES: dict[Verdict, int] = {"valid": 0, "invalid": 1, "unknown": 2}
# Steps of the longest partial order shown in the text explanation.
LONGEST_ORDER_TAIL_SHOWN = 8
# Invalid keys drawn and written out; more are listed in the text only.
TIMELINES_MAX = 10

_OK_COLOUR = "#4C78A8"
_INFO_COLOUR = "#F58518"
_FAIL_COLOUR = "#BBBBBB"
_BLOCKED_COLOUR = "#D62728"


def safe_key_name(key: str) -> str:
    """`key` made safe as part of a file name: "default/web-1" -> "default_web-1"."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key) or "_"


def _lines(op: Operation) -> str:
    if op.invoke_line is None:
        return ""
    if op.complete_line is None:
        return f"  [line {op.invoke_line}]"
    return f"  [lines {op.invoke_line}, {op.complete_line}]"


def format_violation(violation: Violation, origin_ns: int) -> str:
    """The explanation of one invalid key, as indented plain text."""
    out = [f"key {violation.key}: NOT LINEARIZABLE", f"  why: {violation.reason}."]
    out.append("  first operation that cannot be linearized:")
    out.extend(f"    {describe_operation(op, origin_ns)}{_lines(op)}" for op in violation.first_unlinearizable)
    out.append(
        f"  no order fits the {violation.prefix_operation_count} operations on this key invoked by "
        f"t={format_time(violation.prefix_end_time_ns, origin_ns)} (operations still running then count as "
        "info); with one completion fewer, an order exists."
    )
    blocked = {op.index for op in violation.first_unlinearizable}
    out.append("  operations involved, in invoke order (> marks the one that cannot be linearized):")
    out.extend(
        f"    {'>' if op.index in blocked else ' '} {describe_operation(op, origin_ns)}{_lines(op)}"
        for op in violation.operations
    )
    longest = violation.longest_order
    if longest:
        shown = longest[-LONGEST_ORDER_TAIL_SHOWN:]
        skipped = f", last {len(shown)} steps" if len(shown) < len(longest) else ""
        out.append(
            f"  longest order the checker could build ({len(longest)} operations{skipped}); it leaves the key "
            f"{violation.state_after_longest_order}:"
        )
        out.extend(f"    {describe_operation(op, origin_ns)}" for op in shown)
    return "\n".join(out)


def format_result(result: CheckResult, *, source: str | None = None, details: bool = True) -> str:
    """A verdict line, counts, and (with `details`) every invalid and unknown key explained."""
    counts = {verdict: len(result.keys_with(verdict)) for verdict in ("valid", "invalid", "unknown")}
    limit = "no time limit" if result.time_limit_s is None else f"time limit {result.time_limit_s:g} s per key"
    out = [
        f"{result.verdict.upper()}: {result.operation_count} operations on {len(result.keys)} keys "
        f"({result.model} model, {result.elapsed_s:.2f} s, {limit})"
        + (f" in {source}" if source else ""),
        f"keys: {counts['valid']} valid, {counts['invalid']} invalid, {counts['unknown']} unknown",
    ]
    if not details or result.verdict == "valid":
        return "\n".join(out)
    out.append(f"times are milliseconds after the first invoke (monotonic {result.time_origin_ns} ns)")
    for key_result in result.keys:
        if key_result.violation is not None:
            out.append("")
            out.append(format_violation(key_result.violation, result.time_origin_ns))
        elif key_result.verdict == "invalid":
            out.append("")
            out.append(f"key {key_result.key}: NOT LINEARIZABLE (not explained)")
    unknown = result.keys_with("unknown")
    if unknown:
        out.append("")
        out.extend(f"key {key_result.key}: UNKNOWN ({key_result.note})" for key_result in unknown)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------
# Timeline


def _timeline_operations(violation: Violation, history_ops: Sequence[Operation]) -> list[Operation]:
    """The violation's operations plus the key's failed ones overlapping them (shown greyed)."""
    ops = list(violation.operations)
    if not ops:
        return ops
    start_ns = min(op.invoke_time_ns for op in ops)
    end_ns = max(violation.prefix_end_time_ns, *(op.complete_time_ns or 0 for op in ops))
    shown = {(op.process, op.invoke_time_ns) for op in ops}
    for op in history_ops:
        if (
            op.key == violation.key
            and op.status == "fail"
            and (op.process, op.invoke_time_ns) not in shown
            and op.invoke_time_ns <= end_ns
            and (op.complete_time_ns or end_ns) >= start_ns
        ):
            ops.append(op)
    return sorted(ops, key=lambda op: (op.invoke_time_ns, op.index))


def _label(op: Operation) -> str:
    text = describe_call(op)
    if op.status == "info":
        text += " (info)"
    elif op.status == "fail":
        text += " (fail)"
    return text


def render_timeline_png(violation: Violation, ops: Sequence[Operation], origin_ns: int, path: Path) -> None:
    """Draw `ops` as bars from invoke to completion, one row per process, and save a PNG at `path`.

    Ok operations are blue, info orange (open to the right: they may take effect any time later), failed
    grey; the operation that cannot be linearized is red, and a dashed line marks its completion.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    processes = sorted({op.process for op in ops})
    row = {process: i for i, process in enumerate(processes)}
    blocked = {op.index for op in violation.first_unlinearizable}

    def ms(time_ns: int) -> float:
        return (time_ns - origin_ns) / 1e6

    x_min = min(ms(op.invoke_time_ns) for op in ops)
    x_max = max([ms(violation.prefix_end_time_ns), *(ms(op.complete_time_ns) for op in ops if op.complete_time_ns)])
    span = max(x_max - x_min, 1e-3)
    open_end = x_max + 0.08 * span  # where bars of info operations stop

    figure = Figure(figsize=(12, max(2.8, 0.5 * len(processes) + 2.0)), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    labels_in_row: dict[int, int] = {}
    for op in ops:
        start = ms(op.invoke_time_ns)
        is_blocked = op.index in blocked and op.status == "ok"
        if op.status == "info" or op.complete_time_ns is None:
            end, colour, hatch = open_end, _INFO_COLOUR, "//"
        else:
            end = ms(op.complete_time_ns)
            colour, hatch = (_OK_COLOUR, "") if op.status == "ok" else (_FAIL_COLOUR, "")
        if is_blocked:
            colour = _BLOCKED_COLOUR
        y = row[op.process]
        axes.barh(
            y,
            max(end - start, span * 0.003),
            left=start,
            height=0.5,
            color=colour,
            hatch=hatch,
            edgecolor="#333333",
            linewidth=0.6,
        )
        # Alternate labels below and above the bar so neighbours on one row do not overwrite each other.
        nth = labels_in_row.get(y, 0)
        labels_in_row[y] = nth + 1
        axes.text(
            start,
            y + (0.3 if nth % 2 == 0 else -0.3),
            _label(op),
            fontsize=7,
            va="top" if nth % 2 == 0 else "bottom",
            ha="left",
            clip_on=True,
            color=_BLOCKED_COLOUR if is_blocked else "#222222",
            fontweight="bold" if is_blocked else "normal",
        )
    axes.axvline(ms(violation.prefix_end_time_ns), color=_BLOCKED_COLOUR, linestyle="--", linewidth=1)
    axes.set_yticks(range(len(processes)), [f"p{process}" for process in processes])
    axes.set_ylim(len(processes) - 0.3, -0.7)  # first process on top
    axes.set_xlim(x_min - 0.03 * span, open_end + 0.02 * span)
    axes.set_xlabel("time (ms after the first invoke)")
    axes.set_title(f"{violation.key}: operations around the first one that cannot be linearized", fontsize=10)
    axes.legend(
        handles=[
            Patch(facecolor=_OK_COLOUR, label="ok"),
            Patch(facecolor=_INFO_COLOUR, hatch="//", label="info (open-ended: may take effect later, or never)"),
            Patch(facecolor=_FAIL_COLOUR, label="fail (no effect)"),
            Patch(facecolor=_BLOCKED_COLOUR, label="cannot be linearized (dashed line: its completion)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=4,
        fontsize=7,
        frameon=False,
    )
    axes.grid(axis="x", alpha=0.3)
    figure.savefig(path, format="png", bbox_inches="tight")


def _html_table(ops: Sequence[Operation], blocked: set[int], origin_ns: int) -> str:
    rows = []
    for op in ops:
        value = "" if op.f in ("read", "delete") else format_value(op.value)
        result = format_value(op.result) if op.f == "read" and op.status == "ok" else ""
        complete = format_time(op.complete_time_ns, origin_ns) if op.status != "info" else "∞ (info)"
        lines = ", ".join(str(line) for line in (op.invoke_line, op.complete_line) if line is not None)
        css = ' class="blocked"' if op.index in blocked and op.status == "ok" else f' class="{op.status}"'
        cells = (f"p{op.process}", op.f, value, result, op.status, format_time(op.invoke_time_ns, origin_ns),
                 complete, lines)
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in
                     ("process", "f", "value", "read", "status", "invoke", "complete", "history lines"))
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_HTML_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
img { max-width: 100%; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 1em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
tr.blocked td { background: #fde0e0; font-weight: bold; }
tr.info td { background: #fff1e0; }
tr.fail td { color: #888; }
p.reason { background: #f6f6f6; padding: 0.6em; border-left: 4px solid #D62728; }
"""


def write_explanation(result: CheckResult, history: Sequence[Event], out_dir: str | Path) -> list[Path]:
    """Write `explanation.txt` and, for each invalid key (up to TIMELINES_MAX), `timeline-<key>.png`, plus
    `timeline.html` with those PNGs embedded. `history` is the checked history (it supplies the failed
    operations shown greyed). Creates `out_dir`; returns the files written; raises `OSError` on I/O errors.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    text_path = directory / "explanation.txt"
    text_path.write_text(format_result(result) + "\n", encoding="utf-8")
    written.append(text_path)
    violations = result.violations[:TIMELINES_MAX]
    if not violations:
        return written
    history_ops = pair_operations(history)
    origin = result.time_origin_ns
    sections = []
    for violation in violations:
        ops = _timeline_operations(violation, history_ops)
        png_path = directory / f"timeline-{safe_key_name(violation.key)}.png"
        render_timeline_png(violation, ops, origin, png_path)
        written.append(png_path)
        encoded = base64.b64encode(png_path.read_bytes()).decode("ascii")
        blocked = {op.index for op in violation.first_unlinearizable}
        sections.append(
            f"<h2>{html.escape(violation.key)}</h2>"
            f'<p class="reason">{html.escape(violation.reason)}.</p>'
            f'<img alt="timeline of {html.escape(violation.key)}" src="data:image/png;base64,{encoded}">'
            + _html_table(ops, blocked, origin)
        )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Linearizability violation: {html.escape(violations[0].key)}</title>"
        f"<style>{_HTML_STYLE}</style></head><body>"
        "<h1>Linearizability check: not linearizable</h1>"
        f"<pre>{html.escape(format_result(result, details=False))}</pre>"
        "<p>Times are milliseconds after the first invoke. Bars run from invoke to completion; info operations "
        "are open-ended (they may take effect any time after their invoke, or never).</p>"
        + "".join(sections)
        + "</body></html>\n"
    )
    html_path = directory / "timeline.html"
    html_path.write_text(page, encoding="utf-8")
    written.append(html_path)
    return written


def run_check(path: str, model: str = "register", out_dir: str | None = None, time_limit_s: float = 60.0) -> int:
    """Check the history at `path` and print the verdict; the CLI's `check` command.

    Returns 0 (linearizable), 1 (not linearizable; the explanation is printed, and written to `out_dir`
    when given) or 2 (unknown: a key's search exceeded `time_limit_s`, or the history could not be read
    or is malformed, or `model` is unknown; the reason goes to stderr).
    """
    try:
        events = load_history(path)
        operations = pair_operations(events, source=path)
        result = check_operations(operations, time_limit_s=time_limit_s, model=model)
    except (HistoryError, UnknownModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CODES["unknown"]
    except OSError as err:
        print(f"error: cannot read history {path}: {err}", file=sys.stderr)
        return EXIT_CODES["unknown"]
    print(format_result(result, source=path))
    if out_dir is not None:
        try:
            written = write_explanation(result, events, out_dir)
        except OSError as err:
            print(f"error: cannot write the explanation to {out_dir}: {err}", file=sys.stderr)
        else:
            print("explanation written to " + ", ".join(str(p) for p in written))
    return EXIT_CODES[result.verdict]
