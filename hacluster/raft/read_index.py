"""Linearizable reads without a log entry: Raft's ReadIndex (Raft thesis §6.4), as etcd serves its default
(`ReadOnlySafe`) reads.

A read asks the leader for its commit index. The leader answers only
- once it has committed an entry of its own term (its no-op at election: before that its commit index may be
  behind entries an earlier leader committed), and
- after a majority of the cluster, itself included, acknowledged a probe it sent *after* the read arrived.
  A master acknowledges only a probe of the term it is in, as a follower; so at the moment each
  acknowledgement was sent that master had granted no vote in a later term, and no later leader can have
  committed anything the read would miss.
The reader then waits until its own master has applied that index and reads its local state. A follower
forwards the request to its leader (one round trip) and waits for its own apply. Nothing is appended to the
log or fsynced, which is what a barrier through the log (the `log` mode of `raft.linearizable_reads`)
costs: a whole write round with two fsyncs per read round.

Requests that arrive while a probe round is out go into the next round (one per tick at most); the API
server coalesces its readers on top (`hacluster.asyncwait.CoalescedBarrier`). A round is never answered with
an index its leader did not confirm: leadership lost, a term change, a forwarded request whose leader
changed, or no majority within `timeout_s` fail the request, and the caller retries or answers 503/504.

`ReadIndexMixin` is mixed into `hacluster.raft.replicated_store._RaftStateMachine` ahead of
`hacluster.raft.election.ElectionMixin`; it runs on pysyncobj's tick thread (`flush_reads` is a per-tick
callback, the handlers run inside pysyncobj's poll) except `request_read_index`, callable from any thread.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from pysyncobj import syncobj as pysyncobj_core

if TYPE_CHECKING:  # pysyncobj is untyped: give the mixin its attributes as Any
    from pysyncobj import SyncObj as _SyncObjBase
else:
    _SyncObjBase = object

_FOLLOWER, _LEADER = 0, 2

# Message types this module adds to pysyncobj's protocol (pickled dicts, like pysyncobj's own).
READ_PROBE = "read_probe"  # leader -> follower: {term, round}
READ_ACK = "read_ack"  # follower -> leader: {term, round}
READ_INDEX_REQUEST = "read_index_request"  # follower -> leader: {term, id}
READ_INDEX_RESPONSE = "read_index_response"  # leader -> follower: {id, index | None, error | None}

ReadCallback = Callable[[Union[int, None], Union[str, None]], None]
"""Called on the tick thread with (index, None) once this master applied the read index, or (None, why)."""
_Waiter = Union[ReadCallback, tuple[Any, int]]  # a local callback, or (follower node, its request id)


@dataclass
class _Round:
    """One probe round of the leader: the read index it confirms and who asked for it."""

    id: int
    term: int
    index: int
    started_at: float
    waiters: list[_Waiter]
    acks: set[Any] = field(default_factory=set)


@dataclass
class _Forwarded:
    """Requests a follower sent to its leader, waiting for the answer."""

    leader: Any
    term: int
    started_at: float
    waiters: list[_Waiter]


class ReadIndexMixin(_SyncObjBase):  # type: ignore[misc]
    """ReadIndex for a pysyncobj `SyncObj` subclass: call `_init_read_index` before `SyncObj.__init__`, register
    `flush_reads` as a tick callback, and list the mixin before `ElectionMixin` and `SyncObj`."""

    def _init_read_index(self, timeout_s: float) -> None:
        self._read_timeout_s = timeout_s
        # Appended by any thread, drained by the tick thread (deque append/popleft are atomic).
        self._read_requests: deque[tuple[float, _Waiter]] = deque()
        self._read_rounds: list[_Round] = []
        self._read_round_ids = itertools.count(1)
        self._read_forwarded: dict[int, _Forwarded] = {}
        self._read_forward_ids = itertools.count(1)
        self._read_applied_waiters: list[tuple[int, int, ReadCallback]] = []  # heap by index
        self._read_waiter_seq = itertools.count()
        self._read_term_ready = -1  # the term in which this leader has committed an entry
        self.read_index_stats = {"rounds": 0, "forwarded": 0, "failed": 0}

    # ------------------------------------------------------------------------------- any thread
    def request_read_index(self, callback: ReadCallback) -> None:
        """Ask for a read index; `callback` runs on the tick thread once this master applied it (or failed)."""
        self._read_requests.append((pysyncobj_core.monotonicTime(), callback))
        self.wake()

    # ------------------------------------------------------------------------------- tick thread
    def flush_reads(self) -> None:
        """Per-tick callback: end rounds that can no longer be confirmed, start a round (leader) or forward
        (follower) for the requests queued since the last tick, and answer readers whose index is applied."""
        now = pysyncobj_core.monotonicTime()
        state = self._SyncObj__raftState
        term = self._SyncObj__raftCurrentTerm
        if self._read_rounds:
            if state != _LEADER:
                self._fail_rounds(self._read_rounds, "this master is no longer the leader")
            else:
                expired = [r for r in self._read_rounds if r.term != term or now - r.started_at > self._read_timeout_s]
                if expired:
                    self._fail_rounds(expired, "no majority acknowledged the read in time")
        if self._read_forwarded:
            leader = self._SyncObj__raftLeader
            for rid, fwd in list(self._read_forwarded.items()):
                if fwd.leader != leader or fwd.term != term or now - fwd.started_at > self._read_timeout_s:
                    del self._read_forwarded[rid]
                    self._answer_all(fwd.waiters, None, "the leader changed or did not answer the read")
        if self._read_requests:
            self._start_reads(now, state, term)
        self._release_applied()

    def _start_reads(self, now: float, state: int, term: int) -> None:
        if state == _LEADER and not self._committed_in_term(term):
            # The no-op of this term is not committed yet: keep the requests (in order) for a later tick,
            # failing those that waited too long.
            # The deque is rotated in place: other threads append to it meanwhile.
            for _ in range(len(self._read_requests)):
                queued = self._read_requests.popleft()
                if now - queued[0] > self._read_timeout_s:
                    self._answer(queued[1], None, "the new leader has not committed an entry of its term yet")
                else:
                    self._read_requests.append(queued)
            return
        waiters: list[_Waiter] = []
        while self._read_requests:
            waiters.append(self._read_requests.popleft()[1])
        if state == _LEADER:
            index = self._SyncObj__raftCommitIndex
            rnd = _Round(next(self._read_round_ids), term, index, now, waiters)
            self.read_index_stats["rounds"] += 1
            self._read_rounds.append(rnd)
            for node in self._SyncObj__otherNodes:
                self._SyncObj__transport.send(node, {"type": READ_PROBE, "term": term, "round": rnd.id})
            self._confirm_rounds()  # a cluster of one confirms at once
            return
        leader = self._SyncObj__raftLeader
        if state == _FOLLOWER and leader is not None and leader in self._SyncObj__connectedNodes:
            rid = next(self._read_forward_ids)
            self._read_forwarded[rid] = _Forwarded(leader, term, now, waiters)
            self.read_index_stats["forwarded"] += 1
            self._SyncObj__transport.send(leader, {"type": READ_INDEX_REQUEST, "term": term, "id": rid})
            return
        self._answer_all(waiters, None, "no leader to confirm the read")

    def _committed_in_term(self, term: int) -> bool:
        if self._read_term_ready == term:
            return True
        entries = self._SyncObj__getEntries(self._SyncObj__raftCommitIndex, 1)
        if entries and entries[0][2] == term:
            self._read_term_ready = term
            return True
        return False

    def _confirm_rounds(self) -> None:
        """Answer every round a majority (the leader included) acknowledged; rounds are in order, and a later
        round's acknowledgements count for the earlier ones (its probes were sent after theirs)."""
        cluster = len(self._SyncObj__otherNodes) + 1
        done = 0
        for i, rnd in enumerate(self._read_rounds):
            if (len(rnd.acks) + 1) * 2 > cluster:
                done = i + 1
        if done:
            confirmed, self._read_rounds = self._read_rounds[:done], self._read_rounds[done:]
            for rnd in confirmed:
                self._answer_all(rnd.waiters, rnd.index, None)

    def _fail_rounds(self, rounds: list[_Round], why: str) -> None:
        gone = {id(r) for r in rounds}
        self._read_rounds = [r for r in self._read_rounds if id(r) not in gone]
        for rnd in rounds:
            self._answer_all(rnd.waiters, None, why)

    def _answer_all(self, waiters: list[_Waiter], index: int | None, error: str | None) -> None:
        for w in waiters:
            self._answer(w, index, error)

    def _answer(self, waiter: _Waiter, index: int | None, error: str | None) -> None:
        if error is not None:
            self.read_index_stats["failed"] += 1
        if isinstance(waiter, tuple):  # a follower's request: it waits for its own apply
            node, rid = waiter
            self._SyncObj__transport.send(node, {"type": READ_INDEX_RESPONSE, "id": rid, "index": index,
                                                 "error": error})
            return
        if error is not None or index is None:
            waiter(None, error or "no read index")
        elif self._SyncObj__raftLastApplied >= index:
            waiter(index, None)
        else:
            heapq.heappush(self._read_applied_waiters, (index, next(self._read_waiter_seq), waiter))

    def _release_applied(self) -> None:
        heap = self._read_applied_waiters
        applied = self._SyncObj__raftLastApplied
        while heap and heap[0][0] <= applied:
            index, _, waiter = heapq.heappop(heap)
            waiter(index, None)

    # ------------------------------------------------------------------------------- messages
    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 (pysyncobj's name)
        kind = message.get("type") if isinstance(message, dict) else None
        handler = self._READ_HANDLERS.get(kind)
        if handler is None:
            super()._SyncObj__onMessageReceived(node, message)  # ElectionMixin, then pysyncobj
        elif self._SyncObj__selfNode is not None:
            handler(self, node, message)

    def _on_read_probe(self, node: Any, message: dict[str, Any]) -> None:
        # Only a follower of exactly this term acknowledges: it has voted in no later term.
        if self._SyncObj__raftState == _FOLLOWER and message["term"] == self._SyncObj__raftCurrentTerm:
            self._SyncObj__transport.send(node, {"type": READ_ACK, "term": message["term"],
                                                 "round": message["round"]})

    def _on_read_ack(self, node: Any, message: dict[str, Any]) -> None:
        if self._SyncObj__raftState != _LEADER or message["term"] != self._SyncObj__raftCurrentTerm:
            return
        last = message["round"]
        for rnd in self._read_rounds:
            if rnd.id > last:
                break
            rnd.acks.add(node)
        self._confirm_rounds()

    def _on_read_index_request(self, node: Any, message: dict[str, Any]) -> None:
        if self._SyncObj__raftState != _LEADER or message["term"] != self._SyncObj__raftCurrentTerm:
            self._SyncObj__transport.send(node, {"type": READ_INDEX_RESPONSE, "id": message["id"], "index": None,
                                                 "error": "the master asked is not the leader of that term"})
            return
        self._read_requests.append((pysyncobj_core.monotonicTime(), (node, message["id"])))

    def _on_read_index_response(self, node: Any, message: dict[str, Any]) -> None:
        fwd = self._read_forwarded.get(message["id"])
        if fwd is None or fwd.leader != node:
            return  # answered late, after it was failed on this side
        del self._read_forwarded[message["id"]]
        self._answer_all(fwd.waiters, message["index"], message["error"])

    _READ_HANDLERS: dict[str | None, Any] = {READ_PROBE: _on_read_probe, READ_ACK: _on_read_ack,
                                             READ_INDEX_REQUEST: _on_read_index_request,
                                             READ_INDEX_RESPONSE: _on_read_index_response}
