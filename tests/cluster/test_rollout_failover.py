"""Rollouts and Jobs keep going while the masters fail under them (issue 18's HA experiments).

Three real masters behind a real Toxiproxy, two sim kubelets. A watch on the pods (resumed on another
master from its last resourceVersion whenever a master goes away) records every committed change, and the
checks run on that record, state by state:
- a rolling update of a 10-replica Deployment (maxSurge 3, maxUnavailable 2 by the 25% defaults) while the
  leader is SIGKILLed, then another while the leader is isolated (its Raft links blackholed): each rollout
  completes, no committed state ever has more than 13 active pods or fewer than 8 ready ones, every pod
  of the new template is created exactly once (10 ADDED events, no extra pod created and deleted), there
  is one ReplicaSet per template, and `kubectl rollout status` reports success;
- a 20-completion Job with parallelism 4 while the leader is SIGKILLed: exactly 20 pods ever created, all
  Succeeded, `status.succeeded` 20, never more than 4 running at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from chaos.network import load_network, start_network
from hacluster.cluster import launcher
from hacluster.config import KubeletConfig, default_config
from hacluster.kubelet.behaviour import ANNOTATION_PREFIX
from tests.clients.conftest import KUBECTL
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.slow
SCALE = 0.1
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
PODS = "/api/v1/namespaces/default/pods"
RECORD_MAX_S = 600.0


def live(c: Cluster) -> list[str]:
    out = []
    for m in c.h.cfg.masters:
        pid = c.h.pid(m.id)
        if pid and launcher.pid_alive(pid):
            out.append(m.id)
    return out


def call(c: Cluster, method: str, path: str, body: Any = None, timeout_s: float = 20.0,
         ok: tuple[int, ...] = (200, 201)) -> Any:
    """One request through whichever live master answers (bounded retries across masters)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        for mid in live(c):
            try:
                code, got, _ = c.req(method, mid, path, body, timeout=3)
            except OSError as exc:
                last = exc
                continue
            if code in ok or (code == 409 and method == "POST"):
                return got
            last = (mid, code, got)
        time.sleep(0.1)
    raise AssertionError(f"{method} {path}: {last}")


def set_image(c: Cluster, name: str, image: str) -> None:
    """GET then PUT with the resourceVersion read (a conflict is read again), through any live master."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        d = call(c, "GET", f"{DEPLOYMENTS}/{name}")
        if d["spec"]["template"]["spec"]["containers"][0]["image"] == image:
            return  # an earlier PUT whose answer was lost did commit
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        got = call(c, "PUT", f"{DEPLOYMENTS}/{name}", d, ok=(200, 409))
        if got.get("kind") == "Deployment":
            return
    raise AssertionError("set image did not commit")


class PodRecorder:
    """Records every change of the pods in `default`, following the watch across masters."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.errors: list[str] = []
        listing = call(c, "GET", PODS)
        self.rv = listing["metadata"]["resourceVersion"]
        self.initial = listing["items"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + RECORD_MAX_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            for mid in live(self.c):
                if self.stop.is_set():
                    return
                url = f"{self.c.h.api(mid)}{PODS}?watch=1&resourceVersion={self.rv}&allowWatchBookmarks=true"
                r = urllib.request.Request(url)
                r.add_header("Authorization", f"Bearer {self.c.token}")
                try:
                    with urllib.request.urlopen(r, timeout=2) as resp:
                        for line in resp:
                            ev = json.loads(line)
                            if ev["type"] == "ERROR":
                                self.errors.append(str(ev["object"].get("message")))
                                break
                            self.rv = ev["object"]["metadata"]["resourceVersion"]
                            if ev["type"] != "BOOKMARK":
                                self.events.append((ev["type"], ev["object"]))
                            if self.stop.is_set():
                                return
                except (OSError, urllib.error.URLError, ValueError):
                    continue  # master gone, quorum lost or idle: resume on the next one from self.rv
            time.sleep(0.05)

    def catch_up(self, timeout_s: float = 15.0) -> None:
        """Wait until the record holds every pod change committed before now: the recorded pods are the
        listed ones at their listed resourceVersions."""
        listed = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in call(self.c, "GET", PODS)["items"]}

        def recorded() -> dict[str, str]:
            pods = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in self.initial}
            for etype, obj in list(self.events):
                if etype == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj["metadata"]["resourceVersion"]
            return pods
        wait(lambda: all(int(recorded().get(n, "0")) >= int(rv) for n, rv in listed.items()), timeout_s,
             "the watch to record every listed pod")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def ready(p: dict[str, Any]) -> bool:
    return any(x.get("type") == "Ready" and x.get("status") == "True" for x in p["status"].get("conditions") or ())


