"""What hacluster relies on inside pysyncobj, beyond its public API — checked so that an upgrade fails here,
loudly and by name, instead of quietly changing replication (issue 13, finding 7; STYLE.md "pin what you
patch").

`hacluster.raft.replicated_store` subclasses `SyncObj` (with `hacluster.raft.election`'s mixin), overrides
some of its private (name-mangled) methods and reads and writes its private fields; it also depends on when pysyncobj calls a proposal's
callback with which FAIL_REASON. Every private name relied on is listed here, in one place: a change that
relies on another private name or behaviour adds it to these tables (with who relies on it), and a pysyncobj
upgrade means re-reading each listed method against the overrides and updating the digests. Two behaviours
are checked beside the code that needs them: the journal hook on `createJournal` and the sync points
(`tests/unit/test_journal.py`), and the order of `_onTick`'s election check (`tests/unit/test_election.py`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import re
import socket
import time
from pathlib import Path

import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf

ROOT = Path(__file__).resolve().parents[2]

PYSYNCOBJ_VERSION = "0.3.17"
"""The version the overrides were written against; pyproject.toml pins exactly this one."""

PRIVATE_FIELDS = {
    # field of a live SyncObj: who reads or writes it
    "_SyncObj__raftState": "replicated_store: flush_appends, the message override, _on_tick (role)",
    "_SyncObj__raftCommitIndex": "replicated_store: flush_appends, __sendNextNodeIdx override",
    "_SyncObj__raftCurrentTerm": "replicated_store: __onMessageReceived override (append term check)",
    "_SyncObj__raftNextIndex": "replicated_store: __onMessageReceived override (nextIndex never moves back)",
    "_SyncObj__raftLeader": "replicated_store: _on_tick (leader)",
    "_SyncObj__connectedNodes": "replicated_store: _on_tick (quorum contact)",
    "_SyncObj__lastResponseTime": "replicated_store: _on_tick (quorum contact, pysyncobj's clock)",
    "_SyncObj__raftMatchIndex": "replicated_store: _on_tick (peer match index)",
    "_SyncObj__otherNodes": "replicated_store: _on_tick; tests/property/test_raft_cluster.py",
    "_SyncObj__raftLog": "replicated_store: _on_tick (log length)",
    "_SyncObj__thread": "tests/property/harness.py (joins the tick thread on stop)",
    "_SyncObj__raftElectionDeadline": "election: the pre-vote gate moves pysyncobj's election deadline",
    "_SyncObj__votedForNodeId": "election: vote rules (etcd's canVote)",
    "_SyncObj__transferInProgress": "election: a leadership transfer skips the pre-vote",
    "_SyncObj__selfNode": "election: pre-votes and votes only for a voting member",
    "_SyncObj__transport": "election: sends pre-votes, higher-term answers, step-down notices",
    "_SyncObj__conf": "replicated_store: the snapshot file a leader sends (__loadDumpFile override)",
    "_poller": "replicated_store: flush_appends (wake pipe registered on the tick thread)",
    "_methodToID": "replicated_store: propose_payload (apply_command's id, as @replicated finds it)",
    "encryptor": "replicated_store: overridden (the property the transport reads: peer_wire's authenticator)",
}

PRIVATE_METHODS = {
    # method: (signature, who calls or overrides it)
    "_SyncObj__onMessageReceived": ("(self, node, message)", "replicated_store: overridden"),
    "_SyncObj__getEntries": ("(self, fromIDx, count=None, maxSizeBytes=None)", "replicated_store: overridden"),
    "_SyncObj__sendNextNodeIdx": ("(self, node, reset=False, nextNodeIdx=None, success=False)",
                                  "replicated_store: overridden"),
    "_SyncObj__sendAppendEntries": ("(self)", "replicated_store: flush_appends, __applyLogEntries override"),
    "_SyncObj__applyLogEntries": ("(self)", "replicated_store: overridden (the commit index goes out first)"),
    "_SyncObj__getCurrentLogIndex": ("(self)", "replicated_store; tests/property/test_raft_cluster.py"),
    "_SyncObj__getCurrentLogTerm": ("(self)", "replicated_store: _skip_matching_entries"),
    "_getFuncName": ("(self, funcName)", "replicated_store: propose_payload (as @replicated)"),
    "_applyCommand": ("(self, command, callback, commandType=None)", "replicated_store: propose_payload"),
    "_onTick": ("(self, timeToWait=0.0)", "replicated_store: overridden (sync before the commit count); "
                "election: overridden (pre-vote, CheckQuorum)"),
    "_SyncObj__onBecomeLeader": ("(self)", "replicated_store: overridden (the new leader's no-op synced)"),
    "_SyncObj__loadDumpFile": ("(self, clearJournal)", "replicated_store: overridden (received snapshot synced)"),
    "_SyncObj__connectedToAnyone": ("(self)", "election: overridden (pysyncobj's election only after a pre-vote)"),
    "_SyncObj__generateRaftTimeout": ("(self)", "election: a pre-vote round's new deadline"),
    "_SyncObj__setCurrentTerm": ("(self, term, votedForNodeId)", "election: stepping down to a higher term"),
    "_SyncObj__setState": ("(self, newState)", "election: stepping down"),
}

SOURCE_DIGESTS = {
    # sha256[:16] of the method's source. The overridden methods, and the ones whose FAIL_REASON rules
    # RaftStore.propose relies on: QUEUE_FULL (_applyCommand), MISSING_LEADER and NOT_LEADER before anything
    # is appended (_checkCommandsToApply), DISCARDED only when another term's entry committed at the index,
    # and callbacks called before raftLastApplied advances (__applyLogEntries), LEADER_CHANGED for forwarded
    # commands (__onLeaderChanged), and the message shapes the overrides inspect (__onMessageReceived).
    "_SyncObj__onMessageReceived": "ddfe34b6c0282179",
    "_SyncObj__getEntries": "e29c4b33293b2101",
    "_SyncObj__sendNextNodeIdx": "68aaeefc267b8896",
    "_SyncObj__sendAppendEntries": "9cb9073128c392fa",
    "_checkCommandsToApply": "a386a8079361d204",
    "_SyncObj__applyLogEntries": "073db677773b5a2d",
    "_applyCommand": "827f207d515b2d64",
    "_SyncObj__onLeaderChanged": "53b7685e1d897887",
}

# pysyncobj's peer connection and transport, as `hacluster.raft.peer_wire` relies on them: PeerConnection
# subclasses TcpConnection (overrides `send`, `__processParseMessage`, `disconnect`; reads and writes its
# buffers; re-subscribes its fd for "writable"), the hook replaces the `TcpConnection` name the transport and
# the server build connections with, and the transport's random-key exchange runs when `encryptor` is truthy.
CONNECTION_PRIVATE_FIELDS = ("_TcpConnection__writeBuffer", "_TcpConnection__readBuffer",
                             "_TcpConnection__poller", "_TcpConnection__fileno")
CONNECTION_DIGESTS = {
    # (class, method): sha256[:16] of its source
    ("TcpConnection", "send"): "cb29077c32990abb",
    ("TcpConnection", "_TcpConnection__processParseMessage"): "4ecbfdad3baa2eac",
    ("TcpConnection", "_TcpConnection__processConnection"): "b2854d89c1b97247",
    ("TcpConnection", "_TcpConnection__trySendBuffer"): "6fc748d9120c1dfc",
    ("TcpConnection", "disconnect"): "318150905383a6a5",
    ("TCPTransport", "_onNewIncomingConnection"): "27812f1826cd78ad",
    ("TCPTransport", "_onIncomingMessageReceived"): "8b7217b0cc17c96d",
    ("TCPTransport", "_onOutgoingConnected"): "b5d72590358c9987",
    ("TCPTransport", "_onOutgoingMessageReceived"): "6060942126931ca2",
    ("TCPTransport", "addNode"): "8245fa6ac3ac9f36",
}

FAIL_REASONS_USED = ("SUCCESS", "QUEUE_FULL", "MISSING_LEADER", "DISCARDED", "NOT_LEADER", "LEADER_CHANGED",
                     "UNKNOWN_OUTCOME")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_installed_version_is_the_pinned_one() -> None:
    assert importlib.metadata.version("pysyncobj") == PYSYNCOBJ_VERSION
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'"pysyncobj=={re.escape(PYSYNCOBJ_VERSION)}"', pyproject), \
        "pyproject.toml must pin pysyncobj to the exact version the overrides were written against"


@pytest.mark.parametrize("name", sorted(SOURCE_DIGESTS))
def test_relied_on_methods_are_unchanged(name: str) -> None:
    digest = hashlib.sha256(inspect.getsource(getattr(SyncObj, name)).encode()).hexdigest()[:16]
    assert digest == SOURCE_DIGESTS[name], (
        f"pysyncobj's SyncObj.{name} changed: re-read it against hacluster/raft/replicated_store.py "
        "(see this module's docstring), then update SOURCE_DIGESTS")


@pytest.mark.parametrize("name", sorted(PRIVATE_METHODS))
def test_private_methods_keep_their_signatures(name: str) -> None:
    signature, who = PRIVATE_METHODS[name]
    assert str(inspect.signature(getattr(SyncObj, name))) == signature, f"{name} (used by {who})"


def test_private_fields_and_fail_reasons_exist() -> None:
    node = SyncObj(f"127.0.0.1:{_free_port()}", [], SyncObjConf(autoTick=False))
    try:
        missing = {name: who for name, who in PRIVATE_FIELDS.items() if not hasattr(node, name)}
        assert not missing, f"pysyncobj no longer has {missing}"
    finally:
        node.destroy()
    assert [r for r in FAIL_REASONS_USED if not hasattr(FAIL_REASON, r)] == []


def test_without_a_leader_a_command_is_refused_before_anything_is_appended() -> None:
    """The behaviour finding 3's 503 rests on: MISSING_LEADER comes from the local queue, nothing appended."""
    node = SyncObj(f"127.0.0.1:{_free_port()}", [f"127.0.0.1:{_free_port()}"],
                   SyncObjConf(autoTick=False, commandsWaitLeader=False))  # as RaftStore runs it
    try:
        answers: list[tuple[object, int]] = []
        before = len(node._SyncObj__raftLog)
        node._applyCommand(b"\x00command", lambda res, err: answers.append((res, err)))
        node._checkCommandsToApply()
        assert answers == [(None, FAIL_REASON.MISSING_LEADER)]
        assert len(node._SyncObj__raftLog) == before
    finally:
        node.destroy()


