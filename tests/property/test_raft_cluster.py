"""Hypothesis against an in-process Raft cluster: 3 masters (real pysyncobj over real TCP, one event loop)
behind forwarders we cut, blackhole and heal, with masters killed and restarted from their journals.

Hypothesis writes a program — rounds of one fault and up to four concurrent client operations — runs it
on a fresh cluster, heals, and then every example must pass: the history is linearizable (the checker of
`hacluster.consistency`), at most one leader per term, the masters converge to one state and one change
history, pods are bound at most once, resourceVersions rise, acknowledged writes are in the change
history, local reads show a committed prefix. A failure shrinks to a short program printed as a script.

Reproducible in CI: derandomized (a fixed seed per test), no example database; `print_blob` prints the
`@reproduce_failure` line of a failure.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, event, example, given, settings

from tests.property.harness import InProcessCluster
from tests.property.programs import Fault, Op, Program, Round, RunRecord, check_record, programs, run_program

EXAMPLES = 100

CLUSTER_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                            print_blob=True, suppress_health_check=list(HealthCheck))


def _report(program: Program, problems: list[str], trace: list[str]) -> str:
    return ("\n".join(problems) + f"\n\nprogram: {program!r}\n\ntrace:\n" + "\n".join(trace[-80:]))


@pytest.mark.timeout(600)
@CLUSTER_SETTINGS
@given(program=programs)
# The classic: the leader is cut off; the majority elects another and takes writes; the old leader's local
# copy is stale (allowed for local reads, checked as a committed prefix), its linearizable reads refused.
@example(program=Program(rounds=(
    Round(None, (Op("create", 0, 0), Op("create", 1, 1))),
    Round(Fault("isolate-leader"), (), 250),
    Round(None, (Op("write", 0, 0), Op("write", 1, 0), Op("write", 2, 0), Op("read", 0, 0, local=True),
                 Op("read", 1, 0, local=True), Op("read", 2, 0, local=True))),
    Round(None, (Op("read", 0, 0), Op("read", 1, 0), Op("read", 2, 0), Op("cas", 0, 0))),
)))
# A leader killed with writes in flight, snapshots every few entries, the victim back from its journal.
@example(program=Program(compact=True, rounds=(
    Round(None, tuple(Op("create", m, k) for m in range(3) for k in range(3))),
    Round(None, tuple(Op("write", m, k) for m in range(3) for k in range(2))),
    Round(Fault("kill-leader"), (Op("write", 0, 0), Op("write", 1, 1), Op("bind", 2, 2)), 250),
    Round(None, (Op("cas", 0, 0), Op("delete", 1, 1), Op("bind", 2, 2, target=1), Op("read", 0, 2))),
    Round(Fault("restart", 0), (Op("read", 1, 0), Op("write", 2, 0)), 60),
)))
def test_cluster_keeps_its_promises_under_faults(program: Program) -> None:
    record = asyncio.run(run_program(program))
    _describe_example(record)
    problems = check_record(record)
    assert not problems, _report(program, problems, record.trace)


def _describe_example(record: RunRecord) -> None:
    """What the example exercised, for `--hypothesis-show-statistics`."""
    statuses = Counter(e.type for e in record.obs.events if e.type != "invoke" and not e.extra.get("final"))
    leaders = {(v["term"], v["master"]) for v in record.obs.views if v["role"] == "leader"}
    event(f"leaders elected: {min(len(leaders), 3)}{'+' if len(leaders) >= 3 else ''}")
    event(f"info operations: {'yes' if statuses['info'] else 'no'}")
    event(f"ok operations: {'0' if not statuses['ok'] else '1-9' if statuses['ok'] < 10 else '10+'}")
    event(f"local reads: {'yes' if record.obs.local_reads else 'no'}")
    event(f"acknowledged bindings: {'yes' if record.obs.binds else 'no'}")
    if record.program.compact:
        event("log compaction on")


def test_program_examples_are_fast_enough_for_ci() -> None:
    """One mid-sized program end to end well inside the per-example budget (100 examples ≤ ~3 min)."""
    program = Program(rounds=(
        Round(None, (Op("create", 0, 0), Op("create", 1, 1), Op("create", 2, 2))),
        Round(Fault("drop", 0, 1), (Op("write", 0, 0), Op("write", 1, 1)), 60),
        Round(Fault("heal"), (Op("read", 2, 0), Op("cas", 1, 1)), 0),
    ))
    started = time.monotonic()
    record = asyncio.run(run_program(program))
    elapsed = time.monotonic() - started
    assert not check_record(record)
    assert elapsed < 5.0, f"one program took {elapsed:.2f} s"


async def test_network_cut_and_blackhole_elect_in_the_majority_and_heal() -> None:
    async with InProcessCluster(3) as c:
        await c.bootstrap()
        old = await c.wait_leader()
        c.net.isolate(old, how="drop")
        others = [m for m in c.ids if m != old]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(
                (v := c.view(m)) is not None and v.role == "leader" and v.quorum for m in others):
            await asyncio.sleep(0.01)
        new = c.leader()
        assert new in others, c.describe()
        assert await c.operate(new, "create", "k", 1) == "ok"
        assert await c.operate(old, "read", "k") == "fail", "no linearizable read from the cut-off leader"
        c.net.heal()
        settled = await c.settle()
        assert len({s["fingerprint"] for s in settled.values()}) == 1
        c.net.cut(others[0], others[1])
        c.net.cut(old, others[0])
        assert c.net.faulty_pairs()
        c.net.heal()
        await c.settle()
        assert await c.operate(old, "read", "k") == "ok"


async def test_leader_keeps_its_quorum_when_the_hosts_clocks_have_drifted() -> None:
    """pysyncobj stamps peer responses with its own clock (CLOCK_MONOTONIC_RAW). `RaftStore._on_tick` once
    aged them with `time.monotonic()` (CLOCK_MONOTONIC), which NTP slews, so the two drift apart with uptime
    (0.25 s after 44 min on the CI host); past `quorum_contact_ms` a healthy leader never counted a quorum.
    Here pysyncobj's clock runs 5 s behind, as after days of uptime: the leader must still have its quorum."""
    async with InProcessCluster(3, raft_clock=lambda: time.monotonic() - 5.0) as c:
        await c.wait_leader(timeout_s=3.0)