def active(p: dict[str, Any]) -> bool:
    return not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") not in ("Succeeded", "Failed")


def replay(initial: list[dict[str, Any]], events: list[tuple[str, dict[str, Any]]], label: str,
           value: str) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """After each recorded change (one entry per event): (active pods, ready active pods) with the label;
    and the ADDED events by pod-template-hash."""
    pods = {p["metadata"]["name"]: p for p in initial if (p["metadata"].get("labels") or {}).get(label) == value}
    states: list[tuple[int, int]] = []
    added: dict[str, int] = {}
    for etype, obj in events:
        if (obj["metadata"].get("labels") or {}).get(label) != value:
            act = [p for p in pods.values() if active(p)]
            states.append((len(act), sum(1 for p in act if ready(p))))
            continue
        name = obj["metadata"]["name"]
        if etype == "DELETED":
            pods.pop(name, None)
        else:
            if etype == "ADDED":
                h = obj["metadata"]["labels"].get("pod-template-hash", "")
                added[h] = added.get(h, 0) + 1
            pods[name] = obj
        act = [p for p in pods.values() if active(p)]
        states.append((len(act), sum(1 for p in act if ready(p))))
    return states, added


def rolled_out(c: Cluster, name: str, replicas: int) -> bool:
    try:
        d = call(c, "GET", f"{DEPLOYMENTS}/{name}", timeout_s=5)
    except AssertionError:
        return False
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == replicas
            and st.get("replicas") == replicas and st.get("availableReplicas") == replicas)


def wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def check_rollout(rec: PodRecorder, since: int, c: Cluster, new_image: str) -> None:
    """The bounds on every state recorded from event `since` on, one ReplicaSet per template, and exactly
    10 pods created for the new one."""
    rec.catch_up()
    states, added = replay(rec.initial, rec.events, "app", "web")
    during = states[since:]
    assert during, "no change recorded during the rollout"
    assert max(a for a, _ in during) <= 13, f"more than replicas + maxSurge pods: {max(a for a, _ in during)}"
    assert min(r for _, r in during) >= 8, f"fewer than replicas - maxUnavailable ready: {min(r for _, r in during)}"
    sets = [rs for rs in call(c, "GET", "/apis/apps/v1/namespaces/default/replicasets")["items"]
            if rs["metadata"]["name"].startswith("web-")]
    by_image = {}
    for rs in sets:
        by_image.setdefault(rs["spec"]["template"]["spec"]["containers"][0]["image"], []).append(rs)
    assert all(len(v) == 1 for v in by_image.values()), {k: len(v) for k, v in by_image.items()}
    new_hash = by_image[new_image][0]["metadata"]["labels"]["pod-template-hash"]
    assert added.get(new_hash) == 10, f"pods created for the new template: {added.get(new_hash)} (want 10)"


def new_pods_added_after(rec: PodRecorder, index: int, image: str) -> bool:
    return any(etype == "ADDED" and obj["spec"]["containers"][0]["image"] == image
               for etype, obj in rec.events[index:])


def rollout_status(c: Cluster, master: str) -> None:
    if KUBECTL is None:
        return
    out = subprocess.run([KUBECTL[0], "--kubeconfig", str(c.h.state_dir / "kubeconfig"), "--context",
                          f"{c.h.cfg.name}-{master}", "rollout", "status", "deployment/web", "--timeout=60s"],
                         capture_output=True, text=True, timeout=90,
                         env={**os.environ, "HOME": str(c.h.state_dir)})
    assert out.returncode == 0 and 'deployment "web" successfully rolled out' in out.stdout, out.stderr


def deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels,
                                               # each new pod becomes ready 1 s after it starts
                                               "annotations": {ANNOTATION_PREFIX + "c": '{"ready_after_s": 10}'}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def test_rollouts_and_a_job_survive_leader_kill_and_isolation(tmp_path: Any) -> None:
    cfg = default_config(3).model_copy(update={"kubelet": KubeletConfig(time_scale=SCALE, node_lease_renew_s=0.5,
                                                                        node_status_update_s=0.5)})
    sd = tmp_path / "cluster"
    handle = launcher.up(cfg, sd, nodes=2, runtime="sim", network=start_network, ready_timeout_s=60)
    c = Cluster(handle)
    net = load_network(handle)
    rec: PodRecorder | None = None
    try:
        call(c, "POST", DEPLOYMENTS, deployment("web", 10, "nginx:1.26"))
        wait(lambda: rolled_out(c, "web", 10), 60, "first rollout")
        rec = PodRecorder(c)

        # 1. Rolling update while the leader is killed.
        since = len(rec.events)
        set_image(c, "web", "nginx:1.27")
        wait(lambda: any(o["spec"]["containers"][0]["image"] == "nginx:1.27" for _, o in rec.events[since:]), 10,
             "the rollout to start")
        leader = c.leader()
        os.kill(leader["pid"], signal.SIGKILL)
        killed_at = len(rec.events)
        assert not rolled_out(c, "web", 10), "the rollout ended before the fault: nothing was tested"
        c.leader(exclude=(leader["id"],), timeout_s=15)
        wait(lambda: rolled_out(c, "web", 10), 60, "rollout across the leader kill")
        assert new_pods_added_after(rec, killed_at, "nginx:1.27"), "the new leader created no pod of the rollout"
        survivor = next(m for m in live(c))
        rollout_status(c, survivor)
        check_rollout(rec, since, c, "nginx:1.27")
        launcher.start_master(handle, leader["id"])
        launcher.wait_ready(handle, 30)

        # 2. A 20-completion Job with parallelism 4 while the leader is killed.
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
               "spec": {"completions": 20, "parallelism": 4, "template": {"spec": {
                   "restartPolicy": "Never", "containers": [{"name": "c", "image": "hacluster/job:1"}]}}}}
        call(c, "POST", JOBS, job)
        wait(lambda: (call(c, "GET", f"{JOBS}/batch").get("status") or {}).get("succeeded", 0) >= 4, 30,
             "a few completions")
        leader = c.leader()
        os.kill(leader["pid"], signal.SIGKILL)
        assert (call(c, "GET", f"{JOBS}/batch").get("status") or {}).get("succeeded", 0) < 20
        c.leader(exclude=(leader["id"],), timeout_s=15)

        def complete() -> bool:
            st = call(c, "GET", f"{JOBS}/batch").get("status") or {}
            return any(x["type"] == "Complete" and x["status"] == "True" for x in st.get("conditions") or ())
        wait(complete, 90, "job completion across the leader kill")
        st = call(c, "GET", f"{JOBS}/batch")["status"]
        assert st["succeeded"] == 20 and not st.get("failed") and not st.get("active")
        rec.catch_up()
        job_pods: dict[str, dict[str, Any]] = {}
        running = set()
        max_running = 0
        for etype, obj in rec.events:
            if (obj["metadata"].get("labels") or {}).get("job-name") != "batch":
                continue
            job_pods[obj["metadata"]["name"]] = obj
            if etype != "DELETED" and active(obj):
                running.add(obj["metadata"]["name"])
            else:
                running.discard(obj["metadata"]["name"])
            max_running = max(max_running, len(running))
        assert len(job_pods) == 20, f"{len(job_pods)} pods created for 20 completions"
        assert all(p["status"].get("phase") == "Succeeded" for p in job_pods.values())
        assert max_running <= 4
        launcher.start_master(handle, leader["id"])
        launcher.wait_ready(handle, 30)

        # 3. Rolling update while the leader is isolated (Raft links blackholed; it may still think it leads).
        since = len(rec.events)
        leader = c.leader()
        set_image(c, "web", "nginx:1.28")
        wait(lambda: any(o["spec"]["containers"][0]["image"] == "nginx:1.28" for _, o in rec.events[since:]), 10,
             "the second rollout to start")
        others = [m.id for m in handle.cfg.masters if m.id != leader["id"]]
        undo = net.cut_pairs([(leader["id"], o) for o in others], kind="blackhole")
        isolated_at = len(rec.events)
        try:
            assert not rolled_out(c, "web", 10), "the rollout ended before the fault: nothing was tested"
            c.leader(exclude=(leader["id"],), timeout_s=15)
            wait(lambda: rolled_out(c, "web", 10), 60, "rollout across the leader's isolation")
            assert new_pods_added_after(rec, isolated_at, "nginx:1.28"), "the new leader created no pod"
            rollout_status(c, others[0])
        finally:
            net.undo(undo)
        check_rollout(rec, since, c, "nginx:1.28")
        assert not rec.errors, rec.errors
    finally:
        if rec is not None:
            rec.close()
        launcher.down(sd)
        assert not launcher.processes_of(sd)
