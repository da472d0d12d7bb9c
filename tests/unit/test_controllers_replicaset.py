"""The ReplicaSet controller over an unreplicated store, and all leader loops together.

Scale up and down (deletion ranking), terminating pods not counted (replacement after an eviction),
status, events, adoption of orphans, garbage collection; then the scheduler, node lifecycle and
ReplicaSet loops running together: a node's heartbeats stop and its ReplicaSet pods come back on the
other node.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from hacluster.config import ControllersConfig, SchedulerConfig
from hacluster.controllers.nodelifecycle import NodeLifecycleController
from hacluster.controllers.replicaset import ReplicaSetController, deletion_order
from hacluster.model import commands as C
from hacluster.model import validation
from hacluster.scheduler.loop import Scheduler
from tests.unit.leader_fixtures import (
    T0,
    FakeClock,
    add,
    events,
    eventually,
    get,
    leader_store,
    lease_obj,
    must,
    node_obj,
    objects,
    pod_obj,
    stamp,
)


def rs_obj(name, replicas, labels=None, ns="default"):
    labels = labels or {"app": name}
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": stamp(T0)},
          "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                   "template": {"metadata": {"labels": labels},
                                "spec": {"containers": [{"name": "c", "image": "nginx",
                                                         "resources": {"requests": {"cpu": "100m"}}}]}}}}
    validation.default_object("replicasets", rs)
    assert not validation.VALIDATORS["replicasets"](rs)
    return rs


def owned(store, rs_name, *, active_only=True):
    rs = get(store, "replicasets", "default", rs_name)
    out = []
    for p in objects(store, "pods", "default"):
        refs = [r for r in p["metadata"].get("ownerReferences") or () if r.get("controller")]
        if refs and refs[0]["uid"] == rs["metadata"]["uid"]:
            if not active_only or not p["metadata"].get("deletionTimestamp"):
                out.append(p)
    return out


async def scale(store, name, replicas):
    rs = get(store, "replicasets", "default", name)
    await must(store, C.Replace(resource="replicasets", namespace="default", name=name,
                                obj={**rs, "spec": {**rs["spec"], "replicas": replicas}}))


async def controller(store, clock=None):
    rsc = ReplicaSetController(store, ControllersConfig(), clock=clock or FakeClock(), rng=random.Random(1))
    rsc.start(1)
    await rsc.sync_dirty()
    return rsc


async def settle(rsc):
    rsc.take_changes()
    await rsc.sync_dirty()
    await rsc.recorder.flush(rsc.proposer)


async def test_scale_up_creates_owned_pods_from_the_template_with_events_and_status():
    store = await leader_store()
    await add(store, "replicasets", rs_obj("web", 3))
    rsc = await controller(store)
    await rsc.recorder.flush(rsc.proposer)
    pods = owned(store, "web")
    assert len(pods) == 3
    rs = get(store, "replicasets", "default", "web")
    for p in pods:
        meta = p["metadata"]
        assert meta["name"].startswith("web-") and len(meta["name"]) == len("web-") + 5
        assert meta["generateName"] == "web-" and meta["labels"] == {"app": "web"}
        assert meta["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                            "uid": rs["metadata"]["uid"], "controller": True,
                                            "blockOwnerDeletion": True}]
        assert p["status"]["phase"] == "Pending" and p["spec"]["schedulerName"] == "default-scheduler"
        assert p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
    assert sorted(e["message"] for e in events(store, "SuccessfulCreate")) == sorted(
        f"Created pod: {p['metadata']['name']}" for p in pods)
    assert all(e["involvedObject"]["kind"] == "ReplicaSet" and e["source"]["component"] == "replicaset-controller"
               for e in events(store, "SuccessfulCreate"))
    assert rs["status"] == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 0, "availableReplicas": 0,
                            "observedGeneration": 1}
    await scale(store, "web", 5)
    await settle(rsc)
    assert len(owned(store, "web")) == 5
    assert get(store, "replicasets", "default", "web")["status"]["observedGeneration"] == 2


async def test_scale_down_deletes_unscheduled_and_not_ready_pods_first():
    store = await leader_store()
    await add(store, "nodes", node_obj("a"))
    await add(store, "replicasets", rs_obj("web", 4))
    rsc = await controller(store)
    pods = sorted(owned(store, "web"), key=lambda p: p["metadata"]["name"])
    ready, running, _, _ = pods
    for p in (ready, running):
        await must(store, C.Bind(namespace="default", name=p["metadata"]["name"], node_name="a", time=stamp(T0)))
    cur = get(store, "pods", "default", ready["metadata"]["name"])
    status = {**cur["status"], "phase": "Running",
              "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp(T0)}]}
    await must(store, C.Replace(resource="pods", namespace="default", name=cur["metadata"]["name"],
                                obj={"status": status}, subresource="status"))
    await settle(rsc)
    assert get(store, "replicasets", "default", "web")["status"]["readyReplicas"] == 1
    await scale(store, "web", 1)
    await settle(rsc)
    left = owned(store, "web")
    assert [p["metadata"]["name"] for p in left] == [ready["metadata"]["name"]]
    # the bound, not-ready one is terminating (graceful); the unscheduled ones are gone at once
    assert get(store, "pods", "default", running["metadata"]["name"])["metadata"]["deletionTimestamp"]
    assert len(events(store, "SuccessfulDelete")) == 3
    assert get(store, "replicasets", "default", "web")["status"]["replicas"] == 1


def test_deletion_order_ranks_like_kubernetes():
    def p(name, node="", phase="Pending", ready=False, created=T0, restarts=0):
        pod = {"metadata": {"name": name, "creationTimestamp": stamp(created)},
               "spec": {"nodeName": node} if node else {},
               "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}}
        if ready:
            pod["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": stamp(created)}]
        return pod

    pods = [p("ready-old", "n1", "Running", True, T0), p("ready-new", "n2", "Running", True, T0 + 50),
            p("unassigned", created=T0 - 100), p("pending", "n1"), p("running", "n2", "Running"),
            p("crashy", "n2", "Running", restarts=5), p("crowded", "n1", "Running")]
    order = [x["metadata"]["name"] for x in deletion_order(pods)]
    assert order == ["unassigned", "pending", "crashy", "crowded", "running", "ready-new", "ready-old"]
    pods[4]["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "-10"}
    order = [x["metadata"]["name"] for x in deletion_order(pods)]
    assert order == ["unassigned", "pending", "running", "crashy", "crowded", "ready-new", "ready-old"]


async def test_terminating_pods_do_not_count_and_are_replaced():
    store = await leader_store()
    await add(store, "nodes", node_obj("a"))
    await add(store, "replicasets", rs_obj("web", 2))
    rsc = await controller(store)
    victim = owned(store, "web")[0]
    await must(store, C.Bind(namespace="default", name=victim["metadata"]["name"], node_name="a", time=stamp(T0)))
    await must(store, C.Delete(resource="pods", namespace="default", name=victim["metadata"]["name"],
                               time=stamp(T0)))  # an eviction: graceful, Terminating
    await settle(rsc)
    active = owned(store, "web")
    assert len(active) == 2 and victim["metadata"]["name"] not in {x["metadata"]["name"] for x in active}
    assert len(owned(store, "web", active_only=False)) == 3
    assert get(store, "replicasets", "default", "web")["status"]["replicas"] == 2


async def test_orphans_are_adopted_and_pods_of_a_deleted_replicaset_collected():
    store = await leader_store()
    await add(store, "pods", pod_obj("stray", labels={"app": "web"}))
    await add(store, "pods", pod_obj("unrelated", labels={"app": "db"}))
    await add(store, "replicasets", rs_obj("web", 2))
    rsc = await controller(store)
    names = {p["metadata"]["name"] for p in owned(store, "web")}
    assert "stray" in names and len(names) == 2
    assert not get(store, "pods", "default", "unrelated")["metadata"].get("ownerReferences")
    await must(store, C.Delete(resource="replicasets", namespace="default", name="web", time=stamp(T0)))
    await settle(rsc)
    remaining = {p["metadata"]["name"] for p in objects(store, "pods", "default")}
    assert remaining == {"unrelated"}, "the ReplicaSet's pods were garbage-collected"


async def test_node_lost_pods_evicted_and_replaced_on_the_other_node_by_all_loops():
    """Scheduler + node lifecycle + ReplicaSet loops running together (real time, short settings)."""
    store = await leader_store()
    now = __import__("time").time
    for name in ("a", "b"):
        await add(store, "nodes", node_obj(name, cpu="1", heartbeat=stamp(now())))
        await add(store, "leases", lease_obj(name, stamp(now())))
    controllers = ControllersConfig(node_monitor_period_s=0.05, node_monitor_grace_period_s=1.0,
                                    toleration_seconds_scale=0.001)  # 300 s → 0.3 s
    loops = [Scheduler(store, SchedulerConfig(backoff_initial_s=0.05, backoff_max_s=0.1,
                                              unschedulable_max_wait_s=0.2)).run(1),
             NodeLifecycleController(store, controllers).run(1),
             ReplicaSetController(store, controllers).run(1)]
    tasks = [asyncio.ensure_future(x) for x in loops]
    beating = {"a", "b"}

    async def heartbeats():
        while True:
            for name in sorted(beating):
                lease = get(store, "leases", "kube-node-lease", name)
                await store.propose(C.Replace(resource="leases", namespace="kube-node-lease", name=name,
                                              obj={**lease, "spec": {**lease["spec"], "renewTime": f"{now():.6f}"}}))
            await asyncio.sleep(0.05)

    tasks.append(asyncio.ensure_future(heartbeats()))
    try:
        await add(store, "replicasets", rs_obj("web", 6))  # 6 × 100m
        await eventually(lambda: len([p for p in owned(store, "web") if p["spec"].get("nodeName")]) == 6,
                         what="6 replicas bound")
        on_a = [p["metadata"]["name"] for p in owned(store, "web") if p["spec"]["nodeName"] == "a"]
        assert on_a, "spread over both nodes"
        beating.discard("a")
        await eventually(lambda: {t["key"] for t in get(store, "nodes", "", "a")["spec"].get("taints") or ()}
                         == {"node.kubernetes.io/unreachable"}, timeout_s=5, what="node a tainted unreachable")
        await eventually(lambda: all(get(store, "pods", "default", n)["metadata"].get("deletionTimestamp")
                                     for n in on_a), timeout_s=5, what="pods on a evicted")
        await eventually(lambda: len(owned(store, "web")) == 6 and all(
            p["spec"].get("nodeName") == "b" for p in owned(store, "web")), timeout_s=5,
            what="6 replicas again, all on b")
        lost = get(store, "pods", "default", on_a[0])
        assert lost["status"]["reason"] == "NodeLost" and lost["spec"]["nodeName"] == "a"
        beating.add("a")
        await eventually(lambda: not get(store, "nodes", "", "a")["spec"].get("taints"), timeout_s=5,
                         what="taints removed when the heartbeat returns")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
