"""The Job controller: the pure step (parallelism, completions, accounting of successes and failures,
backoffLimit, activeDeadlineSeconds, suspend, back-off before replacing a failed pod), then the
controller over an unreplicated store with a stand-in kubelet that ends pods as told: a 20-completion
Job with parallelism 4 counts exactly 20 successes, also when a second controller (the next leader)
takes over half-way; failures end in BackoffLimitExceeded; ttlSecondsAfterFinished deletes the Job and
its pods; a deposed leader's controller is fenced."""

from __future__ import annotations

import random
import uuid

import pytest

from hacluster.config import ControllersConfig
from hacluster.controllers.job import TRACKING_FINALIZER, JobController, job_step, restarts, tally
from hacluster.leader.proposer import NotLeading
from hacluster.model import commands as C
from hacluster.model import validation
from tests.unit.leader_fixtures import T0, FakeClock, add, events, get, leader_store, must, objects, stamp


def job(name="work", **spec):
    j = {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()), "creationTimestamp": stamp(T0)},
         "spec": {"template": {"spec": {"restartPolicy": "Never",
                                        "containers": [{"name": "c", "image": "busybox"}]}}, **spec}}
    validation.default_object("jobs", j)
    assert not validation.VALIDATORS["jobs"](j), validation.VALIDATORS["jobs"](j)
    return j


def pod(phase, *, finished=T0, restarts=0, deleting=False, tracked=True):
    p = {"metadata": {"name": f"p-{uuid.uuid4().hex[:6]}", "uid": str(uuid.uuid4()), "creationTimestamp": stamp(T0)},
         "spec": {}, "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}}
    if tracked:
        p["metadata"]["finalizers"] = [TRACKING_FINALIZER]
    if phase in ("Succeeded", "Failed"):
        p["status"]["containerStatuses"][0]["state"] = {"terminated": {"finishedAt": stamp(finished)}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = stamp(T0)
    return p


def test_defaults_and_generated_selector():
    j = job(completions=None)
    assert j["spec"]["completions"] == 1 and j["spec"]["parallelism"] == 1 and j["spec"]["backoffLimit"] == 6
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert j["spec"]["template"]["metadata"]["labels"]["job-name"] == "work"
    bad = job()
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert [c.field for c in validation.VALIDATORS["jobs"](bad)] == ["spec.template.spec.restartPolicy"]


def test_step_keeps_parallelism_but_never_more_than_the_completions_left():
    j = job(completions=5, parallelism=4)
    assert job_step(j, [], T0).create == 4
    done = [pod("Succeeded") for _ in range(5)]
    assert job_step(j, done[:3] + [pod("Running")], T0).create == 1
    assert job_step(j, done[:4] + [pod("Running"), pod("Running")], T0).delete  # one too many
    step = job_step(j, done, T0)
    assert step.finished == "" and step.create == 0  # all succeeded, not all counted yet
    assert len(step.status["uncountedTerminatedPods"]["succeeded"]) == 5 and step.release == done
    counted = [{**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "finalizers"}} for p in done]
    j["status"] = step.status
    step = job_step(j, counted, T0)
    assert step.finished == "Complete" and step.status["succeeded"] == 5
    assert step.status["completionTime"] == stamp(T0)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in step.status["conditions"])


