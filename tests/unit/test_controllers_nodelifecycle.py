"""The node lifecycle controller with a fake clock over an unreplicated store.

A node's heartbeats stop → after the grace period its conditions become Unknown, its pods not ready,
it is tainted unreachable (NoExecute + NoSchedule); pods are evicted when they don't tolerate the taint
at once, others after their (scaled) tolerationSeconds, NodeLost on the pod; when the heartbeat returns
the taints go. Ready=False reported by a kubelet gives the not-ready taints.
"""

from __future__ import annotations

from hacluster.config import ControllersConfig
from hacluster.controllers.nodelifecycle import NodeLifecycleController, eviction_delay_s
from hacluster.model import commands as C
from tests.unit.leader_fixtures import (
    FakeClock,
    add,
    events,
    get,
    leader_store,
    lease_obj,
    must,
    node_obj,
    objects,
    pod_obj,
    stamp,
)

SETTINGS = ControllersConfig(node_monitor_period_s=1, node_monitor_grace_period_s=5, toleration_seconds_scale=0.01)
UNREACHABLE = "node.kubernetes.io/unreachable"


def ready_pod(name, node, **kw):
    pod = pod_obj(name, node=node, **kw)
    pod["status"]["phase"] = "Running"
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                    "lastTransitionTime": "2023-11-14T22:13:20Z"}]
    return pod


async def renew(store, clock, node):
    lease = get(store, "leases", "kube-node-lease", node)
    new = {**lease, "spec": {**lease["spec"], "renewTime": stamp(clock())}}
    await must(store, C.Replace(resource="leases", namespace="kube-node-lease", name=node, obj=new))


def taints(store, node):
    return {(t["key"], t["effect"]) for t in get(store, "nodes", "", node)["spec"].get("taints") or ()}


async def setup(clock):
    store = await leader_store()
    for name in ("n1", "n2"):
        await add(store, "nodes", node_obj(name, heartbeat=stamp(clock())))
        await add(store, "leases", lease_obj(name, stamp(clock())))
    await add(store, "pods", ready_pod("default-tolerations", "n1"))  # 300 s → 3 s at scale 0.01
    await add(store, "pods", ready_pod("short", "n1", tolerations=[
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 100}]))
    await add(store, "pods", ready_pod("forever", "n1", tolerations=[{"operator": "Exists"}]))
    await add(store, "pods", ready_pod("elsewhere", "n2"))
    nlc = NodeLifecycleController(store, SETTINGS, clock=clock)
    nlc.start(1)
    return store, nlc


