"""Chaos on the etcd engine: a short leader isolation (blackhole, then reject) and a paused leader machine, each
through `chaos.runner.run_scenario` with `engine="etcd"` — the same records as on pysyncobj, nothing
acknowledged lost, one leader per term in etcd's sampled status, a linearizable history."""

from __future__ import annotations

import json

import pytest

from chaos.runner import run_scenario
from chaos.scenario import Scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("faults", [
    [{"at_s": 2, "duration_s": 4, "kind": "isolate-leader", "partition": "blackhole"},
     {"at_s": 7, "duration_s": 3, "kind": "isolate-leader", "partition": "reject"}],
    [{"at_s": 2, "duration_s": 4, "kind": "pause-leader"}],
], ids=["isolate-leader", "pause-leader"])
def test_etcd_faults_lose_nothing_and_stay_linearizable(tmp_path, faults):
    sc = Scenario.model_validate({"name": "etcd", "masters": 3, "seed": 7, "duration_s": 12,
                                  "workload": {"rate_per_s": 100, "concurrency": 6, "keys": 6,
                                               "request_timeout_s": 8},
                                  "faults": faults})
    out = run_scenario(sc, tmp_path / "out", engine="etcd").out_dir
    s = json.loads((out / "summary.json").read_text())
    assert s["store_engine"] == "etcd"
    assert s["lost_acknowledged_writes"] == 0 and s["terms_with_two_leaders"] == []
    assert s["final_state_identical_on_all_masters"]
    assert s["checker"]["linearizable"] == "valid", s["checker"]
    assert s["checker"]["invariants"]["verdict"] == "ok", s["checker"]["invariants"]
    assert s["ops"]["ok"] > 100
    samples = [json.loads(line) for line in (out / "raft.jsonl").read_text().splitlines()]
    assert {r["role"] for r in samples} >= {"leader", "follower"}
    assert len({r["term"] for r in samples if r.get("term")}) >= 2  # the fault made etcd elect
