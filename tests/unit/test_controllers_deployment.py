"""The Deployment controller: the rolling-update arithmetic as pure functions (Kubernetes' rounding of
percentages, fenceposts, new/old ReplicaSet steps, Recreate), then the controller with the ReplicaSet
controller over an unreplicated store, with a stand-in kubelet that makes pods ready: a rolling update
that never leaves the surge/unavailability bounds, rollback, Recreate, pause, history limit, status
conditions and ProgressDeadlineExceeded, garbage collection, and fencing."""

from __future__ import annotations

import random
import uuid

import pytest

from hacluster.config import ControllersConfig
from hacluster.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    DeploymentController,
    SetCounts,
    fenceposts,
    new_rs_replicas,
    old_rs_scale_down,
    plan,
    recreate_step,
    template_hash,
    template_without_hash,
)
from hacluster.controllers.replicaset import ReplicaSetController, controller_ref, is_active
from hacluster.leader.proposer import NotLeading
from hacluster.model import commands as C
from hacluster.model import validation
from hacluster.model.intstr import IntOrPercentError, scaled_value
from tests.unit.leader_fixtures import T0, FakeClock, add, events, get, leader_store, must, objects, stamp


# ------------------------------------------------------------------------------------------ arithmetic
@pytest.mark.parametrize(("value", "total", "up", "want"), [
    ("25%", 10, True, 3), ("25%", 10, False, 2), ("25%", 4, True, 1), ("25%", 4, False, 1),
    ("25%", 3, True, 1), ("25%", 3, False, 0), ("50%", 5, True, 3), ("50%", 5, False, 2),
    ("0%", 7, True, 0), ("100%", 7, False, 7), (2, 10, True, 2), (0, 10, False, 0), ("33%", 1, True, 1),
])
def test_percentages_round_as_kubernetes(value, total, up, want):
    assert scaled_value(value, total, round_up=up) == want


@pytest.mark.parametrize("bad", ["25", "x%", "-1%", True, 2.5])
def test_malformed_int_or_percent_is_refused(bad):
    with pytest.raises(IntOrPercentError):
        scaled_value(bad, 10, round_up=True)


def test_fenceposts_surge_up_unavailable_down_and_never_both_zero():
    assert fenceposts(10, "25%", "25%") == (3, 2)
    assert fenceposts(3, "25%", "25%") == (1, 0)
    assert fenceposts(3, "0%", "25%") == (0, 1)  # both zero after rounding: one may be unavailable
    assert fenceposts(1, 0, 0) == (0, 1)
    assert fenceposts(10, None, None) == (3, 2)  # the defaults


def S(name, replicas, active=None, available=None, created=0.0, revision=0):
    active = replicas if active is None else active
    return SetCounts(name=name, replicas=replicas, active=active, ready=available if available is not None else active,
                     available=active if available is None else available, created=created, revision=revision)


def test_new_replica_set_scales_up_to_the_surge_and_not_beyond_desired():
    # 10 desired, surge 3: old holds 10, so the new one may have 3
    assert new_rs_replicas(10, 3, S("new", 0), [S("old", 10)]) == 3
    # already at replicas + surge: no more
    assert new_rs_replicas(10, 3, S("new", 3, available=0), [S("old", 10)]) == 3
    # old pods not yet deleted still occupy their place
    assert new_rs_replicas(10, 3, S("new", 3), [S("old", 8, active=9)]) == 4
    assert new_rs_replicas(10, 3, S("new", 9), [S("old", 0)]) == 10
    assert new_rs_replicas(10, 3, S("new", 12), []) == 10  # scaled down: back to desired


def test_old_replica_sets_scale_down_only_as_far_as_availability_allows():
    # 10 desired, unavailable 2: new has 3 not yet available, old 10 available → 2 old ones may go
    assert old_rs_scale_down(10, 2, S("new", 3, available=0), [S("old", 10)]) == {"old": 8}
    # nothing available beyond the minimum: nothing goes
    assert old_rs_scale_down(10, 2, S("new", 3, available=0), [S("old", 8)]) == {}
    # unhealthy old pods go first (7 → 5); then available ones while more than 8 stay available (5 → 3)
    assert old_rs_scale_down(10, 2, S("new", 5), [S("old", 7, available=5)]) == {"old": 3}
    # with five new pods not available yet, not even the unhealthy old ones go (12 - 8 - 5 < 0), as in
    # Kubernetes: the new ones may be about to become available
    assert old_rs_scale_down(10, 2, S("new", 5, available=0), [S("old", 7, available=5)]) == {}
    # oldest old ReplicaSet first
    got = old_rs_scale_down(4, 1, S("new", 2), [S("b", 2, created=2.0), S("a", 2, created=1.0)])
    assert got == {"a": 0, "b": 1}  # 6 available, 3 must stay: the older one goes first