def test_a_follower_keeps_acknowledged_entries_when_a_stale_append_arrives() -> None:
    """Raft's AppendEntries rule 3 deletes a follower's entries only from the first one that conflicts (same
    index, other term). pysyncobj alone truncates after prevLogIdx unconditionally and logs "truncating
    already-applied log entries" (seen in test_cluster_keeps_its_promises_under_faults about once in 300
    programs: after a follower restarts, the leader handles several `reset` replies to appends sent while the
    follower was behind, and sends again from an old index). The follower has then told the leader it holds
    entries it no longer holds; if it crashes before they are sent again, and the leader dies, an entry
    committed by that leader and this follower can be lost. Here: entries 2–4 are appended, committed and
    applied; a retransmitted append of entry 2 alone leaves the log ending at 2."""
    from pysyncobj import SyncObjConf

    from hacluster.raft.replicated_store import _RaftStateMachine
    from hacluster.store.state import Result
    from tests.property.harness import _free_port

    me, leader_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    def apply_payload(payload: bytes) -> Result:
        raise AssertionError("no-op entries are never handed to the state machine")

    node = _RaftStateMachine(me, [leader_addr], SyncObjConf(autoTick=False), apply_payload)
    try:
        leader = next(iter(node._SyncObj__otherNodes))
        noop = struct.pack("B", 1)  # pysyncobj's no-op entry

        def append(prev: int, indexes: list[int]) -> None:
            node._SyncObj__onMessageReceived(leader, {
                "type": "append_entries", "term": 1, "commit_index": 4, "prevLogIdx": prev,
                "prevLogTerm": 0 if prev == 1 else 1, "entries": [(noop, i, 1) for i in indexes]})

        append(1, [2, 3, 4])
        node._onTick(0)
        assert node.raftLastApplied == 4
        append(1, [2])  # the same first entry again, e.g. a retransmission
        assert node._SyncObj__getCurrentLogIndex() == 4, "entries 3 and 4 match the leader's and were applied"
    finally:
        node._doDestroy()


def test_object_content_check_sees_a_divergence_that_keys_and_versions_hide() -> None:
    """Issue 13, finding 1: the cluster check compares object content across masters, so a master whose
    object changed outside the log (same key, same resourceVersion) is reported."""
    from tests.property.programs import object_content_problems

    pod = {"metadata": {"name": "k0", "resourceVersion": "5"}, "spec": {"restartPolicy": "Always"}}
    changed = {"metadata": {"name": "k0", "resourceVersion": "5"}, "spec": {"restartPolicy": "Never"}}
    same = {m: {"pods": {"default/k0": pod}} for m in ("m1", "m2", "m3")}
    assert object_content_problems(same) == []
    diverged = dict(same, m3={"pods": {"default/k0": changed}})
    assert object_content_problems(diverged) == ["m3 holds different pods from m1's after the heal: ['default/k0']"]
