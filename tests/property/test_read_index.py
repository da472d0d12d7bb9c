"""Linearizable reads by ReadIndex (`hacluster.raft.read_index`) on the in-process cluster
(`tests.property.harness`: 3 real pysyncobj nodes behind forwarders we blackhole and heal).

- Reads on the leader and on the followers see the latest acknowledged write and append nothing to the log
  (the `log` mode, a Barrier per read round, does: the same count is shown to move there).
- The safety of a read rests on the leader's probe round. An old leader cut off from the others, which still
  believes it leads and has a quorum (CheckQuorum off, long contact window), must not answer a read invoked
  after the new leader acknowledged a newer write. With the probe round in place it refuses the read and the
  history is linearizable; with the round short-circuited (the leader answers from its own commit index at
  once, as a lease read without a lease would) the same steps give a stale read and the checker rejects the
  history — the test that shows the first one can fail.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hacluster.consistency.history import pair_operations
from hacluster.consistency.linearizability import check_operations
from hacluster.raft.read_index import ReadIndexMixin
from tests.property.harness import PEER_SECRET, InProcessCluster, fast_raft

WAIT_S = 10.0


def leader_commit_index(c: InProcessCluster, mid: str) -> int:
    store = c.stores[mid]
    assert store is not None and store._sync is not None
    return int(store._sync.raftCommitIndex)


def read_stats(c: InProcessCluster, mid: str) -> dict[str, int]:
    store = c.stores[mid]
    assert store is not None and store._sync is not None
    return dict(store._sync.read_index_stats)


async def wait_until(cond, what: str, c: InProcessCluster) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}; {c.describe()}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("mode", ["read-index", "log"])
async def test_reads_see_the_latest_write_and_read_index_appends_nothing(mode: str) -> None:
    async with InProcessCluster(3, raft=fast_raft(password=PEER_SECRET, linearizable_reads=mode)) as c:
        await c.bootstrap()
        leader = await c.wait_leader()
        assert await c.operate(leader, "create", "k", 1) == "ok"
        before = leader_commit_index(c, leader)
        for value in (2, 3):
            assert await c.operate(leader, "write", "k", value) == "ok"
            after_write = leader_commit_index(c, leader)
            # 10 concurrent reads on every master, each invoked after the write was acknowledged
            outcomes = await asyncio.gather(*[c.operate(m, "read", "k") for m in c.ids for _ in range(10)])
            assert outcomes == ["ok"] * 30, c.obs.trace[-20:]
            reads = [e for e in c.obs.events if e.type == "ok" and e.f == "read"]
            assert {e.value for e in reads[-30:]} == {value}
            if mode == "read-index":
                assert leader_commit_index(c, leader) == after_write, "a read appended to the log"
            else:
                assert leader_commit_index(c, leader) > after_write, "the log mode puts a Barrier in the log"
        assert leader_commit_index(c, leader) > before
        result = check_operations(pair_operations(c.obs.events), time_limit_s=20.0)
        assert result.verdict == "valid"
        if mode == "read-index":
            assert read_stats(c, leader)["rounds"] >= 1
            assert all(read_stats(c, m)["forwarded"] >= 1 for m in c.ids if m != leader)


def _confirm_at_once(self: ReadIndexMixin) -> None:
    """The fault: every round is answered with the leader's commit index, acknowledged or not."""
    rounds, self._read_rounds = self._read_rounds, []
    for rnd in rounds:
        self._answer_all(rnd.waiters, rnd.index, None)


@pytest.mark.parametrize("probes", ["majority", "skipped"])
async def test_a_cut_off_leader_that_believes_it_leads_serves_no_stale_read(
        probes: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The old leader keeps believing it leads: no CheckQuorum step-down, no pysyncobj fallback, and its view
    # keeps a quorum for 30 s of silence (its blackholed links stay open as long). So only the probe round
    # stands between it and a stale read.
    raft = fast_raft(password=PEER_SECRET, check_quorum=False, leader_fallback_ms=30_000, quorum_contact_ms=30_000,
                     connection_timeout_ms=30_000)
    if probes == "skipped":
        monkeypatch.setattr(ReadIndexMixin, "_confirm_rounds", _confirm_at_once)
    async with InProcessCluster(3, raft=raft, proposal_timeout_s=0.6, retry_s=0.0) as c:
        await c.bootstrap()
        old = await c.wait_leader()
        assert await c.operate(old, "create", "k", 1) == "ok"
        await wait_until(lambda: all(c.read_state(m, lambda s: s.get("pods", "default", "k")) is not None
                                     for m in c.ids), "every master applied k=1", c)
        await asyncio.to_thread(c.net.isolate, old)
        others = [m for m in c.ids if m != old]
        await wait_until(lambda: any(c.view(m).role == "leader" for m in others),  # type: ignore[union-attr]
                         "the majority elected a new leader", c)
        new = next(m for m in others if c.view(m).role == "leader")  # type: ignore[union-attr]
        deadline = time.monotonic() + WAIT_S
        while await c.operate(new, "write", "k", 2) != "ok":
            assert time.monotonic() < deadline, f"no write through the new leader: {c.describe()}"
        view = c.view(old)
        assert view is not None and view.role == "leader" and view.quorum, "the old leader must still believe"
        outcome = await c.operate(old, "read", "k")  # invoked after k=2 was acknowledged
        verdict = check_operations(pair_operations(c.obs.events), time_limit_s=20.0).verdict
        await asyncio.to_thread(c.net.heal)
        if probes == "majority":
            assert outcome == "fail", f"the cut-off leader answered a read: {c.obs.trace[-10:]}"
            assert verdict == "valid"
        else:
            assert outcome == "ok"
            assert verdict != "valid", "a stale read went unnoticed"
