"""Elections that only happen when a leader is really gone: PreVote, leader stickiness and CheckQuorum.

pysyncobj's elections are plain Raft: a master whose election timeout fires raises its term and asks for
votes, and every master that sees a higher term adopts it — so a master that was cut off, paused or merely
starved of CPU comes back with a higher term and deposes a healthy leader. This module adds what etcd's raft
adds (`PreVote`, `CheckQuorum`; Raft thesis §9.6):

- **PreVote.** When the timeout fires, a master first asks for pre-votes at term+1 without raising its own
  term; only with a majority (itself included) does pysyncobj's own election start. Granting a pre-vote
  changes nothing on the voter.
- **Leader stickiness.** A master that heard from its leader within `election_timeout_ms_min`, and the
  leader itself, ignore (pre)vote requests without adopting their term (etcd's `inLease`).
- **CheckQuorum.** A leader that had no answer from a majority within `leader_fallback_ms` steps down —
  checked only when its tick has just read its sockets, so a leader whose own thread was starved does not
  step down over answers it has not read yet.
- **A higher term is never locked out.** A master whose term is above the leader's (it raised it in a failed
  election, or before a restart) ignores the leader's appends, and its pre-votes are refused by masters in a
  lease: it would never rejoin. As etcd does, it answers such an append with its term (`higher_term`); the
  leader steps down and the next election, at a term above both, brings everyone back.
- **No forwarding into the void.** A master starting a pre-vote forgets its silent leader, and a leader
  that steps down tells the followers it still reaches (`leader_stepped_down`): with no majority anywhere,
  every master answers writes 503 at once (pysyncobj's own election start used to tell them).

The rules are pure functions (`pre_vote_decision`, `vote_allowed`, `in_lease`, `has_majority`), unit-tested
without sockets; `ElectionMixin` wires them into pysyncobj and is mixed into
`hacluster.raft.replicated_store._RaftStateMachine`. It relies on pysyncobj 0.3.17's private fields and its
`_onTick` order (election check, then leader checks, then poll); `tests/unit/test_election.py` fails loudly if
those change. Leadership transfer (pysyncobj's `transferLeadership`/`timeout_now`, unused by hacluster) keeps
working: the target skips the pre-vote and tells the voters, which then disregard their lease for it.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pysyncobj import syncobj as pysyncobj_core

from hacluster.config import RaftConfig

if TYPE_CHECKING:  # pysyncobj is untyped: give the mixin its attributes as Any
    from pysyncobj import SyncObj as _SyncObjBase
else:
    _SyncObjBase = object

log = logging.getLogger(__name__)

_FOLLOWER, _CANDIDATE, _LEADER = 0, 1, 2
# Message types this module adds to pysyncobj's protocol (pickled dicts, like pysyncobj's own).
PRE_VOTE = "pre_vote"
PRE_VOTE_RESPONSE = "pre_vote_response"
HIGHER_TERM = "higher_term"
TRANSFER_ELECTION = "transfer_election"
LEADER_STEPPED_DOWN = "leader_stepped_down"


@dataclass(frozen=True)
class ElectionSettings:
    """What the mixin does, from `RaftConfig` (`from_config`)."""

    pre_vote: bool = True
    """Ask for pre-votes before raising the term."""
    check_quorum: bool = True
    """Leader stickiness (ignore votes while in a lease) and the leader's own quorum check."""
    lease_s: float = 0.3
    """A follower that heard from its leader this recently is in a lease (election_timeout_ms_min)."""
    check_quorum_s: float = 1.0
    """A leader with no answer from a majority for this long steps down (leader_fallback_ms)."""
    stall_s: float = 0.05
    """A tick starting this long after the last one read its sockets has stale knowledge: no quorum check."""

    @classmethod
    def from_config(cls, raft: RaftConfig) -> ElectionSettings:
        return cls(pre_vote=raft.pre_vote, check_quorum=raft.check_quorum,
                   lease_s=raft.election_timeout_ms_min / 1000, check_quorum_s=raft.leader_fallback_ms / 1000,
                   stall_s=raft.heartbeat_ms / 1000)


# ----------------------------------------------------------------------------------------- pure rules
class Decision(enum.Enum):
    """A voter's answer to a pre-vote request."""

    GRANT = "grant"
    REJECT = "reject"  # answered, with the voter's term (a candidate behind in term catches up)
    IGNORE = "ignore"  # dropped without an answer and without touching the voter's term (in a lease)


