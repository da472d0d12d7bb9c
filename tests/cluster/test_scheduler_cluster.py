"""The leader-only scheduler and controllers on a real 3-master cluster (real processes, real Raft).

Nodes are registered directly through the API (Node objects with allocatable and a Ready condition) and
their Lease heartbeats are written by the test, as kubelets would. Checks:
- 200 pending pods and a leader SIGKILL in the middle: every pod is bound exactly once (a watch sees each
  pod's spec.nodeName set once and never changed), no node is over its allocatable (the pods fill the
  nodes exactly, so any double counting would leave pods unschedulable), the new leader carries on;
- a paused (SIGSTOP) leader resumed after the others elected a new one, and an isolated leader (every byte
  of its Raft links dropped) healed after the same: the writes it made in its old term are refused by the
  state machine's fencing (its log records each refusal with both terms), nothing is bound twice;
- a node whose heartbeats stop: Ready Unknown and the unreachable taints within the grace period, its
  pods evicted (NodeLost) after the scaled tolerationSeconds, its ReplicaSet's pods recreated elsewhere;
  the taints go when the heartbeats return.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hacluster.cluster import launcher
from hacluster.config import ControllersConfig, SchedulerConfig, default_config
from tests.cluster.conftest import Cluster
from tests.cluster.linkproxy import up_with_network
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def micro_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


@pytest.fixture
def start_cluster(tmp_path):
    started = []

    def start(scheduler=None, raft=None, **controllers):
        cfg = default_config(3)
        if controllers:
            cfg = cfg.model_copy(update={"controllers": ControllersConfig(**controllers)})
        if scheduler:
            cfg = cfg.model_copy(update={"scheduler": SchedulerConfig(**scheduler)})
        if raft:
            cfg = cfg.model_copy(update={"raft": cfg.raft.model_copy(update=raft)})
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

    def call(self, method, path, body=None, timeout_s=60.0, ok=(200, 201)):
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


def pod_body(name, cpu="100m", labels=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}],
                     **spec}}


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
        self.cycles = 0
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
            self.cycles += 1
            self._stop.wait(self.period_s)

    def stop_beating(self, name: str) -> float:
        """Stop renewing `name`'s Lease; return (monotonic) when its last renewal was acknowledged."""
        self.beating.discard(name)
        cycle = self.cycles
        wait_for(lambda: self.cycles >= cycle + 2, 30, "a heartbeat cycle without the node")
        return self.last[name]

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
        assert len(scheduled) >= 150, "Scheduled events (those of the last batches may die with the leader)"
        code, evs = api.call("GET", "/api/v1/namespaces/default/events")
        by = {e["reportingInstance"] for e in evs["items"] if e["reason"] == "Scheduled"}
        assert by == {f"default-scheduler-{leader['id']}", f"default-scheduler-{new['id']}"}, by
    finally:
        beats.stop()
        watch.stop()


FENCED = re.compile(r"(\S+): write of term (\d+) refused by fencing: fenced: proposed in Raft term (\d+), "
                    r"but term (\d+) has begun")


def fenced_refusals(c: Cluster) -> list[tuple[str, str, int, int]]:
    """(master, component, stale term, newer term) for every write a master's loops saw refused by fencing."""
    out = []
    for m in c.h.cfg.masters:
        log = Path(c.h.state_dir) / "logs" / f"{m.id}.log"
        for line in log.read_text(errors="replace").splitlines():
            match = FENCED.search(line)
            if match:
                out.append((m.id, match.group(1), int(match.group(3)), int(match.group(4))))
    return out


# A deposed leader finds out late: it keeps believing it leads (no step-down by its own timer, peers'
# links kept open) for 4 s, so that what its loops do in that time reaches Raft and then the state machine.
SLOW_TO_NOTICE = {"quorum_contact_ms": 4000, "leader_fallback_ms": 4000, "connection_timeout_ms": 5000}
STALE_SCHEDULER = {"backoff_initial_s": 1.0, "backoff_max_s": 1.0, "proposal_timeout_s": 20.0}


