"""Local clusters of real processes: `hacluster up`, `down` and `status`.

`up` resolves a cluster config (free ports on 127.0.0.1 outside the ephemeral range, a Raft password,
admin and viewer tokens), writes it into the state directory together with a kubeconfig, spawns one
`hacluster master` process per master (each in its own session, its pid recorded before anything else
happens), and waits until every master is ready and a leader is elected. `down` stops everything a state
directory's processes recorded — and any process whose command line names that state directory, so
nothing is left behind even after `up` itself crashed. Used by the CLI, the demo, benchmarks, chaos runs
and the process-level tests.

The network between the masters is a parameter: `up(..., network=...)` calls the given starter before the
masters start (the CLI passes the chaos network of `chaos/network.py` for `hacluster up --chaos`; this
module never imports the test rig). The handle and the process helpers live in the leaf module
`hacluster.cluster.processes`, the kubelet processes in `hacluster.cluster.kubelets`.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hacluster.cluster import etcd_members
from hacluster.cluster.kubelets import start_kubelets, with_node_users, with_nodes
from hacluster.cluster.pki import ensure_pki

# The handle and the process helpers are part of the launcher's interface (`launcher.ClusterHandle`, …).
from hacluster.cluster.processes import (
    STOP_TIMEOUT_S as STOP_TIMEOUT_S,
)
from hacluster.cluster.processes import (
    ClusterHandle as ClusterHandle,
)
from hacluster.cluster.processes import (
    LauncherError as LauncherError,
)
from hacluster.cluster.processes import (
    cmdline,
    log_tail,
    pid_dir,
)
from hacluster.cluster.processes import (
    free_port as free_port,
)
from hacluster.cluster.processes import (
    http_json as http_json,
)
from hacluster.cluster.processes import (
    load_handle as load_handle,
)
from hacluster.cluster.processes import (
    pid_alive as pid_alive,
)
from hacluster.cluster.processes import (
    processes_of as processes_of,
)
from hacluster.cluster.processes import (
    read_pid as read_pid,
)
from hacluster.cluster.processes import (
    record_pid as record_pid,
)
from hacluster.cluster.processes import (
    spawn as spawn,
)
from hacluster.cluster.processes import (
    stop_pid as stop_pid,
)
from hacluster.config import ClusterConfig, dump_config, with_generated_secrets

READY_TIMEOUT_S = 30.0

NetworkStarter = Callable[[ClusterHandle], object]
"""Sets up the links between the masters of a prepared cluster before they start (it may write a dial
table into the state directory and spawn proxy processes there, which `down` stops); what it returns is
not used here. `chaos.network.start_network` is one, wired in by the CLI."""


def resolve_ports(cfg: ClusterConfig) -> ClusterConfig:
    taken = {p for m in cfg.masters
             for p in (m.api_port, m.raft_port, m.api_tls_port, m.etcd_client_port, m.etcd_peer_port) if p}
    etcd = etcd_members.runs_members(cfg)  # an etcd member beside each master needs its two ports
    masters = []
    for m in cfg.masters:
        masters.append(m.model_copy(update={
            "api_port": m.api_port or free_port(taken, m.host), "raft_port": m.raft_port or free_port(taken, m.host),
            "api_tls_port": m.api_tls_port or free_port(taken, m.host),
            "etcd_client_port": (m.etcd_client_port or free_port(taken, m.host)) if etcd else 0,
            "etcd_peer_port": (m.etcd_peer_port or free_port(taken, m.host)) if etcd else 0}))
    return cfg.model_copy(update={"masters": tuple(masters)})


TEST_STORAGE_FILE = "test-storage"  # the test storage mode `up` was given, for every later start_master


def recorded_test_storage(state_dir: Path) -> str | None:
    """The test storage mode recorded by `up(..., test_storage=...)`, or None (real disk)."""
    try:
        mode = (state_dir / TEST_STORAGE_FILE).read_text().strip()
    except OSError:
        return None
    return mode or None


def master_argv(handle: ClusterHandle, master_id: str) -> list[str]:
    argv = [sys.executable, "-m", "hacluster.cli.main", "master", "--config", str(handle.config_path.resolve()),
            "--id", master_id]
    mode = recorded_test_storage(handle.state_dir)
    if mode is not None:
        argv += ["--unsafe-test-storage", mode]
    return argv


def start_master(handle: ClusterHandle, master_id: str) -> int:
    proc = spawn(handle.state_dir, master_id, master_argv(handle, master_id))
    return proc.pid


# ------------------------------------------------------------------------------------- up/down
def write_kubeconfig(handle: ClusterHandle, server_master: str | None = None) -> Path:
    """A kubeconfig for kubectl and the official clients: HTTPS with our CA, the admin token, and one
    context per master (`<name>-m2`) besides the default one, to point a client at a chosen master."""
    hosts = tuple(m.host for m in handle.cfg.masters)
    ca = base64.b64encode(ensure_pki(handle.state_dir, hosts)["ca_cert"].read_bytes()).decode()
    first = server_master or handle.cfg.masters[0].id
    clusters = [{"name": f"{handle.cfg.name}-{m.id}",
                 "cluster": {"server": handle.api_tls(m.id), "certificate-authority-data": ca}}
                for m in handle.cfg.masters]
    clusters.insert(0, {"name": handle.cfg.name,
                        "cluster": {"server": handle.api_tls(first), "certificate-authority-data": ca}})
    contexts = [{"name": c["name"], "context": {"cluster": c["name"], "user": "admin", "namespace": "default"}}
                for c in clusters]
    kc = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": clusters,
          "users": [{"name": "admin", "user": {"token": handle.admin_token}}],
          "contexts": contexts, "current-context": handle.cfg.name}
    path = handle.state_dir / "kubeconfig"
    path.write_text(yaml.safe_dump(kc, sort_keys=False))
    os.chmod(path, 0o600)
    return path


def has_data(state_dir: str | Path) -> bool:
    """Does `state_dir` hold the Raft data of a cluster (that `up` would resume, or wipe only when asked)?"""
    sd = Path(state_dir)
    data = sd / "data"
    return (sd / "cluster.yaml").exists() and data.is_dir() and any(p.is_file() for p in data.rglob("*"))


def resume(state_dir: str | Path) -> ClusterHandle:
    """The handle of the stopped cluster whose config and data are in `state_dir`, ready to start again with
    the same ports, secrets and data (`hacluster down` then `hacluster up` on the same state directory)."""
    sd = Path(state_dir)
    if processes_of(sd):
        raise LauncherError(f"a cluster is already running in {sd}: run `hacluster down --state-dir {sd}` first")
    handle = load_handle(sd)
    _rmtree(sd / "pids")
    write_kubeconfig(handle)
    return handle


def prepare(cfg: ClusterConfig, state_dir: str | Path) -> ClusterHandle:
    """Write the resolved config and kubeconfig of a new cluster into `state_dir` (which must be free);
    any data a previous cluster left there is deleted (the CLI asks before: see `has_data`)."""
    sd = Path(state_dir)
    if sd.exists() and processes_of(sd):
        raise LauncherError(f"a cluster is already running in {sd}: run `hacluster down --state-dir {sd}` first")
    sd.mkdir(parents=True, exist_ok=True)
    (sd / TEST_STORAGE_FILE).unlink(missing_ok=True)
    for stale in ("pids", "data", "logs", "audit"):
        _rmtree(sd / stale)
    cfg = with_generated_secrets(resolve_ports(cfg))
    cfg = with_node_users(cfg)  # a system:node:<name> user for every node the config defines
    handle = ClusterHandle(sd, cfg)
    dump_config(cfg, handle.config_path)
    os.chmod(handle.config_path, 0o600)
    write_kubeconfig(handle)
    return handle


def prepare_hosts(cfg: ClusterConfig, out_dir: str | Path) -> ClusterHandle:
    """The files for masters that run on several hosts, each started by hand (`hacluster master --config
    cluster.yaml --id mN`): `cluster.yaml` with the secrets filled in, `pki/` (a CA and one server certificate
    for every master's host) and `kubeconfig`, written into `out_dir` to be copied to every host. No launcher
    picks ports here, so the config must give each one."""
    missing = [f"masters.{m.id}.{key}" for m in cfg.masters for key in ("api_port", "raft_port", "api_tls_port")
               if not getattr(m, key)]
    if missing:
        raise LauncherError(f"a config for several hosts must give every port (no `hacluster up` picks them): "
                            f"{', '.join(missing)}")
    sd = Path(out_dir)
    if (sd / "cluster.yaml").exists():
        raise LauncherError(f"{sd} already holds a cluster.yaml (and its secrets): choose another --out")
    sd.mkdir(parents=True, exist_ok=True)
    handle = ClusterHandle(sd, with_node_users(with_generated_secrets(cfg)))
    dump_config(handle.cfg, handle.config_path)
    os.chmod(handle.config_path, 0o600)
    write_kubeconfig(handle)
    return handle


def _rmtree(p: Path) -> None:
    if p.exists():
        shutil.rmtree(p)


def up(cfg: ClusterConfig, state_dir: str | Path, *, ready_timeout_s: float = READY_TIMEOUT_S,
       nodes: int = 0, runtime: str | None = None, network: NetworkStarter | None = None,
       test_storage: str | None = None, resume_data: bool = False) -> ClusterHandle:
    """Start every master (and `nodes` kubelets) and wait for them to be ready with one leader; with
    `network`, first call it with the handle (the chaos network starts the Toxiproxy server and routes
    every Raft link through it). On any failure, stop whatever started.

    A new cluster by default (whatever `state_dir` held is replaced); with `resume_data`, the cluster whose
    config and data are in `state_dir` starts again with them (`cfg` is then only used for `nodes`).
    `test_storage` ("write-back", tests and chaos runs only; see `hacluster.raft.storage`) is recorded in
    the state directory, so that every later `start_master` uses it too."""
    if nodes:
        cfg = with_nodes(cfg, nodes)
    handle = resume(state_dir) if resume_data else prepare(cfg, state_dir)
    if network is None:  # a dial table left by an earlier chaos run would send Raft to proxies that are gone
        (handle.state_dir / "raft-links.yaml").unlink(missing_ok=True)
        if not resume_data:  # (a resumed etcd member keeps the peer URLs it was created with)
            (handle.state_dir / etcd_members.PEERS_FILE).unlink(missing_ok=True)
    mode_file = handle.state_dir / TEST_STORAGE_FILE
    if test_storage is not None and test_storage != "disk":
        mode_file.write_text(test_storage + "\n")
    else:
        mode_file.unlink(missing_ok=True)
    try:
        if network is not None:
            network(handle)
        if etcd_members.runs_members(handle.cfg):
            etcd_members.start_members(handle)
            etcd_members.wait_members(handle, ready_timeout_s)
        for m in handle.cfg.masters:
            start_master(handle, m.id)
        wait_ready(handle, ready_timeout_s)
        if nodes or handle.cfg.nodes:
            start_kubelets(handle, nodes, runtime=runtime or handle.cfg.kubelet.runtime,
                           ready_timeout_s=ready_timeout_s)
    except BaseException:
        down(handle.state_dir)
        raise
    return handle


def wait_ready(handle: ClusterHandle, timeout_s: float, *, masters: list[str] | None = None) -> None:
    """Wait until the given masters (default: all) answer /readyz and agree on one leader."""
    ids = masters or [m.id for m in handle.cfg.masters]
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        for mid in ids:
            pid = handle.pid(mid)
            if pid is not None and not pid_alive(pid):
                tail = log_tail(handle.state_dir, mid)
                raise LauncherError(f"master {mid} exited during start-up: {tail}")
        rows = cluster_status(handle)
        ready = [r for r in rows if r["id"] in ids and r.get("ready")]
        leaders = {r["leader"] for r in rows if r["id"] in ids and r["role"] != "down"}
        if len(ready) == len(ids) and len(leaders) == 1 and None not in leaders:
            return
        last = ", ".join(f"{r['id']}={r['role']}" for r in rows)
        time.sleep(0.05)  # polling the masters until they are ready (bounded by timeout_s)
    raise LauncherError(f"cluster not ready after {timeout_s:.0f} s ({last}); see {handle.state_dir}/logs")


def down(state_dir: str | Path) -> list[int]:
    """Stop every process of the cluster in `state_dir`; return the pids that were stopped."""
    sd = Path(state_dir)
    stopped: list[int] = []
    pids: set[int] = set()
    pd = pid_dir(sd)
    if pd.exists():
        marker = str(sd.resolve())
        for f in pd.glob("*.pid"):
            try:
                pid = int(f.read_text().strip())
            except ValueError:
                continue
            # Only our own process: the pid may have been reused since.
            if pid_alive(pid) and (marker in cmdline(pid) or "toxiproxy" in cmdline(pid)):
                pids.add(pid)
    if sd.exists():
        pids.update(processes_of(sd))
    for pid in sorted(pids):
        stop_pid(pid)
        stopped.append(pid)
    if pd.exists():
        for f in pd.glob("*.pid"):
            f.unlink(missing_ok=True)
    return stopped


# ------------------------------------------------------------------------------------ status
def cluster_status(handle: ClusterHandle, timeout_s: float = 1.0) -> list[dict[str, Any]]:
    """One row per master: the `hacluster status -o json` shape plus `ready` and `peers`."""
    rows = []
    token = handle.admin_token
    for m in handle.cfg.masters:
        api = handle.api(m.id)
        pid = handle.pid(m.id)
        row: dict[str, Any] = {"id": m.id, "api": api, "pid": pid, "role": "down", "term": None, "leader": None,
                               "commit_index": None, "applied_index": None,
                               "storage": recorded_test_storage(handle.state_dir) or "disk"}
        if pid is None or pid_alive(pid):
            try:
                d = http_json(f"{api}/debug/raft", token, timeout_s)
                row.update({"role": d["role"], "term": d["term"], "leader": d["leader"],
                            "commit_index": d["commit_index"], "applied_index": d["applied_index"],
                            "revision": d.get("revision"), "fingerprint": d.get("fingerprint"),
                            "quorum": d.get("quorum"), "peers": d.get("peers", []),
                            "journal": d.get("journal")})
                if isinstance(d.get("journal"), dict) and d["journal"].get("storage"):
                    row["storage"] = d["journal"]["storage"]
                try:
                    with urllib.request.urlopen(f"{api}/readyz", timeout=timeout_s) as r:
                        row["ready"] = r.status == 200
                except (urllib.error.URLError, OSError):
                    row["ready"] = False
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
        rows.append(row)
    return rows


def status_json(handle: ClusterHandle) -> dict[str, Any]:
    """The contract of `hacluster status -o json`."""
    keys = ("id", "api", "pid", "role", "term", "leader", "commit_index", "applied_index", "storage")
    return {"masters": [{k: r.get(k) for k in keys} for r in cluster_status(handle)],
            "store": {**etcd_members.store_status(handle), **handle.cfg.store.summary()}}


def leader_of(handle: ClusterHandle) -> dict[str, Any] | None:
    rows = [r for r in cluster_status(handle) if r["role"] == "leader"]
    return rows[0] if len(rows) == 1 else None