def test_a_whole_rolling_update_stays_within_its_bounds():
    """Drive plan() step by step, making every scheduled pod available at once: the total never exceeds
    replicas + surge and availability never drops below replicas - unavailable."""
    spec = {"replicas": 10, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                                    "maxUnavailable": "25%"}}}
    new, old = S("new", 0, created=2.0), S("old", 10, created=1.0)
    steps = 0
    while not (new.replicas == 10 and old.replicas == 0):
        step = plan(spec, new, [old])
        if step.new_replicas is not None:
            new = S("new", step.new_replicas, created=2.0, available=new.available, active=step.new_replicas)
        old = S("old", step.scale.get("old", old.replicas), created=1.0)
        assert new.replicas + old.replicas <= 13
        assert new.available + old.available >= 8
        # the kubelet makes the new pods available before the next step
        new = S("new", new.replicas, created=2.0)
        steps += 1
        assert steps < 20
    assert steps >= 3


def test_recreate_waits_for_every_old_pod_before_the_new_ones():
    assert recreate_step(3, None, [S("old", 3)]) == ({"old": 0}, None)
    assert recreate_step(3, None, [S("old", 0, active=2)]) == ({}, None)
    assert recreate_step(3, None, [S("old", 0, active=0)]) == ({}, 3)


def test_a_paused_deployment_only_scales():
    spec = {"replicas": 5, "paused": True, "strategy": {"type": "RollingUpdate"}}
    assert plan(spec, None, [S("old", 3)]).scale == {"old": 5}
    # mid-rollout at replicas + maxSurge (5 + 2): nothing to do, and never a new ReplicaSet
    assert plan(spec, S("new", 4), [S("old", 3)]).scale == {}
    assert plan(spec, None, [S("old", 5)]).new_replicas is None


def test_scaling_mid_rollout_is_proportional_as_in_kubernetes():
    """10 → 20 replicas while 5 new and 8 old pods run (sized for 10, max 13): 25 allowed, 12 to add,
    spread by size — 7 to the old set, 5 to the new one."""
    spec = {"replicas": 20, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                                    "maxUnavailable": "25%"}}}
    new = SetCounts("new", 5, 5, 5, 5, created=2.0, desired_annotation=10, max_annotation=13)
    old = SetCounts("old", 8, 8, 8, 8, created=1.0, desired_annotation=10, max_annotation=13)
    assert plan(spec, new, [old]).scale == {"old": 15, "new": 10}
    # and back down to 4: 5 allowed, 8 to remove, older first among equals
    spec["replicas"] = 4
    got = plan(spec, SetCounts("new", 10, created=2.0, desired_annotation=20, max_annotation=25),
               [SetCounts("old", 15, created=1.0, desired_annotation=20, max_annotation=25)]).scale
    assert got == {"old": 3, "new": 2}
    # one active set takes the whole count
    assert plan(spec, SetCounts("new", 10, desired_annotation=20), [SetCounts("old", 0)]).scale == {"new": 4}


def test_template_hash_is_stable_and_ignores_its_own_label():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    h = template_hash(t)
    assert h == template_hash(dict(t)) and h != template_hash(t, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    labelled = {"metadata": {"labels": {"app": "web", HASH_LABEL: h}}, "spec": t["spec"]}
    assert template_without_hash(labelled) == t


# ------------------------------------------------------------------------------------- controller
def deployment(name, replicas, image="nginx", **spec):
    labels = {"app": name}
    d = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()),
                      "creationTimestamp": stamp(T0)},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}
    validation.default_object("deployments", d)
    assert not validation.VALIDATORS["deployments"](d)
    return d