def make_pods_due(api: Api, tag: str, count: int = 10) -> list[str]:
    """Pods that fit no node yet: the scheduler tries them once, then a node label makes them fit, so they
    are due again when their 1 s back-off ends. Returns their names."""
    names = [f"{tag}-wait-{i}" for i in range(count)]
    for n in names:
        body = pod_body(n, "10m", nodeSelector={"wave": tag})
        assert api.call("POST", PODS, body, ok=(201, 409))[0] in (201, 409)
    wait_for(lambda: all(unschedulable(api, n) for n in names), 30, "the waiting pods tried once")
    node = api.call("GET", "/api/v1/nodes/node-0")[1]
    node["metadata"]["labels"]["wave"] = tag
    assert api.call("PUT", "/api/v1/nodes/node-0", node)[0] == 200
    return names


def test_paused_leader_is_fenced_when_it_resumes_and_binds_nothing_twice(start_cluster):
    """The leader is paused (SIGSTOP) while pods are being bound, and pods are due for a retry on it; the
    others elect a new leader, which binds everything. Resumed, the old leader's scheduler still acts in
    its old term before it learns of the new one: the state machine refuses those writes (the master's log
    records each refusal with both terms). No pod is bound twice, no node is over its allocatable, no pod
    is evicted, the masters converge."""
    c = start_cluster(raft=SLOW_TO_NOTICE, scheduler=STALE_SCHEDULER)
    api = Api(c)
    nodes = [f"node-{i}" for i in range(3)]
    register_nodes(api, nodes, "100", pods="2000")
    beats = Heartbeats(api, nodes, period_s=0.25)
    watch = PodWatch(c, str(c.status()[c.leader()["id"]]["revision"]))
    try:
        old = c.leader()
        names = [f"p-{i:03d}" for i in range(150)]
        creator = threading.Thread(target=create_pods, args=(api, names, "10m", 8))
        creator.start()
        wait_for(lambda: count_bound(api) >= 20, 60, "binding under way")
        names += make_pods_due(api, "w0")
        os.kill(old["pid"], signal.SIGSTOP)
        try:
            api.avoid = watch.avoid = {old["id"]}
            paused_at = time.monotonic()
            new = leader_among(c, exclude=old["id"])
            assert new["term"] > old["term"]
            wait_for(lambda: count_bound(api) >= 60, 60, "the new leader binds")
            time.sleep(max(0.0, paused_at + 2.0 - time.monotonic()))  # past the waiting pods' back-off
        finally:
            os.kill(old["pid"], signal.SIGCONT)
        creator.join(120)
        wait_for(lambda: count_bound(api) == len(names), 90, "every pod bound")
        watch.avoid = set()
        refused = wait_for(lambda: [r for r in fenced_refusals(c) if r[0] == old["id"]], 20,
                           "the resumed leader's writes refused by fencing")
        assert all(stale == old["term"] and newer > stale for _, _, stale, newer in refused), refused
        time.sleep(0.5)  # let the watch see the last bindings (bounded; checked below)
        assert_bound_once_and_within_allocatable(api, watch, names, 100_000)
        assert not [p["metadata"]["name"] for p in list_pods(api) if p["metadata"].get("deletionTimestamp")]
        c.wait_converged(list(c.status()), timeout_s=60)
    finally:
        beats.stop()
        watch.stop()


