"""The store replicated with pysyncobj's Raft — with `hacluster.raft.election` (PreVote, leader stickiness,
CheckQuorum, mixed into the pysyncobj subclass here) and `hacluster.raft.peer_wire` (how peer messages are
framed and authenticated), the only modules of hacluster that reach into pysyncobj (the journal implements
its `Journal` interface).

Created once per master process by `hacluster.cluster.master` (through `hacluster.cluster.engines`).
pysyncobj runs its own tick thread; this module bridges it to asyncio:
- `propose()` encodes a command to bytes, hands it to pysyncobj with a callback, and awaits the callback
  through `loop.call_soon_threadsafe`, with its own deadline (pysyncobj has none for async calls).
  Before proposing it checks this master's view of the cluster: with no leader, or (on the leader) no
  recent answer from a majority, it refuses at once with `Unavailable` — nothing was proposed.
  Failed attempts are retried with the same request id until the deadline — the state machine
  deduplicates. The write ends in `Timeout` (outcome unknown) only if some attempt may have reached a log
  (LEADER_CHANGED, UNKNOWN_OUTCOME, or no answer); attempts that provably appended nothing (QUEUE_FULL,
  MISSING_LEADER, NOT_LEADER) or can never commit (DISCARDED) end in `Unavailable`: it did not happen.
- the replicated method is a one-liner that hands the bytes to the pure state machine and never raises.
- a per-tick callback publishes an immutable `RaftView` (role, term, leader, quorum contact) so the event
  loop never reads pysyncobj's internals while the tick thread mutates them.
- snapshots (log compaction) are written with our own serializer as msgpack, not pickle, by a forked child
  that closes inherited descriptors, dies with the master, and is killed and reaped by `stop()`.
- the journal is ours (`hacluster.raft.journal`, checksummed and fsynced; see `install_journal_hook`), and
  the subclass syncs it wherever Raft needs an entry on stable storage: before a follower acknowledges an
  AppendEntries, and before the leader counts itself toward the commit index.

One file, longer than most: it is the only place that reaches into pysyncobj's private methods and
fields (pinned by tests/unit/test_pysyncobj_internals.py); keeping them together keeps that surface small.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import msgspec
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj import syncobj as pysyncobj_core
from pysyncobj.node import TCPNode
from pysyncobj.pipe_notifier import PipeNotifier

from hacluster.asyncwait import CoalescedBarrier, wait_event
from hacluster.config import ClusterConfig
from hacluster.ids import new_request_id
from hacluster.model import commands as cmds
from hacluster.model.errors import BadRequest, ErrorInfo, Timeout, Unavailable
from hacluster.raft.election import ElectionMixin, ElectionSettings
from hacluster.raft.journal import FAIL_STOP_EXIT_CODE, DurableJournal, JournalCorrupt, fail_stop
from hacluster.raft.peer_wire import PeerAuthenticator, install_peer_wire_hook
from hacluster.raft.read_index import ReadIndexMixin
from hacluster.raft.storage import Storage, write_file_atomically
from hacluster.store.api import PeerView, RaftView
from hacluster.store.state import Result, StoreLimits, StoreState

log = logging.getLogger(__name__)
T = TypeVar("T")

_ROLE = {0: "follower", 1: "candidate", 2: "leader"}
# Outcomes after which this attempt's command may be in some master's log (and may yet commit): a forwarded
# command whose leader changed before it answered, or a forwarded answer that came too late to track.
_MAYBE_IN_LOG = {FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME}
# Outcomes after which this attempt's command is in no log, or can never commit: pysyncobj's queue was full,
# there was no leader to forward to, or the master it was forwarded to no longer leads (each raised before
# anything is appended); DISCARDED: another entry committed at the index it was appended at.
_NOT_IN_LOG = {FAIL_REASON.QUEUE_FULL, FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED}
# Both are retried with the same request id until the deadline (the state machine deduplicates).
_RETRYABLE = _MAYBE_IN_LOG | _NOT_IN_LOG
_RAFT_POSITIONS_MAX = 50_000  # revisions whose Raft entry the audit log can still name
APPEND_BATCH_ENTRIES = 4096  # and at most this many entries
STATS_COPY_PERIOD_S = 0.1  # the published view's election counters are at most this old
CHECK_QUORUM_BACKSTOP = 3  # pysyncobj's own leader step-down after this many leader_fallback_ms (see start)


RAFT_THREAD_NAME = "hacluster-raft"
"""The OS name of pysyncobj's tick thread (in `top -H`, py-spy, /proc/PID/task/TID/comm; 15 bytes at most):
`hacluster bench api` reads each master's CPU per thread by it."""