async def test_lost_node_unknown_tainted_pods_evicted_after_scaled_toleration_then_taint_removed():
    clock = FakeClock()
    store, nlc = await setup(clock)
    assert (await nlc.reconcile()).lost == []
    for _ in range(3):  # n2 keeps renewing its lease; n1 is silent from now on
        clock.advance(2)
        await renew(store, clock, "n2")
        done = await nlc.reconcile()
    assert done.lost == ["n1"] and done.marked_unknown == ["n1"]  # 6 s > 5 s grace
    node = get(store, "nodes", "", "n1")
    by_type = {c["type"]: c for c in node["status"]["conditions"]}
    assert by_type["Ready"]["status"] == "Unknown" and by_type["Ready"]["reason"] == "NodeStatusUnknown"
    assert by_type["Ready"]["message"] == "Kubelet stopped posting node status."
    assert by_type["MemoryPressure"]["status"] == "Unknown"
    assert by_type["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert taints(store, "n1") == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
    assert all(t.get("timeAdded") for t in node["spec"]["taints"])
    assert taints(store, "n2") == set()
    assert get(store, "nodes", "", "n2")["status"]["conditions"][0]["status"] == "True"
    assert sorted(done.pods_not_ready) == ["default/default-tolerations", "default/forever", "default/short"]
    pod = get(store, "pods", "default", "forever")
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["status"] == "False"
    assert done.evicted == []

    for step, expected in ((0.9, []), (0.1, ["default/short"]),  # 100 s × 0.01 = 1 s after the taint
                           (1.5, []), (0.4, []), (0.1, ["default/default-tolerations"])):  # 300 s × 0.01
        clock.advance(step)
        await renew(store, clock, "n2")
        assert (await nlc.reconcile()).evicted == expected
    evicted = get(store, "pods", "default", "default-tolerations")
    assert evicted["metadata"]["deletionTimestamp"], "deleted gracefully: Terminating until the node confirms"
    assert evicted["status"]["reason"] == "NodeLost"
    assert evicted["status"]["message"] == "Node n1 which was running pod default-tolerations is unresponsive"
    assert any(c["type"] == "DisruptionTarget" and c["reason"] == "DeletionByTaintManager"
               for c in evicted["status"]["conditions"])
    assert not get(store, "pods", "default", "forever")["metadata"].get("deletionTimestamp")
    assert not get(store, "pods", "default", "elsewhere")["metadata"].get("deletionTimestamp")

    await nlc.recorder.flush(nlc.proposer)
    assert [e["message"] for e in events(store, "NodeNotReady") if e["involvedObject"]["kind"] == "Node"] == [
        "Node n1 status is now: NodeNotReady"]
    assert len([e for e in events(store, "NodeNotReady") if e["involvedObject"]["kind"] == "Pod"]) == 3
    assert sorted(e["message"] for e in events(store, "TaintManagerEviction")) == [
        "Marking for deletion Pod default/default-tolerations", "Marking for deletion Pod default/short"]

    # the heartbeat returns: the unreachable taints go; Ready stays for the kubelet to report
    clock.advance(1)
    await renew(store, clock, "n1")
    await renew(store, clock, "n2")
    done = await nlc.reconcile()
    assert done.lost == [] and done.tainted == ["n1"]
    assert taints(store, "n1") == set()
    ready = {c["type"]: c for c in get(store, "nodes", "", "n1")["status"]["conditions"]}["Ready"]
    assert ready["status"] == "Unknown"
    clock.advance(1)
    await renew(store, clock, "n1")
    await renew(store, clock, "n2")
    assert (await nlc.reconcile()).tainted == [], "nothing more to change"


async def test_ready_heartbeat_counts_as_heartbeat_and_ready_false_gives_not_ready_taints():
    clock = FakeClock()
    store = await leader_store()
    await add(store, "nodes", node_obj("n", heartbeat=stamp(clock())))  # no Lease at all
    await add(store, "nodes", node_obj("healthy", heartbeat=stamp(clock())))
    await add(store, "leases", lease_obj("healthy", stamp(clock())))
    await add(store, "pods", ready_pod("p", "n"))
    nlc = NodeLifecycleController(store, SETTINGS, clock=clock)
    nlc.start(1)
    await nlc.reconcile()
    for _ in range(4):  # the kubelet posts status (a new lastHeartbeatTime) every 2 s
        clock.advance(2)
        node = get(store, "nodes", "", "n")
        status = {**node["status"], "conditions": [{**c, "lastHeartbeatTime": stamp(clock())}
                                                   for c in node["status"]["conditions"]]}
        await must(store, C.Replace(resource="nodes", namespace="", name="n", obj={"status": status},
                                    subresource="status"))
        await renew(store, clock, "healthy")
        assert (await nlc.reconcile()).lost == []
    # the kubelet reports Ready=False
    node = get(store, "nodes", "", "n")
    status = {**node["status"], "conditions": [{**c, "status": "False"} if c["type"] == "Ready" else c
                                               for c in node["status"]["conditions"]]}
    await must(store, C.Replace(resource="nodes", namespace="", name="n", obj={"status": status},
                                subresource="status"))
    done = await nlc.reconcile()
    assert done.lost == [] and done.pods_not_ready == ["default/p"]
    assert taints(store, "n") == {("node.kubernetes.io/not-ready", "NoExecute"),
                                  ("node.kubernetes.io/not-ready", "NoSchedule")}
    clock.advance(2.9)
    await renew(store, clock, "healthy")
    assert (await nlc.reconcile()).evicted == []
    clock.advance(0.2)
    await renew(store, clock, "healthy")
    assert (await nlc.reconcile()).evicted == ["default/p"]
    assert get(store, "pods", "default", "p")["status"].get("reason") is None, "NodeLost only when unreachable"


async def test_node_first_seen_gets_a_full_grace_period_and_memory_pressure_taint():
    clock = FakeClock()
    store = await leader_store()
    node = node_obj("n")
    node["status"]["conditions"][1]["status"] = "True"  # MemoryPressure
    await add(store, "nodes", node)
    nlc = NodeLifecycleController(store, SETTINGS, clock=clock)
    nlc.start(1)
    done = await nlc.reconcile()
    assert done.lost == [] and taints(store, "n") == {("node.kubernetes.io/memory-pressure", "NoSchedule")}
    clock.advance(5)
    assert (await nlc.reconcile()).lost == []
    clock.advance(0.5)
    assert (await nlc.reconcile()).lost == ["n"]


def test_eviction_delay_follows_get_min_toleration_time():
    taint = [{"key": UNREACHABLE, "effect": "NoExecute"}]
    both = taint + [{"key": "x", "value": "y", "effect": "NoExecute"}]
    tol = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}

    def pod(*tolerations):
        return {"spec": {"tolerations": list(tolerations)}}

    assert eviction_delay_s(pod(), taint) == 0  # not tolerated
    assert eviction_delay_s(pod_obj("p"), taint) == 300  # the API server's default toleration
    assert eviction_delay_s(pod(tol), taint) is None  # tolerated forever
    assert eviction_delay_s(pod({**tol, "tolerationSeconds": -5}), taint) == 0
    assert eviction_delay_s(pod({**tol, "tolerationSeconds": 60}), both) == 0
    x = {"key": "x", "operator": "Exists", "tolerationSeconds": 30, "effect": "NoExecute"}
    assert eviction_delay_s(pod({**tol, "tolerationSeconds": 60}, x), both) == 30
    assert eviction_delay_s(pod(tol, x), both) == 30
    # only the first toleration that tolerates a taint is used
    assert eviction_delay_s(pod(tol, {**tol, "tolerationSeconds": 5}), taint) is None


