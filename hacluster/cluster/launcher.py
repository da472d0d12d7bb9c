"""Local clusters of real processes: `hacluster up`, `down` and `status`.

`up` resolves a cluster config (free ports on 127.0.0.1 outside the ephemeral range, a Raft password,
admin and viewer tokens), writes it into the state directory together with a kubeconfig, spawns one
`hacluster master` process per master (each in its own session, its pid recorded before anything else
happens), and waits until every master is ready and a leader is elected. `down` stops everything a state
directory's processes recorded — and any process whose command line names that state directory, so
nothing is left behind even after `up` itself crashed. Used by the CLI, the demo, benchmarks, chaos runs
and the process-level tests.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hacluster.config import ClusterConfig, MasterConfig, dump_config, load_config, with_generated_secrets

PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768–60999), so outgoing sockets never take them
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class LauncherError(Exception):
    """Something `up`, `down` or `status` cannot do; the message is one line for the CLI."""


_PORT_RNG = random.SystemRandom()  # not the global `random`, which tests (Hypothesis) may seed


def free_port(taken: set[int] | None = None) -> int:
    """A port on 127.0.0.1 that is free now, from PORT_RANGE, and not in `taken` (to which it is added, so
    ports picked for processes that have not bound them yet are never handed out twice)."""
    taken = set() if taken is None else taken
    for _ in range(200):
        port = _PORT_RNG.randint(*PORT_RANGE)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise LauncherError("no free port found on 127.0.0.1")


def resolve_ports(cfg: ClusterConfig) -> ClusterConfig:
    taken = {p for m in cfg.masters for p in (m.api_port, m.raft_port, m.api_tls_port) if p}
    masters = []
    for m in cfg.masters:
        masters.append(MasterConfig(id=m.id, api_port=m.api_port or free_port(taken),
                                    raft_port=m.raft_port or free_port(taken),
                                    api_tls_port=m.api_tls_port or free_port(taken)))
    return cfg.model_copy(update={"masters": tuple(masters)})


@dataclass
class ClusterHandle:
    """A started (or found) cluster: its state directory, config and admin token."""

    state_dir: Path
    cfg: ClusterConfig

    @property
    def config_path(self) -> Path:
        return self.state_dir / "cluster.yaml"

    @property
    def admin_token(self) -> str:
        for u in self.cfg.users:
            if "system:masters" in u.groups:
                return u.token
        raise LauncherError("the cluster config has no admin user")

    def api(self, master_id: str) -> str:
        return f"http://127.0.0.1:{self.cfg.master(master_id).api_port}"

    def api_tls(self, master_id: str) -> str:
        return f"https://127.0.0.1:{self.cfg.master(master_id).api_tls_port}"

    def apis(self) -> dict[str, str]:
        return {m.id: self.api(m.id) for m in self.cfg.masters}

    def pid(self, name: str) -> int | None:
        return read_pid(self.state_dir, name)


def load_handle(state_dir: str | Path) -> ClusterHandle:
    sd = Path(state_dir)
    cfg_path = sd / "cluster.yaml"
    if not cfg_path.exists():
        raise LauncherError(f"no cluster in {sd}: {cfg_path} does not exist (run `hacluster up` first)")
    return ClusterHandle(sd, load_config(cfg_path))


# --------------------------------------------------------------------------------- processes
def _pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


def record_pid(state_dir: Path, name: str, pid: int) -> None:
    d = _pid_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(str(pid))


def read_pid(state_dir: Path, name: str) -> int | None:
    try:
        return int((_pid_dir(state_dir) / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def processes_of(state_dir: Path) -> dict[int, str]:
    """Every live process the cluster in this state directory started (pid -> command line): our masters,
    kubelets and Toxiproxy server, recognised by the state directory in their command line. Never this
    process or one of its ancestors (a shell or `timeout` that was given the same path)."""
    marker = str(state_dir.resolve())
    mine = _ancestors()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in mine:
            continue
        cmd = _cmdline(pid)
        if marker in cmd and ("hacluster.cli.main" in cmd or "toxiproxy" in cmd) and pid_alive(pid):
            found[pid] = cmd
    return found


def spawn(state_dir: Path, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process of the cluster in its own session, logging to `logs/<name>.log`."""
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / f"{name}.log", "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=full_env, close_fds=True)
    out.close()
    record_pid(state_dir, name, proc.pid)
    return proc


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


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (to a stopped process too: SIGCONT first), then SIGKILL after `timeout_s`."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ------------------------------------------------------------------------------------- up/down
def write_kubeconfig(handle: ClusterHandle, server_master: str | None = None) -> Path:
    """A kubeconfig for kubectl and the official clients: HTTPS with our CA, the admin token, and one
    context per master (`<name>-m2`) besides the default one, to point a client at a chosen master."""
    import base64

    from hacluster.cluster.pki import ensure_pki

    ca = base64.b64encode(ensure_pki(handle.state_dir)["ca_cert"].read_bytes()).decode()
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
    from hacluster.kubelet.launch import with_node_users

    cfg = with_node_users(cfg)  # a system:node:<name> user for every node the config defines
    handle = ClusterHandle(sd, cfg)
    dump_config(cfg, handle.config_path)
    os.chmod(handle.config_path, 0o600)
    write_kubeconfig(handle)
    return handle