@dataclass(frozen=True)
class VoteRequest:
    """A (pre-)vote request: the term asked for and the candidate's last log entry."""

    candidate: str
    term: int
    last_log_index: int
    last_log_term: int


@dataclass(frozen=True)
class Voter:
    """What a voter knows when a request arrives."""

    term: int
    last_log_index: int
    last_log_term: int
    voted_for: str | None
    has_leader: bool
    in_lease: bool


def log_is_up_to_date(req: VoteRequest, voter: Voter) -> bool:
    """Raft §5.4.1: the candidate's last entry has a higher term, or the same term and an index as high."""
    if req.last_log_term != voter.last_log_term:
        return req.last_log_term > voter.last_log_term
    return req.last_log_index >= voter.last_log_index


def in_lease(*, check_quorum: bool, is_leader: bool, has_leader: bool, since_leader_contact_s: float,
             lease_s: float) -> bool:
    """etcd's `inLease`: the leader, and a follower that heard from its leader within `lease_s`, believe the
    leader is alive and refuse to help depose it. Only with CheckQuorum, as in etcd: the lease is sound
    because a leader that loses its majority steps down by itself."""
    if not check_quorum:
        return False
    if is_leader:
        return True
    return has_leader and since_leader_contact_s < lease_s


def pre_vote_decision(req: VoteRequest, voter: Voter) -> Decision:
    """The pre-vote grant rule (etcd's `Step` for MsgPreVote). Granting changes nothing on the voter.

    - asked for a term above ours: ignored while in a lease, else granted if the candidate's log is at least
      as up to date as ours;
    - asked for a term below ours: rejected with our term, so the candidate learns it (etcd answers too:
      dropping it could leave a candidate with a higher term but a shorter log deadlocked);
    - asked for our own term: granted only to whom we voted for, or if we have neither voted nor a leader.
    """
    if req.term > voter.term:
        if voter.in_lease:
            return Decision.IGNORE
        return Decision.GRANT if log_is_up_to_date(req, voter) else Decision.REJECT
    if req.term < voter.term:
        return Decision.REJECT
    can_vote = voter.voted_for == req.candidate or (voter.voted_for is None and not voter.has_leader)
    return Decision.GRANT if can_vote and log_is_up_to_date(req, voter) else Decision.REJECT


def vote_allowed(req: VoteRequest, voter: Voter, *, transfer: bool = False) -> bool:
    """May a real RequestVote reach pysyncobj's own rule (which checks the log and `votedFor`)?

    No while the voter is in a lease (the request's term is not adopted: etcd drops it), unless the election
    is a leadership transfer. No for a request at our own term once we follow a leader of that term and did
    not vote for the candidate (etcd's `canVote`; pysyncobj alone would grant it when it learnt the term
    from the leader's append rather than by voting, and a second leader could win the same term)."""
    if req.term > voter.term:
        return transfer or not voter.in_lease
    if req.term == voter.term and voter.has_leader and voter.voted_for != req.candidate:
        return False
    return True


def has_majority(votes: int, cluster_size: int) -> bool:
    return 2 * votes > cluster_size


# ------------------------------------------------------------------------------------ the pysyncobj side
GAP_BUCKETS_MS = (50, 100, 200, 300, 600, 1000)
"""Thresholds of the gap counters: a gap of 250 ms counts in the 50, 100 and 200 buckets."""


@dataclass
class ElectionStats:
    """Counters for /debug/raft, benchmarks and tests (written by the tick thread only; readers copy them
    with `as_dict`). The gap counters say why an election happened: a follower whose leader's appends
    arrived more than an election timeout apart, and whether its own Raft thread was starved meanwhile."""

    pre_votes_started: int = 0
    pre_votes_won: int = 0
    votes_ignored_in_lease: int = 0
    higher_term_answers_sent: int = 0
    stepped_down_for_higher_term: int = 0
    check_quorum_step_downs: int = 0
    quorum_checks_skipped_stalled: int = 0
    election_checks_deferred_stalled: int = 0
    leader_contact_gaps: dict[int, int] = field(default_factory=lambda: dict.fromkeys(GAP_BUCKETS_MS, 0))
    """Follower: appends from its leader (same leader, same term) that came more than N ms after the last."""
    tick_gaps: dict[int, int] = field(default_factory=lambda: dict.fromkeys(GAP_BUCKETS_MS, 0))
    """Ticks of the Raft thread that started more than N ms after the previous one (a tick waits at most
    raft.tick_ms for its sockets: a longer gap is time the thread spent working or waiting for the GIL)."""
    leader_contact_gap_max_s: float = 0.0
    tick_gap_max_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not isinstance(v, dict)}
        out["leader_contact_gaps_over_ms"] = {str(k): v for k, v in dict(self.leader_contact_gaps).items()}
        out["tick_gaps_over_ms"] = {str(k): v for k, v in dict(self.tick_gaps).items()}
        return out


