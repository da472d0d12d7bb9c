"""The invariants (hacluster.model.invariants), the chaos-run checker built on them
(hacluster.consistency.invariants.check_run) and `hacluster check`, on hand-made data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hacluster.consistency.history import Event, Operation, dump_history, pair_operations
from hacluster.consistency.invariants import (
    acknowledged_write_violations,
    check_run,
    last_write_violations,
)
from hacluster.model import invariants as inv
from hacluster.model.invariants import Change


def pod(name: str, rv: int, node: str = "", uid: str = "", phase: str = "Pending", cpu: str = "",
        ns: str = "default") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict[str, Any] = {"containers": [container]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{name}", "resourceVersion": str(rv)},
            "spec": spec, "status": {"phase": phase}}


def node(name: str, cpu: str = "2", pods: str = "110", memory: str = "4Gi") -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "pods": pods, "memory": memory}}}


def cpu_requests(p: dict[str, Any]) -> dict[str, int]:
    total = 0
    for c in p["spec"]["containers"]:
        text = ((c.get("resources") or {}).get("requests") or {}).get("cpu")
        if text:
            total += int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)
    return {"cpu": total}


# ------------------------------------------------------------------------------------- binding
def test_a_pod_bound_once_is_fine_and_rebinding_or_unbinding_is_not():
    assert inv.binding_violations([pod("a", 1), pod("a", 2, "n1"), pod("a", 3, "n1")]) == []
    moved = inv.binding_violations([pod("a", 1), pod("a", 2, "n1"), pod("a", 3, "n2")])
    assert [v.invariant for v in moved] == [inv.BOUND_ONCE]
    assert "bound to 'n1' at resourceVersion 2 and bound again to 'n2' at resourceVersion 3" in moved[0].message
    unbound = inv.binding_violations([pod("a", 2, "n1"), pod("a", 3)])
    assert "unbound" in unbound[0].message
    # The same name with a new uid is another pod: it may be bound anywhere.
    assert inv.binding_violations([pod("a", 2, "n1", uid="u1"), pod("a", 5, "n2", uid="u2")]) == []


def test_at_most_one_acknowledged_binding_per_pod():
    assert inv.bind_acknowledgement_violations([("u1", "n1"), ("u2", "n1")]) == []
    twice = inv.bind_acknowledgement_violations([("u1", "n1"), ("u1", "n2")])
    assert len(twice) == 1 and twice[0].details["nodes"] == ["n1", "n2"]


# ------------------------------------------------------------------------------ resourceVersion
def test_resource_versions_only_rise_per_key_across_recreation():
    assert inv.resource_version_violations([pod("a", 1), pod("a", 4), pod("b", 2), pod("a", 7, uid="new")]) == []
    back = inv.resource_version_violations([pod("a", 5), pod("a", 5)])
    assert back and back[0].details == {"key": "default/a", "from": 5, "to": 5}
    bad = pod("a", 1)
    bad["metadata"]["resourceVersion"] = "x"
    assert inv.resource_version_violations([bad])[0].invariant == inv.RV_RISES


def test_rising_revisions_and_start_after_the_resume_point():
    assert inv.rising_violations([3, 4, 9], after=2) == []
    assert inv.rising_violations([2, 4], after=2)[0].details["rv"] == 2
    assert [v.details["index"] for v in inv.rising_violations([1, 3, 3, 2])] == [2, 3]


# ------------------------------------------------------------------------------------- capacity
def test_allocatable_is_parsed_in_scheduler_units():
    assert inv.allocatable(node("n", cpu="1500m", memory="1Ki", pods="3")) == {"cpu": 1500, "memory": 1024,
                                                                               "pods": 3}
    broken = node("n")
    broken["status"]["allocatable"]["cpu"] = "lots"
    assert "cpu" not in inv.allocatable(broken)


def test_capacity_counts_bound_running_pods_and_their_slots():
    nodes = [node("n1", cpu="1"), node("n2", cpu="1", pods="1")]
    fits = [pod("a", 1, "n1", cpu="500m"), pod("b", 2, "n1", cpu="500m"), pod("c", 3, "", cpu="4")]
    assert inv.capacity_violations(nodes, fits, cpu_requests) == []
    over = inv.capacity_violations(nodes, fits + [pod("d", 4, "n1", cpu="1m")], cpu_requests)
    assert [(v.details["node"], v.details["resource"], v.details["requested"]) for v in over] == [("n1", "cpu", 1001)]
    # Finished pods free their share; a node's pod slots count too.
    assert inv.capacity_violations(nodes, fits + [pod("d", 4, "n1", cpu="1", phase="Succeeded")], cpu_requests) == []
    slots = inv.capacity_violations(nodes, [pod("e", 5, "n2"), pod("f", 6, "n2")], cpu_requests)
    assert [(v.details["resource"], v.details["requested"], v.details["allocatable"]) for v in slots] == [
        ("pods", 2, 1)]
    # Narrowed to one node and the resources a binding asked for.
    assert inv.capacity_violations(nodes, [pod("e", 5, "n2"), pod("f", 6, "n2")], cpu_requests,
                                   only_resources=["cpu"]) == []
    assert inv.capacity_violations(nodes, fits + [pod("d", 4, "n1", cpu="1")], cpu_requests, only_nodes=["n2"]) == []


# ------------------------------------------------------------------------------------------ Raft
def test_one_leader_per_term_from_claims_and_from_followers():
    ok = [{"master": "m1", "term": 2, "role": "leader", "leader": "m1"},
          {"master": "m2", "term": 2, "role": "follower", "leader": "m1"},
          {"master": "m3", "role": "unreachable"},
          {"master": "m2", "term": 3, "role": "leader", "leader": "m2"}]
    assert inv.leader_violations(ok) == []
    two = inv.leader_violations(ok + [{"master": "m3", "term": 2, "role": "leader", "leader": "m3"}])
    assert len(two) == 1 and two[0].details["term"] == 2 and two[0].details["leaders"] == ["m1", "m3"]
    named = inv.leader_violations(ok + [{"master": "m3", "term": 3, "role": "follower", "leader": "m1"}])
    assert named and "m1 according to m3" in named[0].message


def test_same_applied_index_means_same_state():
    same = [{"master": "m1", "applied_index": 9, "fingerprint": "f", "revision": 4},
            {"master": "m2", "applied_index": 9, "fingerprint": "f", "revision": 4},
            {"master": "m3", "applied_index": 8, "fingerprint": "g", "revision": 3}]
    assert inv.same_state_violations(same) == []
    diverged = inv.same_state_violations(same + [{"master": "m3", "applied_index": 9, "fingerprint": "h",
                                                  "revision": 4}])
    assert len(diverged) == 1 and diverged[0].details["applied_index"] == 9


# ----------------------------------------------------------------------------------------- watch
REFERENCE = [Change(11, "ADDED", "default/a"), Change(12, "MODIFIED", "default/a"), Change(14, "DELETED", "default/b")]


def test_a_stream_must_deliver_every_promised_change_and_nothing_else():
    assert inv.gap_violations(REFERENCE[1:], REFERENCE, after=11, upto=14) == []
    assert inv.gap_violations(REFERENCE[:2], REFERENCE, after=10, upto=12) == []
    missing = inv.gap_violations([REFERENCE[0], REFERENCE[2]], REFERENCE, after=10, upto=14)
    assert len(missing) == 1 and missing[0].details["missing"] == [12]
    extra = inv.gap_violations(REFERENCE + [Change(13, "ADDED", "default/c")], REFERENCE, after=10, upto=14)
    assert extra[0].details["extra"] == [13]
    other = inv.gap_violations([Change(11, "MODIFIED", "default/a")], REFERENCE, after=10, upto=11)
    assert other[0].details["got"] == ["MODIFIED", "default/a"]


# ------------------------------------------------------------------------- history-based checks
def ops(*specs: tuple[Any, ...]) -> list[Operation]:
    """(process, f, value, status, start, end) → operations on key k."""
    events = []
    for process, f, value, status, start, end in specs:
        events.append(Event(process, "invoke", f, "default/k", None if f == "read" else value, start))
        if end is not None:
            events.append(Event(process, status, f, "default/k", value, end))
    events.sort(key=lambda e: e.time_ns)
    return pair_operations(events)


def test_every_acknowledged_write_is_in_the_change_history():
    history = ops((1, "create", 1, "ok", 0, 10), (2, "write", 2, "ok", 20, 30), (3, "cas", (2, 3), "ok", 40, 50),
                  (4, "write", 9, "info", 60, 70), (5, "delete", None, "ok", 80, 90))
    changes = [Change(5, "ADDED", "default/k", 1), Change(6, "MODIFIED", "default/k", 2),
               Change(7, "MODIFIED", "default/k", 3), Change(8, "DELETED", "default/k", None)]
    assert acknowledged_write_violations(history, changes) == []
    lost = acknowledged_write_violations(history, changes[:1] + changes[2:3])
    assert [v.details.get("value") for v in lost] == [2, None]
    assert "only 0 DELETED" in lost[1].message
    # Changes that only start later (a replay from the watch's first list): earlier operations not judged.
    assert acknowledged_write_violations(history, changes[2:], invoked_after_ns=35) == []


def test_last_acknowledged_write_must_be_final_unless_an_unknown_outcome_could_follow():
    history = ops((1, "write", 1, "ok", 0, 10), (2, "write", 2, "ok", 20, 30))
    assert last_write_violations(history, {"m1": {"default/k": 2}}) == ([], 1)
    lost, judged = last_write_violations(history, {"m1": {"default/k": 2}, "m2": {"default/k": 1}})
    assert judged == 1 and lost[0].details == {"key": "default/k", "master": "m2", "expected": 2, "found": 1,
                                             "op": "write", "process": 2, "invoke_time_ns": 20}
    # An info write may land after the last ok one: its value is a possible end too, but not an older one.
    unknown = ops((1, "write", 1, "ok", 0, 10), (2, "write", 3, "info", 5, None))
    assert last_write_violations(unknown, {"m1": {"default/k": 3}}) == ([], 1)
    assert last_write_violations(unknown, {"m1": {"default/k": 1}}) == ([], 1)
    assert len(last_write_violations(unknown, {"m1": {"default/k": None}})[0]) == 1
    # ... even one that the client gave up on before the ok write began.
    gave_up = ops((2, "write", 3, "info", 0, 5), (1, "write", 1, "ok", 10, 20))
    assert last_write_violations(gave_up, {"m1": {"default/k": 3}}) == ([], 1)
    # Overlapping ok writes: either may be last; a value neither left is a loss.
    both = ops((1, "write", 1, "ok", 0, 10), (2, "write", 2, "ok", 5, 15))
    assert last_write_violations(both, {"m1": {"default/k": 1}, "m2": {"default/k": 2}}) == ([], 1)
    assert len(last_write_violations(both, {"m1": {"default/k": None}})[0]) == 1
    # A delete leaves absence; an info delete makes absence a possible end.
    assert last_write_violations(ops((1, "delete", None, "ok", 0, 10)), {"m1": {"default/k": None}}) == ([], 1)
    deleted = ops((1, "write", 1, "ok", 0, 10), (2, "delete", None, "info", 20, None))
    assert last_write_violations(deleted, {"m1": {"default/k": None}}) == ([], 1)
    # Only unknown outcomes: the value before them is unknown, so the key is not judged.
    assert last_write_violations(ops((2, "write", 3, "info", 5, None)), {"m1": {"default/k": 9}}) == ([], 0)


# ------------------------------------------------------------------------------------- check_run
def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _event(stream: Any, rv: int, etype: str, name: str, value: int | None = None, node: str = "",
           master: str = "m1") -> dict[str, Any]:
    obj = pod(name, rv, node, cpu="600m")
    if value is not None:
        obj["metadata"]["annotations"] = {"hacluster.io/value": str(value)}
    return {"kind": "event", "stream": stream, "master": master, "type": etype, "key": f"default/{name}",
            "uid": f"uid-{name}", "rv": rv, "value": value, "node": node, "object": obj}


def write_run(out: Path, *, drop_event: int | None = None, second_leader: bool = False,
              rebind: bool = False, diverged: bool = False, b_node: str = "", a_value: int = 2) -> None:
    """A small, consistent run: two keys, a watch that fails over once, a replay, a final state."""
    raft = [{"time": 1, "master": m, "role": "leader" if m == "m1" else "follower", "term": 2, "leader": "m1"}
            for m in ("m1", "m2", "m3")]
    if second_leader:
        raft.append({"time": 2, "master": "m3", "role": "leader", "term": 2, "leader": "m3"})
    _jsonl(out / "raft.jsonl", raft)
    t = iter(range(1000, 10**6, 100))
    history = [Event(1, "invoke", "create", "default/a", 1, next(t)), Event(1, "ok", "create", "default/a", 1, next(t)),
               Event(2, "invoke", "write", "default/a", 2, next(t)), Event(2, "ok", "write", "default/a", 2, next(t)),
               Event(3, "invoke", "create", "default/b", 3, next(t)), Event(3, "ok", "create", "default/b", 3, next(t)),
               Event(4, "invoke", "delete", "default/b", None, next(t)),
               Event(4, "ok", "delete", "default/b", None, next(t))]
    for i, m in enumerate(("m1", "m2", "m3")):
        p = 100 + i
        history += [Event(p, "invoke", "read", "default/a", None, next(t), {"final": True, "node": m}),
                    Event(p, "ok", "read", "default/a", 2, next(t), {"final": True, "node": m})]
    dump_history(history, out / "history.jsonl")
    changes = [_event(1, 11, "ADDED", "a", 1), _event(1, 12, "MODIFIED", "a", a_value, node="n1"),
               _event(2, 13, "ADDED", "b", 3, node=b_node, master="m2"),
               _event(2, 14, "DELETED", "b", 3, node=b_node, master="m2")]
    if rebind:
        changes.append(_event(2, 15, "MODIFIED", "a", 2, node="n2", master="m2"))
    live = [r for i, r in enumerate(changes) if i != drop_event]
    watch = [{"kind": "list", "master": "m1", "rv": 10, "reason": "start", "objects": []},
             {"kind": "start", "stream": 1, "master": "m1", "from_rv": 10}, *live[:2],
             {"kind": "end", "stream": 1, "master": "m1", "last_rv": 12, "reason": "closed by server"},
             {"kind": "start", "stream": 2, "master": "m2", "from_rv": 12}, *live[2:],
             {"kind": "end", "stream": 2, "master": "m2", "last_rv": changes[-1]["rv"], "reason": "stopped"}]
    _jsonl(out / "watch.jsonl", watch)
    replay = [{"kind": "start", "stream": "replay", "master": "m1", "from_rv": 10},
              *[{**c, "stream": "replay"} for c in changes],
              {"kind": "end", "stream": "replay", "master": "m1", "last_rv": changes[-1]["rv"],
               "upto": changes[-1]["rv"], "complete": True}]
    _jsonl(out / "watch-replay.jsonl", replay)
    final_a = changes[-1]["object"] if rebind else changes[1]["object"]
    samples = [{"master": m, "applied_index": 30, "revision": 14, "fingerprint": "x" if diverged and m == "m3" else "f"}
               for m in ("m1", "m2", "m3")]
    objects = {m: {"rv": 14, "pods": [final_a], "nodes": [node("n1", cpu="1"), node("n2", cpu="1")]}
               for m in ("m1", "m2", "m3")}
    (out / "final-state.json").write_text(json.dumps({"masters": ["m1", "m2", "m3"], "samples": samples,
                                                      "objects": objects, "reference_master": "m1"}))


def test_check_run_on_a_consistent_run(tmp_path):
    write_run(tmp_path)
    result = check_run(tmp_path)
    assert result["verdict"] == "ok", json.dumps(result, indent=1)
    checks = result["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "one_leader_per_term": "ok", "no_lost_acknowledged_writes": "ok", "same_state_after_heal": "ok",
        "pod_bound_once": "ok", "node_capacity": "ok", "watch_streams": "ok"}
    assert checks["watch_streams"]["streams_gap_checked"] == 2
    assert checks["no_lost_acknowledged_writes"]["checked"] == 4
    assert checks["node_capacity"]["checked"] == 1


@pytest.mark.parametrize("fault,check,invariant", [
    ({"drop_event": 1}, "watch_streams", inv.WATCH_GAP),
    ({"second_leader": True}, "one_leader_per_term", inv.ONE_LEADER),
    ({"rebind": True}, "pod_bound_once", inv.BOUND_ONCE),
    ({"diverged": True}, "same_state_after_heal", inv.SAME_STATE),
])
def test_check_run_names_the_broken_invariant(tmp_path, fault, check, invariant):
    write_run(tmp_path, **fault)
    result = check_run(tmp_path)
    assert result["verdict"] == "violated"
    assert result["checks"][check]["status"] == "violated"
    assert result["checks"][check]["violations"][0]["invariant"] == invariant


def test_check_run_reports_capacity_and_lost_writes(tmp_path):
    # b is bound to n1 beside a: 600m + 600m > 1 CPU; the acknowledged write of 2 to a is in no change
    # (the change at its place holds 7).
    write_run(tmp_path, b_node="n1", a_value=7)
    result = check_run(tmp_path)
    assert result["checks"]["node_capacity"]["violations"][0]["invariant"] == inv.CAPACITY
    lost = result["checks"]["no_lost_acknowledged_writes"]["violations"]
    assert any(v.get("value") == 2 for v in lost)
    assert any("the last change put 7" in v["message"] for v in lost)


def test_check_run_without_records_checks_nothing_and_says_so(tmp_path):
    result = check_run(tmp_path)
    assert result["verdict"] == "ok" and result["violations"] == 0
    assert {c["status"] for c in result["checks"].values()} == {"not checked"}
    with pytest.raises(OSError):
        check_run(tmp_path / "missing")


# ---------------------------------------------------------------------------------- the CLI
def _history_file(path: Path, stale: bool) -> Path:
    events = [Event(1, "invoke", "write", "default/k", 1, 0), Event(1, "ok", "write", "default/k", 1, 10),
              Event(2, "invoke", "write", "default/k", 2, 20), Event(2, "ok", "write", "default/k", 2, 30),
              Event(3, "invoke", "read", "default/k", None, 40),
              Event(3, "ok", "read", "default/k", 1 if stale else 2, 50)]
    dump_history(events, path)
    return path


def test_cli_check_exit_codes(tmp_path):
    from hacluster.cli.main import main

    runner = CliRunner()
    ok = runner.invoke(main, ["check", str(_history_file(tmp_path / "ok.jsonl", stale=False))])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("VALID")
    bad = runner.invoke(main, ["check", str(_history_file(tmp_path / "bad.jsonl", stale=True)), "--model",
                               "register", "--out", str(tmp_path / "why")])
    assert bad.exit_code == 1, bad.output
    assert "NOT LINEARIZABLE" in bad.output and "read → 1" in bad.output
    assert (tmp_path / "why" / "explanation.txt").exists() and (tmp_path / "why" / "timeline.html").exists()
    (tmp_path / "broken.jsonl").write_text('{"process": 1}\n')
    assert runner.invoke(main, ["check", str(tmp_path / "broken.jsonl")]).exit_code == 2
    assert runner.invoke(main, ["check", str(tmp_path / "absent.jsonl")]).exit_code == 2
    assert runner.invoke(main, ["check", str(tmp_path / "ok.jsonl"), "--model", "queue"]).exit_code == 2
