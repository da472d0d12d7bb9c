"""Pure parts of the chaos layer: partition shapes, schedules, and what a summary concludes from records."""

import random

import pytest

from chaos.nemesis import bridge_shape, even_halves, isolate_pairs, minority_split, ring_cuts
from chaos.scenario import SCENARIO_DIR, load_scenario
from chaos.summary import count_ops, lost_acknowledged_writes, raft_metrics, summarize
from hacluster.config import ConfigError
from hacluster.consistency.history import Event

IDS = ["m1", "m2", "m3", "m4", "m5"]


def test_shapes():
    assert isolate_pairs(IDS[:3], "m2") == [("m2", "m1"), ("m2", "m3")]
    assert even_halves(IDS[:4]) == (["m1", "m2"], ["m3", "m4"])
    assert bridge_shape(IDS) == (["m1", "m2"], "m3", ["m4", "m5"])
    cuts = ring_cuts(IDS)
    assert ("m1", "m3") in cuts and ("m1", "m2") not in cuts and ("m1", "m5") not in cuts
    assert len(cuts) == 10 - 5
    minority, majority = minority_split(IDS, 2, "m4", random.Random(1))
    assert "m4" in minority and len(minority) == 2 and len(majority) == 3
    assert minority_split(IDS, 2, None, random.Random(7)) == minority_split(IDS, 2, None, random.Random(7))


def test_shipped_scenarios_load_and_fit():
    names = {p.stem for p in SCENARIO_DIR.glob("*.yaml")}
    assert {"leader-isolation", "minority-partition", "even-split-4", "bridge-5", "kill-leader-loop",
            "pause-leader", "flaky-links", "power-loss"} <= names
    for n in names:
        s = load_scenario(n)
        assert all(f.at_s + f.duration_s <= s.duration_s for f in s.faults)


def test_bad_scenario_is_named(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: x\nduration_s: 5\nfaults:\n  - {at_s: 3, duration_s: 5, kind: isolate-leader}\n"
                 "  - {at_s: 1, duration_s: 1, kind: teleport}\n")
    with pytest.raises(ConfigError) as exc:
        load_scenario(str(p))
    assert "faults.1.kind" in str(exc.value)
    p.write_text("name: y\nduration_s: 5\nfaults:\n  - {at_s: 3, duration_s: 5, kind: isolate-leader}\n")
    with pytest.raises(ConfigError, match="faults.0: ends at 8 s, after the run"):
        load_scenario(str(p))
    with pytest.raises(ConfigError, match="no scenario"):
        load_scenario("no-such-scenario")


def ev(p, t, f, k, v, ts, **extra):
    return Event(process=p, type=t, f=f, key=k, value=v, time_ns=ts, extra=extra)


def test_lost_acknowledged_write_is_counted():
    h = [ev(1, "invoke", "create", "k", 1, 10), ev(1, "ok", "create", "k", 1, 20),
         ev(2, "invoke", "write", "k", 2, 30), ev(2, "ok", "write", "k", 2, 40)]
    assert lost_acknowledged_writes(h, {"m1": {"k": 2}, "m2": {"k": 2}}) == []
    lost = lost_acknowledged_writes(h, {"m1": {"k": 2}, "m2": {"k": 1}})
    assert lost == [{"key": "k", "master": "m2", "expected": 2, "found": 1, "op": "write", "process": 2,
                     "invoke_time_ns": 30}]


def test_concurrent_or_unknown_writes_are_not_called_lost():
    h = [ev(1, "invoke", "write", "k", 1, 10), ev(2, "invoke", "write", "k", 2, 15),
         ev(1, "ok", "write", "k", 1, 20), ev(2, "info", "write", "k", 2, 25)]
    assert lost_acknowledged_writes(h, {"m1": {"k": 2}}) == []
    assert lost_acknowledged_writes(h, {"m1": {"k": 1}}) == []


def test_summary_counts_lost_writes_by_the_checkers_rule():
    # An info write that ended (the client gave up) may still land after the later ok write: the key is
    # not judged — the summary once counted such a write as done and called the key's final value lost.
    h = [ev(1, "invoke", "write", "k", 1, 10), ev(1, "info", "write", "k", 1, 12),
         ev(2, "invoke", "write", "k", 2, 20), ev(2, "ok", "write", "k", 2, 30)]
    assert lost_acknowledged_writes(h, {"m1": {"k": 1}}) == []
    # Values are compared as the checker compares them (by their text), and final reads are not judged.
    h = [ev(1, "invoke", "write", "k", 2, 10), ev(1, "ok", "write", "k", 2, 20),
         ev(10_000_000, "invoke", "read", "k", None, 30, final=True),
         ev(10_000_000, "ok", "read", "k", "2", 40, final=True)]
    assert lost_acknowledged_writes(h, {"m1": {"k": "2"}}) == []
    assert lost_acknowledged_writes(h, {"m1": {"k": "3"}}) == [
        {"key": "k", "master": "m1", "expected": 2, "found": "3", "op": "write", "process": 1,
         "invoke_time_ns": 10}]


def test_delete_expects_absence():
    h = [ev(1, "invoke", "delete", "k", None, 10), ev(1, "ok", "delete", "k", None, 20)]
    assert lost_acknowledged_writes(h, {"m1": {"k": None}}) == []
    assert len(lost_acknowledged_writes(h, {"m1": {"k": 5}})) == 1


def test_raft_metrics_count_changes_and_flag_two_leaders():
    samples = [{"master": "m1", "role": "leader", "term": 1}, {"master": "m2", "role": "follower", "term": 1},
               {"master": "m2", "role": "leader", "term": 3}, {"master": "m1", "role": "leader", "term": 1},
               {"master": "m3", "role": "leader", "term": 3}]
    m = raft_metrics(samples)
    assert m["max_term"] == 3 and m["elections"] == 2 and m["leader_changes"] == 2
    assert m["terms_with_two_leaders"] == [3]


def test_summary_availability_counts_state_refusals_as_answers():
    h = [ev(1, "invoke", "create", "k", 1, 10), ev(1, "fail", "create", "k", 1, 20, error="409 AlreadyExists"),
         ev(2, "invoke", "write", "k", 2, 30), ev(2, "fail", "write", "k", 2, 40, error="503 ServiceUnavailable"),
         ev(3, "invoke", "write", "k", 3, 50), ev(3, "info", "write", "k", 3, 60, error="504 Timeout")]
    s = summarize(h, [], [], {}, 0, 100)
    assert s["ops"] == {"ok": 0, "fail": 2, "info": 1} == count_ops(h)
    assert s["availability"] == pytest.approx(1 / 3)
