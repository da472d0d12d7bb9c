"""PreVote, leader stickiness and CheckQuorum (`hacluster.raft.election`): the pure grant rules, then the
mixin driven message by message on one pysyncobj node that never ticks by itself (no peers answer: every
message it sends is recorded instead), and a check that the pysyncobj internals it relies on are there."""

from __future__ import annotations

import importlib.metadata
import inspect
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj import syncobj as pysyncobj_core

from hacluster.raft import election as el
from hacluster.raft.election import Decision, ElectionSettings, Voter, VoteRequest
from hacluster.raft.replicated_store import _RaftStateMachine
from hacluster.store.state import Result
from tests.property.harness import _free_port


def voter(term: int = 5, idx: int = 10, log_term: int = 5, voted_for: str | None = None,
          has_leader: bool = True, in_lease: bool = False) -> Voter:
    return Voter(term=term, last_log_index=idx, last_log_term=log_term, voted_for=voted_for,
                 has_leader=has_leader, in_lease=in_lease)


def request(term: int = 6, idx: int = 10, log_term: int = 5, candidate: str = "c") -> VoteRequest:
    return VoteRequest(candidate=candidate, term=term, last_log_index=idx, last_log_term=log_term)


# ------------------------------------------------------------------------------------------- pure rules
@pytest.mark.parametrize(("req", "expected"), [
    (request(idx=10, log_term=5), True),  # same last entry
    (request(idx=11, log_term=5), True),  # longer, same term
    (request(idx=9, log_term=5), False),  # shorter, same term
    (request(idx=3, log_term=6), True),  # shorter but a later term
    (request(idx=20, log_term=4), False),  # longer but an earlier term
])
def test_log_is_up_to_date_compares_last_term_then_index(req: VoteRequest, expected: bool) -> None:
    assert el.log_is_up_to_date(req, voter()) is expected


def test_pre_vote_for_a_higher_term_is_granted_when_not_in_a_lease_and_the_log_is_up_to_date() -> None:
    assert el.pre_vote_decision(request(), voter(in_lease=False)) is Decision.GRANT
    assert el.pre_vote_decision(request(idx=9), voter(in_lease=False)) is Decision.REJECT


def test_pre_vote_is_ignored_in_a_lease_even_from_an_up_to_date_candidate() -> None:
    assert el.pre_vote_decision(request(idx=99, log_term=5), voter(in_lease=True)) is Decision.IGNORE


def test_pre_vote_for_a_lower_term_is_rejected_so_the_candidate_learns_the_term() -> None:
    assert el.pre_vote_decision(request(term=4, idx=99, log_term=5), voter(term=5)) is Decision.REJECT


def test_pre_vote_for_the_voters_own_term_needs_no_leader_and_no_other_vote() -> None:
    same = request(term=5)
    assert el.pre_vote_decision(same, voter(term=5, voted_for="c", has_leader=True)) is Decision.GRANT
    assert el.pre_vote_decision(same, voter(term=5, voted_for=None, has_leader=False)) is Decision.GRANT
    assert el.pre_vote_decision(same, voter(term=5, voted_for=None, has_leader=True)) is Decision.REJECT
    assert el.pre_vote_decision(same, voter(term=5, voted_for="other", has_leader=False)) is Decision.REJECT


def test_a_real_vote_is_dropped_in_a_lease_unless_it_is_a_leadership_transfer() -> None:
    assert el.vote_allowed(request(), voter(in_lease=False))
    assert not el.vote_allowed(request(), voter(in_lease=True))
    assert el.vote_allowed(request(), voter(in_lease=True), transfer=True)


def test_a_real_vote_at_the_term_of_a_known_leader_goes_only_to_whom_we_voted_for() -> None:
    assert not el.vote_allowed(request(term=5), voter(term=5, voted_for=None, has_leader=True))
    assert el.vote_allowed(request(term=5), voter(term=5, voted_for="c", has_leader=True))
    assert el.vote_allowed(request(term=5), voter(term=5, voted_for=None, has_leader=False))


def test_lease_holds_for_the_leader_and_a_follower_that_heard_from_it_recently_only_with_check_quorum() -> None:
    def lease(**kw: Any) -> bool:
        args: dict[str, Any] = dict(check_quorum=True, is_leader=False, has_leader=True,
                                    since_leader_contact_s=0.1, lease_s=0.3)
        args.update(kw)
        return el.in_lease(**args)

    assert lease()
    assert lease(is_leader=True, has_leader=False, since_leader_contact_s=99)
    assert not lease(since_leader_contact_s=0.3)
    assert not lease(has_leader=False)
    assert not lease(check_quorum=False)
    assert not lease(check_quorum=False, is_leader=True)