@pytest.mark.parametrize("owner,name", sorted(CONNECTION_DIGESTS))
def test_peer_connection_internals_are_unchanged(owner: str, name: str) -> None:
    from pysyncobj.tcp_connection import TcpConnection
    from pysyncobj.transport import TCPTransport

    cls = {"TcpConnection": TcpConnection, "TCPTransport": TCPTransport}[owner]
    digest = hashlib.sha256(inspect.getsource(getattr(cls, name)).encode()).hexdigest()[:16]
    assert digest == CONNECTION_DIGESTS[(owner, name)], (
        f"pysyncobj's {owner}.{name} changed: re-read it against hacluster/raft/peer_wire.py, then update "
        "CONNECTION_DIGESTS")


def test_peer_connection_fields_and_hook_points_exist() -> None:
    import pysyncobj.tcp_server
    import pysyncobj.transport
    from pysyncobj.poller import createPoller
    from pysyncobj.tcp_connection import TcpConnection

    conn = TcpConnection(createPoller("auto"))
    assert [f for f in CONNECTION_PRIVATE_FIELDS if not hasattr(conn, f)] == []
    for module in (pysyncobj.transport, pysyncobj.tcp_server):  # the names install_peer_wire_hook replaces
        assert hasattr(module, "TcpConnection"), module.__name__
    assert isinstance(SyncObj.__dict__["encryptor"], property)


