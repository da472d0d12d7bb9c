"""The leader-only scheduler and controllers on a real 3-master cluster (real processes, real Raft).

Nodes are registered directly through the API (Node objects with allocatable and a Ready condition) and
their Lease heartbeats are written by the test, as kubelets would. Checks:
- 200 pending pods and a leader SIGKILL in the middle: every pod is bound exactly once (a watch sees each
  pod's spec.nodeName set once and never changed), no node is over its allocatable (the pods fill the
  nodes exactly, so any double counting would leave pods unschedulable), the new leader carries on;
- a paused (SIGSTOP) leader resumed after the others elected a new one: its in-flight writes are refused
  by the state machine's fencing (its log says so), nothing is bound twice;
- a node whose heartbeats stop: Ready Unknown and the unreachable taints within the grace period, its
  pods evicted (NodeLost) after the scaled tolerationSeconds, its ReplicaSet's pods recreated elsewhere;
  the taints go when the heartbeats return.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hacluster.cluster import launcher
from hacluster.config import ControllersConfig, default_config
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


@pytest.fixture
def start_cluster(tmp_path):
    started = []

    def start(**controllers):
        cfg = default_config(3)
        if controllers:
            cfg = cfg.model_copy(update={"controllers": ControllersConfig(**controllers)})
        sd = tmp_path / f"cluster{len(started)}"
        started.append(sd)
        return Cluster(launcher.up(cfg, sd))

    yield start
    for sd in started:
        launcher.down(sd)


class Api:
    """Requests that go to any live master, moving on when one fails (as a kubelet does)."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.ids = [m.id for m in c.h.cfg.masters]
        self.avoid: set[str] = set()
        self._next = 0

    def call(self, method, path, body=None, timeout_s=20.0, ok=(200, 201)):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            candidates = [m for m in self.ids if m not in self.avoid] or self.ids
            mid = candidates[self._next % len(candidates)]
            self._next += 1
            try:
                code, data, _ = self.c.req(method, mid, path, body, timeout=3)
            except (urllib.error.URLError, OSError) as exc:
                last = exc
                continue
            if code in ok:
                return code, data
            if code in (503, 504):
                last = data
                time.sleep(0.05)  # bounded: the masters are electing
                continue
            return code, data
        raise AssertionError(f"{method} {path}: no master answered within {timeout_s}s: {last}")


def node_body(name, cpu, pods="110"):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"capacity": {"cpu": cpu, "memory": "64Gi", "pods": pods},
                       "allocatable": {"cpu": cpu, "memory": "64Gi", "pods": pods},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": micro_now()[:19] + "Z",
                                       "lastTransitionTime": micro_now()[:19] + "Z"}]}}


def lease_body(name):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}}


def pod_body(name, cpu="100m", labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]}}


def register_nodes(api: Api, names, cpu, pods="110"):
    for n in names:
        assert api.call("POST", "/api/v1/nodes", node_body(n, cpu, pods))[0] == 201
        assert api.call("POST", LEASES, lease_body(n))[0] == 201


class Heartbeats:
    """Renews the Leases of the nodes in `beating` every `period_s` through any live master."""

    def __init__(self, api: Api, names, period_s=0.5) -> None:
        self.api = api
        self.beating = set(names)
        self.period_s = period_s
        self.last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for n in sorted(self.beating):
                try:
                    code, _ = self.api.call("PUT", f"{LEASES}/{n}", lease_body(n), timeout_s=2)
                    if code == 200:
                        self.last[n] = time.monotonic()
                except AssertionError:
                    pass
            self._stop.wait(self.period_s)

    def stop(self):
        self._stop.set()
        self._thread.join(10)


class PodWatch:
    """Watches default/pods from a revision on (moving between masters, resuming from the last revision
    seen) and records every distinct spec.nodeName each pod had, in order."""

    def __init__(self, c: Cluster, revision: str, avoid=()) -> None:
        self.c = c
        self.rv = revision
        self.avoid = set(avoid)
        self.nodes: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            ids = [m.id for m in self.c.h.cfg.masters if m.id not in self.avoid]
            mid = ids[i % len(ids)]
            i += 1
            url = f"{self.c.h.api(mid)}{PODS}?watch=1&resourceVersion={self.rv}&timeoutSeconds=5"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.c.token}"})
            try:
                with urllib.request.urlopen(req, timeout=6) as resp:
                    for line in resp:
                        ev = json.loads(line)
                        if ev["type"] == "ERROR":
                            self.errors.append(str(ev["object"]))
                            return
                        obj = ev["object"]
                        self.rv = obj["metadata"]["resourceVersion"]
                        node = obj["spec"].get("nodeName")
                        seen = self.nodes.setdefault(obj["metadata"]["name"], [])
                        if node and (not seen or seen[-1] != node):
                            seen.append(node)
                        if self._stop.is_set():
                            return
            except (urllib.error.URLError, OSError, ValueError):
                self._stop.wait(0.1)  # bounded pause before trying the next master

    def stop(self):
        self._stop.set()
        self._thread.join(10)