def test_isolated_leader_writes_are_refused_by_fencing(tmp_path):
    """A partition (every byte to and from the leader dropped) instead of a pause: the isolated leader
    keeps scheduling in its term — its bindings enter its own log and go nowhere — while the majority
    elects a new leader that binds the same pods. When the partition heals, Raft discards the isolated
    entries; the proposals are retried (same request ids) through the new leader, and the state machine
    refuses them because a newer term has begun. Deterministic: no race with the old leader's step-down."""
    cfg = default_config(3)
    # A 3 s back-off: the waiting pods are labelled to fit and the leader cut off while their back-off
    # runs, so it binds them in isolation (it notices it lost its quorum only 4 s after the cut).
    scheduler = SchedulerConfig(**{**STALE_SCHEDULER, "backoff_initial_s": 3.0, "backoff_max_s": 3.0})
    cfg = cfg.model_copy(update={"raft": cfg.raft.model_copy(update=SLOW_TO_NOTICE), "scheduler": scheduler})
    handle, net = up_with_network(cfg, tmp_path / "cluster")
    c = Cluster(handle)
    try:
        api = Api(c)
        nodes = [f"node-{i}" for i in range(3)]
        register_nodes(api, nodes, "100", pods="2000")
        beats = Heartbeats(api, nodes, period_s=0.25)
        old = c.leader()
        for wave in range(3):
            # Under load the label may be written after the back-off ended: the leader then binds the pods
            # while it still has its quorum, and that wave shows nothing. Try another.
            waiting = make_pods_due(api, f"w{wave}")
            if not any(api.call("GET", f"{PODS}/{n}")[1]["spec"].get("nodeName") for n in waiting):
                break
        else:
            raise AssertionError("the leader bound each wave of waiting pods before the partition (3 waves)")
        net.isolate(old["id"])
        api.avoid = {old["id"]}
        isolated_at = time.monotonic()
        new = leader_among(c, exclude=old["id"])
        assert new["term"] > old["term"]
        wait_for(lambda: all(api.call("GET", f"{PODS}/{n}")[1]["spec"].get("nodeName") for n in waiting), 30,
                 "the new leader binds the waiting pods")
        time.sleep(max(0.0, isolated_at + 3.5 - time.monotonic()))  # the isolated scheduler retried them
        net.heal()
        refused = wait_for(lambda: [r for r in fenced_refusals(c) if r[0] == old["id"]], 30,
                           "the isolated leader's writes refused by fencing")
        assert {component for _, component, _, _ in refused} >= {"scheduler"}
        assert all(stale == old["term"] and newer > stale for _, _, stale, newer in refused), refused
        pods = {p["metadata"]["name"]: p for p in list_pods(api)}
        for n in waiting:  # bound by the new leader, never again by the old one
            explanation = pods[n]["metadata"]["annotations"]["scheduler.hacluster.io/explanation"]
            assert json.loads(explanation)["node"] == pods[n]["spec"]["nodeName"] == "node-0"
        c.wait_converged(list(c.status()), timeout_s=60)
        beats.stop()
    finally:
        launcher.down(handle.state_dir)
        net.close()


def leader_among(c: Cluster, exclude: str, timeout_s: float = 30.0) -> dict:
    """The leader elected by the masters other than `exclude` (asking only them, with short timeouts)."""
    others = [m.id for m in c.h.cfg.masters if m.id != exclude]

    def ask():
        rows = []
        for mid in others:
            try:
                rows.append(launcher.http_json(f"{c.h.api(mid)}/debug/raft", c.token, 0.5))
            except (urllib.error.URLError, OSError, ValueError):
                pass
        leaders = [r for r in rows if r["role"] == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    return wait_for(ask, timeout_s, "a leader among the others")


def unschedulable(api: Api, name: str) -> bool:
    pod = api.call("GET", f"{PODS}/{name}")[1]
    return any(x["type"] == "PodScheduled" and x["status"] == "False" for x in pod["status"].get("conditions") or ())


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
        wait_for(lambda: set(beats.last) == set(nodes), 30, "every node's heartbeat")
        stopped_at = beats.stop_beating(victim)

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
        scale = api.call("GET", "/apis/apps/v1/namespaces/default/replicasets/web/scale")[1]
        scale["spec"]["replicas"] = 3
        assert api.call("PUT", "/apis/apps/v1/namespaces/default/replicasets/web/scale", scale)[0] == 200
        wait_for(lambda: len(active()) == 3, 20, "scaled down to 3 through the scale subresource")
        wait_for(lambda: api.call("GET", "/apis/apps/v1/namespaces/default/replicasets/web")[1]["status"].get(
            "replicas") == 3, 20, "status.replicas 3")
        code, evs = api.call("GET", "/api/v1/namespaces/default/events")
        reasons = {e["reason"] for e in evs["items"]}
        assert {"SuccessfulCreate", "Scheduled", "TaintManagerEviction", "NodeNotReady"} <= reasons, reasons

        beats.beating.add(victim)
        wait_for(lambda: not node()["spec"].get("taints"), grace_s + 5, "taints removed on return")
    finally:
        beats.stop()
