"""`hacluster status`: the Raft picture of a local cluster as a table (rich), optionally refreshed live."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hacluster.cluster import etcd_members, launcher


def _table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="hacluster masters", title_justify="left")
    for col in ("MASTER", "API", "PID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "REVISION", "LINKS"):
        t.add_column(col)
    for r in rows:
        role = r["role"]
        style = {"leader": "bold green", "follower": "", "candidate": "yellow", "down": "red"}.get(role, "")
        links = " ".join(f"{p['id']}:{'up' if p['connected'] else 'down'}" for p in r.get("peers") or [])
        t.add_row(r["id"], r["api"], str(r["pid"] or "-"), f"[{style}]{role}[/]" if style else role,
                  _s(r["term"]), _s(r["leader"]), _s(r["commit_index"]), _s(r["applied_index"]),
                  _s(r.get("revision")), links or "-")
    return t


def _members_table(handle: launcher.ClusterHandle) -> Table | None:
    """The etcd members `up --store etcd` runs, from etcd's status API (None on other engines)."""
    if not etcd_members.runs_members(handle.cfg):
        return None
    t = Table(title="etcd members", title_justify="left")
    for col in ("MEMBER", "ENDPOINT", "PID", "ROLE", "TERM", "LEADER", "RAFT INDEX"):
        t.add_column(col)
    for r in etcd_members.member_rows(handle):
        t.add_row(r["id"], r["endpoint"], _s(r["pid"]), r["role"], _s(r["term"]), _s(r["leader"]),
                  _s(r["raft_index"]))
    return t


def _s(v: Any) -> str:
    return "-" if v is None else str(v)


def unsafe_banner(handle: launcher.ClusterHandle) -> str | None:
    """The line printed above the table of a cluster whose store engine loses acknowledged writes."""
    if not handle.cfg.store.unsafe:
        return None
    return (f"UNSAFE: store engine {handle.cfg.store.engine} acknowledges writes before any backup has them and "
            "fails over on a timeout: a partition makes two primaries and loses acknowledged writes "
            "(split-brain experiment only)")


def _view(handle: launcher.ClusterHandle) -> RenderableType:
    table = _table(launcher.cluster_status(handle))
    banner = unsafe_banner(handle)
    return table if banner is None else Group(Text(banner, style="bold white on red"), table)


def show(handle: launcher.ClusterHandle, *, watch: bool, period_s: float = 1.0) -> None:
    console = Console()
    if not watch:
        console.print(_view(handle))
        members = _members_table(handle)
        if members is not None:
            console.print(members)
        return
    try:
        with Live(_view(handle), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(period_s)
                live.update(_view(handle))
    except KeyboardInterrupt:
        pass