REPLICATED_DIGEST = "132a6458c196b3f7"
"""sha256[:16] of pysyncobj's `replicated` decorator: `_RaftStateMachine.propose_payload` enqueues what its
wrapper enqueues for `apply_command(payload, callback=...)` — `(method id, (payload,))` pickled, through
`_applyCommand` with `_COMMAND_TYPE.REGULAR` — only with another pickle protocol."""


def test_replicated_wrapper_is_unchanged() -> None:
    from pysyncobj import syncobj as core

    digest = hashlib.sha256(inspect.getsource(core.replicated).encode()).hexdigest()[:16]
    assert digest == REPLICATED_DIGEST, ("pysyncobj's @replicated changed: re-read it against "
                                         "_RaftStateMachine.propose_payload, then update REPLICATED_DIGEST")


def test_propose_payload_enqueues_what_the_replicated_wrapper_does() -> None:
    import pickle

    from pysyncobj import syncobj as core

    from hacluster.raft.replicated_store import _RaftStateMachine

    applied: list[bytes] = []
    node = _RaftStateMachine(f"127.0.0.1:{_free_port()}", [], SyncObjConf(autoTick=False),
                             lambda payload: applied.append(payload) or payload)  # type: ignore[func-returns-value]
    try:
        queued: list[tuple[bytes, object, object]] = []
        original = node._applyCommand
        node._applyCommand = lambda command, callback, kind=None: queued.append((command, callback, kind))
        node.apply_command(b"\x81\xa1k\xff" * 50, callback=print)  # pysyncobj's own wrapper
        node.propose_payload(b"\x81\xa1k\xff" * 50, print)
        (wrapped, cb1, kind1), (ours, cb2, kind2) = queued
        assert pickle.loads(wrapped) == pickle.loads(ours) and kind1 == kind2 == core._COMMAND_TYPE.REGULAR
        assert len(ours) < len(wrapped)  # no latin-1 detour
        # and pysyncobj applies it: a single node elects itself, appends and applies the entry
        node._applyCommand = original
        answers: list[tuple[object, int]] = []
        deadline = time.monotonic() + 5  # a single node elects itself after one election timeout
        while not node._isLeader() and time.monotonic() < deadline:
            node.doTick(0.01)
        node.propose_payload(b"payload-1", lambda res, err: answers.append((res, err)))
        while not answers and time.monotonic() < deadline:
            node.doTick(0.01)
        assert answers == [(b"payload-1", FAIL_REASON.SUCCESS)] and applied[-1] == b"payload-1"
    finally:
        node.destroy()
