"""The etcd cluster `hacluster up --store etcd` runs: one etcd member per master, on loopback ports.

Used by `hacluster.cluster.launcher` (start, wait, status) when `store.engine` is etcd and
`store.etcd.endpoints` is empty. Member `<master id>` keeps its data in `<state dir>/data/etcd-<id>/`,
listens for clients on the master's `etcd_client_port` and for peers on its `etcd_peer_port` (both on
the master's `host`), and is a process of the state directory like the masters (`logs/etcd-<id>.log`, its pid in
`pids/etcd-<id>.pid`), so `hacluster down` stops it. A data directory that already holds a member is
started again as it is (`hacluster up` on a stopped cluster resumes it).

The peer URL a member *advertises* may be a proxy (`etcd-peers.yaml`, written by the chaos network
before the members start): every peer then reaches that member through its proxy. Status comes from
etcd's own status API (its JSON gateway, `/v3/maintenance/status`), not from anything hacluster computes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from hacluster.cluster.processes import ClusterHandle, LauncherError, log_tail, pid_alive, read_pid, spawn
from hacluster.config import ClusterConfig

PEERS_FILE = "etcd-peers.yaml"
"""member id -> the peer URL it advertises (a proxy), written by the chaos network."""
ETCD_BINARY_HINT = "run scripts/install-etcd (builds etcd with Go, or installs Debian's etcd-server)"
STATUS_TIMEOUT_S = 0.5


def runs_members(cfg: ClusterConfig) -> bool:
    """Does `hacluster up` run etcd members for this config (etcd engine, no external endpoints)?"""
    return cfg.store.engine == "etcd" and not cfg.store.etcd.endpoints


def member_name(master_id: str) -> str:
    return f"etcd-{master_id}"


def find_etcd_binary() -> str:
    """bin/etcd of this checkout (scripts/install-etcd), else `etcd` on PATH. In a checkout that has
    neither, scripts/install-etcd runs once first (as `scripts/test` would: the demo's setup skips the etcd
    build, so the first `up --store etcd` of a fresh clone does it); LauncherError names the fix otherwise."""
    root = Path(__file__).resolve().parents[2]
    here = root / "bin" / "etcd"
    if not here.exists() and shutil.which("etcd") is None and (root / "scripts" / "install-etcd").exists():
        print("no etcd yet: running scripts/install-etcd (a few minutes the first time) …", file=sys.stderr,
              flush=True)
        done = subprocess.run([str(root / "scripts" / "install-etcd")], cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=1800, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise LauncherError(f"no etcd binary, and scripts/install-etcd failed: {last}")
    if here.exists():
        return str(here)
    found = shutil.which("etcd")
    if found:
        return found
    raise LauncherError(f"no etcd binary: {ETCD_BINARY_HINT}")


def client_url(cfg: ClusterConfig, master_id: str) -> str:
    m = cfg.master(master_id)
    return f"http://{m.host}:{m.etcd_client_port}"


def peer_url(cfg: ClusterConfig, master_id: str) -> str:
    m = cfg.master(master_id)
    return f"http://{m.host}:{m.etcd_peer_port}"


def advertised_peers(handle: ClusterHandle) -> dict[str, str]:
    """member id -> the peer URL it advertises (its own, or the chaos network's proxy in front of it)."""
    path = handle.state_dir / PEERS_FILE
    proxied = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    return {m.id: str(proxied.get(m.id) or peer_url(handle.cfg, m.id)) for m in handle.cfg.masters}


def member_argv(handle: ClusterHandle, master_id: str) -> list[str]:
    cfg = handle.cfg
    e = cfg.store.etcd
    peers = advertised_peers(handle)
    data = handle.state_dir / cfg.data_dir / member_name(master_id)
    return [
        find_etcd_binary(),
        "--name", master_id,
        "--data-dir", str(data.resolve()),
        "--listen-client-urls", client_url(cfg, master_id),
        "--advertise-client-urls", client_url(cfg, master_id),
        "--listen-peer-urls", peer_url(cfg, master_id),
        "--initial-advertise-peer-urls", peers[master_id],
        "--initial-cluster", ",".join(f"{mid}={url}" for mid, url in peers.items()),
        "--initial-cluster-token", f"hacluster-{cfg.name}",
        "--initial-cluster-state", "new",
        "--heartbeat-interval", str(e.heartbeat_ms),
        "--election-timeout", str(e.election_timeout_ms),
        "--auto-compaction-mode", "revision",
        "--auto-compaction-retention", str(e.compaction_retention_revisions),
        # The masters' gRPC clients ping every 5 s to notice dead links; etcd's default minimum is 5 s too.
        "--grpc-keepalive-min-time", "1s",
        "--log-level", "warn",
    ]


def start_members(handle: ClusterHandle) -> None:
    """Spawn every member (each in its own session, pid recorded), without waiting for them."""
    for m in handle.cfg.masters:
        (handle.state_dir / handle.cfg.data_dir).mkdir(parents=True, exist_ok=True)
        spawn(handle.state_dir, member_name(m.id), member_argv(handle, m.id))


def start_member(handle: ClusterHandle, master_id: str) -> int:
    """Start one member again (its data directory makes it rejoin as it was)."""
    return spawn(handle.state_dir, member_name(master_id), member_argv(handle, master_id)).pid


def _post_json(url: str, timeout_s: float) -> Any:
    req = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        return json.loads(r.read())


def _member_id(raw: Any) -> int:
    # The JSON gateway writes 64-bit ids as decimal strings.
    return int(raw) if raw not in (None, "") else 0


def member_rows(handle: ClusterHandle, timeout_s: float = STATUS_TIMEOUT_S) -> list[dict[str, Any]]:
    """One row per member from etcd's status API: id, endpoint, pid, role (leader|follower|down), term,
    leader (member name), raft_index."""
    cfg = handle.cfg
    statuses: dict[str, dict[str, Any]] = {}
    names: dict[int, str] = {}
    for m in cfg.masters:
        url = client_url(cfg, m.id)
        try:
            statuses[m.id] = _post_json(f"{url}/v3/maintenance/status", timeout_s)
            if not names:
                listed = _post_json(f"{url}/v3/cluster/member/list", timeout_s)
                names = {_member_id(x.get("ID")): x.get("name", "") for x in listed.get("members", [])}
        except (urllib.error.URLError, OSError, ValueError):
            continue
    rows = []
    for m in cfg.masters:
        pid = read_pid(handle.state_dir, member_name(m.id))
        row: dict[str, Any] = {"id": m.id, "endpoint": client_url(cfg, m.id), "pid": pid, "role": "down",
                               "term": None, "leader": None, "raft_index": None}
        st = statuses.get(m.id)
        if st is not None and (pid is None or pid_alive(pid)):
            me = _member_id((st.get("header") or {}).get("member_id"))
            leader = _member_id(st.get("leader"))
            row.update({"role": "leader" if leader and leader == me else "follower",
                        "term": int(st.get("raftTerm") or 0), "leader": names.get(leader) if leader else None,
                        "raft_index": int(st.get("raftIndex") or 0)})
        rows.append(row)
    return rows


def wait_members(handle: ClusterHandle, timeout_s: float) -> None:
    """Wait until every member answers and they agree on one leader (LauncherError otherwise)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        for m in handle.cfg.masters:
            pid = read_pid(handle.state_dir, member_name(m.id))
            if pid is not None and not pid_alive(pid):
                raise LauncherError(f"etcd member {m.id} exited during start-up: "
                                    f"{log_tail(handle.state_dir, member_name(m.id))}")
        rows = member_rows(handle)
        leaders = {r["leader"] for r in rows}
        if all(r["role"] != "down" for r in rows) and len(leaders) == 1 and None not in leaders:
            return
        last = ", ".join(f"{r['id']}={r['role']}" for r in rows)
        time.sleep(0.1)  # polling the members' status until they elect (bounded by timeout_s)
    raise LauncherError(f"etcd members not ready after {timeout_s:.0f} s ({last}); see {handle.state_dir}/logs")


def store_status(handle: ClusterHandle) -> dict[str, Any]:
    """The `"store"` part of `hacluster status -o json`."""
    cfg = handle.cfg
    if cfg.store.engine != "etcd":
        return {"engine": cfg.store.engine}
    if not runs_members(cfg):
        return {"engine": "etcd", "endpoints": list(cfg.store.etcd.endpoints)}
    return {"engine": "etcd", "members": member_rows(handle)}

