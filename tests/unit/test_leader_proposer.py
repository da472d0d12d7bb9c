"""FencedProposer: every command carries the term; unknown outcomes are retried with the same request id;
a fenced refusal ends the loop; a proposal in flight when its loop is cancelled still settles."""

from __future__ import annotations

import asyncio

import pytest

from hacluster.leader import proposer as P
from hacluster.model import commands as C
from hacluster.model.errors import Invalid, Timeout
from hacluster.store.local import LocalStore
from tests.unit.leader_fixtures import T0, leader_store, must, node_obj, stamp


class FlakyStore(LocalStore):
    """Answers the first `fail` proposals with Timeout after applying them (outcome unknown to the caller),
    and can hold proposals until released."""

    def __init__(self, fail: int = 0) -> None:
        super().__init__()
        self.fail = fail
        self.gate: asyncio.Event | None = None

    async def propose(self, command, *, timeout_s=None):
        if self.gate is not None:
            await self.gate.wait()
        result = await super().propose(command, timeout_s=timeout_s)
        if self.fail:
            self.fail -= 1
            raise Timeout("Timeout: request did not complete", retry_after_s=1)
        return result


def create_node(name):
    return C.Create(resource="nodes", namespace="", obj=node_obj(name))


async def test_every_command_is_stamped_with_the_term():
    store = await leader_store()
    fp = P.FencedProposer(store, 1, component="t", timeout_s=1)
    result = await fp.propose(C.Batch(commands=[create_node("a"), create_node("b")]))
    assert result.ok and all(r.ok for r in result.results)
    sent = store.proposals[-1]
    assert sent.fence_term == 1 and sent.request_id
    assert [c.fence_term for c in sent.commands] == [1, 1]


async def test_unknown_outcome_is_retried_with_the_same_request_id_and_applied_once():
    store = FlakyStore()
    await must(store, C.LeaderElected(leader_id="m1", term=1, time=stamp(T0), fence_term=1))
    store.fail = 2
    fp = P.FencedProposer(store, 1, component="t", timeout_s=1)
    retried = P.STATS.retried
    result = await fp.propose(create_node("a"))
    assert result.ok and P.STATS.retried == retried + 2
    ids = {c.request_id for c in store.proposals[1:]}
    assert len(store.proposals) == 4 and len(ids) == 1, "three attempts, one request id"
    assert store.read(lambda s: len(s.objects["nodes"])) == 1, "applied once (the repeats were deduplicated)"


async def test_fenced_refusal_raises_not_leading():
    store = await leader_store(term=1)
    await must(store, C.LeaderElected(leader_id="m2", term=2, time=stamp(T0), fence_term=2))
    fp = P.FencedProposer(store, 1, component="t", timeout_s=1)
    with pytest.raises(P.NotLeading, match="term 2 has begun"):
        await fp.propose(create_node("a"))
    assert store.read(lambda s: s.objects["nodes"]) == {}


async def test_definite_errors_are_not_retried_and_retries_stop_with_the_term():
    class Refusing(LocalStore):
        async def propose(self, command, *, timeout_s=None):
            raise Invalid("no")

    with pytest.raises(Invalid):
        await P.FencedProposer(Refusing(), 1, component="t", timeout_s=1).propose(create_node("a"))
    store = await leader_store()
    store.set_available(False)  # Unavailable, and the view no longer says leader: no retry
    with pytest.raises(P.NotLeading):
        await P.FencedProposer(store, 1, component="t", timeout_s=1).propose(create_node("a"))


async def test_a_proposal_in_flight_settles_after_its_loop_is_cancelled():
    store = FlakyStore()
    await must(store, C.LeaderElected(leader_id="m1", term=1, time=stamp(T0), fence_term=1))
    store.gate = asyncio.Event()
    fp = P.FencedProposer(store, 1, component="t", timeout_s=1)
    task = asyncio.ensure_future(fp.propose(create_node("a")))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    settled = P.STATS.settled_after_cancel
    store.gate.set()
    for _ in range(100):
        if P.STATS.settled_after_cancel > settled:
            break
        await asyncio.sleep(0.01)
    assert P.STATS.settled_after_cancel == settled + 1
    assert store.read(lambda s: list(s.objects["nodes"])) == ["a"]


def test_batches_respect_count_and_size():
    commands = [create_node(f"n{i}") for i in range(10)]
    size = P.encoded_size(commands[0])
    assert [len(b.commands) for b in P.batches(commands, max_count=4)] == [4, 4, 2]
    small = P.batches(commands, max_count=100, max_bytes=P.BATCH_OVERHEAD_BYTES + 3 * size)
    assert [len(b.commands) for b in small] == [3, 3, 3, 1]
    assert all(len(C.encode(b)) <= P.BATCH_OVERHEAD_BYTES + 3 * size + 16 for b in small)