class Rig:
    """Deployment and ReplicaSet controllers over one store, and a kubelet stand-in."""

    def __init__(self, store, clock):
        self.store, self.clock = store, clock
        self.dc = DeploymentController(store, ControllersConfig(), clock=clock)
        self.rsc = ReplicaSetController(store, ControllersConfig(), clock=clock, rng=random.Random(3))
        self.dc.start(1)
        self.rsc.start(1)
        self.max_active = 0
        self.min_available = 10**9

    def pods(self, active_only=True):
        return [p for p in objects(self.store, "pods", "default") if not active_only or is_active(p)]

    async def kubelet(self, ready=True):
        """Every new pod starts (Ready at once unless `ready` is False); terminating pods go away."""
        for p in self.pods(active_only=False):
            name = p["metadata"]["name"]
            if p["metadata"].get("deletionTimestamp"):
                await must(self.store, C.Delete(resource="pods", namespace="default", name=name, time=stamp(T0),
                                                grace_period_s=0))
            elif p["status"].get("phase") == "Pending":
                status = {**p["status"], "phase": "Running"}
                if ready:
                    status["conditions"] = [{"type": "Ready", "status": "True",
                                             "lastTransitionTime": stamp(self.clock())}]
                await must(self.store, C.Replace(resource="pods", namespace="default", name=name,
                                                 obj={"status": status}, subresource="status"))

    def observe(self):
        active = self.pods()
        self.max_active = max(self.max_active, len(active))
        available = sum(1 for p in active if any(c["type"] == "Ready" and c["status"] == "True"
                                                 for c in p["status"].get("conditions") or ()))
        self.min_available = min(self.min_available, available)

    async def round(self, ready=True):
        for c in (self.dc, self.rsc):
            c.take_changes()
            await c.sync_dirty()
            self.observe()
        await self.kubelet(ready)
        self.observe()

    async def until(self, check, rounds=60, ready=True):
        for _ in range(rounds):
            await self.round(ready)
            if check():
                return
        raise AssertionError("not reached")


def rollout_done(store, name, replicas):
    d = get(store, "deployments", "default", name)
    st = d.get("status") or {}
    return (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == replicas
            and st.get("replicas") == replicas and st.get("availableReplicas") == replicas)


async def set_image(store, name, image):
    d = get(store, "deployments", "default", name)
    spec = {**d["spec"], "template": {**d["spec"]["template"],
                                      "spec": {**d["spec"]["template"]["spec"],
                                               "containers": [{**d["spec"]["template"]["spec"]["containers"][0],
                                                               "image": image}]}}}
    await must(store, C.Replace(resource="deployments", namespace="default", name=name, obj={**d, "spec": spec}))


def sets_of(store, name):
    d = get(store, "deployments", "default", name)
    return {rs["metadata"]["name"]: rs for rs in objects(store, "replicasets", "default")
            if (controller_ref(rs) or {}).get("uid") == d["metadata"]["uid"]}


async def test_rolling_update_of_ten_replicas_stays_in_bounds_and_reports_status():
    store = await leader_store()
    clock = FakeClock()
    rig = Rig(store, clock)
    await add(store, "deployments", deployment("web", 10))
    await rig.until(lambda: rollout_done(store, "web", 10))
    (first,) = sets_of(store, "web").values()
    assert first["metadata"]["annotations"][REVISION] == "1"
    assert first["metadata"]["name"] == "web-" + first["metadata"]["labels"][HASH_LABEL]
    assert first["spec"]["selector"]["matchLabels"][HASH_LABEL] == first["metadata"]["labels"][HASH_LABEL]
    d = get(store, "deployments", "default", "web")
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True" and conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d["metadata"]["annotations"][REVISION] == "1"

    rig.max_active, rig.min_available = 0, 10**9
    await set_image(store, "web", "nginx:1.27")
    await rig.until(lambda: rollout_done(store, "web", 10))
    assert rig.max_active <= 10 + 3, rig.max_active
    assert rig.min_available >= 10 - 2, rig.min_available
    sets = sets_of(store, "web")
    assert len(sets) == 2
    new = next(rs for rs in sets.values() if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27")
    assert new["metadata"]["annotations"][REVISION] == "2" and new["spec"]["replicas"] == 10
    assert all(rs["spec"]["replicas"] == 0 for rs in sets.values() if rs is not new)
    assert get(store, "deployments", "default", "web")["metadata"]["annotations"][REVISION] == "2"
    await rig.dc.recorder.flush(rig.dc.proposer)
    scaled = [e["message"] for e in events(store, "ScalingReplicaSet")]
    assert f"Scaled up replica set {new['metadata']['name']} to 3" in scaled


async def test_rollback_makes_the_old_replica_set_new_again_with_the_next_revision():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("web", 3))
    await rig.until(lambda: rollout_done(store, "web", 3))
    (first_name,) = sets_of(store, "web")
    await set_image(store, "web", "nginx:1.27")
    await rig.until(lambda: rollout_done(store, "web", 3))
    # `kubectl rollout undo`: the old ReplicaSet's template (without its hash label) back into the Deployment
    old = sets_of(store, "web")[first_name]
    d = get(store, "deployments", "default", "web")
    await must(store, C.Replace(resource="deployments", namespace="default", name="web",
                                obj={**d, "spec": {**d["spec"], "template": template_without_hash(old["spec"]["template"])}}))
    await rig.until(lambda: rollout_done(store, "web", 3))
    sets = sets_of(store, "web")
    assert len(sets) == 2  # no third ReplicaSet for a template seen before
    assert sets[first_name]["spec"]["replicas"] == 3
    assert sets[first_name]["metadata"]["annotations"][REVISION] == "3"
    assert get(store, "deployments", "default", "web")["metadata"]["annotations"][REVISION] == "3"