def list_pods(api: Api):
    code, body = api.call("GET", PODS)
    assert code == 200
    return body["items"]


def milli(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def assert_bound_once_and_within_allocatable(api: Api, watch: PodWatch, names, node_cpu_m: int):
    pods = {p["metadata"]["name"]: p for p in list_pods(api)}
    used: dict[str, int] = {}
    for n in names:
        node = pods[n]["spec"].get("nodeName")
        assert node, f"{n} not bound"
        used[node] = used.get(node, 0) + milli(pods[n]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
        assert watch.nodes.get(n) in (None, [node]), f"{n} was bound more than once: {watch.nodes.get(n)}"
    assert not watch.errors, watch.errors
    assert all(v <= node_cpu_m for v in used.values()), f"a node is over its allocatable: {used}"
    code, evs = api.call("GET", "/api/v1/namespaces/default/events")
    scheduled: dict[str, list[str]] = {}
    for e in evs["items"]:
        if e["reason"] == "Scheduled":
            scheduled.setdefault(e["involvedObject"]["name"], []).append(e["message"])
    for n, messages in scheduled.items():
        if n in pods:
            assert messages == [f"Successfully assigned default/{n} to {pods[n]['spec']['nodeName']}"], messages
    return used, scheduled


def create_pods(api: Api, names, cpu, workers=8):
    def one(n):
        code, body = api.call("POST", PODS, pod_body(n, cpu), ok=(201, 409))
        assert code in (201, 409), body  # 409: an earlier attempt committed

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, names))