@pytest.mark.parametrize(("votes", "size", "expected"), [(1, 1, True), (1, 2, False), (2, 3, True),
                                                         (1, 3, False), (2, 4, False), (3, 5, True)])
def test_majority(votes: int, size: int, expected: bool) -> None:
    assert el.has_majority(votes, size) is expected


# ---------------------------------------------------------------------------- the mixin, message by message
NOOP = struct.pack("B", 1)  # pysyncobj's no-op entry


class Node:
    """One `_RaftStateMachine` with two peers that never connect; what it sends is recorded."""

    def __init__(self, settings: ElectionSettings) -> None:
        self.me = f"127.0.0.1:{_free_port()}"
        peers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]

        def apply_payload(payload: bytes) -> Result:
            raise AssertionError("no-op entries are never handed to the state machine")

        self.sync = _RaftStateMachine(self.me, peers, SyncObjConf(autoTick=False), apply_payload, election=settings)
        self.peers = sorted(self.sync._SyncObj__otherNodes, key=lambda n: n.address)
        self.sent: list[tuple[str, dict[str, Any]]] = []

        def record(node: Any, message: dict[str, Any]) -> bool:
            self.sent.append((node.address, message))
            return True

        self.sync._SyncObj__transport.send = record
        self.sync._SyncObj__connectedNodes.update(self.peers)

    def receive(self, peer: int, message: dict[str, Any]) -> None:
        self.sync._SyncObj__onMessageReceived(self.peers[peer], message)

    def tick(self, *, stalled: bool = False) -> None:
        """One tick, as if the thread had just read its sockets (or, `stalled`, had not run for long)."""
        # The transport's dials to the absent peers fail during a tick and mark them disconnected; they are
        # "connected" again for every tick, as peers that answer would be.
        self.sync._SyncObj__connectedNodes.update(self.peers)
        self.sync._polled_at = float("-inf") if stalled else pysyncobj_core.monotonicTime()
        self.sync._onTick(0)

    def sent_of(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(a, m) for a, m in self.sent if m.get("type") == kind]

    @property
    def term(self) -> int:
        return int(self.sync.raftCurrentTerm)

    @property
    def state(self) -> int:
        return int(self.sync._SyncObj__raftState)

    def time_out(self) -> None:
        """Make the election deadline pass now."""
        self.sync._SyncObj__raftElectionDeadline = 0

    def follow(self, peer: int, term: int) -> None:
        """An append from `peer` as leader of `term` (a heartbeat carrying one no-op at index 2)."""
        self.receive(peer, {"type": "append_entries", "term": term, "commit_index": 1, "prevLogIdx": 1,
                            "prevLogTerm": 0, "entries": [(NOOP, 2, term)]})


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node(ElectionSettings(lease_s=60.0))
    try:
        yield n
    finally:
        n.sync._doDestroy()


def test_a_timed_out_follower_asks_for_pre_votes_without_raising_its_term(node: Node) -> None:
    node.follow(0, 0)
    node.time_out()
    node.tick()
    assert node.term == 0 and node.state == el._FOLLOWER
    assert node.sync._SyncObj__raftLeader is None, "a leader silent for an election timeout is forgotten"
    asked = node.sent_of(el.PRE_VOTE)
    assert sorted(a for a, _ in asked) == [p.address for p in node.peers]
    assert all(m["term"] == 1 for _, m in asked)
    assert not node.sent_of("request_vote")
    assert node.sync.election_stats.pre_votes_started == 1


def test_after_a_stall_of_its_own_thread_a_follower_reads_its_sockets_before_asking_for_pre_votes(
        node: Node) -> None:
    node.follow(0, 1)
    node.time_out()
    node.tick(stalled=True)  # the deadline passed while the thread did not run: read the appends first
    assert not node.sent_of(el.PRE_VOTE) and node.sync._SyncObj__raftLeader == node.peers[0]
    assert node.sync.election_stats.election_checks_deferred_stalled == 1
    node.time_out()
    node.tick(stalled=True)  # still nothing from the leader: once per timeout only, so ask now
    assert node.sent_of(el.PRE_VOTE) and node.term == 1


def test_pysyncobj_starts_no_election_that_the_pre_vote_did_not_allow(node: Node) -> None:
    """The mixin's check and pysyncobj's run a moment apart: a deadline passing in between must not let
    pysyncobj start an election (seen on the in-process cluster: an isolated follower became a candidate)."""
    node.follow(0, 1)
    node.sync._before_election_check = lambda now: None  # type: ignore[method-assign]  # as if the deadline had not passed at its `now`
    node.time_out()
    node.tick()
    assert node.term == 1 and not node.sent_of("request_vote")