async def test_recreate_never_runs_old_and_new_pods_together():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("db", 3, strategy={"type": "Recreate"}))
    await rig.until(lambda: rollout_done(store, "db", 3))
    await set_image(store, "db", "nginx:1.27")
    images_together = []

    def check():
        images = {p["spec"]["containers"][0]["image"] for p in rig.pods()}
        images_together.append(len(images) > 1)
        return rollout_done(store, "db", 3)
    await rig.until(check)
    assert not any(images_together)


async def test_paused_deployment_does_not_roll_until_resumed():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("web", 2))
    await rig.until(lambda: rollout_done(store, "web", 2))
    d = get(store, "deployments", "default", "web")
    await must(store, C.Replace(resource="deployments", namespace="default", name="web",
                                obj={**d, "spec": {**d["spec"], "paused": True}}))
    await set_image(store, "web", "nginx:1.27")
    for _ in range(5):
        await rig.round()
    assert len(sets_of(store, "web")) == 1
    progressing = {c["type"]: c for c in get(store, "deployments", "default", "web")["status"]["conditions"]}
    assert progressing["Progressing"]["reason"] == "DeploymentPaused"
    d = get(store, "deployments", "default", "web")
    await must(store, C.Replace(resource="deployments", namespace="default", name="web",
                                obj={**d, "spec": {**d["spec"], "paused": False}}))
    await rig.until(lambda: rollout_done(store, "web", 2) and len(sets_of(store, "web")) == 2)


async def test_revision_history_limit_deletes_the_oldest_idle_replica_sets():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("web", 1, revisionHistoryLimit=1))
    for tag in ("1", "2", "3"):
        await rig.until(lambda: rollout_done(store, "web", 1))
        await set_image(store, "web", f"nginx:{tag}")
    await rig.until(lambda: rollout_done(store, "web", 1) and len(sets_of(store, "web")) == 2)
    revisions = sorted(int(rs["metadata"]["annotations"][REVISION]) for rs in sets_of(store, "web").values())
    assert revisions == [3, 4]


async def test_progress_deadline_exceeded_when_new_pods_never_become_ready():
    store = await leader_store()
    clock = FakeClock()
    rig = Rig(store, clock)
    await add(store, "deployments", deployment("web", 2, progressDeadlineSeconds=30))
    await rig.until(lambda: rollout_done(store, "web", 2))
    await set_image(store, "web", "nginx:does-not-exist")
    for _ in range(5):
        await rig.round(ready=False)

    def reason():
        return {c["type"]: c for c in get(store, "deployments", "default", "web")["status"]["conditions"]}[
            "Progressing"]
    assert reason()["status"] == "True" and reason()["reason"] == "ReplicaSetUpdated"
    clock.advance(31)
    await rig.round(ready=False)
    assert reason()["status"] == "False" and reason()["reason"] == "ProgressDeadlineExceeded"
    assert reason()["message"].endswith("has timed out progressing.")
    # the old pods stay available: the rollout stopped within its unavailability budget
    assert get(store, "deployments", "default", "web")["status"]["availableReplicas"] >= 1


async def test_replica_sets_of_a_deleted_deployment_are_collected():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("web", 2))
    await rig.until(lambda: rollout_done(store, "web", 2))
    await must(store, C.Delete(resource="deployments", namespace="default", name="web", time=stamp(T0)))
    await rig.until(lambda: not objects(store, "replicasets", "default") and not rig.pods())


async def test_a_deposed_leaders_controller_is_fenced():
    store = await leader_store()
    rig = Rig(store, FakeClock())
    await add(store, "deployments", deployment("web", 2))
    await must(store, C.LeaderElected(leader_id="m2", term=2, time=stamp(T0), fence_term=2))
    rig.dc.take_changes()
    with pytest.raises(NotLeading):
        await rig.dc.sync_dirty()
    assert not objects(store, "replicasets", "default")
