"""`hacluster dashboard` (and `hacluster trace pod`): the live dashboard of a running cluster, and one pod's
journey in the terminal.

This module wires `chaos/` into the dashboard (which never imports it): `NemesisControls` carries out the
page's faults with the same `chaos.nemesis.Nemesis` as `hacluster chaos …`, logging them to the same
`<state-dir>/chaos/faults.jsonl`. `start_detached` runs the dashboard as a process of the cluster (for `hacluster up
--dashboard` and the demo), so `hacluster down` stops it with everything else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # imported when used: every `hacluster` command loads this module
    from hacluster.cluster.processes import ClusterHandle
    from hacluster.dashboard.controls import Action, Started

URL_FILE = "dashboard.url"
URL_PREFIX = "dashboard: "
START_TIMEOUT_S = 15.0


class _Fail(click.ClickException):
    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class NemesisControls:
    """The page's faults through `chaos.nemesis` (thread-safe: one fault at a time)."""

    _SPEC = {"split": {"even": "even-split", "minority": "split", "bridge": "bridge"}}

    def __init__(self, handle: ClusterHandle) -> None:
        from chaos.nemesis import FaultLog, Nemesis
        from chaos.network import load_network
        from chaos.toxiproxy import ToxiproxyError

        try:
            net = load_network(handle)
        except ToxiproxyError:
            net = None  # kills and pauses still work; link faults answer that the cluster needs --chaos
        (handle.state_dir / "chaos").mkdir(exist_ok=True)
        self.handle = handle
        self.nemesis = Nemesis(handle, net, seed=int(time.time()), log=FaultLog(handle.state_dir / "chaos" /
                                                                                  "faults.jsonl"))
        self._lock = threading.Lock()
        self._next = 1

    def _spec(self, a: Action) -> dict[str, Any]:
        from hacluster.dashboard.controls import ControlError

        leader = a.target == "leader"
        if a.kind == "kill":
            return {"kind": "kill-leader"} if leader else {"kind": "kill", "target": a.target}
        if a.kind == "pause":
            return {"kind": "pause-leader"} if leader else {"kind": "pause", "target": a.target}
        if a.kind == "isolate":
            return {"kind": "isolate-leader"} if leader else {"kind": "isolate", "target": a.target}
        if a.kind == "split":
            return {"kind": self._SPEC["split"][a.target]}
        if a.kind == "latency":
            return {"kind": "latency", "latency_ms": a.latency_ms, "jitter_ms": a.latency_ms // 10}
        raise ControlError(f"no fault for {a.kind}")

    def start(self, action: Action) -> Started:
        from chaos.scenario import FaultSpec
        from chaos.toxiproxy import ToxiproxyError
        from hacluster.dashboard.controls import ControlError, Started

        with self._lock:
            if action.kind in ("restart", "resume"):
                return self._bring_back(action)
            spec = FaultSpec(at_s=0, duration_s=action.for_s or 600, **self._spec(action))
            index, self._next = self._next, self._next + 1
            try:
                fault = self.nemesis.start(index, spec)
            except (RuntimeError, ValueError, ToxiproxyError) as exc:
                raise ControlError(str(exc)) from exc
            if not fault.targets:
                self.nemesis.end(index)
                raise ControlError(f"{spec.kind}: no target (is there a leader?)")
            return Started(index, f"{spec.kind} on {', '.join(fault.targets)}")

    def _bring_back(self, action: Action) -> Started:
        """End the faults that keep `target` down (restart) or stopped (resume); else restart / SIGCONT it."""
        from chaos.scenario import FaultSpec
        from hacluster.dashboard.controls import Started

        pid = self.handle.pid(action.target)
        mine = [i for i, f in self.nemesis.active.items()
                if (action.kind == "restart" and action.target in f.killed)
                or (action.kind == "resume" and pid in f.paused)]
        for index in mine:
            self.nemesis.end(index)
        if mine:
            return Started(None, f"{action.kind}: {action.target} brought back")
        if action.kind == "resume":
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
            return Started(None, f"resume: SIGCONT to {action.target}")
        index, self._next = self._next, self._next + 1
        self.nemesis.start(index, FaultSpec(at_s=0, duration_s=1, kind="restart", target=action.target))
        self.nemesis.end(index)
        return Started(None, f"restart: {action.target} restarted")

    def end(self, index: int) -> None:
        with self._lock:
            self.nemesis.end(index)

    def heal_all(self) -> None:
        with self._lock:
            self.nemesis.heal_all()


def _handle(state_dir: str | None) -> ClusterHandle:
    from hacluster.cluster import launcher
    from hacluster.config import ConfigError, env_state_dir

    try:
        return launcher.load_handle(Path(state_dir or env_state_dir()))
    except (launcher.LauncherError, ConfigError) as exc:
        raise _Fail(str(exc)) from exc


async def _serve(handle: ClusterHandle, port: int, read_only: bool, open_browser: bool) -> None:
    from aiohttp import web

    from hacluster.dashboard.collect import Collector
    from hacluster.dashboard.server import DashboardServer

    controls = None if read_only else NemesisControls(handle)
    server = DashboardServer(Collector(handle), controls=controls)
    runner = web.AppRunner(server.app(), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise _Fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    bound = runner.addresses[0][1]
    url = f"http://127.0.0.1:{bound}/?token={server.token}"
    click.echo(f"{URL_PREFIX}{url}")
    sys.stdout.flush()
    url_file = handle.state_dir / URL_FILE
    url_file.write_text(url + "\n")
    os.chmod(url_file, 0o600)
    if open_browser:
        webbrowser.open(url)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        url_file.unlink(missing_ok=True)
        await runner.cleanup()


@click.command("dashboard")
@click.option("--state-dir", default=None, metavar="DIR", help="The cluster's state directory.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Only print the URL; do not open a browser.")
@click.option("--read-only", is_flag=True, help="Watch only: no fault controls, no pod creation.")
def dashboard(state_dir: str | None, port: int, no_browser: bool, read_only: bool) -> None:
    """A live web dashboard of the cluster on 127.0.0.1; prints its URL (with a one-time token) first."""
    handle = _handle(state_dir)
    try:
        asyncio.run(_serve(handle, port, read_only, not no_browser))
    except KeyboardInterrupt:
        pass


def start_detached(handle: ClusterHandle, timeout_s: float = START_TIMEOUT_S) -> str:
    """Start `hacluster dashboard` as a process of the cluster; returns its URL once it printed it."""
    from hacluster.cluster import launcher
    from hacluster.cluster.processes import log_tail

    url_file = handle.state_dir / URL_FILE
    url_file.unlink(missing_ok=True)
    proc = launcher.spawn(handle.state_dir, "dashboard", [
        sys.executable, "-m", "hacluster.cli.main", "dashboard", "--state-dir", str(handle.state_dir.resolve()),
        "--no-browser"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if url_file.exists():
            text = url_file.read_text().strip()
            if text:
                return text
        if proc.poll() is not None:
            raise launcher.LauncherError(f"the dashboard exited: {log_tail(handle.state_dir, 'dashboard')}")
        time.sleep(0.05)  # polling for the URL file, bounded by timeout_s
    raise launcher.LauncherError(f"the dashboard printed no URL within {timeout_s:.0f} s")


# ------------------------------------------------------------------------------------ trace pod
@click.group("trace")
def trace() -> None:
    """Follow one object through the control plane."""


@trace.command("pod")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--state-dir", default=None, metavar="DIR", help="The cluster's state directory.")
def trace_pod(name: str, namespace: str, output: str, state_dir: str | None) -> None:
    """NAME's journey: accepted, committed, scheduled, bound, pulled, started, Ready (or where it stopped)."""
    from hacluster.client import ApiClient, ClientError, Indeterminate, Unreachable
    from hacluster.dashboard.collect import fetch_pod_flow

    handle = _handle(state_dir)

    async def fetch() -> dict[str, Any]:
        api = ApiClient(list(handle.apis().values()), handle.admin_token, deadline_s=5.0)
        try:
            return await fetch_pod_flow(api, namespace, name)
        finally:
            await api.close()

    try:
        flow = asyncio.run(fetch())
    except ClientError as exc:
        raise _Fail(str(exc.status.get("message") or exc)) from exc
    except (Unreachable, Indeterminate) as exc:
        raise _Fail(f"no master answered: {exc}") from exc
    if output == "json":
        click.echo(json.dumps(flow, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"pod {flow['namespace']}/{flow['pod']}: {flow['status']}", title_justify="left")
    for col in ("T+", "WHERE", "STEP", "", "DETAIL"):
        t.add_column(col, overflow="fold")
    marks = {"done": "[green]✓[/]", "failed": "[red]✗[/]", "waiting": "[yellow]…[/]"}
    for s in flow["steps"]:
        when = "" if s["t_s"] is None else f"≤{s['t_s']:.3f}s" if s.get("bound") else \
            f"{s['t_s']:.3f}s" if s.get("precise") else f"{s['t_s']:.0f}s"
        t.add_row(when, s["lane"], s["step"], marks[s["state"]], s["detail"])
    Console().print(t)


@click.command("dashboard")
@click.option("--nodes", type=click.IntRange(0, 5000), default=1000, show_default=True)
@click.option("--pods", type=click.IntRange(1, 50_000), default=10_000, show_default=True)
@click.option("--seconds", type=click.FloatRange(1, 300), default=20.0, show_default=True,
              help="Length of each CPU measuring window.")
@click.option("--churn", type=click.IntRange(1, 2000), default=200, show_default=True,
              help="Pod updates per second during the second window.")
@click.option("--samples", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default="out/bench-dashboard.json",
              show_default=True)
@click.option("--state-dir", default=".hacluster-bench-dashboard", metavar="DIR")
def bench_dashboard(nodes: int, pods: int, seconds: float, churn: int, samples: int, out_path: str,
                    state_dir: str) -> None:
    """The dashboard's CPU with NODES nodes and PODS pods (idle and under churn), and change-to-page latency."""
    from hacluster.cluster import launcher
    from hacluster.dashboard.bench import run

    try:
        r = run(Path(state_dir), nodes=nodes, pods=pods, seconds=seconds, churn_per_s=churn, samples=samples,
                out_path=Path(out_path), start_detached=start_detached)
    except (launcher.LauncherError, RuntimeError, OSError) as exc:
        raise _Fail(f"{type(exc).__name__}: {exc}") from exc
    lat = r["create_to_snapshot_ms"]
    click.echo(f"{r['nodes']} nodes, {r['pods']} pods (created in {r['create_s']} s, listed by the dashboard "
               f"{r['listed_after_s']} s after it connected)")
    click.echo(f"dashboard CPU: {r['cpu_idle_pct_of_core']} % of a core idle, {r['cpu_churn_pct_of_core']} % "
               f"with {r['churn_achieved_per_s']} pod updates/s")
    click.echo(f"pod create -> WebSocket snapshot: p50 {lat['p50']} ms, max {lat['max']} ms ({lat['samples']} "
               f"creates); snapshot {r['snapshot_bytes']} bytes")
    click.echo(f"figures in {out_path}")


def register(main: click.Group) -> None:
    main.add_command(dashboard)
    main.add_command(trace)
    bench = main.commands.get("bench")
    if isinstance(bench, click.Group):
        bench.add_command(bench_dashboard)
