"""`hacluster chaos …`: run recorded chaos scenarios, or inject single faults into a cluster from
`hacluster up --chaos`. Faults given `--for` are healed when the time is up (or on Ctrl-C)."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 500ms, 10s or 2m")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) == "m" else v


@click.group()
def chaos() -> None:
    """Faults through a real Toxiproxy: partitions, kills, pauses, slow links, with recorded histories."""


@chaos.command("run")
@click.argument("scenario")
@click.option("--masters", type=click.IntRange(1, 9), default=None, help="Override the scenario's cluster size.")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed (same seed, same schedule).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Where to write history.jsonl, faults.jsonl, raft.jsonl, summary.json (default out/chaos-NAME).")
@click.option("--no-check", is_flag=True, help="Skip the linearizability check of the history.")
@click.option("--store", "engine", type=click.Choice(["pysyncobj", "etcd"]), default=None,
              help="Replication engine of the cluster (default: the scenario's, pysyncobj).")
def run_cmd(scenario: str, masters: int | None, seed: int | None, out_dir: str | None, no_check: bool,
            engine: str | None) -> None:
    """Run SCENARIO (a name from configs/chaos/ or a YAML file) on a fresh cluster and report."""
    from chaos.runner import run_scenario
    from chaos.scenario import load_scenario
    from chaos.toxiproxy import ToxiproxyError
    from hacluster.cluster.launcher import LauncherError
    from hacluster.config import ConfigError

    console = Console()
    try:
        sc = load_scenario(scenario)
    except ConfigError as exc:
        raise _Fail(str(exc)) from exc
    out = Path(out_dir or f"out/chaos-{sc.name}")
    try:
        result = run_scenario(sc, out, masters=masters, seed=seed, check=not no_check, engine=engine,
                              progress=lambda s: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {s}"))
    except (LauncherError, ToxiproxyError, ConfigError) as exc:
        raise _Fail(str(exc)) from exc
    s = result.summary
    console.rule(f"[bold]{sc.name}[/] on {s['masters']} masters, seed {s['seed']}, storage {s['storage']}, "
                 f"raft.fsync {'on' if s['raft_fsync'] else 'off'}")
    console.print(f"ops {s['ops']}  availability of writes {_pct(s['availability'])}  longest unavailability "
                  f"{s['longest_unavailability_s']} s")
    console.print(f"leader changes {s['leader_changes']}, elections {s['elections']}, highest term {s['max_term']}, "
                  f"terms with two leaders: {s['terms_with_two_leaders'] or 'none'}")
    for f in s["faults"]:
        console.print(f"  fault {f['fault']} {f['kind']} {f['targets']} {f['start_s']}–{f['end_s']} s: "
                      f"availability during {_pct(f['availability_during'])}, after {_pct(f['availability_after'])}; "
                      f"writes recovered {_sec(f['recovery_after_start_s'])} after start, "
                      f"{_sec(f['recovery_after_heal_s'])} after heal")
    lost = s["lost_acknowledged_writes"]
    console.print(f"acknowledged writes lost: [{'red' if lost else 'green'}]{lost}[/]; final state identical on "
                  f"all masters: {s['final_state_identical_on_all_masters']}")
    if "checker" in s:
        console.print(f"checker: {json.dumps(s['checker'])}")
    console.print(f"records in {out}/")
    bad = lost or s["terms_with_two_leaders"] or (s.get("checker", {}).get("linearizable") == "invalid")
    sys.exit(1 if bad else 0)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def _sec(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} s"


# ---------------------------------------------------------------------------- interactive faults
def _handle(state_dir: str | None) -> Any:
    from hacluster.cluster import launcher
    from hacluster.config import env_state_dir

    try:
        return launcher.load_handle(Path(state_dir or env_state_dir()))
    except launcher.LauncherError as exc:
        raise _Fail(str(exc)) from exc


def _nemesis(state_dir: str | None) -> Any:
    from chaos.nemesis import FaultLog, Nemesis
    from chaos.network import load_network
    from chaos.toxiproxy import ToxiproxyError

    h = _handle(state_dir)
    try:
        net = load_network(h)
    except ToxiproxyError:
        net = None  # kills and pauses still work; link faults say the cluster needs --chaos
    log = FaultLog(h.state_dir / "chaos" / "faults.jsonl" if (h.state_dir / "chaos").exists() else None)
    return Nemesis(h, net, seed=int(time.time()), log=log)


def _apply(state_dir: str | None, spec_kw: dict[str, Any], for_s: float) -> None:
    from chaos.scenario import FaultSpec
    from chaos.toxiproxy import ToxiproxyError

    nem = _nemesis(state_dir)
    spec = FaultSpec(at_s=0, duration_s=max(for_s, 0.001), **spec_kw)
    try:
        fault = nem.start(0, spec)
    except (RuntimeError, ValueError, ToxiproxyError, OSError) as exc:
        raise _Fail(str(exc)) from exc
    click.echo(f"{spec.kind} on {', '.join(fault.targets) or 'nothing'}" +
               (f" for {for_s:g} s" if for_s > 0 else " (until `hacluster chaos heal`)"))
    if for_s <= 0:
        return
    try:
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            time.sleep(min(0.2, deadline - time.monotonic()))
    except KeyboardInterrupt:
        click.echo("interrupted")
    finally:
        nem.end(0)
        click.echo("healed")


_state = click.option("--state-dir", default=None, metavar="DIR", help="The cluster's state directory.")
_for = click.option("--for", "for_", default="30s", show_default=True,
                    help="How long the fault lasts (0 = until `hacluster chaos heal`).")
_kind = click.option("--kind", "partition", type=click.Choice(["blackhole", "reject"]), default="blackhole",
                     show_default=True, help="blackhole: data silently held; reject: connections refused.")


@chaos.command("partition")
@click.argument("master")
@_kind
@click.option("--direction", type=click.Choice(["both", "to", "from"]), default="both", show_default=True)
@click.option("--clients-too", is_flag=True, help="Also refuse clients' API connections to it.")
@_for
@_state
def partition(master: str, partition: str, direction: str, clients_too: bool, for_: str, state_dir: str | None) -> None:
    """Cut MASTER's Raft links to every other master."""
    _apply(state_dir, {"kind": "isolate", "target": master, "partition": partition, "direction": direction,
                       "clients_too": clients_too}, _duration(for_))


