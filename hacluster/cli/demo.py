"""`hacluster demo`: the quick-start tour of a local 3-master control plane.

Starts a cluster and its live dashboard (printing its URL), writes pods through a follower, reads them back
from every master, SIGKILLs the leader, shows writes continuing on the new leader (and how long the gap was),
restarts the killed master and shows it catching up from its journal, then stops everything — also on Ctrl-C
or an error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hacluster.cluster import launcher
from hacluster.config import default_config

PODS = "/api/v1/namespaces/default/pods"


def _req(method: str, url: str, token: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method)
    r.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        r.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "demo"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}


def _status_table(handle: launcher.ClusterHandle, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("master", "role", "term", "leader", "commit", "applied", "revision"):
        t.add_column(col)
    for r in launcher.cluster_status(handle):
        role = r["role"]
        style = {"leader": "bold green", "down": "bold red", "candidate": "yellow"}.get(role, "")
        t.add_row(r["id"], f"[{style}]{role}[/]" if style else role, str(r["term"] or "-"),
                  str(r["leader"] or "-"), str(r["commit_index"] or "-"), str(r["applied_index"] or "-"),
                  str(r.get("revision") or "-"))
    return t


def run(masters: int, state_dir: Path, *, quick_experiment: bool = False) -> int:
    console = Console()
    console.rule("[bold]hacluster demo")
    console.print(f"Starting {masters} masters on 127.0.0.1 (state in {state_dir}) …")
    try:
        handle = launcher.up(default_config(masters), state_dir)
    except launcher.LauncherError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    try:
        _dashboard(console, handle)
        return _tour(console, handle, quick_experiment)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        stopped = launcher.down(state_dir)
        console.print(f"Stopped {len(stopped)} process(es); nothing is left running.")


def _dashboard(console: Console, handle: launcher.ClusterHandle) -> None:
    """Start the live dashboard beside the tour (stopped with the cluster); the tour goes on without it."""
    from hacluster.cli.dashboard_cmd import start_detached

    try:
        url = start_detached(handle)
    except launcher.LauncherError as exc:
        console.print(f"[yellow]dashboard not started:[/] {exc}")
        return
    console.print(f"Live dashboard (open it to watch the tour): [bold]{url}[/]", soft_wrap=True)


def _tour(console: Console, handle: launcher.ClusterHandle, quick_experiment: bool) -> int:
    token = handle.admin_token
    console.print(_status_table(handle, "1. A leader is elected"))
    leader = launcher.leader_of(handle)
    if leader is None:
        console.print("[red]no leader[/]")
        return 1
    followers = [m.id for m in handle.cfg.masters if m.id != leader["id"]]
    via = followers[0] if followers else leader["id"]
    console.print(f"\n2. Writing 5 pods through [bold]{via}[/] (a follower forwards to the leader "
                  f"{leader['id']}; a write is acknowledged once a majority has it):")
    for i in range(5):
        code, body = _req("POST", handle.api(via) + PODS, token, _pod(f"web-{i}"))
        rv = body["metadata"]["resourceVersion"] if code == 201 else body
        console.print(f"   POST web-{i} -> {code}  resourceVersion {rv}")
    console.print("   Reading them back from every master (linearizable reads):")
    for m in handle.cfg.masters:
        code, body = _req("GET", handle.api(m.id) + PODS + "?labelSelector=app%3Ddemo", token)
        names = [p["metadata"]["name"] for p in body["items"]] if code == 200 else body
        console.print(f"   {m.id}: {names}")

    if len(handle.cfg.masters) < 3:
        console.print("\n(With fewer than 3 masters there is no failover to show.)")
        return 0
    console.print(f"\n3. [bold red]SIGKILL the leader {leader['id']}[/] (pid {leader['pid']}) and keep writing "
                  "through the survivors …")
    os.kill(int(leader["pid"]), signal.SIGKILL)
    killed_at = time.monotonic()
    survivors = [m.id for m in handle.cfg.masters if m.id != leader["id"]]
    refused, first_ok, i = 0, None, 0
    while time.monotonic() - killed_at < 15 and first_ok is None:
        for mid in survivors:
            i += 1
            code, _ = _req("POST", handle.api(mid) + PODS, token, _pod(f"after-kill-{i}"), timeout=3)
            if code == 201:
                first_ok = time.monotonic() - killed_at
                console.print(f"   first write acknowledged by {mid} {first_ok:.2f} s after the kill "
                              f"({refused} attempts refused with 503/504 while the survivors elected a leader)")
                break
            refused += 1
        time.sleep(0.02)  # pace the retries
    if first_ok is None:
        console.print("[red]   no write was acknowledged within 15 s[/]")
        return 1
    for j in range(5):
        code, _ = _req("POST", handle.api(survivors[j % len(survivors)]) + PODS, token, _pod(f"new-leader-{j}"))
        console.print(f"   POST new-leader-{j} via {survivors[j % len(survivors)]} -> {code}")
    new_leader = launcher.leader_of(handle)
    console.print(_status_table(handle, f"4. New leader {new_leader['id'] if new_leader else '?'} in a higher "
                                        "term; the old one is down"))

    console.print(f"\n5. Restarting {leader['id']}: it replays its journal and catches up from the leader …")
    launcher.start_master(handle, leader["id"])
    launcher.wait_ready(handle, 30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = launcher.cluster_status(handle)
        if len({r.get("fingerprint") for r in rows}) == 1:
            break
        time.sleep(0.05)
    console.print(_status_table(handle, "6. All masters hold identical state again"))
    code, body = _req("GET", handle.api(leader["id"]) + PODS, token)
    count = len(body["items"]) if code == 200 else "?"
    console.print(f"   {leader['id']} now serves {count} pods, including those written while it was dead.")
    console.print("\nTry it yourself: [bold]hacluster up[/], then kubectl --kubeconfig .hacluster/kubeconfig get pods")
    console.print("What the quorum buys: [bold]hacluster experiment split-brain --quick[/] "
                  "(Raft against an unsafe engine)")
    if quick_experiment:
        return _experiment(console)
    return 0


def _experiment(console: Console) -> int:
    out = Path("out/quorum-quick")
    console.rule("[bold]The quorum experiment (quick)")
    rc = subprocess.call([sys.executable, "-m", "hacluster.cli.main", "experiment", "quorum", "--quick",
                          "--out", str(out)])
    return rc