async def test_nothing_written_while_all_nodes_are_healthy():
    clock = FakeClock()
    store, nlc = await setup(clock)
    before = len(store.proposals)
    for _ in range(5):
        clock.advance(1)
        await renew(store, clock, "n1")
        await renew(store, clock, "n2")
        done = await nlc.reconcile()
        assert done.lost == [] and done.tainted == [] and done.evicted == []
    assert len(store.proposals) == before + 10, "only the test's own lease renewals"
    assert objects(store, "events") == []


async def test_full_disruption_marks_unknown_but_evicts_nothing():
    """Every node silent at once: more likely the control plane or the network than the nodes."""
    clock = FakeClock()
    store, nlc = await setup(clock)
    await nlc.reconcile()
    for _ in range(4):
        clock.advance(2)
        done = await nlc.reconcile()
    assert done.full_disruption and done.lost == ["n1", "n2"] and done.evicted == []
    assert taints(store, "n1") == taints(store, "n2") == {(UNREACHABLE, "NoSchedule")}
    assert all(c["status"] == "Unknown" for c in get(store, "nodes", "", "n1")["status"]["conditions"])
    await renew(store, clock, "n2")  # one node is back: the other one is lost for real
    done = await nlc.reconcile()
    assert not done.full_disruption and done.lost == ["n1"]
    assert taints(store, "n1") == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert taints(store, "n2") == set()


async def test_a_paused_controller_judges_heartbeats_afresh():
    """A pass after a pause longer than the grace period (the master was stopped) declares nothing lost."""
    clock = FakeClock()
    store, nlc = await setup(clock)
    await nlc.reconcile()
    clock.advance(30)
    done = await nlc.reconcile()
    assert done.lost == [] and done.marked_unknown == []
    for _ in range(3):  # regular passes again: now the silence counts
        clock.advance(2)
        done = await nlc.reconcile()
    assert done.lost == ["n1", "n2"]