def wait_for(check, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def count_bound(api: Api):
    return sum(1 for p in list_pods(api) if p["spec"].get("nodeName"))


def test_200_pods_with_a_leader_kill_are_each_bound_once_within_allocatable(start_cluster):
    c = start_cluster()
    api = Api(c)
    nodes = [f"node-{i}" for i in range(5)]
    register_nodes(api, nodes, "4800m")  # 5 × 4.8 CPU = 200 × 120m: the pods fill the nodes exactly
    beats = Heartbeats(api, nodes)
    watch = PodWatch(c, str(c.status()[c.leader()["id"]]["revision"]))
    names = [f"p-{i:03d}" for i in range(200)]
    try:
        leader = c.leader()
        creator = threading.Thread(target=create_pods, args=(api, names, "120m"))
        creator.start()
        wait_for(lambda: count_bound(api) >= 60, 30, "60 pods bound")
        bound_at_kill = count_bound(api)
        os.kill(leader["pid"], signal.SIGKILL)
        api.avoid.add(leader["id"])
        watch.avoid.add(leader["id"])
        creator.join(60)
        assert bound_at_kill < 200, "the kill came too late to matter"
        wait_for(lambda: count_bound(api) == 200, 60, "all 200 pods bound after the failover")
        new = c.leader(exclude=(leader["id"],))
        assert new["term"] > leader["term"]
        time.sleep(0.5)  # let the watch see the last bindings (bounded; checked below)
        used, scheduled = assert_bound_once_and_within_allocatable(api, watch, names, 4800)
        assert sorted(used.values()) == [4800] * 5
        assert len(watch.nodes) == 200 and all(len(v) == 1 for v in watch.nodes.values())
        assert len(scheduled) >= 200 - 100, "Scheduled events (a few may be lost with the killed leader)"
    finally:
        beats.stop()
        watch.stop()


def fenced_lines(c: Cluster, mid: str) -> list[str]:
    log = Path(c.h.state_dir) / "logs" / f"{mid}.log"
    return [line for line in log.read_text(errors="replace").splitlines() if "refused by fencing" in line]


def test_paused_leader_is_fenced_when_it_resumes_and_binds_nothing_twice(start_cluster):
    """The leader is paused for longer than the node grace period while the others elect a new leader and
    keep binding. When it resumes, its node lifecycle controller — seeing no heartbeat for that long in its
    stale state — and its scheduler act on their old term: the state machine refuses those writes (their
    log says so), no node is marked Unknown or tainted, and no pod is bound twice."""
    grace_s = 2.0
    c = start_cluster(node_monitor_period_s=0.25, node_monitor_grace_period_s=grace_s)
    api = Api(c)
    nodes = [f"node-{i}" for i in range(3)]
    register_nodes(api, nodes, "100", pods="2000")
    beats = Heartbeats(api, nodes, period_s=0.25)
    watch = PodWatch(c, str(c.status()[c.leader()["id"]]["revision"]))
    all_names: list[str] = []
    lines: list[str] = []
    try:
        for round_ in range(3):  # the resumed leader races its own step-down; usually the first round shows it
            old = c.leader()
            names = [f"r{round_}-{i:03d}" for i in range(300)]
            done_before = len(all_names)
            all_names += names
            api.avoid = set()
            creator = threading.Thread(target=create_pods, args=(api, names, "10m", 16))
            creator.start()
            wait_for(lambda: count_bound(api) >= done_before + 30, 30, "binding under way")
            os.kill(old["pid"], signal.SIGSTOP)
            try:
                api.avoid = {old["id"]}
                watch.avoid = {old["id"]}
                paused_at = time.monotonic()
                new = c.leader(timeout_s=15, exclude=(old["id"],))
                assert new["term"] > old["term"]
                wait_for(lambda: count_bound(api) >= done_before + 60, 30, "the new leader binds")
                time.sleep(max(0.0, paused_at + grace_s + 1.5 - time.monotonic()))  # outlast the grace period
            finally:
                os.kill(old["pid"], signal.SIGCONT)
            creator.join(60)
            wait_for(lambda: count_bound(api) == len(all_names), 60, "every pod bound")
            wait_for(lambda: c.status()[old["id"]]["role"] == "follower", 15, "the old leader follows")
            watch.avoid = set()
            lines = fenced_lines(c, old["id"])
            if lines:
                break
        assert lines, "no write of the resumed leader reached the state machine to be refused"
        assert all(f"fenced: proposed in Raft term {old['term']}" in line for line in lines), lines
        for n in nodes:
            node = api.call("GET", f"/api/v1/nodes/{n}")[1]
            assert not node["spec"].get("taints"), f"a stale write tainted {n}: {node['spec']}"
            assert node["status"]["conditions"][0]["status"] == "True", node["status"]["conditions"]
        time.sleep(0.5)  # let the watch see the last bindings (bounded; checked below)
        assert_bound_once_and_within_allocatable(api, watch, all_names, 100_000)
        c.wait_converged(list(c.status()))
    finally:
        beats.stop()
        watch.stop()


def test_lost_node_is_tainted_its_pods_evicted_and_replicaset_pods_recreated(start_cluster):
    grace_s, scale = 3.0, 0.02  # default toleration 300 s → 6 s
    c = start_cluster(node_monitor_period_s=0.5, node_monitor_grace_period_s=grace_s, toleration_seconds_scale=scale)
    api = Api(c)
    nodes = [f"node-{i}" for i in range(3)]
    register_nodes(api, nodes, "4")
    beats = Heartbeats(api, nodes, period_s=0.3)
    try:
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
              "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": "nginx",
                                                             "resources": {"requests": {"cpu": "500m"}}}]}}}}
        assert api.call("POST", "/apis/apps/v1/namespaces/default/replicasets", rs)[0] == 201

        def active():
            return [p for p in list_pods(api) if not p["metadata"].get("deletionTimestamp")]

        wait_for(lambda: len([p for p in active() if p["spec"].get("nodeName")]) == 6, 20, "6 replicas bound")
        per_node: dict[str, list[str]] = {}
        for p in active():
            per_node.setdefault(p["spec"]["nodeName"], []).append(p["metadata"]["name"])
        victim = max(per_node, key=lambda n: len(per_node[n]))
        doomed = per_node[victim]
        beats.beating.discard(victim)
        stopped_at = beats.last[victim]

        def node(name=victim):
            return api.call("GET", f"/api/v1/nodes/{name}")[1]

        def unreachable():
            taints = {(t["key"], t["effect"]) for t in node()["spec"].get("taints") or ()}
            return taints == {("node.kubernetes.io/unreachable", "NoExecute"),
                              ("node.kubernetes.io/unreachable", "NoSchedule")}

        wait_for(unreachable, grace_s + 5, "the unreachable taints")
        tainted_after = time.monotonic() - stopped_at
        assert grace_s - 0.5 <= tainted_after <= grace_s + 3, tainted_after
        ready = next(x for x in node()["status"]["conditions"] if x["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert not any(p["metadata"].get("deletionTimestamp") for p in list_pods(api)), "evicted too early"

        def evicted():
            pods = {p["metadata"]["name"]: p for p in list_pods(api)}
            return all(pods[n]["metadata"].get("deletionTimestamp") for n in doomed)

        wait_for(evicted, 300 * scale + 5, "the pods of the lost node evicted")
        evicted_after = time.monotonic() - stopped_at - tainted_after
        assert 300 * scale - 1.5 <= evicted_after <= 300 * scale + 3, evicted_after
        lost = api.call("GET", f"{PODS}/{doomed[0]}")[1]
        assert lost["status"]["reason"] == "NodeLost"
        assert lost["status"]["message"] == f"Node {victim} which was running pod {doomed[0]} is unresponsive"
        wait_for(lambda: len(active()) == 6 and all(p["spec"].get("nodeName") not in (None, victim)
                                                     for p in active()), 20, "6 replicas on the other nodes")
        code, rs_now = api.call("GET", "/apis/apps/v1/namespaces/default/replicasets/web")
        assert rs_now["status"]["replicas"] == 6
        code, evs = api.call("GET", "/api/v1/namespaces/default/events")
        reasons = {e["reason"] for e in evs["items"]}
        assert {"SuccessfulCreate", "Scheduled", "TaintManagerEviction", "NodeNotReady"} <= reasons, reasons

        beats.beating.add(victim)
        wait_for(lambda: not node()["spec"].get("taints"), grace_s + 5, "taints removed on return")
    finally:
        beats.stop()
