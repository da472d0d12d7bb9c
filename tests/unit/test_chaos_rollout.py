"""The rollout check of chaos runs (chaos/rollout.py) on hand-made watch sequences — it passes a rollout
that keeps its bounds and catches one that does not — and the shipped `rollout-under-failover` scenario."""

from __future__ import annotations

import pytest

from chaos.rollout import check_rollout, deployment_object, image_of, is_rolled_out
from chaos.scenario import RolloutSpec, Scenario, load_scenario


def pod(name: str, h: str, *, ready: bool = True, deleting: bool = False) -> dict:
    p = {"metadata": {"name": name, "labels": {"app": "web", "pod-template-hash": h}},
         "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def rollout(replicas: int, surge: int, extra_create: bool = False) -> tuple[list, list]:
    """Old pods o0..; new pods n0..: create `surge` new, make them ready, delete as many old, repeat."""
    initial = [pod(f"o{i}", "old") for i in range(replicas)]
    events: list = []
    made = 0
    while made < replicas:
        batch = range(made, min(made + surge, replicas))
        for i in batch:
            events.append(("ADDED", pod(f"n{i}", "new", ready=False)))
        for i in batch:
            events.append(("MODIFIED", pod(f"n{i}", "new")))
        for i in batch:
            events.append(("MODIFIED", pod(f"o{i}", "old", deleting=True)))
            events.append(("DELETED", pod(f"o{i}", "old", deleting=True)))
        made += len(batch)
    if extra_create:
        events.append(("ADDED", pod("n-extra", "new", ready=False)))
        events.append(("DELETED", pod("n-extra", "new", ready=False)))
    return initial, events


def test_a_rollout_within_its_bounds_passes():
    initial, events = rollout(10, 3)
    got = check_rollout(initial, events, app="web", replicas=10, max_surge="25%", max_unavailable="25%",
                        final_hash="new")
    assert got["ok"], got["problems"]
    assert got["max_pods"] == 13 and got["min_ready"] == 10 and got["pods_created_by_template"] == {"new": 10}


def test_too_many_pods_too_few_ready_and_double_creation_are_caught():
    initial, events = rollout(10, 5, extra_create=True)
    got = check_rollout(initial, events, app="web", replicas=10, max_surge=3, max_unavailable=0,
                        final_hash="new")
    assert not got["ok"]
    text = " | ".join(got["problems"])
    assert "15 pods at once" in text and "created 11 times" in text
    initial, events = rollout(4, 1)
    events.insert(0, ("MODIFIED", pod("o3", "old", ready=False)))
    events.insert(1, ("MODIFIED", pod("o2", "old", ready=False)))
    got = check_rollout(initial, events, app="web", replicas=4, max_surge=1, max_unavailable=1, final_hash="new")
    assert got["problems"] == ["only 2 ready at one point, fewer than replicas - maxUnavailable = 3"]


def test_the_shipped_scenario_and_its_deployment():
    s = load_scenario("rollout-under-failover")
    assert s.rollout is not None and s.nodes == 2 and len(s.faults) == 2
    assert all(any(f.at_s > at for at in s.rollout.updates_at_s) for f in s.faults)  # each fault is mid-rollout
    d = deployment_object(s.rollout)
    assert d["spec"]["replicas"] == 10 and d["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert image_of(s.rollout, 2) == "nginx:1.26-rollout-2"
    assert is_rolled_out({"metadata": {"generation": 2}, "status": {
        "observedGeneration": 2, "updatedReplicas": 10, "replicas": 10, "availableReplicas": 10}}, 10)
    assert not is_rolled_out({"metadata": {"generation": 3}, "status": {
        "observedGeneration": 2, "updatedReplicas": 10, "replicas": 10, "availableReplicas": 10}}, 10)
    with pytest.raises(ValueError, match="needs at least one node"):
        Scenario(name="x", rollout=RolloutSpec())