def _count_gap(buckets: dict[int, int], gap_s: float) -> None:
    gap_ms = gap_s * 1000
    for threshold in GAP_BUCKETS_MS:
        if gap_ms > threshold:
            buckets[threshold] += 1


class ElectionMixin(_SyncObjBase):  # type: ignore[misc]
    """PreVote, stickiness and CheckQuorum for a pysyncobj `SyncObj` subclass: list it before `SyncObj`
    and call `_init_election` before `SyncObj.__init__` (which starts the tick thread)."""

    _SyncObj__raftElectionDeadline: float  # pysyncobj's fields this mixin assigns (for mypy)
    _SyncObj__raftLeader: Any

    def _init_election(self, settings: ElectionSettings) -> None:
        self._election = settings
        self.election_stats = ElectionStats()
        self._leader_contact_at = float("-inf")  # pysyncobj's clock: last append accepted from a leader
        self._pre_vote_term: int | None = None  # term a pre-vote round is asking for
        self._pre_vote_grants: set[Any] = set()
        self._pre_vote_won_term: int | None = None  # pysyncobj's election may start for this term
        self._polled_at = pysyncobj_core.monotonicTime()
        self._transfer_terms: dict[Any, int] = {}  # voter side: candidate -> term of its transfer election
        self._tick_started_at = self._polled_at
        self._contact_from: tuple[Any, int] | None = None  # (leader node, term) of the last accepted append
        self._deferred_check = False  # the election check was put off once, after a stall of this thread

    # ----------------------------------------------------------------------------------------- tick
    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803 (pysyncobj's names)
        now = pysyncobj_core.monotonicTime()
        gap = now - self._tick_started_at
        self._tick_started_at = now
        _count_gap(self.election_stats.tick_gaps, gap)
        self.election_stats.tick_gap_max_s = max(self.election_stats.tick_gap_max_s, gap)
        state = self._SyncObj__raftState
        if state == _LEADER:
            if self._election.check_quorum:
                if now - self._polled_at > self._election.stall_s:
                    self.election_stats.quorum_checks_skipped_stalled += 1
                else:
                    self._check_quorum(now)
        elif self._SyncObj__selfNode is not None:
            self._before_election_check(now)
        super()._onTick(timeToWait)
        self._polled_at = pysyncobj_core.monotonicTime()

    def _cluster_size(self) -> int:
        return len(self._SyncObj__otherNodes) + 1

    def _check_quorum(self, now: float) -> None:
        since = now - self._election.check_quorum_s
        last = self._SyncObj__lastResponseTime
        answered = sum(1 for node in self._SyncObj__otherNodes if last.get(node, float("-inf")) > since)
        if not has_majority(answered + 1, self._cluster_size()):
            log.warning("leader in term %d heard from %d of %d peers within %.2f s: stepping down",
                        self._SyncObj__raftCurrentTerm, answered, self._cluster_size() - 1,
                        self._election.check_quorum_s)
            self.election_stats.check_quorum_step_downs += 1
            self._become_follower(self._SyncObj__raftCurrentTerm, now, keep_vote=True)
            # Tell the followers it can still reach, so they stop forwarding to it and answer 503 at once
            # instead of waiting out their election timeout (pysyncobj's step-down was followed at once by
            # an election that told them; a pre-vote does not).
            for node in self._SyncObj__otherNodes:
                self._SyncObj__transport.send(node, {"type": LEADER_STEPPED_DOWN,
                                                     "term": self._SyncObj__raftCurrentTerm})

    def _before_election_check(self, now: float) -> None:
        """Runs just before pysyncobj's own check of the election deadline in `_onTick`. If the deadline has
        passed, either let pysyncobj's election start (pre-vote won, pre-vote off, or a leadership transfer)
        or start a pre-vote round instead and push the deadline out by a new random timeout."""
        if self._SyncObj__raftElectionDeadline >= now or not self._connected_to_anyone():
            return
        term = self._SyncObj__raftCurrentTerm
        if self._SyncObj__transferInProgress:
            self._announce_transfer(term + 1)
            return
        if not self._election.pre_vote or self._pre_vote_won_term == term + 1:
            return
        if now - self._polled_at > self._election.stall_s and not self._deferred_check:
            # This thread did not run for a while: the leader's appends may be waiting unread in the socket.
            # Read them first (this tick's poll) and decide on the next tick — once per timeout, so that a
            # thread starved on every tick still starts its election.
            self._deferred_check = True
            self.election_stats.election_checks_deferred_stalled += 1
            self._SyncObj__raftElectionDeadline = now + self._election.stall_s
            return
        self._deferred_check = False
        self._pre_vote_won_term = None
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        # Heard from no leader for an election timeout: forget it (etcd's pre-candidate has no leader), so
        # this master answers 503 rather than forwarding to a leader that may be gone, as pysyncobj's own
        # election start would. An append from a live leader sets it again.
        self._SyncObj__raftLeader = None
        self._pre_vote_term = term + 1
        self._pre_vote_grants = set()
        self.election_stats.pre_votes_started += 1
        message = {"type": PRE_VOTE, "term": term + 1, "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, message)
        self._tally_pre_votes()

    def _connected_to_anyone(self) -> bool:
        return len(self._SyncObj__connectedNodes) > 0 or len(self._SyncObj__otherNodes) == 0

    def _SyncObj__connectedToAnyone(self) -> bool:  # noqa: N802 (pysyncobj's name)
        """pysyncobj asks this only in `_onTick`'s election check, right after the deadline: it may start an
        election only if PreVote allows it. The check above runs a moment earlier with its own `now`; a
        deadline falling between the two (or a thread switch between them) would otherwise let pysyncobj
        start an election nobody pre-voted for."""
        if not self._connected_to_anyone():
            return False
        term = self._SyncObj__raftCurrentTerm
        return (not self._election.pre_vote or self._SyncObj__transferInProgress
                or self._pre_vote_won_term == term + 1)

    def _tally_pre_votes(self) -> None:
        if self._pre_vote_term is None or not has_majority(len(self._pre_vote_grants) + 1, self._cluster_size()):
            return
        self.election_stats.pre_votes_won += 1
        self._pre_vote_won_term, self._pre_vote_term = self._pre_vote_term, None
        self._SyncObj__raftElectionDeadline = 0  # pysyncobj's election starts on this tick or the next

    def _announce_transfer(self, term: int) -> None:
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, {"type": TRANSFER_ELECTION, "term": term})

    def _become_follower(self, term: int, now: float, *, keep_vote: bool = False) -> None:
        if term != self._SyncObj__raftCurrentTerm or not keep_vote:
            self._SyncObj__setCurrentTerm(term, self._SyncObj__votedForNodeId if keep_vote else None)
        self._SyncObj__setState(_FOLLOWER)
        self._SyncObj__raftLeader = None
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self._pre_vote_term = None
        self._pre_vote_won_term = None

    # ------------------------------------------------------------------------------------- messages
    def _voter(self, now: float) -> Voter:
        state = self._SyncObj__raftState
        leader = self._SyncObj__raftLeader
        # A follower whose link to its leader is down (the leader's process died: the connection was reset)
        # hears from no leader, whatever its timer says; holding the lease then would only slow failover.
        reachable = leader is not None and leader in self._SyncObj__connectedNodes
        lease = in_lease(check_quorum=self._election.check_quorum, is_leader=state == _LEADER,
                         has_leader=reachable, since_leader_contact_s=now - self._leader_contact_at,
                         lease_s=self._election.lease_s)
        return Voter(term=self._SyncObj__raftCurrentTerm, last_log_index=self._SyncObj__getCurrentLogIndex(),
                     last_log_term=self._SyncObj__getCurrentLogTerm(), voted_for=self._SyncObj__votedForNodeId,
                     has_leader=leader is not None, in_lease=lease)

    @staticmethod
    def _request(node: Any, message: dict[str, Any]) -> VoteRequest:
        return VoteRequest(candidate=node.id, term=int(message["term"]),
                           last_log_index=int(message["last_log_index"]), last_log_term=int(message["last_log_term"]))

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 (pysyncobj's name)
        kind = message.get("type") if isinstance(message, dict) else None
        handler = self._HANDLERS.get(kind)
        if handler is not None:
            if self._SyncObj__selfNode is not None:
                handler(self, node, message, pysyncobj_core.monotonicTime())
            return
        if kind == "request_vote" and self._SyncObj__selfNode is not None:
            now = pysyncobj_core.monotonicTime()
            req = self._request(node, message)
            transfer = self._transfer_terms.pop(node, None) == req.term
            if not vote_allowed(req, self._voter(now), transfer=transfer):
                self.election_stats.votes_ignored_in_lease += 1
                return
        elif kind == "append_entries":
            term = message.get("term", -1)
            if term < self._SyncObj__raftCurrentTerm:
                if self._election.pre_vote or self._election.check_quorum:
                    # pysyncobj ignores it silently: answer with our term so that leader learns it.
                    self.election_stats.higher_term_answers_sent += 1
                    self._SyncObj__transport.send(node, {"type": HIGHER_TERM,
                                                         "term": self._SyncObj__raftCurrentTerm})
            else:
                now = pysyncobj_core.monotonicTime()
                if self._contact_from == (node, term):
                    gap = now - self._leader_contact_at
                    _count_gap(self.election_stats.leader_contact_gaps, gap)
                    self.election_stats.leader_contact_gap_max_s = max(self.election_stats.leader_contact_gap_max_s,
                                                                       gap)
                self._contact_from = (node, term)
                self._leader_contact_at = now
                self._deferred_check = False
                self._pre_vote_term = None
                self._pre_vote_won_term = None
        super()._SyncObj__onMessageReceived(node, message)

    def _on_pre_vote(self, node: Any, message: dict[str, Any], now: float) -> None:
        req = self._request(node, message)
        decision = pre_vote_decision(req, self._voter(now))
        if decision is Decision.IGNORE:
            self.election_stats.votes_ignored_in_lease += 1
            return
        self._SyncObj__transport.send(node, {"type": PRE_VOTE_RESPONSE, "term": req.term,
                                             "granted": decision is Decision.GRANT,
                                             "voter_term": self._SyncObj__raftCurrentTerm})

    def _on_pre_vote_response(self, node: Any, message: dict[str, Any], now: float) -> None:
        if self._SyncObj__raftState == _LEADER:
            return
        if message["granted"]:
            if self._pre_vote_term is not None and message["term"] == self._pre_vote_term:
                self._pre_vote_grants.add(node)
                self._tally_pre_votes()
            return
        # Rejected by a voter whose term is above ours: adopt it (etcd does), so the next round can win.
        if message["voter_term"] > self._SyncObj__raftCurrentTerm:
            self._become_follower(int(message["voter_term"]), now)

    def _on_higher_term(self, node: Any, message: dict[str, Any], now: float) -> None:
        """A peer ignored our append because its term is higher: step down to that term."""
        term = int(message["term"])
        if term > self._SyncObj__raftCurrentTerm:
            log.warning("peer %s has term %d above ours (%d): stepping down", node.id, term,
                        self._SyncObj__raftCurrentTerm)
            self.election_stats.stepped_down_for_higher_term += 1
            self._become_follower(term, now)

    def _on_transfer_election(self, node: Any, message: dict[str, Any], now: float) -> None:
        self._transfer_terms[node] = int(message["term"])

    def _on_leader_stepped_down(self, node: Any, message: dict[str, Any], now: float) -> None:
        """Our leader lost its quorum and stepped down: follow nobody (and hold no lease) from now."""
        if self._SyncObj__raftLeader == node and int(message["term"]) == self._SyncObj__raftCurrentTerm:
            self._SyncObj__raftLeader = None

    _HANDLERS: dict[str | None, Any] = {PRE_VOTE: _on_pre_vote, PRE_VOTE_RESPONSE: _on_pre_vote_response,
                                        HIGHER_TERM: _on_higher_term, TRANSFER_ELECTION: _on_transfer_election,
                                        LEADER_STEPPED_DOWN: _on_leader_stepped_down}