@chaos.command("isolate-leader")
@_kind
@_for
@_state
def isolate_leader(partition: str, for_: str, state_dir: str | None) -> None:
    """Cut the current leader off from the other masters."""
    _apply(state_dir, {"kind": "isolate-leader", "partition": partition}, _duration(for_))


@chaos.command("split")
@click.argument("shape", type=click.Choice(["minority", "even", "bridge", "ring"]))
@_kind
@_for
@_state
def split(shape: str, partition: str, for_: str, state_dir: str | None) -> None:
    """Partition the masters: minority (with the leader) / even halves / bridge / ring."""
    kind = {"minority": "split", "even": "even-split", "bridge": "bridge", "ring": "ring"}[shape]
    _apply(state_dir, {"kind": kind, "partition": partition}, _duration(for_))


@chaos.command("kill")
@click.argument("master")
@_for
@_state
def kill(master: str, for_: str, state_dir: str | None) -> None:
    """SIGKILL MASTER ("leader" for the current leader); it is restarted after --for (0: stays down)."""
    kind = "kill-leader" if master == "leader" else "kill"
    _apply(state_dir, {"kind": kind, "target": "" if master == "leader" else master}, _duration(for_))


@chaos.command("pause")
@click.argument("master")
@_for
@_state
def pause(master: str, for_: str, state_dir: str | None) -> None:
    """SIGSTOP MASTER ("leader" for the current leader); SIGCONT after --for."""
    kind = "pause-leader" if master == "leader" else "pause"
    _apply(state_dir, {"kind": kind, "target": "" if master == "leader" else master}, _duration(for_))


@chaos.command("power-cut")
@click.argument("target")
@_for
@_state
def power_cut(target: str, for_: str, state_dir: str | None) -> None:
    """Cut the power of TARGET: a master id, "leader", "follower", "minority" or "all" (every master at once).

    Its unsynced writes are lost; it is started again after --for. Only masters running on the write-back
    test storage can lose power (chaos runs start them so); on real storage the cut is refused."""
    kinds = {"leader": "power-cut-leader", "follower": "power-cut-follower", "minority": "power-cut-minority",
             "all": "power-cut-all"}
    kind = kinds.get(target, "power-cut")
    _apply(state_dir, {"kind": kind, "target": "" if target in kinds else target}, _duration(for_))


@chaos.command("disk-fault")
@click.argument("master")
@click.option("--errno", "errno_", type=click.Choice(["ENOSPC", "EIO"]), default="ENOSPC", show_default=True,
              help="ENOSPC: disk full; EIO: I/O error.")
@click.option("--operation", type=click.Choice(["write", "fsync"]), default="write", show_default=True,
              help="Which journal operation fails.")
@_for
@_state
def disk_fault(master: str, errno_: str, operation: str, for_: str, state_dir: str | None) -> None:
    """Make MASTER's ("leader", "follower" or an id) journal writes fail; it must stop rather than acknowledge
    what it could not persist. After --for the fault is cleared and a stopped master started again."""
    _apply(state_dir, {"kind": "disk-fault", "target": master, "errno": errno_, "operation": operation},
           _duration(for_))


@chaos.command("latency")
@click.argument("ms", type=int)
@click.option("--jitter", type=int, default=0, help="Jitter in ms.")
@click.option("--leader-only", is_flag=True, help="Only the leader's links.")
@_for
@_state
def latency(ms: int, jitter: int, leader_only: bool, for_: str, state_dir: str | None) -> None:
    """Add MS milliseconds of latency to the Raft links."""
    _apply(state_dir, {"kind": "latency", "latency_ms": ms, "jitter_ms": jitter,
                       "links": "leader" if leader_only else "all"}, _duration(for_))


@chaos.command("heal")
@_state
def heal(state_dir: str | None) -> None:
    """Remove every toxic, re-enable every proxy, resume paused and restart stopped masters."""
    _nemesis(state_dir).heal_all()
    click.echo("healed: all links restored, every master running")


@chaos.command("links")
@_state
def links(state_dir: str | None) -> None:
    """Show the Toxiproxy proxies of the cluster and their toxics."""
    from chaos.network import load_network
    from chaos.toxiproxy import ToxiproxyError

    h = _handle(state_dir)
    try:
        net = load_network(h)
        for name, p in sorted(net.client.proxies().items()):
            toxics = net.client.toxics(name)
            click.echo(f"{name:28} {p['listen']:>18} -> {p['upstream']:<18} "
                       f"{'enabled' if p['enabled'] else 'DISABLED'} {' '.join(toxics)}")
    except ToxiproxyError as exc:
        raise _Fail(str(exc)) from exc


def register(main: click.Group) -> None:
    main.add_command(chaos)
