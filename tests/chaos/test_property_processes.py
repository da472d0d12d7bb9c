"""Hypothesis on real processes: a few small fault schedules, chosen by Hypothesis, run as recorded chaos
scenarios (`chaos.runner.run_scenario`: real masters behind Toxiproxy, the workload, a failing-over watch),
each of which must come out linearizable with every invariant of `check_run` holding.

Slow tier (each example starts a cluster and runs it for seconds), so only a few examples; shrinking is
off — re-running real clusters dozens of times would take many minutes — and a failure is reported with
its schedule and seed, which `hacluster chaos run` replays (the seed fixes the workload and the nemesis's
choices). Derandomized, so CI runs the same schedules every time.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from chaos.runner import run_scenario
from chaos.scenario import FaultSpec, Scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DURATION_S = 7.0
FAULT_KINDS = ("isolate-leader", "kill-leader", "pause-leader", "split", "kill-follower", "isolate", "latency")


@st.composite
def fault_schedules(draw: st.DrawFn) -> tuple[FaultSpec, ...]:
    """One or two faults, one after the other, inside the run (faults end a second before it does)."""
    faults = []
    at = draw(st.sampled_from([1.0, 1.5]))
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(FAULT_KINDS))
        duration = draw(st.sampled_from([1.5, 2.5]))
        if at + duration > DURATION_S - 1:
            break
        spec: dict[str, object] = {"at_s": at, "duration_s": duration, "kind": kind}
        if kind in ("isolate-leader", "isolate", "split"):
            spec["partition"] = draw(st.sampled_from(["blackhole", "reject"]))
        if kind == "isolate":
            spec["target"] = draw(st.sampled_from(["m1", "m2", "m3"]))
        if kind == "latency":
            spec["latency_ms"] = draw(st.sampled_from([30, 120]))
        faults.append(FaultSpec.model_validate(spec))
        at += duration + 0.5
    return tuple(faults)


@settings(max_examples=3, deadline=None, derandomize=True, database=None, print_blob=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(faults=fault_schedules(), seed=st.integers(0, 2**16))
def test_real_cluster_under_hypothesis_fault_schedules(tmp_path_factory, faults, seed):
    scenario = Scenario(name="property", masters=3, seed=seed, duration_s=DURATION_S, faults=faults,
                        workload={"rate_per_s": 120, "concurrency": 4, "keys": 4, "request_timeout_s": 2.0})
    out = tmp_path_factory.mktemp("property-run")
    result = run_scenario(scenario, out)
    s = result.summary
    checker = s["checker"]
    schedule = [f.model_dump(exclude_defaults=True) for f in faults]
    event("faults: " + ", ".join(f.kind for f in faults))
    where = f"schedule {schedule} seed {seed}; records in {out}"
    assert checker["linearizable"] == "valid", f"{where}: see {checker.get('explanation')}"
    invariants = checker["invariants"]
    assert invariants["verdict"] == "ok", f"{where}: {json.dumps(invariants, indent=1)[:4000]}"
    checks = invariants["checks"]
    for name in ("one_leader_per_term", "no_lost_acknowledged_writes", "same_state_after_heal", "watch_streams"):
        assert checks[name]["status"] == "ok", f"{where}: {name} {checks[name]}"
    assert s["converged_after_heal"] and s["lost_acknowledged_writes"] == 0, where
    assert s["watch"]["replay_complete"], where