def _rmtree(p: Path) -> None:
    import shutil

    if p.exists():
        shutil.rmtree(p)


def up(cfg: ClusterConfig, state_dir: str | Path, *, ready_timeout_s: float = READY_TIMEOUT_S,
       nodes: int = 0, runtime: str | None = None, chaos: bool = False, test_storage: str | None = None,
       resume_data: bool = False) -> ClusterHandle:
    """Start every master (and `nodes` kubelets) and wait for them to be ready with one leader; with
    `chaos`, first start the Toxiproxy server and route every Raft and API link through it. On any
    failure, stop whatever started.

    A new cluster by default (whatever `state_dir` held is replaced); with `resume_data`, the cluster whose
    config and data are in `state_dir` starts again with them (`cfg` is then only used for `nodes`).
    `test_storage` ("write-back", tests and chaos runs only; see `hacluster.raft.storage`) is recorded in
    the state directory, so that every later `start_master` uses it too."""
    if nodes:
        from hacluster.kubelet.launch import with_nodes

        cfg = with_nodes(cfg, nodes)
    handle = resume(state_dir) if resume_data else prepare(cfg, state_dir)
    if not chaos:  # a dial table left by an earlier chaos run would send Raft to proxies that are gone
        (handle.state_dir / "raft-links.yaml").unlink(missing_ok=True)
    mode_file = handle.state_dir / TEST_STORAGE_FILE
    if test_storage is not None and test_storage != "disk":
        mode_file.write_text(test_storage + "\n")
    else:
        mode_file.unlink(missing_ok=True)
    try:
        if chaos:
            from chaos.network import start_network

            start_network(handle)
        for m in handle.cfg.masters:
            start_master(handle, m.id)
        wait_ready(handle, ready_timeout_s)
        if nodes or handle.cfg.nodes:
            from hacluster.kubelet.launch import start_kubelets

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
                tail = _log_tail(handle.state_dir, mid)
                raise LauncherError(f"master {mid} exited during start-up: {tail}")
        rows = cluster_status(handle)
        ready = [r for r in rows if r["id"] in ids and r.get("ready")]
        leaders = {r["leader"] for r in rows if r["id"] in ids and r["role"] != "down"}
        if len(ready) == len(ids) and len(leaders) == 1 and None not in leaders:
            return
        last = ", ".join(f"{r['id']}={r['role']}" for r in rows)
        time.sleep(0.05)  # polling the masters until they are ready (bounded by timeout_s)
    raise LauncherError(f"cluster not ready after {timeout_s:.0f} s ({last}); see {handle.state_dir}/logs")


def _log_tail(state_dir: Path, name: str) -> str:
    try:
        lines = (state_dir / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"


def down(state_dir: str | Path) -> list[int]:
    """Stop every process of the cluster in `state_dir`; return the pids that were stopped."""
    sd = Path(state_dir)
    stopped: list[int] = []
    pids: set[int] = set()
    pd = _pid_dir(sd)
    if pd.exists():
        marker = str(sd.resolve())
        for f in pd.glob("*.pid"):
            try:
                pid = int(f.read_text().strip())
            except ValueError:
                continue
            # Only our own process: the pid may have been reused since.
            if pid_alive(pid) and (marker in _cmdline(pid) or "toxiproxy" in _cmdline(pid)):
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
def http_json(url: str, token: str | None, timeout_s: float = 1.0) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


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
    return {"masters": [{k: r.get(k) for k in keys} for r in cluster_status(handle)]}


def leader_of(handle: ClusterHandle) -> dict[str, Any] | None:
    rows = [r for r in cluster_status(handle) if r["role"] == "leader"]
    return rows[0] if len(rows) == 1 else None
