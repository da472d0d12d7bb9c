"""No election that no fault caused: PreVote, leader stickiness and CheckQuorum (`hacluster.raft.election`)
on the in-process cluster (`tests.property.harness`: 3 real pysyncobj nodes behind forwarders we blackhole
and heal). Each test waits on conditions with bounded deadlines; the last shows that with both switches off
the same fault does depose the leader, so the others can fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hacluster.config import RaftConfig
from hacluster.raft.election import ElectionStats
from tests.property.harness import InProcessCluster, fast_raft

WAIT_S = 10.0
STALL_LINK_TIMEOUT_MS = 4000  # peer links outlive a stalled thread (3 × election_timeout_ms_max = 1.8 s)


def steady_raft(**over: object) -> RaftConfig:
    """The default Raft timings (election 300–600 ms, heartbeat 50 ms), as a deployed cluster has them:
    these tests assert that *no* election happens, and with the harness's 100–200 ms timeouts a hiccup of
    the shared host itself (whole-machine stalls of 300 ms were measured under load) would be one."""
    values: dict[str, object] = {name: field.default for name, field in RaftConfig.model_fields.items()
                                 if name != "password"}
    values.update(tick_ms=5, connection_retry_ms=20)
    values.update(over)
    return fast_raft(**values)


async def wait_for(cond: Callable[[], bool], what: str, c: InProcessCluster, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}; {c.describe()}")
        await asyncio.sleep(0.01)


def stats(c: InProcessCluster, mid: str) -> ElectionStats:
    store = c.stores[mid]
    assert store is not None and store._sync is not None
    return store._sync.election_stats


def terms_seen(c: InProcessCluster, since: int) -> set[int]:
    """Terms in the Raft views published after the first `since`."""
    return {v["term"] for v in c.obs.views[since:]}


def leaders_seen(c: InProcessCluster, since: int) -> set[tuple[int, str]]:
    return {(v["term"], v["master"]) for v in c.obs.views[since:] if v["role"] == "leader"}


def trace(c: InProcessCluster) -> str:
    return "\n".join(c.obs.trace[-40:])


def dials(c: InProcessCluster, mid: str) -> bool:
    """Does `mid` dial any peer? pysyncobj starts an election only while connected to someone, and a
    blackholed link looks connected only to the side that dials it (its redials succeed at the forwarder)."""
    return any(link.dialer == mid for link in c.net.links.values())


def a_dialing_follower(c: InProcessCluster, leader: str) -> str:
    """A follower that dials a peer (of the two, at least one does: the larger Raft address dials)."""
    return next(m for m in c.ids if m != leader and dials(c, m))


async def isolated_for_a_while(c: InProcessCluster, mid: str) -> None:
    """Keep `mid` isolated until its election timer has fired three times — if it can fire at all: a master
    that only accepts links is never connected while blackholed, and then the fault lasts a fixed 2 s."""
    if dials(c, mid):
        await wait_for(lambda: stats(c, mid).pre_votes_started >= 3, f"{mid} timed out while isolated", c)
    else:
        await asyncio.sleep(2.0)  # the fault's duration, not a synchronisation


async def started(c: InProcessCluster) -> tuple[str, int]:
    await c.bootstrap()
    leader = await c.wait_leader()
    view = c.view(leader)
    assert view is not None
    return leader, view.term


async def test_an_isolated_follower_rejoins_without_changing_term_or_leader() -> None:
    async with InProcessCluster(3, raft=steady_raft()) as c:
        leader, term = await started(c)
        follower = a_dialing_follower(c, leader)
        mark = len(c.obs.views)
        await asyncio.to_thread(c.net.isolate, follower)
        await isolated_for_a_while(c, follower)
        assert stats(c, follower).pre_votes_started >= 3
        await asyncio.to_thread(c.net.heal)
        await c.settle()
        assert c.leader() == leader, trace(c)
        assert {c.view(m).term for m in c.ids} == {term}, trace(c)  # type: ignore[union-attr]
        assert terms_seen(c, mark) <= {term} and leaders_seen(c, mark) <= {(term, leader)}, trace(c)


async def test_an_isolated_former_leader_rejoins_without_an_election() -> None:
    async with InProcessCluster(3, raft=steady_raft()) as c:
        old, term = await started(c)
        mark = len(c.obs.views)
        await asyncio.to_thread(c.net.isolate, old)
        await wait_for(lambda: c.leader() not in (None, old), "the majority elected a new leader", c)
        new = c.leader()
        assert new is not None
        await wait_for(lambda: c.view(old).role == "follower", "the old leader stepped down", c)  # type: ignore[union-attr]
        assert stats(c, old).check_quorum_step_downs == 1
        await isolated_for_a_while(c, old)
        await asyncio.to_thread(c.net.heal)
        await c.settle()
        assert c.leader() == new, trace(c)
        assert {c.view(m).term for m in c.ids} == {term + 1}, trace(c)  # type: ignore[union-attr]
        assert max(terms_seen(c, mark)) == term + 1, trace(c)


async def test_a_master_with_a_higher_term_is_not_locked_out() -> None:
    """A follower raises its term (as in a failed election, or before a restart) and then ignores the
    leader's appends at the lower term, while the others, in their lease, ignore its pre-votes. It answers
    those appends with its term; the leader steps down, and the next election brings every master back."""
    async with InProcessCluster(3, raft=steady_raft()) as c:
        leader, term = await started(c)
        follower = a_dialing_follower(c, leader)
        store = c.stores[follower]
        assert store is not None and store._sync is not None
        sync = store._sync
        raised = term + 3
        done: list[bool] = []

        def raise_term() -> None:  # on the follower's tick thread, where pysyncobj's fields may change
            if not done:
                sync._SyncObj__setCurrentTerm(raised, sync._SyncObj__selfNode.id)
                done.append(True)

        sync.addOnTickCallback(raise_term)
        await wait_for(lambda: bool(done), "the follower raised its term", c)
        await wait_for(lambda: c.leader() is not None and c.view(c.leader()).term > raised,  # type: ignore[arg-type,union-attr]
                       "a leader above the raised term", c)
        settled = await c.settle()
        assert len({s["fingerprint"] for s in settled.values()}) == 1
        assert stats(c, leader).stepped_down_for_higher_term == 1
        assert stats(c, follower).higher_term_answers_sent >= 1
        final = c.leader()
        assert final is not None
        assert {c.view(m).term for m in c.ids} == {c.view(final).term}  # type: ignore[union-attr]
        assert c.view(follower).leader == final  # type: ignore[union-attr]


async def test_without_pre_vote_and_check_quorum_an_isolated_follower_deposes_the_leader() -> None:
    """The switches off: the isolated follower raises its term in elections it cannot win, and when it
    comes back that term deposes the healthy leader — the disruption the tests above show is gone."""
    async with InProcessCluster(3, raft=steady_raft(pre_vote=False, check_quorum=False)) as c:
        leader, term = await started(c)
        follower = a_dialing_follower(c, leader)
        mark = len(c.obs.views)
        await asyncio.to_thread(c.net.isolate, follower)
        await wait_for(lambda: c.view(follower).term > term, "the isolated follower raised its term", c)  # type: ignore[union-attr]
        await asyncio.to_thread(c.net.heal)
        await wait_for(lambda: c.leader() is not None and c.view(c.leader()).term > term,  # type: ignore[arg-type,union-attr]
                       "an election after the heal", c)
        await c.settle()
        assert max(terms_seen(c, mark)) > term


async def stall_once(c: InProcessCluster, mid: str, stall_s: float) -> list[bool]:
    """Starve `mid`'s Raft thread once for `stall_s`, right before a tick's election check — as the GIL or a
    busy CPU does under load, while the leader's appends wait unread in its socket. Returns a list that
    holds True once the stall is over."""
    store = c.stores[mid]
    assert store is not None and store._sync is not None
    sync = store._sync
    on_tick = type(sync)._onTick
    done: list[bool] = []

    def stalled_tick(time_to_wait: float = 0.0) -> None:
        if not done:
            time.sleep(stall_s)  # the fault: the thread does not run
            done.append(True)
        on_tick(sync, time_to_wait)

    sync._onTick = stalled_tick  # type: ignore[method-assign,assignment]
    await wait_for(lambda: bool(done), f"{mid}'s stall", c)
    return done


async def test_a_follower_whose_raft_thread_was_starved_deposes_nobody() -> None:
    """Elections under load: a follower's thread stalls past its election timeout and, resumed, finds its
    deadline passed before reading the appends that came meanwhile. With PreVote it reads them first and
    follows on; had it asked, it would only have asked for pre-votes, which the others (in their lease)
    ignore. (Links outlive the stall, as with the default timings: election 300–600 ms, connection 1 s.)"""
    async with InProcessCluster(3, raft=steady_raft(connection_timeout_ms=STALL_LINK_TIMEOUT_MS)) as c:
        leader, term = await started(c)
        follower = a_dialing_follower(c, leader)
        mark = len(c.obs.views)
        await stall_once(c, follower, 3 * c.cfg.raft.election_timeout_ms_max / 1000)
        await wait_for(lambda: stats(c, follower).election_checks_deferred_stalled >= 1,
                       "the follower put its election check off", c)
        await c.settle()
        assert c.leader() == leader, trace(c)
        assert {c.view(m).term for m in c.ids} == {term}, trace(c)  # type: ignore[union-attr]
        assert terms_seen(c, mark) <= {term}, trace(c)


async def test_without_pre_vote_a_starved_follower_causes_an_election() -> None:
    async with InProcessCluster(3, raft=steady_raft(pre_vote=False, check_quorum=False,
                                                    connection_timeout_ms=STALL_LINK_TIMEOUT_MS)) as c:
        leader, term = await started(c)
        follower = a_dialing_follower(c, leader)
        mark = len(c.obs.views)
        await stall_once(c, follower, 3 * c.cfg.raft.election_timeout_ms_max / 1000)
        await wait_for(lambda: c.leader() is not None and c.view(c.leader()).term > term,  # type: ignore[arg-type,union-attr]
                       "an election after the stall", c)
        await c.settle()
        assert max(terms_seen(c, mark)) > term