def name_os_thread(name: str) -> None:
    """Give the calling thread an OS-visible name (Linux prctl PR_SET_NAME; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass


_PYSYNCOBJ_CREATE_JOURNAL = pysyncobj_core.createJournal


def _create_journal(journal_file: Any = None) -> Any:
    """pysyncobj 0.3.17 builds its journal inside `SyncObj.__init__` with `createJournal(conf.journalFile)`,
    and its tick thread starts before `__init__` returns — so the journal must be the right one from the
    start. This wrapper lets `conf.journalFile` be a ready journal object, used as is; a path or None goes
    to pysyncobj's own factory. Pinned with pysyncobj (pyproject.toml); tests/unit/test_journal.py checks
    that the hook is in place."""
    if isinstance(journal_file, DurableJournal):
        return journal_file
    return _PYSYNCOBJ_CREATE_JOURNAL(journal_file)


def install_journal_hook() -> None:
    """Make pysyncobj accept a journal object as `journalFile` (idempotent)."""
    pysyncobj_core.createJournal = _create_journal


install_journal_hook()
install_peer_wire_hook()


class DialNode(TCPNode):  # type: ignore[misc]
    """A peer whose identity is its real Raft address but which is dialled at another address (a proxy)."""

    def __init__(self, address: str, dial_address: str | None = None) -> None:
        super().__init__(address)
        host, port = (dial_address or address).rsplit(":", 1)
        self._dial_host = host
        self._dial_port = int(port)

    @property
    def ip(self) -> str:
        return self._dial_host

    @property
    def port(self) -> int:  # used only to dial; identity stays `address`
        return self._dial_port


class _RaftStateMachine(ReadIndexMixin, ElectionMixin, SyncObj):  # type: ignore[misc]
    """pysyncobj's SyncObj holding our pure state machine.

    Appends are sent eagerly but batched: pysyncobj either sends one AppendEntries per command (batching
    off: one pickle and MAC per command and follower, see `hacluster.raft.peer_wire`) or
    waits for the next heartbeat (batching on: a heartbeat period added to every write). We run with
    batching on and, at the end of every tick, send whatever the tick appended — all commands that arrived
    since the last tick go out in one message per follower — and push a new commit index to followers at
    once (they answer the writes forwarded to them when they apply). A pipe wakes the tick thread when a
    command is queued, so an idle master does not wait for its next tick either.
    """

    def __init__(self, self_addr: str, peers: list[TCPNode], conf: SyncObjConf,
                 apply_payload: Callable[[bytes], Result], *, journal: DurableJournal | None = None,
                 election: ElectionSettings | None = None, peer_secret: str | None = None,
                 append_batch_bytes: int = 256 * 1024, read_index_timeout_s: float = 1.0) -> None:
        self._init_election(election or ElectionSettings())
        self._init_read_index(read_index_timeout_s)
        self._append_batch_bytes = append_batch_bytes
        # Set before pysyncobj's __init__, which builds the transport: see `encryptor` below.
        self._peer_auth = PeerAuthenticator(peer_secret) if peer_secret else None
        self._apply_command_id: int | None = None  # pysyncobj's id of apply_command (see propose_payload)
        self._apply_payload = apply_payload
        self._journal = journal
        self._wake_pipe: PipeNotifier | None = None
        self._wake_pending = False
        self._sent_last_index = -1
        self._sent_commit_index = -1
        super().__init__(self_addr, peers, conf)

    def wake(self) -> None:
        """Wake the tick thread to take queued commands now (callable from any thread)."""
        pipe = self._wake_pipe
        if pipe is not None and not self._wake_pending:
            self._wake_pending = True
            try:
                pipe.notify()
            except BlockingIOError:  # the pipe is full: the tick thread is awake anyway
                pass

    def _on_wake(self) -> None:
        self._wake_pending = False

    def flush_appends(self) -> None:
        """Per-tick callback (tick thread): send what this tick appended or committed."""
        if self._wake_pipe is None:
            # Subscribed from the tick thread: pysyncobj's poller is not thread-safe.
            self._wake_pipe = PipeNotifier(self._poller, callback=self._on_wake)
            name_os_thread(RAFT_THREAD_NAME)
        if self._SyncObj__raftState != 2:
            return
        last = self._SyncObj__getCurrentLogIndex()
        commit = self._SyncObj__raftCommitIndex
        if last != self._sent_last_index or commit != self._sent_commit_index:
            self._sent_last_index, self._sent_commit_index = last, commit
            self._SyncObj__sendAppendEntries()
        if self._journal is not None:
            # The local fsync overlaps the followers' round trip; the next tick's commit count needs it.
            self._journal.sync()

    def _SyncObj__applyLogEntries(self) -> bool:
        """A leader whose commit index moved tells the followers before applying the entries itself: they
        apply (and answer the writes forwarded to them) while the leader applies, instead of after it —
        pysyncobj would send the new commit index only at the end of the tick (`flush_appends`) or with the
        next heartbeat. Only the commit index and entries the followers already have or are sent anyway go
        out earlier; nothing about what the leader counts as committed changes."""
        if self._SyncObj__raftState == 2:
            commit = self._SyncObj__raftCommitIndex
            if commit > self.raftLastApplied and commit != self._sent_commit_index:
                self._sent_last_index = self._SyncObj__getCurrentLogIndex()
                self._sent_commit_index = commit
                self._SyncObj__sendAppendEntries()
        applied: bool = SyncObj._SyncObj__applyLogEntries(self)
        return applied

    def _onTick(self, timeToWait: float = 0.0) -> None:
        """pysyncobj's leader counts itself (count = 1) toward the commit index for every entry in its log.
        Entries reach the log in `_checkCommandsToApply` (end of a tick), in the follower append path (while
        messages are polled at the end of a tick), when a snapshot is installed, and in the no-op of
        `__onBecomeLeader` (synced there, as it may run inside a tick). Syncing at the start of every tick,
        before the commit index is computed, makes every entry the leader can count durable (a no-op when nothing is
        pending: `flush_appends` usually synced already)."""
        if self._journal is not None:
            self._journal.sync()
        super()._onTick(timeToWait)  # ElectionMixin (PreVote, CheckQuorum), then pysyncobj

    def _SyncObj__onBecomeLeader(self) -> None:
        """The new leader's no-op is appended and sent here — inside a tick when a single master elects
        itself, just before that tick counts it toward the commit index: sync it first."""
        SyncObj._SyncObj__onBecomeLeader(self)
        if self._journal is not None:
            self._journal.sync()

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """A snapshot received from the leader (`clearJournal`) replaces the log: make its file durable
        before the log is cleared and the snapshot acknowledged. Our own snapshot, loaded at start, is
        first aligned with the journal, so that pysyncobj keeps the entries after it."""
        dump = self._SyncObj__conf.fullDumpFile
        journal = self._journal
        if clearJournal and journal is not None and dump is not None and os.path.isfile(dump):
            try:
                journal.storage.sync_file(Path(dump))
            except OSError as exc:
                journal._fatal(exc, dump)
        if journal is not None:
            # Loading our own snapshot at start (not one the leader sent): the deserializer aligns the
            # journal with it (see `RaftStore._read_snapshot`).
            journal.aligning_to_snapshot = not clearJournal
        try:
            SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        finally:
            if journal is not None:
                journal.aligning_to_snapshot = False

    @property
    def encryptor(self) -> PeerAuthenticator | None:
        """What pysyncobj's transport puts on every peer connection: our MAC framing
        (`hacluster.raft.peer_wire`) instead of the Fernet pysyncobj builds from `conf.password` (which
        `RaftStore.start` leaves unset)."""
        return self._peer_auth

    def _getEncryptor(self) -> PeerAuthenticator | None:  # noqa: N802 (pysyncobj's name)
        return self._peer_auth

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, payload: bytes) -> Result:
        return self._apply_payload(payload)

    def propose_payload(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        """`apply_command(payload, callback=callback)` as pysyncobj's `@replicated` wrapper does it — the
        call `(method id, (payload,))` pickled into pysyncobj's command queue — but pickled with the highest
        protocol: the wrapper's protocol 2 turns the command's bytes into a latin-1 string (a copy, and two
        bytes for every byte >= 0x80 in the log) and every master's apply back. pysyncobj's apply unpickles
        either. Callable from any thread, as the wrapper is."""
        method_id = self._apply_command_id
        if method_id is None:
            method_id = self._apply_command_id = self._methodToID[self._getFuncName("apply_command")]
        call = pickle.dumps((method_id, (payload,)), protocol=pickle.HIGHEST_PROTOCOL)
        self._applyCommand(call, callback, pysyncobj_core._COMMAND_TYPE.REGULAR)

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """Keep the leader's nextIndex from moving backwards. pysyncobj advances nextIndex when it sends
        entries, but on each successful acknowledgement sets it to the acknowledged index + 1 — which, with
        several AppendEntries in flight, is below what was already sent. The next send then repeats entries
        the follower has applied, and the follower truncates and re-appends them ("truncating
        already-applied log entries"). Acknowledgements arrive in order on one connection, so a success
        never needs to lower nextIndex; a rejection (reset) still does, to repair a diverged follower."""
        guard = (isinstance(message, dict) and message.get("type") == "next_node_idx"
                 and message.get("success") and not message.get("reset") and self._SyncObj__raftState == 2)
        before = self._SyncObj__raftNextIndex.get(node) if guard else None
        if (isinstance(message, dict) and message.get("type") == "append_entries" and "prevLogIdx" in message
                and "transmission" not in message and message.get("term", -1) >= self._SyncObj__raftCurrentTerm):
            message = self._skip_matching_entries(message)
        super()._SyncObj__onMessageReceived(node, message)  # ElectionMixin, then pysyncobj
        if before is not None and self._SyncObj__raftNextIndex.get(node, before) < before:
            self._SyncObj__raftNextIndex[node] = before

    def _SyncObj__getEntries(self, fromIDx: int | None, count: int | None = None,
                             maxSizeBytes: int | None = None) -> list[Any]:
        """Batch at most `raft.append_batch_bytes` per AppendEntries. The configured batch size is set far above
        any entry so pysyncobj never chunks one (see `start`); but it is also the size of the batches it
        sends a lagging follower, and pickling, compressing and encrypting megabytes at once holds the Raft
        thread long enough to miss heartbeats and trigger elections."""
        if maxSizeBytes is not None:
            maxSizeBytes = min(maxSizeBytes, self._append_batch_bytes)
            if count is None:  # pysyncobj would read the journal to its end first, then cut the batch
                count = APPEND_BATCH_ENTRIES
        entries: list[Any] = SyncObj._SyncObj__getEntries(self, fromIDx, count, maxSizeBytes)
        return entries

    def _entry_term(self, index: int) -> int | None:
        entries = self._SyncObj__getEntries(index, 1)
        return entries[0][2] if entries else None

    def _skip_matching_entries(self, message: dict[str, Any]) -> dict[str, Any]:
        """Raft's AppendEntries rule 3 — delete a follower's entries only from the first that conflicts —
        on top of pysyncobj, which deletes everything after prevLogIdx. A retransmitted or reordered append
        would otherwise drop entries this follower has acknowledged (and applied). The leading entries this
        log already holds (same index and term) are taken out of the message, so pysyncobj truncates only
        where something new or conflicting begins. When nothing is new and this log ends with entries of the
        sender's term — which only that leader can have written, so they are in its log too — the message is
        answered as a heartbeat at this log's end."""
        prev = message["prevLogIdx"]
        if self._entry_term(prev) != message["prevLogTerm"]:
            return message  # inconsistent: pysyncobj rejects it and the leader backs up
        entries = message.get("entries") or []
        matched = 0
        for entry in entries:
            if self._entry_term(entry[1]) != entry[2]:
                break
            matched += 1
        if matched == 0 and entries:
            return message
        trimmed = dict(message)
        if matched < len(entries):
            last = entries[matched - 1]
            trimmed.update(prevLogIdx=last[1], prevLogTerm=last[2], entries=entries[matched:])
            return trimmed
        covered_idx = entries[-1][1] if entries else prev
        covered_term = entries[-1][2] if entries else message["prevLogTerm"]
        last_idx, last_term = self._SyncObj__getCurrentLogIndex(), self._SyncObj__getCurrentLogTerm()
        if last_idx > covered_idx and last_term == message["term"]:
            covered_idx, covered_term = last_idx, last_term
        trimmed.update(prevLogIdx=covered_idx, prevLogTerm=covered_term, entries=[])
        return trimmed

    def _SyncObj__sendNextNodeIdx(self, node: Any, reset: bool = False, nextNodeIdx: int | None = None,
                                  success: bool = False) -> None:
        """Faster log repair. On a term mismatch at prevLogIdx, pysyncobj answers "try prevLogIdx", so a
        leader walks a diverged follower back one entry per heartbeat — an old leader that appended a few
        hundred entries while partitioned then needs seconds to minutes to catch up, and can stall the
        cluster meanwhile. Every entry up to this follower's commit index is in every later leader's log
        (Raft's leader completeness), so asking the leader to resume right after it is safe and takes one
        round trip. A success is sent only once the entries it acknowledges are on stable storage."""
        if reset and not success and nextNodeIdx is not None:
            nextNodeIdx = max(1, min(nextNodeIdx, self._SyncObj__raftCommitIndex + 1))
        if success and self._journal is not None:
            self._journal.sync()  # one fsync covers the whole batch this acknowledgement confirms
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)