def test_finished_pods_are_counted_once_through_the_tracking_finalizer():
    done, failed, running = pod("Succeeded"), pod("Failed"), pod("Running", restarts=3)
    first = tally({}, [done, failed, running])
    # 1. recorded as uncounted, finalizers to be released; the totals already include them
    assert first.uncounted_succeeded == [done["metadata"]["uid"]] and first.uncounted_failed == [failed["metadata"]["uid"]]
    assert first.release == [done, failed] and first.total_succeeded == 1 and first.total_failed == 1
    status = {"uncountedTerminatedPods": {"succeeded": first.uncounted_succeeded, "failed": first.uncounted_failed}}
    # the same sync again (a retry, a new leader) changes nothing
    again = tally(status, [done, failed, running])
    assert (again.total_succeeded, again.total_failed, again.uncounted_succeeded) == (1, 1, first.uncounted_succeeded)
    # 2. finalizers released (the succeeded pod also deleted by somebody): the uids move into the counts
    released = [{**p, "metadata": {k: v for k, v in p["metadata"].items() if k != "finalizers"}} for p in (failed,)]
    moved = tally(status, [*released, running])
    assert (moved.succeeded, moved.failed, moved.uncounted_succeeded, moved.uncounted_failed) == (1, 1, [], [])
    # 3. counted pods without the finalizer are never counted again
    assert tally({"succeeded": 1, "failed": 1}, [*released, running]).total_failed == 1
    # a pod deleted while it ran is released without counting; one that failed because it was deleted too
    gone = tally({}, [pod("Running", deleting=True), pod("Failed", deleting=True)])
    assert gone.total_failed == 0 and len(gone.release) == 2
    # a success on a pod being deleted (evicted from a lost node) still counts
    assert tally({}, [pod("Succeeded", deleting=True)]).total_succeeded == 1
    assert restarts([running, pod("Failed", restarts=5)]) == 3