def test_a_won_pre_vote_starts_pysyncobjs_own_election_at_the_next_term(node: Node) -> None:
    node.time_out()
    node.tick()
    node.receive(0, {"type": el.PRE_VOTE_RESPONSE, "term": 1, "granted": True, "voter_term": 0})
    assert node.term == 0, "the pre-vote itself raises nothing"
    node.tick()
    assert node.term == 1 and node.state in (el._CANDIDATE, el._LEADER)
    assert node.sent_of("request_vote")


def test_a_refused_or_unanswered_pre_vote_starts_no_election(node: Node) -> None:
    node.time_out()
    node.tick()
    node.receive(0, {"type": el.PRE_VOTE_RESPONSE, "term": 1, "granted": False, "voter_term": 0})
    node.time_out()
    node.tick()  # times out again: a new pre-vote round, still no election
    assert node.term == 0 and not node.sent_of("request_vote")
    assert node.sync.election_stats.pre_votes_started == 2


def test_a_pre_vote_rejected_for_a_higher_term_makes_the_candidate_adopt_it(node: Node) -> None:
    node.time_out()
    node.tick()
    node.receive(1, {"type": el.PRE_VOTE_RESPONSE, "term": 1, "granted": False, "voter_term": 7})
    assert node.term == 7 and node.state == el._FOLLOWER
    assert not node.sent_of("request_vote")


def test_with_pre_vote_off_the_timeout_starts_an_election_at_once() -> None:
    n = Node(ElectionSettings(pre_vote=False))
    try:
        n.time_out()
        n.tick()
        assert n.term == 1 and n.sent_of("request_vote") and not n.sent_of(el.PRE_VOTE)
    finally:
        n.sync._doDestroy()


def test_granting_a_pre_vote_changes_no_state(node: Node) -> None:
    node.receive(0, {"type": el.PRE_VOTE, "term": 3, "last_log_index": 5, "last_log_term": 2})
    assert node.term == 0 and node.sync._SyncObj__votedForNodeId is None
    ((to, answer),) = node.sent_of(el.PRE_VOTE_RESPONSE)
    assert to == node.peers[0].address and answer["granted"] and answer["term"] == 3


def test_a_follower_in_a_lease_ignores_pre_votes_and_votes_and_keeps_its_term(node: Node) -> None:
    node.follow(0, 2)
    assert node.term == 2
    node.receive(1, {"type": el.PRE_VOTE, "term": 3, "last_log_index": 9, "last_log_term": 2})
    node.receive(1, {"type": "request_vote", "term": 3, "last_log_index": 9, "last_log_term": 2})
    assert node.term == 2 and node.sync._SyncObj__raftLeader == node.peers[0]
    assert not node.sent_of(el.PRE_VOTE_RESPONSE) and not node.sent_of("response_vote")
    assert node.sync.election_stats.votes_ignored_in_lease == 2


def test_a_follower_whose_leader_link_is_down_is_out_of_its_lease(node: Node) -> None:
    node.follow(0, 2)
    node.sync._SyncObj__connectedNodes.discard(node.peers[0])  # the leader's process died
    node.receive(1, {"type": el.PRE_VOTE, "term": 3, "last_log_index": 9, "last_log_term": 2})
    ((_, answer),) = node.sent_of(el.PRE_VOTE_RESPONSE)
    assert answer["granted"]


def test_without_check_quorum_there_is_no_lease() -> None:
    n = Node(ElectionSettings(check_quorum=False, lease_s=60.0))
    try:
        n.follow(0, 2)
        n.receive(1, {"type": "request_vote", "term": 3, "last_log_index": 9, "last_log_term": 2})
        assert n.term == 3 and n.sent_of("response_vote"), "plain Raft: the higher term wins"
    finally:
        n.sync._doDestroy()


def test_an_append_from_a_lower_term_is_answered_with_the_higher_term(node: Node) -> None:
    node.sync._SyncObj__setCurrentTerm(9, None)
    node.follow(0, 4)
    assert node.term == 9
    ((to, answer),) = node.sent_of(el.HIGHER_TERM)
    assert to == node.peers[0].address and answer["term"] == 9


def test_a_leader_told_of_a_higher_term_steps_down_to_it(node: Node) -> None:
    node.time_out()
    node.tick()
    node.receive(0, {"type": el.PRE_VOTE_RESPONSE, "term": 1, "granted": True, "voter_term": 0})
    node.tick()
    node.receive(0, {"type": "response_vote", "term": 1})
    assert node.state == el._LEADER and node.term == 1
    node.receive(1, {"type": el.HIGHER_TERM, "term": 4})
    assert node.state == el._FOLLOWER and node.term == 4 and node.sync._SyncObj__raftLeader is None


