"""Kubelet processes of a local cluster: what `hacluster up --nodes K --runtime sim|process` starts.

Part of the launcher (`hacluster.cluster.launcher` calls it; `hacluster kubelet` restarts use
`start_kubelet`): `with_nodes` adds node-1 … node-K to the cluster config before it
is resolved, `with_node_users` gives every node (and every fleet identity) a `system:node:<name>` user with
a fresh token, and `start_kubelets` spawns one `hacluster kubelet` process per node — with the state
directory's cluster file on its command line, so `hacluster down` finds and stops it — then waits until
every node is registered and Ready. On failure it raises `LauncherError` with the kubelet's last log line.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.error
from pathlib import Path

from hacluster.cluster.processes import ClusterHandle, LauncherError, http_json, log_tail, pid_alive, spawn
from hacluster.config import ClusterConfig, NodeConfig, UserConfig

READY_POLL_S = 0.1


def node_names(cfg: ClusterConfig) -> list[str]:
    return [n.name for n in cfg.nodes]


def fleet_names(cfg: ClusterConfig, prefix: str = "fleet-") -> list[str]:
    return [f"{prefix}{i}" for i in range(1, cfg.kubelet.fleet_nodes + 1)]


def with_nodes(cfg: ClusterConfig, count: int) -> ClusterConfig:
    """`cfg` with node-1 … node-<count> added to its nodes (those already defined are kept as they are)."""
    have = {n.name for n in cfg.nodes}
    extra = [NodeConfig(name=f"node-{i}") for i in range(1, count + 1) if f"node-{i}" not in have]
    return cfg.model_copy(update={"nodes": tuple(cfg.nodes) + tuple(extra)}) if extra else cfg


def with_node_users(cfg: ClusterConfig) -> ClusterConfig:
    """`cfg` with a `system:node:<name>` user (group system:nodes) for every node and fleet identity that
    has none."""
    users = list(cfg.users)
    have = {u.name for u in users}
    for name in node_names(cfg) + fleet_names(cfg):
        user = f"system:node:{name}"
        if user not in have:
            users.append(UserConfig(name=user, token=secrets.token_hex(16), groups=("system:nodes",)))
    return cfg.model_copy(update={"users": tuple(users)}) if len(users) != len(cfg.users) else cfg


def kubelet_argv(config_path: Path, node: str, runtime: str) -> list[str]:
    return [sys.executable, "-m", "hacluster.cli.main", "kubelet", "--node", node, "--config",
            str(config_path.resolve()), "--runtime", runtime]


def start_kubelets(handle: ClusterHandle, nodes: int = 0, *, runtime: str = "sim",
                   ready_timeout_s: float = 30.0) -> list[str]:
    """Spawn a kubelet for every node of the cluster config and wait until all are Ready; return their names."""
    names = node_names(handle.cfg)
    if nodes and len(names) < nodes:
        raise LauncherError(f"the cluster config defines {len(names)} nodes, {nodes} were asked for")
    for n in handle.cfg.nodes:
        spawn(handle.state_dir, f"kubelet-{n.name}", kubelet_argv(handle.config_path, n.name, n.runtime or runtime))
    wait_nodes_ready(handle, names, ready_timeout_s)
    return names


def start_kubelet(handle: ClusterHandle, name: str, runtime: str | None = None) -> int:
    """(Re)start one node's kubelet (with its configured runtime unless one is given); return its pid."""
    node = next((n for n in handle.cfg.nodes if n.name == name), None)
    chosen = runtime or (node.runtime if node is not None else None) or handle.cfg.kubelet.runtime
    return spawn(handle.state_dir, f"kubelet-{name}", kubelet_argv(handle.config_path, name, chosen)).pid


def nodes_ready(handle: ClusterHandle) -> dict[str, bool]:
    """Node name → Ready condition is True, read from the first master that answers."""
    for m in handle.cfg.masters:
        try:
            listing = http_json(f"{handle.api(m.id)}/api/v1/nodes", handle.admin_token, timeout_s=2.0)
        except (urllib.error.URLError, OSError, ValueError):
            continue
        out = {}
        for n in listing.get("items") or []:
            conds = (n.get("status") or {}).get("conditions") or []
            out[n["metadata"]["name"]] = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        return out
    return {}


def wait_nodes_ready(handle: ClusterHandle, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    ready: dict[str, bool] = {}
    while time.monotonic() < deadline:
        for name in names:
            pid = handle.pid(f"kubelet-{name}")
            if pid is not None and not pid_alive(pid):
                raise LauncherError(f"kubelet {name} exited during start-up: "
                                    f"{log_tail(handle.state_dir, f'kubelet-{name}')}")
        ready = nodes_ready(handle)
        if all(ready.get(n) for n in names):
            return
        time.sleep(READY_POLL_S)
    missing = [n for n in names if not ready.get(n)]
    raise LauncherError(f"nodes not Ready after {timeout_s:.0f} s: {', '.join(missing)}; see "
                        f"{handle.state_dir}/logs")
