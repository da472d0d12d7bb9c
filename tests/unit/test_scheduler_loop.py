"""The leader-only scheduling loop over an unreplicated store (hacluster.scheduler.loop).

Covers binding (with explanation annotation and Scheduled event), queue order, unschedulable pods
(condition, aggregated FailedScheduling event, back-off, retry on a cluster change), refused bindings
(pod bound meanwhile: no rebinding, assumption forgotten), fencing after a newer term, and a relist when
the store's history overflowed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from hacluster.config import SchedulerConfig
from hacluster.leader import proposer as proposer_mod
from hacluster.model import commands as C
from hacluster.model.pods import compute_pod_requests
from hacluster.scheduler.loop import EXPLANATION_ANNOTATION, Scheduler, is_responsible_for
from hacluster.store.state import StoreLimits
from tests.unit.leader_fixtures import (
    T0,
    add,
    events,
    eventually,
    get,
    leader_store,
    must,
    node_obj,
    objects,
    pod_obj,
    stamp,
)

FAST = SchedulerConfig(seed=7, backoff_initial_s=0.05, backoff_max_s=0.2, unschedulable_max_wait_s=0.3)


async def run_scheduler(store, settings=FAST, term=1):
    sched = Scheduler(store, settings, instance="m1")
    task = asyncio.ensure_future(sched.run(term))
    return sched, task


async def stop(task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def bound_pods(store):
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in objects(store, "pods", "default")}


def assert_within_allocatable(store):
    used: dict[str, int] = {}
    for p in objects(store, "pods"):
        node = p["spec"].get("nodeName")
        if node:
            used[node] = used.get(node, 0) + compute_pod_requests(p).milli_cpu
    for n in objects(store, "nodes"):
        cpu = int(float(n["status"]["allocatable"]["cpu"]) * 1000)
        assert used.get(n["metadata"]["name"], 0) <= cpu, (n["metadata"]["name"], used)


async def test_pending_pods_are_bound_with_explanation_and_scheduled_events():
    store = await leader_store()
    for i in range(3):
        await add(store, "nodes", node_obj(f"node-{i}", cpu="2"))
    for i in range(12):
        await add(store, "pods", pod_obj(f"web-{i}", cpu="500m", created=T0 + i))
    ours = len(store.proposals)
    _, task = await run_scheduler(store)
    try:
        await eventually(lambda: all(bound_pods(store).values()), what="all pods bound")
        await eventually(lambda: len(events(store, "Scheduled")) == 12, what="12 Scheduled events")
    finally:
        await stop(task)
    assert_within_allocatable(store)
    placed = bound_pods(store)
    assert sorted(placed.values()).count("node-0") == 4  # 12 × 500m onto 3 × 2 CPUs: exactly full
    pod = get(store, "pods", "default", "web-0")
    explanation = json.loads(pod["metadata"]["annotations"][EXPLANATION_ANNOTATION])
    assert explanation["result"] == "Scheduled" and explanation["node"] == pod["spec"]["nodeName"]
    assert [f["plugin"] for f in explanation["filters"]][:2] == ["NodeUnschedulable", "NodeName"]
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled == [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": scheduled[0]["lastTransitionTime"]}]
    ev = next(e for e in events(store, "Scheduled") if e["involvedObject"]["name"] == "web-0")
    assert ev["message"] == f"Successfully assigned default/web-0 to {pod['spec']['nodeName']}"
    assert ev["type"] == "Normal" and ev["source"] == {"component": "default-scheduler"}
    assert ev["reportingComponent"] == "default-scheduler" and ev["count"] == 1
    assert ev["involvedObject"]["uid"] == pod["metadata"]["uid"] and ev["involvedObject"]["kind"] == "Pod"
    assert ev["metadata"]["name"].startswith("web-0.") and int(ev["metadata"]["name"].split(".")[1], 16) > 0
    # every command the loop proposed carried the term
    assert len(store.proposals) > ours
    for command in store.proposals[ours:]:
        assert command.fence_term == 1, command
        for inner in getattr(command, "commands", []):
            assert inner.fence_term == 1


async def test_queue_order_priority_then_age():
    store = await leader_store()
    await add(store, "nodes", node_obj("only", cpu="1"))
    await add(store, "pods", pod_obj("old-low", cpu="1", created=T0))
    await add(store, "pods", pod_obj("new-high", cpu="1", created=T0 + 10, priority=1000))
    await add(store, "pods", pod_obj("newer-low", cpu="1", created=T0 + 20))
    sched = Scheduler(store, FAST)
    sched.start(1)
    await sched.step()
    await sched.drain()
    assert bound_pods(store) == {"old-low": None, "new-high": "only", "newer-low": None}


async def test_unschedulable_condition_aggregated_event_backoff_and_retry_on_new_node():
    store = await leader_store()
    await add(store, "nodes", node_obj("small", cpu="1"))
    await add(store, "nodes", node_obj("gpu", cpu="8", taints=[{"key": "dedicated", "value": "gpu",
                                                                 "effect": "NoSchedule"}]))
    await add(store, "pods", pod_obj("big", cpu="4"))
    sched, task = await run_scheduler(store)
    message = ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. "
               "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    try:
        await eventually(lambda: events(store, "FailedScheduling"), what="FailedScheduling event")
        pod = get(store, "pods", "default", "big")
        cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", message)
        # retried after back-off / max wait: the same message bumps one event's count, no new events
        await eventually(lambda: events(store, "FailedScheduling")[0]["count"] >= 3, timeout_s=5,
                         what="repeated FailedScheduling aggregated")
        failed = events(store, "FailedScheduling")
        assert len(failed) == 1 and failed[0]["type"] == "Warning" and failed[0]["message"] == message
        assert failed[0]["lastTimestamp"] >= failed[0]["firstTimestamp"]
        status_writes = sum(1 for c in store.proposals for x in getattr(c, "commands", [])
                            if isinstance(x, C.Replace) and x.subresource == "status")
        assert status_writes == 1, "the unchanged condition is not written again"
        # a new node that fits: the pod moves back to the active queue and is bound
        await add(store, "nodes", node_obj("large", cpu="8"))
        await eventually(lambda: bound_pods(store)["big"] == "large", what="bound to the new node")
    finally:
        await stop(task)
    assert sched.attempts.get(get(store, "pods", "default", "big")["metadata"]["uid"]) is None


async def test_backoff_grows_exponentially_to_its_cap():
    store = await leader_store()
    settings = SchedulerConfig(backoff_initial_s=1, backoff_max_s=10)
    now = [100.0]
    sched = Scheduler(store, settings, monotonic=lambda: now[0])
    waits = []
    for _ in range(6):
        sched._back_off("u")
        waits.append(sched.unschedulable["u"].not_before - now[0])
    assert waits == [1, 2, 4, 8, 10, 10]


async def test_binding_refused_when_pod_was_bound_meanwhile():
    store = await leader_store()
    await add(store, "nodes", node_obj("a", cpu="1"))
    await add(store, "nodes", node_obj("b", cpu="1"))
    pod = await add(store, "pods", pod_obj("p", cpu="1"))
    sched = Scheduler(store, FAST)
    sched.start(1)
    assert await sched.step()  # placed and assumed; the batch task has not run yet
    chosen = sched.inflight[pod["metadata"]["uid"]]
    other = "b" if chosen == "a" else "a"
    await must(store, C.Bind(namespace="default", name="p", node_name=other, time=stamp(T0)))
    await sched.drain()
    binds = [x for c in store.proposals for x in getattr(c, "commands", []) if isinstance(x, C.Bind)]
    assert [b.node_name for b in binds] == [chosen], "the scheduler proposed exactly one binding"
    assert get(store, "pods", "default", "p")["spec"]["nodeName"] == other, "never rebound"
    assert not sched.snapshot.is_assumed(pod["metadata"]["uid"])
    await sched.step()  # takes in the binding by the other party
    assert sched.snapshot.node_of(pod["metadata"]["uid"]) == other
    assert sched.snapshot.get(chosen).requested_milli_cpu == 0, "the refused assumption was forgotten"
    assert not events(store, "Scheduled")
    # and the state machine itself refuses any second binding
    again = await store.propose(C.Bind(namespace="default", name="p", node_name=chosen, time=stamp(T0)))
    assert not again.ok and again.error.reason == "Conflict" and "already assigned" in again.error.message


async def test_stale_term_is_fenced_after_a_newer_leader_announced():
    store = await leader_store(term=1)
    await add(store, "nodes", node_obj("a"))
    # a newer leader (term 2) has been elected and announced itself in the log
    await must(store, C.LeaderElected(leader_id="m2", term=2, time=stamp(T0), fence_term=2))
    await add(store, "pods", pod_obj("p"))
    fenced_before = proposer_mod.STATS.fenced
    _, task = await run_scheduler(store, term=1)
    await asyncio.wait_for(task, 5)  # the loop ends by itself: its term is over
    assert get(store, "pods", "default", "p")["spec"].get("nodeName") is None
    assert proposer_mod.STATS.fenced == fenced_before + 1
    refused = await store.propose(C.Bind(namespace="default", name="p", node_name="a", time=stamp(T0),
                                         fence_term=1))
    assert not refused.ok and refused.error.message.startswith("fenced: proposed in Raft term 1")
    assert store.read(lambda s: s.term_seen) == 2


async def test_only_own_pods_are_scheduled():
    store = await leader_store()
    await add(store, "nodes", node_obj("a"))
    await add(store, "pods", pod_obj("mine"))
    await add(store, "pods", pod_obj("other", schedulerName="my-scheduler"))
    await add(store, "pods", pod_obj("gated", schedulingGates=[{"name": "example.com/wait"}]))
    assert not is_responsible_for(pod_obj("x", node="a"))
    sched = Scheduler(store, FAST)
    sched.start(1)
    await sched.step()
    await sched.drain()
    assert bound_pods(store) == {"gated": None, "mine": "a", "other": None}


async def test_relist_after_history_overflow_keeps_counting_right():
    store = await leader_store(limits=StoreLimits(watch_history_max=5))
    await add(store, "nodes", node_obj("a", cpu="2"))
    sched = Scheduler(store, FAST)
    sched.start(1)
    await add(store, "pods", pod_obj("bound-elsewhere", cpu="1", node="a"))
    for i in range(8):
        await add(store, "pods", pod_obj(f"p{i}", cpu="1", created=T0 + i))
    await sched.step()  # the history no longer reaches back: relist, then place
    await sched.drain()
    placed = bound_pods(store)
    assert placed["p0"] == "a" and [n for k, n in placed.items() if k.startswith("p") and n] == ["a"]
    assert_within_allocatable(store)


@pytest.mark.parametrize("seed", [1, 2])
async def test_ties_are_broken_reproducibly_by_the_seed(seed):
    async def placements():
        store = await leader_store()
        for i in range(5):
            await add(store, "nodes", node_obj(f"n{i}"))
        for i in range(5):
            pod = pod_obj(f"p{i}", created=T0 + i)
            pod["metadata"]["uid"] = f"uid-{i}"
            await add(store, "pods", pod)
        sched = Scheduler(store, SchedulerConfig(seed=seed))
        sched.start(1)
        await sched.step()
        await sched.drain()
        return bound_pods(store)

    first, second = await placements(), await placements()
    assert first == second and all(first.values())


def test_snapshot_confirm_keeps_the_assumed_accounting():
    from hacluster.scheduler.nodeinfo import ClusterSnapshot

    snap = ClusterSnapshot([node_obj("a", cpu="2")])
    pod = pod_obj("p", cpu="1")
    assert not snap.confirm(pod)  # not assumed: nothing to confirm
    snap.assume(pod, "a")
    assert snap.confirm(pod["metadata"]["uid"])
    assert not snap.is_assumed(pod) and snap.node_of(pod) == "a"
    assert snap.get("a").requested_milli_cpu == 1000


async def test_a_failed_attempt_writes_its_status_and_its_event_in_one_raft_entry():
    """The FailedScheduling event the pass queued rides in the pass's own batch: one proposal, not two."""
    store = await leader_store()
    await add(store, "nodes", node_obj("small", cpu="1"))
    await add(store, "pods", pod_obj("big", cpu="4"))
    sched = Scheduler(store, FAST)
    sched.start(1)
    before = len(store.proposals)
    assert await sched.step()
    await sched.drain()
    batches = [c for c in store.proposals[before:] if isinstance(c, C.Batch)]
    assert len(batches) == 1, store.proposals[before:]
    kinds = [(type(x).__name__, x.resource, x.subresource if isinstance(x, C.Replace) else "")
             for x in batches[0].commands]
    assert kinds == [("Replace", "pods", "status"), ("Create", "events", "")]
    assert [e["reason"] for e in events(store, "FailedScheduling")] == ["FailedScheduling"]
    assert sched.recorder.queued == 0 and sched.recorder.written == 1


async def test_pods_created_one_by_one_while_the_scheduler_is_idle_share_a_batch():
    """batch_window_ms: woken from idle by the first pod, the scheduler waits for the next before placing."""
    store = await leader_store()
    await add(store, "nodes", node_obj("small", cpu="1"))
    settings = SchedulerConfig(seed=7, backoff_initial_s=5, batch_window_ms=300)
    sched, task = await run_scheduler(store, settings)
    try:
        await eventually(lambda: sched.follower.revision > 0, what="the scheduler listed the store")
        before = len(store.proposals)
        await add(store, "pods", pod_obj("first", cpu="4"))
        await eventually(lambda: sched._wake.is_set(), what="the scheduler woke")
        await add(store, "pods", pod_obj("second", cpu="4"))
        await eventually(lambda: len(events(store, "FailedScheduling")) == 2, what="both pods tried")
        batches = [c for c in store.proposals[before:] if isinstance(c, C.Batch)]
        statuses = [[x.name for x in b.commands if isinstance(x, C.Replace) and x.resource == "pods"] for b in batches]
        assert statuses == [["first", "second"]], statuses
    finally:
        await stop(task)