def test_a_leader_without_answers_from_a_majority_steps_down_but_not_after_its_own_stall() -> None:
    n = Node(ElectionSettings(pre_vote=False, check_quorum_s=0.0, stall_s=60.0))
    try:
        n.time_out()
        n.tick()
        n.receive(0, {"type": "response_vote", "term": 1})
        assert n.state == el._LEADER
        n.tick(stalled=True)  # as if the thread had been starved since it last read its sockets
        assert n.state == el._LEADER and n.sync.election_stats.quorum_checks_skipped_stalled == 1
        n.tick()  # the tick above read its sockets: nothing came, and no answer is within 0 s
        assert n.state == el._FOLLOWER and n.term == 1
        assert n.sync.election_stats.check_quorum_step_downs == 1
        told = n.sent_of(el.LEADER_STEPPED_DOWN)
        assert sorted(a for a, _ in told) == [p.address for p in n.peers] and told[0][1]["term"] == 1
    finally:
        n.sync._doDestroy()


def test_a_follower_told_its_leader_stepped_down_follows_nobody(node: Node) -> None:
    node.follow(0, 2)
    node.receive(1, {"type": el.LEADER_STEPPED_DOWN, "term": 2})  # not our leader: ignored
    node.receive(0, {"type": el.LEADER_STEPPED_DOWN, "term": 1})  # an older term: ignored
    assert node.sync._SyncObj__raftLeader == node.peers[0]
    node.receive(0, {"type": el.LEADER_STEPPED_DOWN, "term": 2})
    assert node.sync._SyncObj__raftLeader is None and node.term == 2
    node.receive(1, {"type": el.PRE_VOTE, "term": 3, "last_log_index": 9, "last_log_term": 2})
    ((_, answer),) = node.sent_of(el.PRE_VOTE_RESPONSE)
    assert answer["granted"], "no leader, no lease"


def test_leadership_transfer_skips_the_pre_vote_and_voters_disregard_their_lease(node: Node) -> None:
    node.follow(0, 2)
    node.receive(0, {"type": "timeout_now", "term": 2})
    node.tick()
    assert node.term == 3 and node.sent_of("request_vote"), "the transfer target goes straight to an election"
    assert node.sent_of(el.TRANSFER_ELECTION)
    voter_node = Node(ElectionSettings(lease_s=60.0))
    try:
        voter_node.follow(0, 2)
        voter_node.receive(1, {"type": el.TRANSFER_ELECTION, "term": 3})
        voter_node.receive(1, {"type": "request_vote", "term": 3, "last_log_index": 2, "last_log_term": 2})
        assert voter_node.term == 3 and voter_node.sent_of("response_vote")
    finally:
        voter_node.sync._doDestroy()


# ----------------------------------------------------------------------------------- pysyncobj internals
def test_the_pysyncobj_internals_the_mixin_relies_on_are_there() -> None:
    """`ElectionMixin` reads and writes pysyncobj 0.3.17's private fields and runs its checks just before
    `_onTick`'s own election check; a pysyncobj that names or orders them differently must fail here."""
    assert importlib.metadata.version("pysyncobj") == "0.3.17", "re-read ElectionMixin against this pysyncobj"
    source = inspect.getsource(SyncObj._onTick)
    election = source.index("self.__raftElectionDeadline < monotonicTime()")
    fallback = source.index("leaderFallbackTimeout")
    poll = source.index("self._poller.poll(timeToWait)")
    assert election < fallback < poll
    # The gate in ElectionMixin._SyncObj__connectedToAnyone: pysyncobj asks it in its election check only.
    assert "self.__raftElectionDeadline < monotonicTime() and self.__connectedToAnyone()" in source
    assert inspect.getsource(SyncObj).count("self.__connectedToAnyone()") == 1
    handler = inspect.getsource(SyncObj._SyncObj__onMessageReceived)
    for needed in ("'timeout_now'", "'request_vote'", "'append_entries'", "self.__transferInProgress = True"):
        assert needed in handler
    n = Node(ElectionSettings())
    try:
        for field in ("raftState", "raftCurrentTerm", "raftLeader", "raftElectionDeadline", "votedForNodeId",
                      "lastResponseTime", "otherNodes", "connectedNodes", "transferInProgress", "selfNode",
                      "transport"):
            assert hasattr(n.sync, f"_SyncObj__{field}"), field
        for method in ("connectedToAnyone", "generateRaftTimeout", "getCurrentLogIndex", "getCurrentLogTerm",
                       "setCurrentTerm", "setState"):
            assert callable(getattr(n.sync, f"_SyncObj__{method}")), method
    finally:
        n.sync._doDestroy()
