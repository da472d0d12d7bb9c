"""`RaftStore`'s bridge between pysyncobj and asyncio, driven without Raft: a scripted stand-in for the
pysyncobj node answers each proposal with the outcome a test chooses (issue 13, findings 3 and 7)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pysyncobj import FAIL_REASON

from hacluster.config import ClusterConfig, MasterConfig
from hacluster.model import commands as C
from hacluster.model.errors import Timeout, Unavailable
from hacluster.raft.replicated_store import RaftStore
from hacluster.store.api import RaftView

CFG = ClusterConfig(masters=(MasterConfig(id="m1", api_port=7001, raft_port=7002),), api={"proposal_timeout_s": 0.3})
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}


class ScriptedNode:
    """Stands in for the pysyncobj node: each `propose_payload` takes the next scripted outcome. An outcome is
    a FAIL_REASON (the callback is called with it from another thread, as pysyncobj's tick thread does),
    "apply" (the command is applied and answered SUCCESS), or None (no answer at all)."""

    raftLastApplied = 0  # read by the apply path (the audit log's Raft position of each revision)
    raftCurrentTerm = 1

    def __init__(self, store: RaftStore, outcomes: list[Any]) -> None:
        self.store = store
        self.outcomes = list(outcomes)
        self.calls = 0

    def propose_payload(self, payload: bytes, callback: Any) -> None:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is None:
            return
        if outcome == "apply":
            threading.Thread(target=lambda: callback(self.store._apply_payload(payload), FAIL_REASON.SUCCESS)).start()
        else:
            threading.Thread(target=lambda: callback(None, outcome)).start()

    def request_read_index(self, callback: Any) -> None:
        """A read round takes the next outcome too: "apply" confirms it, None never answers."""
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome == "apply":
            threading.Thread(target=lambda: callback(0, None)).start()
        elif outcome is not None:
            threading.Thread(target=lambda: callback(None, f"scripted failure {outcome}")).start()

    def wake(self) -> None:
        pass


def scripted_store(outcomes: list[Any]) -> tuple[RaftStore, ScriptedNode]:
    store = RaftStore(CFG, "m1", data_dir=None)
    store._loop = asyncio.get_running_loop()
    store._change_event = asyncio.Event()
    store._view_changed = asyncio.Event()
    store._view = RaftView("m1", "leader", 1, "m1", 0, 0, True)
    node = ScriptedNode(store, outcomes)
    store._sync = node  # type: ignore[assignment]
    return store, node


@pytest.mark.parametrize("reason", ["MISSING_LEADER", "NOT_LEADER", "QUEUE_FULL", "DISCARDED"])
async def test_a_write_that_never_reached_a_log_is_a_definite_failure(reason: str) -> None:
    """Finding 3: pysyncobj answers MISSING_LEADER, NOT_LEADER and QUEUE_FULL without appending anything, and
    DISCARDED once another entry committed at the command's index; a write that only ever saw these did not
    happen and must end 503 Unavailable, not 504 "may have been committed"."""
    code = getattr(FAIL_REASON, reason)
    store, node = scripted_store([code] * 100)
    with pytest.raises(Unavailable) as exc:
        await store.propose(C.Create(resource="namespaces", namespace="", obj=NAMESPACE))
    assert node.calls > 1, "retried until the deadline"
    assert "the write was not made" in exc.value.message
    assert store.proposal_stats.get("unknown", 0) == 0 and store.proposal_stats["unavailable"] == 1


@pytest.mark.parametrize("first", [FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME, None])
async def test_once_the_command_may_be_in_a_log_the_outcome_stays_unknown(first: Any) -> None:
    """...but after one attempt that may have been appended (a forwarded command whose leader changed, an
    unknown outcome, no answer before the deadline) later definite refusals do not make it definite."""
    store, node = scripted_store([first] + [FAIL_REASON.MISSING_LEADER] * 100)
    with pytest.raises(Timeout) as exc:
        await store.propose(C.Create(resource="namespaces", namespace="", obj=NAMESPACE))
    assert "may or may not have been committed" in exc.value.message
    assert store.proposal_stats["unknown"] == 1


async def test_a_definite_refusal_then_a_commit_succeeds() -> None:
    store, node = scripted_store([FAIL_REASON.NOT_LEADER, FAIL_REASON.QUEUE_FULL, "apply"])
    result = await store.propose(C.Create(resource="namespaces", namespace="", obj=NAMESPACE))
    assert result.ok and node.calls == 3


async def test_after_a_discarded_attempt_a_moment_without_a_leader_is_waited_out() -> None:
    """A deposed leader's entry is discarded and, for a heartbeat, the master knows no leader. The write waits
    for the new leader within its deadline, as any retry does, instead of failing at once: refusing at once is
    for a write that was never tried (with the scheduler's writes on a resumed old leader, that turned the
    state machine's fencing refusal into a 503 before the retry ever reached the new leader)."""
    store, node = scripted_store([FAIL_REASON.DISCARDED, "apply"])
    scripted = node.propose_payload

    def propose_payload(payload: bytes, callback: Any) -> None:
        if node.calls == 0:
            store._view = RaftView("m1", "follower", 2, None, 0, 0, False)
            store._loop.call_later(0.15, store._announce_view, RaftView("m1", "follower", 2, "m2", 0, 0, True))
        scripted(payload, callback)

    def announce(view: RaftView, announce=store._announce_view) -> None:
        store._view = view
        announce(view)

    store._announce_view = announce  # type: ignore[method-assign]
    node.propose_payload = propose_payload  # type: ignore[method-assign]
    result = await store.propose(C.Create(resource="namespaces", namespace="", obj=NAMESPACE))
    assert result.ok and node.calls == 2


async def test_a_cancelled_barrier_round_leaves_no_reader_hanging() -> None:
    """Finding 7: the barrier task kept no reference, and when it was cancelled `_barrier_inflight` stayed set:
    its waiter and every later linearizable read waited forever. Now the waiter fails at once with 503 and the
    next read starts a new barrier."""
    store, node = scripted_store([None, "apply"])  # the first barrier is never answered
    waiter = asyncio.ensure_future(store.linearizable_barrier())
    later = None
    for _ in range(100):
        await asyncio.sleep(0.001)
        if node.calls:
            later = asyncio.ensure_future(store.linearizable_barrier())  # coalesced behind the first
            break
    rounds = [t for t in asyncio.all_tasks() if "_run_barriers" in repr(t.get_coro())]
    assert len(rounds) == 1 and later is not None
    rounds[0].cancel()
    done, _ = await asyncio.wait({waiter, later}, timeout=1.0)
    assert done == {waiter, later}, "readers hang after the barrier round was cancelled"
    assert isinstance(waiter.exception(), Unavailable) and isinstance(later.exception(), Unavailable)
    await asyncio.wait_for(store.linearizable_barrier(), 1.0)  # a new round, answered
    assert node.calls == 2


def test_a_late_answer_after_the_loop_closed_does_not_raise_into_pysyncobj() -> None:
    """Finding 7: pysyncobj calls the proposal callback inside its apply loop, before raftLastApplied advances;
    if it raised (the event loop closed at shutdown), pysyncobj would apply the entry again."""
    callbacks: list[Any] = []

    async def propose_unanswered() -> None:
        store, node = scripted_store([None])
        node.propose_payload = lambda payload, callback: callbacks.append(callback)  # type: ignore[method-assign]
        with pytest.raises(Timeout):
            await store.propose(C.Barrier(), timeout_s=0.05)

    asyncio.run(propose_unanswered())
    assert len(callbacks) == 1
    callbacks[0](None, FAIL_REASON.SUCCESS)  # the loop is closed now: must not raise


async def test_a_read_index_request_that_fails_is_retried_until_one_is_confirmed() -> None:
    """A failed round (a leader change, a lost answer) is asked again within the deadline."""
    store, node = scripted_store(["NOT_LEADER", "apply"])
    await asyncio.wait_for(store.linearizable_barrier(), 1.0)
    assert node.calls == 2


async def test_a_read_index_never_answered_ends_in_a_timeout_that_changed_nothing() -> None:
    store, node = scripted_store([None])
    with pytest.raises(Timeout) as exc:
        await store.linearizable_barrier()
    assert "the read did not complete" in exc.value.message and "nothing was changed" in exc.value.message


async def test_a_read_on_a_master_without_quorum_is_refused_at_once() -> None:
    store, node = scripted_store(["apply"])
    store._view = RaftView("m1", "follower", 2, None, 0, 0, False)
    with pytest.raises(Unavailable) as exc:
        await store.linearizable_barrier()
    assert node.calls == 0 and "the read was not served" in exc.value.message
