"""`hacluster experiment quorum` (the measured answer to "why three masters, never two or four"),
`hacluster experiment split-brain` (Raft against an unsafe primary-backup engine under the same cut) and
`hacluster experiment compare` (the store engines, pysyncobj and etcd, side by side under the same faults)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


@click.group()
def experiment() -> None:
    """Experiments that run many chaos scenarios and write a report."""


@experiment.command("quorum")
@click.option("--quick", is_flag=True, help="One repeat, three faults, shorter fault windows (≈ 2 min).")
@click.option("--repeats", type=click.IntRange(1, 10), default=None, help="Runs per cell (default 2; quick 1).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--masters", "masters_", default="1,2,3,4,5", show_default=True, help="Cluster sizes to run.")
@click.option("--faults", "faults_", default=None, help="Comma-separated faults (default: the whole matrix).")
@click.option("--fault-seconds", "fault_s", type=click.FloatRange(1.0, 120.0), default=None,
              help="Length of each fault window (default 3; quick 2.5).")
@click.option("--store", "engine", type=click.Choice(["pysyncobj", "etcd"]), default=None,
              help="Store engine of every cell's cluster (default: pysyncobj).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/quorum", show_default=True)
def quorum_cmd(quick: bool, repeats: int | None, seed: int, masters_: str, faults_: str | None, fault_s: float | None,
               engine: str | None, out_dir: str) -> None:
    """Masters 1–5 × faults, each from a fresh cluster: report.md, report.html, results.json, plots."""
    from chaos.quorum import ALL_FAULTS, run_experiment
    from chaos.report import console_table, write_report
    from chaos.toxiproxy import ToxiproxyError
    from hacluster.cluster.launcher import LauncherError

    console = Console()
    try:
        masters = tuple(int(x) for x in masters_.split(","))
    except ValueError as exc:
        raise _Fail(f"--masters must be a comma-separated list of numbers, not {masters_!r}") from exc
    if any(not 1 <= n <= 9 for n in masters):
        raise _Fail("--masters: each size must be between 1 and 9")
    faults = tuple(faults_.split(",")) if faults_ else None
    if faults and any(f not in ALL_FAULTS for f in faults):
        raise _Fail(f"--faults: choose from {', '.join(ALL_FAULTS)}")
    out = Path(out_dir)
    try:
        results = run_experiment(out, quick=quick, repeats=repeats, seed=seed, masters=masters, faults=faults,
                                 fault_s=fault_s, engine=engine,
                                 say=lambda s: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {s}"))
    except (LauncherError, ToxiproxyError) as exc:
        raise _Fail(str(exc)) from exc
    paths = write_report(out, results)
    console.rule("[bold]fault tolerance by cluster size")
    console.print(console_table(results))
    console.print(f"\nreport: {paths['md']}  (and {paths['html']}, results.json, plots/) — "
                  f"{results['elapsed_s']} s")
    bad = [c for c in results["cells"] if c["lost_acknowledged_writes"] or c["two_leaders_in_one_term"]]
    sys.exit(1 if bad else 0)


@experiment.command("split-brain")
@click.option("--quick", is_flag=True, help="A shorter lead-in before the 10 s cut (≈ 1 min for 3 masters).")
@click.option("--masters", type=click.Choice(["2", "3", "5"]), default="3", show_default=True,
              help="Cluster size (2: a 1/1 split).")
@click.option("--seed", type=int, default=5, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/split-brain", show_default=True)
def split_brain_cmd(quick: bool, masters: str, seed: int, out_dir: str) -> None:
    """The same partition against Raft and an unsafe primary-backup engine: report.md, report.html,
    results.json, a timeline per engine. The unsafe engine is started only here."""
    from chaos.splitbrain import RAFT, run_experiment
    from chaos.splitbrain_report import console_table, write_report
    from chaos.toxiproxy import ToxiproxyError
    from hacluster.cluster.launcher import LauncherError

    console = Console()
    out = Path(out_dir)
    try:
        results = run_experiment(out, quick=quick, masters=int(masters), seed=seed,
                                 say=lambda s: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {s}"))
    except (LauncherError, ToxiproxyError) as exc:
        raise _Fail(str(exc)) from exc
    paths = write_report(out, results)
    console.rule("[bold]split-brain: Raft against unsafe-async-primary")
    console.print(console_table(results))
    console.print(f"\nreport: {paths['md']}  (and {paths['html']}, results.json, timelines) — "
                  f"{results['elapsed_s']} s")
    # Lost writes are the unsafe engine's expected outcome; the same from Raft would be a bug.
    bad = [r for r in results["engines"] if r["engine"] == RAFT
           and (r["lost_acknowledged_writes"] or r["linearizable"] == "invalid")]
    sys.exit(1 if bad else 0)


@experiment.command("compare")
@click.option("--quick", is_flag=True, help="3 masters × kill the leader, isolate it, kill two (≈ 2 min); "
                                            "else 3 and 5 masters × five faults.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="out/compare", show_default=True)
def compare_cmd(quick: bool, seed: int, out_dir: str) -> None:
    """The quorum experiment's cells on pysyncobj and on etcd, side by side: report.md, report.html,
    results.json."""
    from rich.table import Table

    from chaos.compare import console_rows, run_compare
    from chaos.toxiproxy import ToxiproxyError
    from hacluster.cluster.launcher import LauncherError

    console = Console()
    out = Path(out_dir)
    try:
        results = run_compare(out, quick=quick, seed=seed,
                              say=lambda s: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {s}"))
    except (LauncherError, ToxiproxyError) as exc:
        raise _Fail(str(exc)) from exc
    for title, rows in console_rows(results):
        table = Table(title=title, title_justify="left")
        table.add_column("")
        for engine in results["engines"]:
            table.add_column(engine)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"report: {out / 'report.md'} (and report.html, results.json) — {results['elapsed_s']} s")
    bad = [c for c in results["cells"] if c["lost_acknowledged_writes"] or c["two_leaders_in_one_term"]
           or c["linearizable"] == "invalid"]
    sys.exit(1 if bad else 0)


def register(main: click.Group) -> None:
    main.add_command(experiment)
