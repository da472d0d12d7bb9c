"""Masters on several hosts, as README's "Beyond one machine" runs them: `hacluster pki` once, then
`hacluster master --config cluster.yaml --id mN` on each host, each from its own copy of the files.

The three "hosts" are the loopback addresses 127.0.0.2, 127.0.0.3 and 127.0.0.4 (Linux routes all of
127.0.0.0/8 to lo), so nothing here may assume 127.0.0.1: every master listens on its own address only,
finds its peers by theirs, and kubectl reaches each one over TLS with a certificate naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from hacluster.cluster.processes import free_port, http_json
from hacluster.config import dump_config, load_config
from tests.clients.conftest import find_kubectl
from tests.support import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HACLUSTER = [sys.executable, "-m", "hacluster.cli.main"]


def _site(tmp_path: Path) -> tuple[Path, Any]:
    """configs/multi-host/cluster.yaml with ports free on each host now, through `hacluster pki`."""
    cfg = load_config(REPO / "configs" / "multi-host" / "cluster.yaml")
    taken: set[int] = set()
    masters = tuple(m.model_copy(update={"api_port": free_port(taken, m.host), "raft_port": free_port(taken, m.host),
                                         "api_tls_port": free_port(taken, m.host)}) for m in cfg.masters)
    cfg = cfg.model_copy(update={"masters": masters})
    dump_config(cfg, tmp_path / "cluster.yaml")
    done = subprocess.run([*HACLUSTER, "pki", "--config", str(tmp_path / "cluster.yaml"), "--out",
                           str(tmp_path / "site")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return tmp_path / "site", load_config(tmp_path / "site" / "cluster.yaml")


def _token(site: Path) -> str:
    return str(yaml.safe_load((site / "kubeconfig").read_text())["users"][0]["user"]["token"])


def test_three_masters_on_three_addresses_elect_serve_kubectl_and_fail_over(tmp_path: Path) -> None:
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.fail("kubectl is not installed: scripts/setup --test installs it (scripts/install-kubectl)")
    site, cfg = _site(tmp_path)
    token = _token(site)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for m in cfg.masters:  # each "host" runs its master from its own copy of the site's files
            host_dir = tmp_path / f"host-{m.id}"
            shutil.copytree(site, host_dir)
            with open(host_dir / "master.log", "wb") as out:
                procs[m.id] = subprocess.Popen([*HACLUSTER, "master", "--config", str(host_dir / "cluster.yaml"),
                                                "--id", m.id], stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)

        def raft(mid: str) -> dict[str, Any] | None:
            try:
                return dict(http_json(f"{cfg.master(mid).api_url()}/debug/raft", token, 1.0))
            except (urllib.error.URLError, OSError, ValueError):
                return None

        def one_leader(ids: list[str]) -> str | None:
            views = [raft(mid) for mid in ids]
            leaders = {v["leader"] for v in views if v and v.get("leader")}
            return leaders.pop() if len(leaders) == 1 and all(views) and leaders <= set(ids) else None

        ids = [m.id for m in cfg.masters]
        leader = wait_for(lambda: one_leader(ids), 60, "three masters on three addresses agree on a leader")
        view = raft(ids[0])
        assert view is not None
        assert sorted(p["address"] for p in view["peers"]) == sorted(
            m.raft_address for m in cfg.masters if m.id != ids[0]), view["peers"]

        # Each master listens on its own address only: nothing answers at 127.0.0.1 on its ports.
        for m in cfg.masters:
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", m.api_port)) != 0, f"{m.id} listens on 127.0.0.1"

        def kc(context: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([kubectl[0], "--kubeconfig", str(site / "kubeconfig"), "--context", context,
                                   *args], input=stdin, capture_output=True, text=True, timeout=30)

        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "across-hosts"},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        created = kc(f"{cfg.name}-{ids[0]}", "create", "-f", "-", stdin=json.dumps(pod))
        assert created.returncode == 0, created.stderr
        for mid in ids:  # kubectl over TLS to each host: the certificate names every master's address
            got = kc(f"{cfg.name}-{mid}", "get", "pod", "across-hosts", "-o", "json")
            assert got.returncode == 0 and json.loads(got.stdout)["metadata"]["name"] == "across-hosts", got.stderr

        os.killpg(procs[leader].pid, signal.SIGKILL)
        procs[leader].wait(10)
        survivors = [mid for mid in ids if mid != leader]
        new = wait_for(lambda: one_leader(survivors), 30, "the two survivors elect a new leader")
        assert new != leader
        pod["metadata"]["name"] = "after-failover"
        wrote = wait_for(lambda: kc(f"{cfg.name}-{survivors[0]}", "create", "-f", "-", stdin=json.dumps(pod))
                         .returncode == 0, 30, "a write through a surviving host")
        assert wrote
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def test_pki_refuses_a_config_without_ports(tmp_path: Path) -> None:
    """Without `hacluster up` nothing picks ports, so a config for several hosts must name them all."""
    cfg = load_config(REPO / "configs" / "multi-host" / "cluster.yaml")
    cfg = cfg.model_copy(update={"masters": tuple(m.model_copy(update={"raft_port": 0}) for m in cfg.masters)})
    dump_config(cfg, tmp_path / "cluster.yaml")
    done = subprocess.run([*HACLUSTER, "pki", "--config", str(tmp_path / "cluster.yaml"), "--out",
                           str(tmp_path / "site")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: a config for several hosts must give every port") \
        and "masters.m1.raft_port" in done.stderr, done.stderr


@pytest.mark.parametrize("engine", ["pysyncobj", "etcd"])
def test_up_on_three_addresses(tmp_path: Path, engine: str) -> None:
    """`hacluster up` with each master on its own loopback address, on each store engine: the masters (and
    the etcd members beside them) listen on their own address, elect, and serve writes through each one."""
    from hacluster.cluster import launcher
    from hacluster.config import default_config

    cfg = default_config(3)
    masters = tuple(m.model_copy(update={"host": f"127.0.0.{i + 2}"}) for i, m in enumerate(cfg.masters))
    cfg = cfg.model_copy(update={"masters": masters, "store": cfg.store.model_copy(update={"engine": engine})})
    handle = launcher.up(cfg, tmp_path / "sd", ready_timeout_s=60)
    try:
        status = launcher.status_json(handle)
        assert [row["api"] for row in status["masters"]] == [f"http://127.0.0.{i + 2}:{m.api_port}"
                                                             for i, m in enumerate(handle.cfg.masters)]
        if engine == "etcd":
            members = status["store"]["members"]
            assert sorted(r["endpoint"] for r in members) == sorted(
                f"http://{m.host}:{m.etcd_client_port}" for m in handle.cfg.masters), members
            assert sum(r["role"] == "leader" for r in members) == 1, members
        for m in handle.cfg.masters:
            ports = (m.api_port, m.etcd_client_port) if engine == "etcd" else (m.api_port, m.raft_port)
            for port in ports:
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0, f"{m.id} listens on 127.0.0.1:{port}"
        import urllib.request

        for i, m in enumerate(handle.cfg.masters):
            body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"on-{m.id}"},
                               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}).encode()

            def post(url: str = handle.api(m.id), body: bytes = body) -> bool:
                req = urllib.request.Request(f"{url}/api/v1/namespaces/default/pods", data=body, method="POST",
                                             headers={"Authorization": f"Bearer {handle.admin_token}",
                                                      "Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        return resp.status == 201
                except urllib.error.HTTPError as exc:
                    return exc.code == 409  # an earlier attempt that timed out did commit
                except (urllib.error.URLError, OSError):
                    return False

            wait_for(post, 30, f"a pod created through {m.id} on 127.0.0.{i + 2}")
        other = handle.cfg.masters[-1]
        names = {p["metadata"]["name"] for p in http_json(f"{handle.api(other.id)}/api/v1/pods",
                                                         handle.admin_token, 5)["items"]}
        assert {f"on-{m.id}" for m in handle.cfg.masters} <= names
    finally:
        launcher.down(handle.state_dir)
