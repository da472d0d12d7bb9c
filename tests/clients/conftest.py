"""Real clients against real masters: Debian's kubectl 1.20 (`bin/kubectl`, put there by
`scripts/install-kubectl`), a kubectl 1.32 from /usr/bin where there is one (aggregated discovery first),
the official Python client (`kubernetes`) and the `hacluster` CLI, each run as a user runs it.

One cluster per test module (3 masters, 2 kubelets with the process runtime, as `hacluster up --nodes 2
--runtime process` starts it) keeps the suite quick; tests use their own object names.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hacluster.cluster import launcher
from hacluster.config import default_config, with_engine

REPO = Path(__file__).resolve().parents[2]
AGE = r"(\d+[smhdy])+|<unknown>|<invalid>"


def _version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True,
                             timeout=30, env={**os.environ, "KUBECONFIG": "/dev/null"})
        return str(json.loads(out.stdout)["clientVersion"]["gitVersion"])
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return ""


def find_kubectl() -> tuple[str, str] | None:
    """(path, version) of the kubectl the tests drive: bin/kubectl (Debian's 1.20), else one on PATH."""
    for candidate in (str(REPO / "bin" / "kubectl"), shutil.which("kubectl") or ""):
        if candidate and os.access(candidate, os.X_OK):
            version = _version(candidate)
            if version:
                return candidate, version
    return None


def find_modern_kubectl(primary: str) -> tuple[str, str] | None:
    """A second kubectl of a recent minor (1.24+): /usr/bin/kubectl, or — when that is google-cloud-sdk's
    dispatcher, which picks the client matching the server's minor — its bundled 1.32 (else its newest)."""
    path = "/usr/bin/kubectl"
    if not os.access(path, os.X_OK) or os.path.realpath(path) == os.path.realpath(primary):
        return None
    bundled = glob.glob(os.path.join(os.path.dirname(os.path.realpath(path)), "kubectl.1.*"))
    by_minor = {int(m.group(1)): b for b in bundled if (m := re.search(r"kubectl\.1\.(\d+)$", b))}
    if by_minor:
        path = by_minor.get(32) or by_minor[max(by_minor)]
    version = _version(path)
    m = re.match(r"v1\.(\d+)", version)
    return (path, version) if m and int(m.group(1)) >= 24 else None


KUBECTL = find_kubectl()
need_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl: run scripts/install-kubectl (scripts/test "
                                                          "does) or put kubectl on PATH")


class KCluster:
    """A started cluster and the ways to reach it as a user would."""

    def __init__(self, handle: launcher.ClusterHandle, home: Path) -> None:
        self.h = handle
        self.sd = handle.state_dir
        self.kubeconfig = self.sd / "kubeconfig"
        self.home = home
        self.name = handle.cfg.name
        self.kubectl_path = KUBECTL[0] if KUBECTL else "kubectl"

    def env(self) -> dict[str, str]:
        # A private HOME keeps kubectl's discovery cache out of the user's ~/.kube.
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home), "NO_COLOR": "1",
                "HACLUSTER_STATE_DIR": str(self.sd)}

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60, binary: str | None = None,
                master: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [binary or self.kubectl_path, *args]
        if master:
            argv += ["--context", f"{self.name}-{master}"]
        return subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, env=self.env())

    def hacluster(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hacluster.cli.main", *args], capture_output=True, text=True,
                              input=input, timeout=timeout, env=self.env(), cwd=str(self.home))

    def ok(self, *args: str, input: str | None = None, master: str | None = None) -> str:
        r = self.kubectl(*args, input=input, master=master)
        assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}"
        return r.stdout

    def apply(self, obj: dict[str, Any], *extra: str) -> str:
        return self.ok("apply", "-f", "-", *extra, input=yaml.safe_dump(obj))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.ok("get", *args, "-o", "json"))

    def leader(self) -> str:
        rows = [r for r in launcher.cluster_status(self.h) if r["role"] == "leader"]
        assert len(rows) == 1, rows
        return str(rows[0]["id"])


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (bounded); return it."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s}s (last: {last!r})")


def pod(name: str, *, image: str = "busybox", command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if command:
        container["command"] = command
    p: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": name}},
                         "spec": {"containers": [container]}}
    p["spec"].update(spec)
    return p


SLEEP = ["sh", "-c", "echo started; sleep 600"]


@pytest.fixture(scope="module")
def kcluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The module's cluster; a module may set `STORE_SETTINGS = {...}` (e.g. a short watch history) and
    `STORE_ENGINE = "etcd"` (the same tests on the etcd engine)."""
    sd = tmp_path_factory.mktemp("kcluster")
    home = tmp_path_factory.mktemp("home")
    cfg = default_config(3)
    store = getattr(request.module, "STORE_SETTINGS", None)
    if store:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update=store)})
    engine = getattr(request.module, "STORE_ENGINE", None)
    if engine:
        cfg = with_engine(cfg, engine)
    handle = launcher.up(cfg, sd, nodes=2, runtime="process")
    try:
        yield KCluster(handle, home)
    finally:
        stop_cluster(handle)


def stop_cluster(handle: launcher.ClusterHandle) -> None:
    """`hacluster down`, kubelets first: a master stopped while kubelets hold watches on it waits for them
    (up to the launcher's SIGKILL timeout), which would add seconds to every module."""
    for node in handle.cfg.nodes:
        pid = launcher.read_pid(handle.state_dir, f"kubelet-{node.name}")
        if pid is not None and launcher.pid_alive(pid):
            launcher.stop_pid(pid)
    launcher.down(handle.state_dir)
    assert not launcher.processes_of(handle.state_dir), "down left processes behind"
