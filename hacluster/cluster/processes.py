"""The handle of a local cluster and the helpers for its processes: ports, pid files, spawning, stopping.

A leaf module (it imports nothing of the project but the config), so that everything that starts or finds
processes of a cluster — the launcher (`hacluster.cluster.launcher`), the kubelet launcher
(`hacluster.cluster.kubelets`), the chaos network (`chaos/network.py`), the dashboard and the CLI — can
share one `ClusterHandle` without importing one another.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hacluster.config import ClusterConfig, load_config

PORT_RANGE = (20000, 32000)  # below Linux's ephemeral range (32768–60999), so outgoing sockets never take them
STOP_TIMEOUT_S = 5.0


class LauncherError(Exception):
    """Something `up`, `down` or `status` cannot do; the message is one line for the CLI."""


_PORT_RNG = random.SystemRandom()  # not the global `random`, which tests (Hypothesis) may seed


def free_port(taken: set[int] | None = None, host: str = "127.0.0.1") -> int:
    """A port on `host` that is free now, from PORT_RANGE, and not in `taken` (to which it is added, so
    ports picked for processes that have not bound them yet are never handed out twice)."""
    taken = set() if taken is None else taken
    for _ in range(200):
        port = _PORT_RNG.randint(*PORT_RANGE)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise LauncherError(f"no free port found on {host}")


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
        return self.cfg.master(master_id).api_url()

    def api_tls(self, master_id: str) -> str:
        return self.cfg.master(master_id).api_url(tls=True)

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
def pid_dir(state_dir: Path) -> Path:
    return state_dir / "pids"


def record_pid(state_dir: Path, name: str, pid: int) -> None:
    d = pid_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(str(pid))


def read_pid(state_dir: Path, name: str) -> int | None:
    try:
        return int((pid_dir(state_dir) / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> str:
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
        cmd = cmdline(pid)
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


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (to a stopped process too: SIGCONT first), then SIGKILL after `timeout_s`."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    if exits_within(pid, timeout_s):
        _reap(pid)
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def exits_within(pid: int, timeout_s: float) -> bool:
    """Whether process `pid` is gone, or goes within `timeout_s` (polled: a bounded wait on its state)."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass



def log_tail(state_dir: Path, name: str) -> str:
    """The last line of the log of the process `name` (for an error message when it exited)."""
    try:
        lines = (state_dir / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"



def http_json(url: str, token: str | None, timeout_s: float = 1.0) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