def test_backoff_limit_exceeded_fails_the_job_and_deletes_what_runs():
    j = job(completions=3, parallelism=2, backoffLimit=1)
    running = pod("Running")
    step = job_step(j, [pod("Failed"), pod("Failed"), running], T0 + 100)
    assert step.finished == "Failed" and step.delete == [running]
    failed = next(c for c in step.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert len(step.status["uncountedTerminatedPods"]["failed"]) == 2  # counted once their finalizers are gone


def test_a_failed_pod_is_replaced_only_after_the_back_off():
    j = job(completions=1, backoffLimit=6)
    early = job_step(j, [pod("Failed", finished=T0)], T0 + 5)
    assert early.create == 0 and early.recheck_at == T0 + 10
    assert job_step(j, [pod("Failed", finished=T0)], T0 + 10).create == 1
    # the second failure waits 20 s
    assert job_step(j, [pod("Failed", finished=T0), pod("Failed", finished=T0 + 30)], T0 + 45).create == 0


def test_active_deadline_fails_a_job_that_runs_too_long():
    j = job(activeDeadlineSeconds=30)
    j["status"] = {"startTime": stamp(T0)}
    assert job_step(j, [pod("Running")], T0 + 10).recheck_at == T0 + 30
    step = job_step(j, [pod("Running")], T0 + 31)
    assert step.finished == "Failed" and len(step.delete) == 1
    assert any(c.get("reason") == "DeadlineExceeded" for c in step.status["conditions"])


def test_suspend_deletes_active_pods_and_says_so():
    j = job(completions=2, parallelism=2, suspend=True)
    step = job_step(j, [pod("Running"), pod("Running")], T0)
    assert len(step.delete) == 2 and step.create == 0
    assert any(c["type"] == "Suspended" for c in step.status["conditions"])


def test_terminating_pods_are_not_active_and_a_finished_job_does_nothing():
    j = job(completions=2, parallelism=2)
    assert job_step(j, [pod("Running", deleting=True)], T0).create == 2
    j["status"] = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": stamp(T0)}]}
    assert job_step(j, [], T0).create == 0


# ------------------------------------------------------------------------------------ controller
async def finish_pods(store, phase_of):
    """The stand-in kubelet: end every Pending pod with the phase `phase_of(pod)` chooses."""
    for p in objects(store, "pods", "default"):
        if p["metadata"].get("deletionTimestamp"):
            await must(store, C.Delete(resource="pods", namespace="default", name=p["metadata"]["name"],
                                       time=stamp(T0), grace_period_s=0))
        elif p["status"].get("phase") == "Pending":
            phase = phase_of(p)
            status = {**p["status"], "phase": phase, "containerStatuses": [
                {"name": "c", "restartCount": 0, "state": {"terminated": {
                    "exitCode": 0 if phase == "Succeeded" else 1, "finishedAt": stamp(T0)}}}]}
            await must(store, C.Replace(resource="pods", namespace="default", name=p["metadata"]["name"],
                                        obj={"status": status}, subresource="status"))


async def test_twenty_completions_with_parallelism_four_are_counted_exactly_across_a_leader_change():
    store = await leader_store()
    clock = FakeClock()
    await add(store, "jobs", job(completions=20, parallelism=4))
    jc = JobController(store, ControllersConfig(), clock=clock, rng=random.Random(1))
    jc.start(1)
    max_active = 0
    for i in range(40):
        if i == 3:  # the next leader takes over with a fresh controller
            await must(store, C.LeaderElected(leader_id="m2", term=2, time=stamp(T0), fence_term=2))
            with pytest.raises(NotLeading):
                jc.take_changes()
                jc.dirty.add("default/work")
                await jc.sync_dirty()
            jc = JobController(store, ControllersConfig(), clock=clock, rng=random.Random(2))
            jc.start(2)
        jc.take_changes()
        await jc.sync_dirty()
        active = [p for p in objects(store, "pods", "default") if p["status"].get("phase") == "Pending"]
        max_active = max(max_active, len(active))
        await finish_pods(store, lambda p: "Succeeded")
        st = get(store, "jobs", "default", "work").get("status") or {}
        if any(c["type"] == "Complete" for c in st.get("conditions") or ()):
            break
    pods = objects(store, "pods", "default")
    assert len(pods) == 20 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert st["succeeded"] == 20 and "failed" not in st and "active" not in st
    assert max_active <= 4


async def test_a_counted_success_survives_the_deletion_of_its_pod():
    """A finished pod deleted by somebody else (node lifecycle eviction, a user) before it was counted: the
    tracking finalizer holds it until its uid is recorded, so the completion is not lost."""
    store = await leader_store()
    clock = FakeClock()
    await add(store, "jobs", job(completions=2, parallelism=2))
    jc = JobController(store, ControllersConfig(), clock=clock, rng=random.Random(1))
    jc.start(1)
    jc.take_changes()
    await jc.sync_dirty()
    await finish_pods(store, lambda p: "Succeeded")
    first = objects(store, "pods", "default")[0]["metadata"]["name"]
    await must(store, C.Delete(resource="pods", namespace="default", name=first, time=stamp(T0)))
    assert get(store, "pods", "default", first)["metadata"]["deletionTimestamp"]  # held by the finalizer
    for _ in range(4):
        jc.take_changes()
        await jc.sync_dirty()
    st = get(store, "jobs", "default", "work")["status"]
    assert st["succeeded"] == 2 and st["uncountedTerminatedPods"] == {}
    assert get(store, "pods", "default", first) is None  # released, then gone
    assert len(objects(store, "pods", "default")) == 1  # no replacement was needed


async def test_failing_pods_end_in_backoff_limit_exceeded_with_an_event():
    store = await leader_store()
    clock = FakeClock()
    await add(store, "jobs", job(backoffLimit=2))
    jc = JobController(store, ControllersConfig(), clock=clock, rng=random.Random(1))
    jc.start(1)
    for _ in range(10):
        jc.take_changes()
        await jc.sync_dirty()
        await finish_pods(store, lambda p: "Failed")
        clock.advance(60)
    st = get(store, "jobs", "default", "work")["status"]
    assert st["failed"] == 3
    assert [c["reason"] for c in st["conditions"] if c["type"] == "Failed"] == ["BackoffLimitExceeded"]
    assert len(objects(store, "pods", "default")) == 3
    await jc.recorder.flush(jc.proposer)
    assert [e["message"] for e in events(store, "BackoffLimitExceeded")] == [
        "Job has reached the specified backoff limit"]


async def test_ttl_after_finished_deletes_the_job_and_then_its_pods():
    store = await leader_store()
    clock = FakeClock()
    await add(store, "jobs", job(ttlSecondsAfterFinished=5))
    jc = JobController(store, ControllersConfig(), clock=clock, rng=random.Random(1))
    jc.start(1)
    for _ in range(3):
        jc.take_changes()
        await jc.sync_dirty()
        await finish_pods(store, lambda p: "Succeeded")
    assert get(store, "jobs", "default", "work") is not None
    clock.advance(6)
    for _ in range(3):
        jc.take_changes()
        await jc.sync_dirty()
    assert get(store, "jobs", "default", "work") is None
    assert objects(store, "pods", "default") == []