class RaftStore:
    """A `ReplicatedStore` backed by one pysyncobj node on this master."""

    def __init__(self, cfg: ClusterConfig, master_id: str, *, data_dir: str | Path | None,
                 dial_addresses: dict[str, str] | None = None,
                 on_proposal_outcome: Callable[[str], None] | None = None,
                 storage_mode: str = "disk", on_fsync: Callable[[float], None] | None = None,
                 on_journal_fatal: Callable[[OSError, str], NoReturn] | None = None) -> None:
        self.cfg = cfg
        self.id = master_id
        me = cfg.master(master_id)
        self.address = me.raft_address
        self._id_by_address = {m.raft_address: m.id for m in cfg.masters}
        # Only the watch history's length is this master's own choice; the limits that change what `apply`
        # does (dedup_max, events_max) are the state machine's constants, the same on every master.
        self._limits = StoreLimits(watch_history_max=cfg.store.watch_history_max)
        self._state = StoreState(self._limits)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._change_event: asyncio.Event | None = None
        self._notify_pending = False
        self._view: RaftView = RaftView(master_id, "follower", 0, None, 0, 0, False)
        self._view_listeners: list[Callable[[RaftView], None]] = []
        self._view_changed: asyncio.Event | None = None
        self._last_role_key: tuple[str, int, str | None] = ("", -1, None)
        self._elections_copy: dict[str, Any] | None = None
        # payload -> the command decoded from it, for proposals of this master in flight (see `propose`);
        # written by the event loop, taken by the tick thread (single dict operations: atomic under the GIL)
        self._decoded_here: dict[bytes, cmds.AnyCommand] = {}
        self._elections_copied_at = float("-inf")
        self._applied_count = 0
        read_round = self._read_index_round if cfg.raft.linearizable_reads == "read-index" else self._propose_barrier
        self._barrier = CoalescedBarrier(read_round, self._barrier_cancelled)
        self.proposal_stats: dict[str, int] = {}
        self._on_outcome = on_proposal_outcome
        self._data_dir = Path(data_dir) if data_dir else None
        self._dial = dial_addresses or {}
        self._sync: _RaftStateMachine | None = None
        self._snapshot_child: int | None = None
        self._snapshot_pending: tuple[Path, Path] | None = None  # (written by the child, published name)
        self.storage = Storage(storage_mode, fsync=cfg.raft.fsync)
        self._on_fsync = on_fsync
        self._on_journal_fatal = on_journal_fatal
        self.journal: DurableJournal | None = None
        # store revision -> (Raft log index, term) of the entry that produced it, for the audit log; bounded
        self._raft_positions: OrderedDict[int, tuple[int, int]] = OrderedDict()

    # ------------------------------------------------------------------------------- lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the Raft node (binds the Raft port, begins ticking). Call from the event loop's thread."""
        self._loop = loop
        self._change_event = asyncio.Event()
        self._view_changed = asyncio.Event()
        r = self.cfg.raft
        journal: DurableJournal | None = None
        dump = None
        if self._data_dir is not None:
            self._data_dir.mkdir(parents=True, exist_ok=True)
            _remove_unpublished_snapshots(self._data_dir)
            journal = DurableJournal(self._data_dir, self.storage, on_fatal=self._journal_failed,
                                     on_fsync=self._on_fsync,  # raises JournalCorrupt: refuse to start
                                     segment_max_bytes=r.journal_segment_max_bytes)
            self.journal = journal
            dump = str(self._data_dir / SNAPSHOT_FILE)
        conf = SyncObjConf(
            password=None,  # peers authenticate with `peer_secret` (hacluster.raft.peer_wire), not Fernet
            bindAddress=self.address,
            raftMinTimeout=r.election_timeout_ms_min / 1000,
            raftMaxTimeout=r.election_timeout_ms_max / 1000,
            appendEntriesPeriod=r.heartbeat_ms / 1000,
            autoTickPeriod=r.tick_ms / 1000,
            # With CheckQuorum, ElectionMixin steps a leader down after leader_fallback_ms (only when it has
            # read its sockets); pysyncobj's own unguarded check stays as a backstop for a stalled thread.
            leaderFallbackTimeout=r.leader_fallback_ms / 1000 * (CHECK_QUORUM_BACKSTOP if r.check_quorum else 1),
            connectionTimeout=r.connection_timeout_ms / 1000,
            connectionRetryTime=r.connection_retry_ms / 1000,
            appendEntriesUseBatch=True,  # batched per tick and sent at once: see _RaftStateMachine
            # pysyncobj splits a single entry of this size or more into chunks, and marks the last chunk by
            # the command's length instead of the pickled entry's: an entry whose two lengths straddle a
            # chunk boundary is never reassembled and replication stalls. Entries are bounded by the API's
            # body limit, so make the batch large enough that no entry is ever chunked.
            appendEntriesBatchSizeBytes=max(2**16, 4 * self.cfg.api.max_body_bytes),
            logCompactionMinEntries=r.log_compaction_min_entries,
            logCompactionMinTime=r.log_compaction_min_time_s,
            journalFile=journal,
            fullDumpFile=dump,
            serializer=self._write_snapshot if dump else None,
            deserializer=self._read_snapshot if dump else None,
            serializeChecker=self._snapshot_status if dump else None,
            commandsWaitLeader=False,
            dynamicMembershipChange=False,
        )
        peers: list[TCPNode] = []
        for m in self.cfg.masters:
            addr = m.raft_address
            if addr != self.address:
                peers.append(DialNode(addr, self._dial.get(addr)))
        self._sync = _RaftStateMachine(self.address, peers, conf, self._apply_payload, journal=journal,
                                       election=ElectionSettings.from_config(r), peer_secret=r.password or None,
                                       append_batch_bytes=r.append_batch_bytes,
                                       read_index_timeout_s=r.election_timeout_ms_max / 1000)
        self._sync.addOnTickCallback(self._sync.flush_appends)
        self._sync.addOnTickCallback(self._sync.flush_reads)
        self._sync.addOnTickCallback(self._on_tick)

    def stop(self) -> None:
        if self._sync is not None:
            self._sync.destroy()
            self._sync = None
        self._kill_snapshot_writer()

    def _kill_snapshot_writer(self) -> None:
        """Kill and reap a snapshot writer still running: it must not publish anything after we stopped."""
        pid = self._snapshot_child
        if pid is None:
            return
        self._snapshot_child = None
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def _journal_failed(self, exc: OSError, path: str) -> NoReturn:
        """The journal could not write or fsync: stop before anything unpersisted is acknowledged."""
        if self._on_journal_fatal is not None:
            self._on_journal_fatal(exc, path)
        pid = self._snapshot_child
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        fail_stop(exc, path)

    def journal_stats(self) -> dict[str, Any] | None:
        """What `/debug/raft` shows of the journal (None without a data directory)."""
        return self.journal.stats() if self.journal is not None else None

    # ------------------------------------------------------------------------- tick thread side
    def _apply_payload(self, payload: bytes) -> Result:
        """Runs on the tick thread for every committed entry, in log order. Never raises."""
        # A command proposed on this master was decoded once already (`propose`); taken once, so that a
        # duplicate of it in the log (a retried proposal) is decoded afresh.
        command = self._decoded_here.pop(payload, None)
        if command is None:
            try:
                command = cmds.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return Result(ok=False, error=ErrorInfo(reason="BadRequest", message=f"undecodable command: {exc}"))
        with self._lock:
            result = self._state.apply(command)
            self._applied_count += 1
        sync = self._sync
        if result.ok and result.revision and sync is not None:
            # pysyncobj applies entry raftLastApplied + 1 and counts it only after this returns; a write it
            # acknowledges was committed in the term it was proposed in, the current one
            self._raft_positions[result.revision] = (sync.raftLastApplied + 1, sync.raftCurrentTerm)
            if len(self._raft_positions) > _RAFT_POSITIONS_MAX:
                self._raft_positions.popitem(last=False)
        self._signal_change()
        return result

    def raft_position(self, revision: int) -> tuple[int, int] | None:
        """(log index, term) of the Raft entry that made store revision `revision`, while remembered."""
        return self._raft_positions.get(revision)

    def _signal_change(self) -> None:
        loop = self._loop
        if loop is None or self._notify_pending:
            return
        self._notify_pending = True
        try:
            loop.call_soon_threadsafe(self._wake_watchers)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _wake_watchers(self) -> None:
        self._notify_pending = False
        ev = self._change_event
        if ev is not None:
            self._change_event = asyncio.Event()
            ev.set()

    def _on_tick(self) -> None:
        """Publish an immutable RaftView (runs on the tick thread, where pysyncobj's fields are stable)."""
        s = self._sync
        if s is None:
            return
        now = pysyncobj_core.monotonicTime()  # pysyncobj's clock (CLOCK_MONOTONIC_RAW), which stamped the times
        role = _ROLE.get(s._SyncObj__raftState, "follower")
        leader_node = s._SyncObj__raftLeader
        leader = self._id_by_address.get(leader_node.address) if leader_node is not None else None
        connected = s._SyncObj__connectedNodes
        last_resp = s._SyncObj__lastResponseTime
        match = s._SyncObj__raftMatchIndex
        contact_s = self.cfg.raft.quorum_contact_ms / 1000
        peers = []
        fresh = 0
        for node in s._SyncObj__otherNodes:
            is_conn = node in connected
            age = None
            if role == "leader" and node in last_resp:
                age = now - last_resp[node]
                if is_conn and age <= contact_s:
                    fresh += 1
            peers.append(PeerView(self._id_by_address.get(node.address, node.address), node.address, is_conn,
                                  match.get(node) if role == "leader" else None, age))
        n = len(self.cfg.masters)
        if role == "leader":
            quorum = (fresh + 1) * 2 > n
        elif leader_node is not None and role == "follower":
            # A follower forwards while it still follows a connected leader; if the leader goes silent,
            # pysyncobj's own election timeout turns this node into a candidate (leader None).
            quorum = leader_node in connected
        else:
            quorum = False
        elections = self._elections_copy
        if elections is None or now - self._elections_copied_at >= STATS_COPY_PERIOD_S \
                or (role, leader) != self._last_role_key[::2]:
            # A copy of the counters for readers on other threads; ticks come once per wake under load, so
            # the copy is made at most every STATS_COPY_PERIOD_S (and at once when the role changes).
            elections = self._elections_copy = s.election_stats.as_dict()
            self._elections_copied_at = now
        view = RaftView(self.id, role, s.raftCurrentTerm, leader, s.raftCommitIndex, s.raftLastApplied, quorum,
                        tuple(sorted(peers, key=lambda p: p.id)), s._SyncObj__raftLog.__len__(), elections)
        self._view = view
        key = (role, view.term, leader)
        if key != self._last_role_key or quorum != getattr(self, "_last_quorum", None):
            self._last_role_key = key
            self._last_quorum = quorum
            loop = self._loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._announce_view, view)
                except RuntimeError:
                    pass

    def _announce_view(self, view: RaftView) -> None:
        ev = self._view_changed
        if ev is not None:
            self._view_changed = asyncio.Event()
            ev.set()
        for fn in list(self._view_listeners):
            try:
                fn(view)
            except Exception:
                log.exception("view listener failed")

    # ------------------------------------------------------------------------- snapshots (tick)
    def _write_snapshot(self, tmp_path: str, raft_data: tuple[Any, Any, Any]) -> None:
        """Log compaction without stopping Raft. pysyncobj calls this on the Raft thread and would wait
        while the whole store is encoded and written (seconds for a large store: heartbeats stop and the
        cluster holds elections). Instead a forked child — a copy-on-write image of the state exactly at
        the last applied entry — writes the snapshot and renames it into place; `_snapshot_status` tells
        pysyncobj when it is done, and only then does pysyncobj drop the compacted log entries. The Raft
        thread is the only writer of the state and it is the one forking here, so the image is consistent;
        the child touches no lock and nothing but the state and its file."""
        if self._snapshot_child is not None:
            return  # pysyncobj asks again only after _snapshot_status reported the end of the last one
        final_path = Path(tmp_path[: -len(".tmp")] if tmp_path.endswith(".tmp") else tmp_path)
        last, prev, cluster = raft_data
        raft = {"last": list(last), "prev": list(prev),
                "cluster": sorted(getattr(n, "address", str(n)) for n in cluster)}
        indexed = final_path.with_name(f"{final_path.name}.{int(last[1]):020d}")
        fsync = self.storage.fsync
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: encode, write, rename, leave without running any cleanup of the parent
            code = 1
            try:
                _become_snapshot_writer(parent)
                blob = msgspec.msgpack.encode({"state": self._state.snapshot(), **raft})
                write_file_atomically(indexed, blob, fsync=fsync, check=None)
                code = 0
            finally:
                os._exit(code)
        self._snapshot_child = pid
        self._snapshot_pending = (indexed, final_path)
        # pysyncobj now moves `tmp_path` over the snapshot; it does not exist, so that step fails
        # harmlessly and the outcome is the child's (see `_snapshot_status`).

    def _snapshot_status(self) -> int:
        """pysyncobj's serializeChecker: is the forked snapshot writer still running, done or failed?"""
        from pysyncobj.config import SERIALIZER_STATE

        pid = self._snapshot_child
        if pid is None:
            return int(SERIALIZER_STATE.NOT_SERIALIZING)
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            self._snapshot_child = None
            return int(SERIALIZER_STATE.FAILED)
        if done == 0:
            return int(SERIALIZER_STATE.SERIALIZING)
        self._snapshot_child = None
        pending, self._snapshot_pending = self._snapshot_pending, None
        if os.waitstatus_to_exitcode(status) == 0 and pending is not None:
            # Publish (rename, fsync the directory) before pysyncobj compacts the journal on SUCCESS: a
            # crash at any point leaves a snapshot and a journal that together hold every entry.
            try:
                self.storage.publish(*pending)
            except OSError as exc:
                log.warning("snapshot %s could not be published (%s); the log is kept whole", pending[0], exc)
                return int(SERIALIZER_STATE.FAILED)
            return int(SERIALIZER_STATE.SUCCESS)
        log.warning("snapshot writer exited with %s; the log is kept whole", os.waitstatus_to_exitcode(status))
        return int(SERIALIZER_STATE.FAILED)

    def _read_snapshot(self, path: str) -> tuple[Any, Any, Any]:
        with open(path, "rb") as f:
            data = msgspec.msgpack.decode(f.read())
        if self.journal is not None and self.journal.aligning_to_snapshot:
            try:
                self.journal.align_to_snapshot(tuple(data["prev"]), tuple(data["last"]))
            except JournalCorrupt as exc:
                # pysyncobj swallows exceptions from here and would go on with a broken log: stop instead.
                log.critical("%s", exc)
                os._exit(FAIL_STOP_EXIT_CODE)
        restored = StoreState.restore(data["state"], self._limits)
        with self._lock:
            self._state = restored
        self._signal_change()
        return tuple(data["last"]), tuple(data["prev"]), set(data["cluster"])

    # --------------------------------------------------------------------------- event loop side
    def view(self) -> RaftView:
        return self._view

    def add_view_listener(self, fn: Callable[[RaftView], None]) -> None:
        self._view_listeners.append(fn)

    def read(self, fn: Callable[[StoreState], T]) -> T:
        with self._lock:
            return fn(self._state)

    @property
    def revision(self) -> int:
        return self._state.revision

    async def wait_for_change(self, after_revision: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self._state.revision <= after_revision:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._change_event is None:
                break
            if not await wait_event(self._change_event, remaining):
                break
        return self._state.revision

    async def wait_for_view(self, timeout_s: float) -> RaftView:
        """Wait until the published view changes (or the timeout)."""
        ev = self._view_changed
        if ev is not None:
            await wait_event(ev, timeout_s)
        return self._view

    def _count(self, outcome: str) -> None:
        self.proposal_stats[outcome] = self.proposal_stats.get(outcome, 0) + 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def propose(self, command: cmds.AnyCommand, *, timeout_s: float | None = None) -> Result:
        """See `hacluster.store.api.ReplicatedStore.propose`."""
        assert self._loop is not None and self._sync is not None, "RaftStore.start() first"
        if not command.request_id and not isinstance(command, cmds.Barrier):
            command = msgspec.structs.replace(command, request_id=new_request_id())
        try:
            payload, replica_command = cmds.encode_for_replication(command)
        except cmds.CommandEncodingError as exc:
            raise BadRequest(str(exc)) from exc
        # Applied here, the entry need not be decoded again: the check above already decoded it as a replica
        # does. Kept only while this proposal waits (bounded by the proposals in flight).
        self._decoded_here[payload] = replica_command
        try:
            return await self._propose_payload(payload, timeout_s)
        finally:
            self._decoded_here.pop(payload, None)

    async def _propose_payload(self, payload: bytes, timeout_s: float | None) -> Result:
        assert self._loop is not None and self._sync is not None
        timeout = self.cfg.api.proposal_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        attempted = False  # has any attempt been handed to Raft? (until then, no quorum is refused at once)
        maybe_in_log = False  # has any attempt possibly put the command in some master's log?
        last_reason = "no leader"
        while True:
            view = self._view
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not view.quorum:
                last_reason = self._why_unavailable(view)
                if not attempted:
                    # Nothing was tried yet: refuse now rather than wait (a definite failure). Once an attempt
                    # was made, wait for a leader until the deadline as for any retry (a deposed leader whose
                    # entry was discarded learns of the new leader within a heartbeat); the answer at the end
                    # is 503 or 504 by whether any attempt may be in a log.
                    self._count("unavailable")
                    raise Unavailable(f"hacluster master {self.id}: {last_reason}; the write was not made",
                                      retry_after_s=1)
                await self.wait_for_view(min(remaining, self.cfg.raft.proposal_retry_wait_ms / 1000))
                continue
            fut: asyncio.Future[tuple[Any, int]] = self._loop.create_future()
            loop = self._loop

            def on_result(res: Any, err: int, fut: asyncio.Future[tuple[Any, int]] = fut,
                          loop: asyncio.AbstractEventLoop = loop) -> None:
                # Called inside pysyncobj's apply loop (tick thread) after the entry was applied but before
                # raftLastApplied advances: raising here would make pysyncobj apply the entry again.
                try:
                    loop.call_soon_threadsafe(_settle, fut, res, err)
                except Exception:  # the loop is closed (shutdown): nobody waits for the answer any more
                    pass

            self._sync.propose_payload(payload, on_result)
            self._sync.wake()
            attempted = True
            # asyncio.wait neither cancels `fut` on the deadline nor swallows a cancellation of this task.
            await asyncio.wait({fut}, timeout=remaining)
            if not fut.done():
                maybe_in_log = True
                last_reason = "no commit before the deadline"
                break
            res, err = fut.result()
            if err == FAIL_REASON.SUCCESS:
                self._count("committed")
                return res  # type: ignore[no-any-return]
            last_reason = f"Raft reported {_reason_name(err)}"
            if err not in _NOT_IN_LOG:
                maybe_in_log = True
            if err not in _RETRYABLE:
                break
            self._count("retried")
            retry_wait_s = self.cfg.raft.proposal_retry_wait_ms / 1000
            await self.wait_for_view(min(max(deadline - time.monotonic(), 0), retry_wait_s))
        if maybe_in_log:
            self._count("unknown")
            raise Timeout(f"Timeout: request did not complete within {timeout:g}s ({last_reason}); the write may "
                          "or may not have been committed", retry_after_s=1)
        self._count("unavailable")
        raise Unavailable(f"hacluster master {self.id}: {last_reason}; the write was not made", retry_after_s=1)

    def _why_unavailable(self, view: RaftView) -> str:
        if view.role == "leader":
            return "this leader cannot reach a quorum of masters"
        if view.leader is None:
            return "no leader elected (election in progress or no quorum)"
        return f"the leader {view.leader} is unreachable"

    async def linearizable_barrier(self) -> None:
        """Coalesced read barrier: every caller waits for a round (ReadIndex, or a Barrier through the log: see
        `raft.linearizable_reads`) that started after it arrived."""
        await self._barrier.wait()

    async def _propose_barrier(self) -> None:
        await self.propose(cmds.Barrier())

    async def _read_index_round(self) -> None:
        """One ReadIndex round (`hacluster.raft.read_index`): returns once this master has applied the leader's
        confirmed commit index. Refused at once (503) when this master knows of no quorum, as a write is;
        retried (a leader change, a lost answer) until the proposal deadline, then 504."""
        assert self._loop is not None and self._sync is not None, "RaftStore.start() first"
        timeout = self.cfg.api.proposal_timeout_s
        deadline = time.monotonic() + timeout
        retry_wait_s = self.cfg.raft.proposal_retry_wait_ms / 1000
        attempted = False
        last_reason = "no leader"
        loop = self._loop
        while (remaining := deadline - time.monotonic()) > 0:
            view = self._view
            if not view.quorum:
                last_reason = self._why_unavailable(view)
                if not attempted:
                    raise Unavailable(f"hacluster master {self.id}: {last_reason}; the read was not served",
                                      retry_after_s=1)
                await self.wait_for_view(min(remaining, retry_wait_s))
                continue
            fut: asyncio.Future[tuple[int | None, str | None]] = loop.create_future()

            def on_ready(index: int | None, error: str | None,
                         fut: asyncio.Future[tuple[int | None, str | None]] = fut) -> None:
                try:
                    loop.call_soon_threadsafe(_settle, fut, index, error)
                except RuntimeError:  # the loop is closed (shutdown): nobody waits for the answer any more
                    pass

            self._sync.request_read_index(on_ready)
            attempted = True
            await asyncio.wait({fut}, timeout=remaining)
            if not fut.done():
                last_reason = "no read index before the deadline"
                break
            index, error = fut.result()
            if error is None:
                return
            last_reason = error
            await self.wait_for_view(min(max(deadline - time.monotonic(), 0), retry_wait_s))
        raise Timeout(f"Timeout: the read did not complete within {timeout:g}s ({last_reason}); nothing was "
                      "changed", retry_after_s=1)

    def _barrier_cancelled(self) -> Unavailable:
        return Unavailable(f"hacluster master {self.id}: the read barrier was cancelled (shutting down); "
                           "the read was not served", retry_after_s=1)


SNAPSHOT_FILE = "raft.snapshot"


def _remove_unpublished_snapshots(data_dir: Path) -> None:
    """Snapshots a writer finished but nobody published (the master died first), half-written ones, and
    pysyncobj's half-received ones: none of them counts, the published snapshot and the journal do."""
    for p in data_dir.glob(SNAPSHOT_FILE + ".*"):
        p.unlink(missing_ok=True)


def _become_snapshot_writer(parent: int) -> None:
    """In the forked child: die with the master (so that no orphan publishes a stale snapshot later) and
    close every descriptor inherited from it — above all the API and Raft sockets, which would otherwise
    stay open (ports held, connections not reset) while the child lives."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: fires when the forking (Raft) thread ends too
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the master died before prctl took effect
        os._exit(1)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


def _settle(fut: asyncio.Future[tuple[Any, Any]], res: Any, err: Any) -> None:
    if not fut.done():
        fut.set_result((res, err))


def _reason_name(err: int) -> str:
    for name in dir(FAIL_REASON):
        if not name.startswith("_") and getattr(FAIL_REASON, name) == err:
            return name
    return str(err)
