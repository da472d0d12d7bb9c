"""A kubelet survives a leader kill: SIGKILL the Raft leader while two sim kubelets run pods, and every pod
they run keeps a correct, current status — changes that happen during and after the election (a job
finishing, a crash loop going on, a deletion, new pods) all reach the API, the nodes never flap to Unknown,
and the restarted master converges to the same statuses."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from hacluster.cluster import launcher
from hacluster.config import KubeletConfig, default_config
from hacluster.format.pods import pod_status_reason
from hacluster.kubelet.behaviour import ANNOTATION_PREFIX
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
SCALE = 0.05


def _pod(name: str, node: str, image: str = "nginx:1.27", behaviour: dict[str, Any] | None = None,
         **spec: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]}}
    if behaviour:
        p["metadata"]["annotations"] = {ANNOTATION_PREFIX + "c": json.dumps(behaviour)}
    p["spec"].update(spec)
    return p


def _write(c: Cluster, method: str, path: str, body: Any = None, timeout_s: float = 15.0) -> Any:
    """Write through whichever master answers (bounded); 409 on a retried create means it happened."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for mid in c.status():
            pid = c.h.pid(mid)
            if pid and not launcher.pid_alive(pid):
                continue
            try:
                code, got, _ = c.req(method, mid, path, body, timeout=3)
            except OSError as exc:
                last = exc
                continue
            if code in (200, 201) or (code == 409 and method == "POST"):
                return got
            last = (code, got)
        time.sleep(0.1)
    raise AssertionError(f"{method} {path}: {last}")


def _pods(c: Cluster, mid: str) -> dict[str, dict[str, Any]]:
    code, body, _ = c.req("GET", mid, PODS, timeout=5)
    assert code == 200, body
    return {p["metadata"]["name"]: p for p in body["items"]}


def test_kubelets_keep_every_pod_current_across_a_leader_kill(tmp_path: Any) -> None:
    cfg = default_config(3).model_copy(update={"kubelet": KubeletConfig(time_scale=SCALE, node_lease_renew_s=0.5,
                                                                        node_status_update_s=0.5)})
    sd = tmp_path / "cluster"
    handle = launcher.up(cfg, sd, nodes=2, runtime="sim", ready_timeout_s=60)
    c = Cluster(handle)
    try:
        survivors = [m.id for m in handle.cfg.masters]
        for i in range(6):
            _write(c, "POST", PODS, _pod(f"web-{i}", f"node-{i % 2 + 1}"))
        _write(c, "POST", PODS, _pod("late-job", "node-1", "hacluster/job:1", {"run_s": 60}, restartPolicy="Never"))
        _write(c, "POST", PODS, _pod("looper", "node-2", "hacluster/crash:1"))
        _write(c, "POST", PODS, _pod("doomed", "node-1"))
        first = next(iter(survivors))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pods = _pods(c, first)
            if all(pod_status_reason(p) == "Running" for n, p in pods.items() if n.startswith("web")) \
                    and len(pods) == 9:
                break
            time.sleep(0.1)
        leases_before = {n: _write(c, "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n}")
                         ["spec"]["renewTime"] for n in ("node-1", "node-2")}

        # Watch the nodes' Ready condition through the whole test: it must never leave True.
        flaps: list[str] = []
        stop = threading.Event()

        def watch_nodes() -> None:
            while not stop.is_set():
                for mid in list(survivors):
                    try:
                        code, body, _ = c.req("GET", mid, "/api/v1/nodes?resourceVersion=0", timeout=2)
                    except OSError:
                        continue
                    if code == 200:
                        for n in body["items"]:
                            ready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
                            if ready["status"] != "True":
                                flaps.append(f"{n['metadata']['name']}={ready['status']}")
                        break
                time.sleep(0.2)

        watcher = threading.Thread(target=watch_nodes, daemon=True)
        watcher.start()

        leader = c.leader()
        os.kill(leader["pid"], signal.SIGKILL)
        survivors.remove(leader["id"])
        killed_at = time.monotonic()
        # Changes during and right after the election.
        _write(c, "DELETE", f"{PODS}/doomed")
        _write(c, "POST", PODS, _pod("after-kill", "node-2"))
        c.leader(exclude=(leader["id"],), timeout_s=15)

        def settled() -> bool:
            pods = _pods(c, survivors[0])
            words = {n: pod_status_reason(p) for n, p in pods.items()}
            ready = all((p["status"].get("containerStatuses") or [{}])[0].get("ready") for n, p in pods.items()
                        if n.startswith("web") or n == "after-kill")
            return (all(words.get(f"web-{i}") == "Running" for i in range(6)) and ready
                    and words.get("late-job") == "Completed" and words.get("after-kill") == "Running"
                    and "doomed" not in words and words.get("looper") in ("CrashLoopBackOff", "Running", "Error"))

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not settled():
            time.sleep(0.1)
        assert settled(), {n: pod_status_reason(p) for n, p in _pods(c, survivors[0]).items()}
        assert time.monotonic() - killed_at < 30
        # The crash loop keeps being reported: its restart count still rises after the failover.
        count = lambda: _pods(c, survivors[0])["looper"]["status"]["containerStatuses"][0]["restartCount"]  # noqa: E731
        before = count()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and count() <= before:
            time.sleep(0.2)
        assert count() > before
        for n in ("node-1", "node-2"):
            lease = _write(c, "GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n}")
            assert lease["spec"]["renewTime"] > leases_before[n]
        stop.set()
        watcher.join(5)
        assert not flaps, f"nodes left Ready during the failover: {flaps[:5]}"

        # The killed master comes back and holds the same statuses.
        launcher.start_master(handle, leader["id"])
        launcher.wait_ready(handle, 20)
        c.wait_converged([m.id for m in handle.cfg.masters])
        back = _pods(c, leader["id"])
        now = _pods(c, survivors[0])
        for name in ("late-job", "after-kill", "web-0"):
            assert back[name]["status"] == now[name]["status"]
    finally:
        launcher.down(sd)
        assert not launcher.processes_of(sd)
