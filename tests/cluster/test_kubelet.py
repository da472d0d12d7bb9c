"""Kubelets on a real cluster: 3 master processes and 4 kubelet processes started by `hacluster up`, one test
per pod state, each from its real cause, with the simulated runtime (time scale 0.05) — and the process
runtime on one node for real exit codes, OOM, SIGTERM and logs.

Pods are created with `spec.nodeName` set (bypassing the scheduler). A recorder thread watches every pod
in the namespace from the start, so each test checks the sequence of STATUS words kubectl would have
printed (`pods.pod_status_reason`), transient ones included.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hacluster.cluster import launcher
from hacluster.config import ControllersConfig, KubeletConfig, NodeConfig, default_config
from hacluster.format import pods
from hacluster.kubelet.behaviour import ANNOTATION_PREFIX
from tests.cluster.conftest import Cluster
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
SCALE = 0.05
PY = sys.executable
MARK = "hacluster-kubelet-test-marker"
"""An argument of every process-runtime container here: none may be left once the cluster is down."""
Obj = dict[str, Any]


class Recorder(threading.Thread):
    """Watches every pod of the default namespace and keeps, per pod, the STATUS words it showed."""

    def __init__(self, c: Cluster) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.seen: dict[str, list[str]] = {}
        self.latest: dict[str, Obj] = {}
        self.lock = threading.Lock()
        self.stopped = False

    def run(self) -> None:
        rv = ""
        while not self.stopped:
            base = self.c.h.api(self.c.h.cfg.masters[0].id)
            url = f"{base}{PODS}?watch=true&timeoutSeconds=60" + (f"&resourceVersion={rv}" if rv else "")
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.c.token}"})
            try:
                with urllib.request.urlopen(req, timeout=70) as resp:
                    for line in resp:
                        ev = json.loads(line)
                        obj = ev["object"]
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if ev["type"] in ("ADDED", "MODIFIED"):
                            self._note(obj)
                        elif ev["type"] == "DELETED":
                            with self.lock:
                                self.seen.setdefault(obj["metadata"]["name"], []).append("<deleted>")
            except Exception:  # a closed stream: resume
                time.sleep(0.1)

    def _note(self, pod: Obj) -> None:
        word = pods.pod_status_reason(pod)
        with self.lock:
            h = self.seen.setdefault(pod["metadata"]["name"], [])
            if h and h[-1] == "<deleted>":
                h.clear()
            if not h or h[-1] != word:
                h.append(word)
            self.latest[pod["metadata"]["name"]] = pod

    def history(self, name: str) -> list[str]:
        with self.lock:
            return list(self.seen.get(name, []))


class Env:
    def __init__(self, c: Cluster, rec: Recorder) -> None:
        self.c = c
        self.rec = rec

    def create(self, name: str, image: str = "nginx:1.27", *, node: str = "node-1", behaviour: Obj | None = None,
               containers: list[Obj] | None = None, **spec: Any) -> Obj:
        pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": {"nodeName": node, "containers": containers or [{"name": "c", "image": image}]}}
        if behaviour is not None:
            pod["metadata"]["annotations"] = {ANNOTATION_PREFIX + "c": json.dumps(behaviour)}
        pod["spec"].update(spec)
        code, body, _ = self.c.req("POST", self.any_master(), PODS, pod)
        assert code == 201, body
        return body  # type: ignore[no-any-return]

    def any_master(self) -> str:
        return self.c.h.cfg.masters[0].id

    def get(self, name: str) -> Obj | None:
        code, body, _ = self.c.req("GET", self.any_master(), f"{PODS}/{name}")
        return body if code == 200 else None

    def word(self, name: str) -> str:
        p = self.get(name)
        return pods.pod_status_reason(p) if p else "<gone>"

    def wait(self, pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
        return wait_for(pred, timeout_s, what, poll_s=0.05)

    def wait_word(self, name: str, word: str, timeout_s: float = 10.0) -> Obj:
        """The pod as read when it showed `word` (a later read may already show the next state)."""
        def showing() -> Obj | None:
            p = self.get(name)
            return p if p and pods.pod_status_reason(p) == word else None

        return self.wait(showing, timeout_s,  # type: ignore[no-any-return]
                         f"{name} to show {word} (shows {self.word(name)}, saw {self.rec.history(name)})")

    def events(self, name: str) -> list[tuple[str, str]]:
        code, body, _ = self.c.req("GET", self.any_master(), f"/api/v1/namespaces/default/events?fieldSelector="
                                   f"involvedObject.name={name}")
        return [(e["reason"], e["message"]) for e in body["items"]]

    def log(self, name: str, **params: str) -> tuple[int, Any]:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        base = self.c.h.api(self.any_master())
        req = urllib.request.Request(f"{base}{PODS}/{name}/log" + (f"?{q}" if q else ""),
                                     headers={"Authorization": f"Bearer {self.c.token}"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def node_condition(self, node: str, ctype: str) -> Obj:
        code, body, _ = self.c.req("GET", self.any_master(), f"/api/v1/nodes/{node}")
        return next(c for c in body["status"]["conditions"] if c["type"] == ctype)


def cluster_config() -> Any:
    return default_config(3).model_copy(update={
        "kubelet": KubeletConfig(time_scale=SCALE, node_lease_renew_s=0.5, node_status_update_s=0.5,
                                 eviction_interval_s=5.0, eviction_pressure_transition_s=40.0),
        "controllers": ControllersConfig(node_monitor_period_s=0.5, node_monitor_grace_period_s=3.0,
                                         toleration_seconds_scale=0.1),
        "nodes": (NodeConfig(name="node-1"), NodeConfig(name="node-2"), NodeConfig(name="small-1", profile="small"),
                  NodeConfig(name="proc-1", runtime="process")),
    })


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sd = tmp_path_factory.mktemp("kubelets") / "cluster"
    handle = launcher.up(cluster_config(), sd, runtime="sim", ready_timeout_s=60)
    c = Cluster(handle)
    rec = Recorder(c)
    rec.start()
    try:
        yield Env(c, rec)
    finally:
        rec.stopped = True
        launcher.down(sd)
        assert not launcher.processes_of(sd), "down left processes behind"
        strays = [p for p in Path("/proc").iterdir() if p.name.isdigit() and MARK in _cmd(p)]
        assert not strays, "a container process outlived `hacluster down`"


def _cmd(p: Path) -> str:
    try:
        return (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ----------------------------------------------------------------------------------- nodes
def test_up_started_every_kubelet_and_the_nodes_are_ready(env: Env) -> None:
    code, body, _ = env.c.req("GET", env.any_master(), "/api/v1/nodes")
    nodes = {n["metadata"]["name"]: n for n in body["items"]}
    assert set(nodes) >= {"node-1", "node-2", "small-1", "proc-1"}
    for n in nodes.values():
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert len(n["status"]["nodeInfo"]) == 10
    assert nodes["proc-1"]["status"]["nodeInfo"]["containerRuntimeVersion"] == "process://0.1.0"
    assert nodes["small-1"]["status"]["capacity"]["memory"] == "2Gi"
    code, lease, _ = env.c.req("GET", env.any_master(),
                               "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1")
    assert code == 200 and lease["spec"]["holderIdentity"] == "node-1"


# ----------------------------------------------------------------------------------- states
def test_pending_without_a_node(env: Env) -> None:
    env.create("pending", node="", nodeSelector={"no-such-label": "x"})
    time.sleep(1.0)
    assert env.word("pending") == "Pending"


def test_container_creating_while_the_image_is_pulled(env: Env) -> None:
    env.create("creating", "hacluster/slow-pull:1")  # 30 s pull × 0.05
    env.wait(lambda: "ContainerCreating" in env.rec.history("creating"), 5.0, "ContainerCreating")
    env.wait_word("creating", "Running", 10.0)
    assert env.rec.history("creating")[:3] == ["Pending", "ContainerCreating", "Running"]
    reasons = [r for r, _ in env.events("creating")]
    assert "Pulling" in reasons and "Pulled" in reasons


def test_running_and_ready(env: Env) -> None:
    env.create("web", behaviour={"ready_after_s": 2})
    pod = env.wait_word("web", "Running")
    env.wait(lambda: env.get("web")["status"]["containerStatuses"][0]["ready"], 5.0, "ready")
    st = env.get("web")["status"]
    assert st["phase"] == "Running" and st["podIP"] and st["hostIP"] == "127.0.0.1" and st["startTime"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    assert pod["status"]["qosClass"] == "BestEffort"


def test_completed(env: Env) -> None:
    env.create("job", "hacluster/job:1", restartPolicy="Never")
    pod = env.wait_word("job", "Completed")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_error(env: Env) -> None:
    env.create("failing", "hacluster/fail:1", restartPolicy="Never")
    pod = env.wait_word("failing", "Error")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


def test_crash_loop_back_off(env: Env) -> None:
    env.create("crasher", "hacluster/crash:1")

    def backing_off() -> Obj | None:  # one read: the back-off may end, and the container restart, at any time
        p = env.get("crasher")
        in_loop = p and pods.pod_status_reason(p) == "CrashLoopBackOff" \
            and p["status"]["containerStatuses"][0]["restartCount"] >= 2
        return p if in_loop else None

    cs = env.wait(backing_off, 10.0, "a crash loop")["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["message"].startswith("back-off ")
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert env.get("crasher")["status"]["phase"] == "Running"


def test_err_image_pull_then_image_pull_back_off(env: Env) -> None:
    env.create("noimage", "registry.example.com/does-not-exist:1")
    env.wait(lambda: "ImagePullBackOff" in env.rec.history("noimage"), 10.0, "ImagePullBackOff")
    hist = env.rec.history("noimage")
    assert "ErrImagePull" in hist and hist.index("ErrImagePull") < hist.index("ImagePullBackOff"), hist
    assert env.get("noimage")["status"]["phase"] == "Pending"


def test_terminating_then_removed_after_the_grace_period(env: Env) -> None:
    env.create("stubborn", "hacluster/ignore-sigterm:1", terminationGracePeriodSeconds=30)
    env.wait_word("stubborn", "Running")
    t0 = time.monotonic()
    code, _, _ = env.c.req("DELETE", env.any_master(), f"{PODS}/stubborn")
    assert code == 200
    assert env.word("stubborn") == "Terminating"
    env.wait(lambda: env.get("stubborn") is None, 10.0, "the pod to be removed")
    assert time.monotonic() - t0 >= 30 * SCALE  # the whole (scaled) grace period, then SIGKILL
    assert "Terminating" in env.rec.history("stubborn")
    assert ("Killing", "Stopping container c") in env.events("stubborn")


def test_oom_killed(env: Env) -> None:
    env.create("hog", containers=[{"name": "c", "image": "hacluster/memhog:1",
                                   "resources": {"limits": {"memory": "256Mi"}}}], restartPolicy="Never")
    pod = env.wait_word("hog", "OOMKilled", 10.0)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "OOMKilled" and pod["status"]["phase"] == "Failed"


def test_evicted_under_node_memory_pressure(env: Env) -> None:
    # small-1: 2Gi, 256Mi used by the node itself, hard threshold memory.available<100Mi
    env.create("quiet", node="small-1", behaviour={"memory": [[0, "64Mi"]]},
               containers=[{"name": "c", "image": "nginx", "resources": {"requests": {"memory": "100Mi"}}}])
    env.create("greedy", "hacluster/memhog:1", node="small-1")  # no limit: grows to 4Gi
    pod = env.wait_word("greedy", "Evicted", 15.0)
    st = pod["status"]
    assert st["phase"] == "Failed" and st["reason"] == "Evicted"
    assert st["message"].startswith("The node was low on resource: memory. Threshold quantity: 100Mi, available: ")
    assert env.word("quiet") == "Running"
    env.wait(lambda: env.node_condition("small-1", "MemoryPressure")["status"] == "True", 5.0, "MemoryPressure")
    code, node, _ = env.c.req("GET", env.any_master(), "/api/v1/nodes/small-1")
    env.wait(lambda: any(t["key"] == "node.kubernetes.io/memory-pressure" for t in
                         (env.c.req("GET", env.any_master(), "/api/v1/nodes/small-1")[1]["spec"].get("taints") or [])),
             5.0, "the memory-pressure taint (added by the node lifecycle controller)")
    env.wait(lambda: ("Evicted", st["message"]) in env.events("greedy"), 5.0, "the Evicted event")


# ---------------------------------------------------------------------------- process runtime


def test_process_runtime_exit_codes_oom_and_logs(env: Env) -> None:
    def proc(name: str, code: str, **extra: Any) -> None:
        c = dict({"name": "c", "image": "python:3.11", "command": [PY, "-c", code, MARK]}, **extra)
        env.create(name, node="proc-1", containers=[c], restartPolicy="Never")

    proc("p-exit", "import sys; print('bye', flush=True); sys.exit(7)")
    proc("p-oom", "import time\nx = [bytearray(16 << 20) for _ in range(40)]\ntime.sleep(30)",
         resources={"limits": {"memory": "128Mi"}})
    pod = env.wait_word("p-exit", "Error", 15.0)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 7
    assert env.log("p-exit") == (200, "bye\n")
    pod = env.wait_word("p-oom", "OOMKilled", 15.0)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


def test_process_runtime_sigterm_within_the_grace_period(env: Env) -> None:
    script = ("import signal, sys, time\n"
              "def bye(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)\n")
    env.create("p-term", node="proc-1", containers=[{"name": "c", "image": "python:3.11",
                                                     "command": [PY, "-u", "-c", script, MARK]}],
               terminationGracePeriodSeconds=60)
    env.wait_word("p-term", "Running", 10.0)
    env.wait(lambda: env.log("p-term")[1] == "up\n", 5.0, "the process to print")
    t0 = time.monotonic()
    env.c.req("DELETE", env.any_master(), f"{PODS}/p-term")
    env.wait(lambda: env.get("p-term") is None, 10.0, "deletion")
    assert time.monotonic() - t0 < 60 * SCALE
    assert env.rec.history("p-term")[-3:-1] == ["Terminating", "Completed"]


# ---------------------------------------------------------------------------------- node lost
def test_node_lost_pods_unknown_then_the_kubelet_returns_and_reconciles(env: Env) -> None:
    tol = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 2}]
    env.create("lost", node="node-2", tolerations=tol)
    env.create("kept", node="node-2")  # the default 300 s toleration (× 0.1): still there when the node returns
    env.wait_word("lost", "Running")
    env.wait_word("kept", "Running")
    pid = env.c.h.pid("kubelet-node-2")
    assert pid
    os.kill(pid, signal.SIGSTOP)  # the node stops heartbeating
    try:
        env.wait(lambda: env.node_condition("node-2", "Ready")["status"] == "Unknown", 15.0, "node-2 Unknown")
        env.wait(lambda: env.word("lost") == "Unknown", 15.0, "the lost pod to show Unknown")
        env.wait(lambda: next(c for c in env.get("kept")["status"]["conditions"] if c["type"] == "Ready")["status"]
                 == "False", 5.0, "pods on the lost node marked not ready")
    finally:
        os.kill(pid, signal.SIGCONT)
    env.wait(lambda: env.get("lost") is None, 15.0, "the returning kubelet to finish the eviction")
    env.wait(lambda: env.node_condition("node-2", "Ready")["status"] == "True", 10.0, "node-2 Ready again")
    env.wait(lambda: next(c for c in env.get("kept")["status"]["conditions"] if c["type"] == "Ready")["status"]
             == "True", 10.0, "the kept pod's status reconciled")
    assert env.word("kept") == "Running"


def test_a_restarted_kubelet_adopts_the_pods_bound_to_its_node(env: Env) -> None:
    from hacluster.cluster.kubelets import start_kubelet

    env.create("survivor", node="node-2")
    env.wait_word("survivor", "Running")
    before = env.get("survivor")["status"]
    pid = env.c.h.pid("kubelet-node-2")
    assert pid
    os.kill(pid, signal.SIGKILL)  # its simulated containers die with it
    start_kubelet(env.c.h, "node-2")
    env.wait(lambda: env.get("survivor")["status"]["containerStatuses"][0]["restartCount"]
             == before["containerStatuses"][0]["restartCount"] + 1, 15.0, "the container restarted by the new kubelet")
    env.wait_word("survivor", "Running")
    after = env.get("survivor")["status"]
    assert after["podIP"] == before["podIP"] and after["startTime"] == before["startTime"]
    code, node, _ = env.c.req("GET", env.any_master(), "/api/v1/nodes/node-2")
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    env.wait(lambda: env.log("survivor")[0] == 200, 5.0, f"logs through the new kubelet's port {port}")
