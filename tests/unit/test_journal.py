"""The durable Raft journal (`hacluster.raft.journal`) and its storage modes (`hacluster.raft.storage`):
checksums, torn tails, corruption refused, group commit, term/vote durability, what a crash loses in
write-back mode, and that pysyncobj never acknowledges or counts an entry before its fsync."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any, NoReturn

import pytest

from hacluster.raft import journal as J
from hacluster.raft.storage import WRITEBACK_EXPIRE_S, Fault, Storage

NOOP = struct.pack("B", 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fatal(Exception):
    pass


def _raise_fatal(exc: OSError, path: str) -> NoReturn:
    raise Fatal(f"{exc} ({path})")


def open_journal(d: Path, storage: Storage | None = None, **kw: Any) -> J.DurableJournal:
    return J.DurableJournal(d, storage or Storage("disk"), on_fatal=_raise_fatal, **kw)


def fill(j: J.DurableJournal, first: int, last: int, term: int = 1) -> None:
    for i in range(first, last + 1):
        j.add(f"cmd-{i}".encode(), i, term)


def crash(j: J.DurableJournal) -> None:
    """A SIGKILL: the process's memory (write-back buffers) is gone; only what reached the files stays."""
    j._tail = None  # dropped without close(): nothing more is written out
    j.storage._pending.clear()


def segment(d: Path) -> Path:
    files = sorted(d.glob("wal-*.log"))
    assert len(files) == 1
    return files[0]


def test_entries_survive_a_reopen(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 5)
    j.setCurrentTerm(3, "127.0.0.1:1")
    j.sync()
    j._destroy()
    again = open_journal(tmp_path)
    assert list(again[:]) == [(f"cmd-{i}".encode(), i, 1) for i in range(1, 6)]
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (3, "127.0.0.1:1")


def test_a_torn_last_record_is_cut_off_with_one_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 4)
    j._destroy()
    path = segment(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 3)  # the last record's write was cut short by the crash
    record = len(J.encode_record(b"cmd-4", 4, 1))
    with caplog.at_level(logging.WARNING):
        again = open_journal(tmp_path)
    assert [e[1] for e in again[:]] == [1, 2, 3]
    lines = [r.getMessage() for r in caplog.records if "torn or corrupt last record" in r.getMessage()]
    assert lines == [f"journal {path}: torn or corrupt last record at offset {size - record}; dropping "
                     f"{record - 3} bytes (this master catches up from the leader)"]
    assert path.stat().st_size == size - record, "the torn bytes are gone from the file"
    fill(again, 4, 5)  # and the log goes on from there
    again._destroy()
    assert [e[1] for e in open_journal(tmp_path)[:]] == [1, 2, 3, 4, 5]


def test_a_bit_flip_in_the_last_record_is_cut_off(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 3)
    j._destroy()
    path = segment(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))
    assert [e[1] for e in open_journal(tmp_path)[:]] == [1, 2]


def test_corruption_before_the_tail_refuses_to_start(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 5)
    j._destroy()
    path = segment(tmp_path)
    data = bytearray(path.read_bytes())
    second = len(J.SEGMENT_MAGIC) + len(J.encode_record(b"cmd-1", 1, 1))
    data[second + 30] ^= 0x01  # a payload byte of entry 2
    path.write_bytes(bytes(data))
    with pytest.raises(J.JournalCorrupt) as err:
        open_journal(tmp_path)
    assert str(err.value) == (f"journal {path} corrupt at offset {second}: record payload checksum mismatch; "
                              "refusing to start")
    data[second + 30] ^= 0x01
    data[second + 2] ^= 0x01  # the length field of entry 2: never trusted, never skips records
    path.write_bytes(bytes(data))
    with pytest.raises(J.JournalCorrupt, match="record header checksum mismatch"):
        open_journal(tmp_path)


def test_a_corrupt_term_file_refuses_to_start(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    j.setCurrentTerm(7, None)
    (tmp_path / J.TERM_FILE).write_bytes(b"00000000 {\"term\":9}")
    with pytest.raises(J.JournalCorrupt, match="raft.term corrupt at offset 0"):
        open_journal(tmp_path)


def test_group_commit_one_fsync_for_many_appends_and_none_when_idle(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    j = open_journal(tmp_path)
    fill(j, 1, 1)
    j.sync()
    calls.clear()
    fill(j, 2, 101)
    j.sync()
    assert len(calls) == 1 and j.fsyncs == 2
    j.sync()
    assert len(calls) == 1, "nothing pending: no fsync"


def test_setcurrentterm_is_durable_before_it_returns(tmp_path: Path) -> None:
    st = Storage("write-back")
    j = open_journal(tmp_path, st)
    j.setCurrentTerm(5, "127.0.0.1:9")
    crash(j)
    again = open_journal(tmp_path, Storage("write-back"))
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (5, "127.0.0.1:9")


def test_write_back_crash_loses_exactly_the_unsynced_appends_and_truncations(tmp_path: Path) -> None:
    j = open_journal(tmp_path, Storage("write-back"))
    fill(j, 1, 5)
    j.sync()
    fill(j, 6, 8)  # appended, never synced
    crash(j)
    j = open_journal(tmp_path, Storage("write-back"))
    assert [e[1] for e in j[:]] == [1, 2, 3, 4, 5]
    j.deleteEntriesFrom(2)  # truncation to entries 1, 2 ...
    fill(j, 3, 3, term=2)  # ... and a new entry 3, never synced
    crash(j)
    j = open_journal(tmp_path, Storage("write-back"))
    assert [(e[1], e[2]) for e in j[:]] == [(i, 1) for i in range(1, 6)]
    j.deleteEntriesFrom(2)
    fill(j, 3, 3, term=2)
    j.sync()
    crash(j)
    assert [(e[1], e[2]) for e in open_journal(tmp_path, Storage("write-back"))[:]] == [(1, 1), (2, 1), (3, 2)]


def test_without_fsync_write_back_loses_synced_entries_until_the_kernel_would_write_them(tmp_path: Path) -> None:
    """The bite: with `raft.fsync: false`, `sync` (what the master does before acknowledging) persists
    nothing, so a power cut loses acknowledged entries — unless they were buffered for 30 s."""
    clock = FakeClock()
    j = open_journal(tmp_path, Storage("write-back", fsync=False, clock=clock))
    fill(j, 1, 5)
    j.sync()
    crash(j)
    assert len(open_journal(tmp_path, Storage("write-back"))) == 0, "acknowledged entries lost"
    j = open_journal(tmp_path, Storage("write-back", fsync=False, clock=clock))
    fill(j, 1, 5)
    clock.now += WRITEBACK_EXPIRE_S
    j.onOneSecondTimer()
    fill(j, 6, 6)
    crash(j)
    assert [e[1] for e in open_journal(tmp_path, Storage("write-back"))[:]] == [1, 2, 3, 4, 5]


def test_disk_mode_without_fsync_keeps_what_a_sigkill_would_keep(tmp_path: Path) -> None:
    j = open_journal(tmp_path, Storage("disk", fsync=False))
    fill(j, 1, 3)
    j.sync()  # handed to the kernel: a SIGKILL (not a power cut) keeps it
    crash(j)
    assert len(open_journal(tmp_path)) == 3


@pytest.mark.parametrize(("operation", "errno_name"), [("write", "ENOSPC"), ("fsync", "EIO")])
def test_an_injected_fault_fails_the_journal_and_persists_nothing(tmp_path: Path, operation: str,
                                                                   errno_name: str) -> None:
    import errno

    st = Storage("write-back")
    j = open_journal(tmp_path, st)
    fill(j, 1, 2)
    j.sync()
    st.set_fault(Fault(operation, getattr(errno, errno_name)))
    with pytest.raises(Fatal, match=os.strerror(getattr(errno, errno_name))):
        fill(j, 3, 3)
        j.sync()
    crash(j)
    assert [e[1] for e in open_journal(tmp_path, Storage("write-back"))[:]] == [1, 2]
    with pytest.raises(ValueError):
        Storage("disk").set_fault(Fault("write", errno.EIO))


def test_compaction_removes_whole_segments_and_rewrites_nothing(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 10)
    j.deleteEntriesTo(4)  # snapshot at 5 (pysyncobj keeps the entry before it): entries 5.. stay
    fill(j, 11, 20)  # a new segment starts at 11
    j.sync()
    assert [p.name for p in sorted(tmp_path.glob("wal-*"))] == [J.segment_path(tmp_path, 1).name,
                                                                  J.segment_path(tmp_path, 11).name]
    j.deleteEntriesTo(len(j) - 3)  # snapshot at 18: segment 1 holds only compacted entries
    fill(j, 21, 21)
    j._destroy()
    assert J.segment_path(tmp_path, 1).exists() is False
    again = open_journal(tmp_path)
    assert [e[1] for e in again[:]] == list(range(11, 22)), "memory holds what the segments hold"
    again.align_to_snapshot((b"cmd-17", 17, 1), (b"cmd-18", 18, 1))
    assert [e[1] for e in again[:]] == list(range(17, 22)), "entries before the snapshot are dropped"


def test_a_journal_compacted_past_its_snapshot_refuses_to_start(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 10, 12)
    with pytest.raises(J.JournalCorrupt, match="starts at index 10, after the snapshot's index 5"):
        j.align_to_snapshot((b"x", 5, 1), (b"y", 6, 1))


def test_truncating_into_an_earlier_segment(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    fill(j, 1, 6)
    j.deleteEntriesTo(1)
    fill(j, 7, 9)
    j.deleteEntriesFrom(3)  # entry 5: before the segment that starts at 7
    fill(j, 5, 6, term=3)
    j._destroy()
    assert [(e[1], e[2]) for e in open_journal(tmp_path)[:]] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 3), (6, 3)]


# ------------------------------------------------------------------------------ pysyncobj integration
class RecordingJournal(J.DurableJournal):
    """Checks, as pysyncobj runs, that the commit index never covers an entry that was not synced."""

    durable_last = 0
    events: list[str]

    def sync(self) -> None:
        was = self.pending
        super().sync()
        if was:
            self.events.append("fsync")
        self.durable_last = self._entries[-1][1] if self._entries else 0

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        assert raftCommitIndex <= self.durable_last, (
            f"commit index {raftCommitIndex} counts entries after the durable {self.durable_last}")
        super().setRaftCommitIndex(raftCommitIndex)


def test_the_createjournal_hook_is_in_place() -> None:
    from pysyncobj import syncobj

    from hacluster.raft import replicated_store

    assert syncobj.createJournal is replicated_store._create_journal
    assert type(syncobj.createJournal(None)).__name__ == "MemoryJournal"


def test_the_pysyncobj_internals_the_sync_points_hook_are_there() -> None:
    """The sync points override these private methods of pysyncobj 0.3.17 (pinned exactly); if a new
    version renames one, the override would silently never run and entries be acknowledged unsynced."""
    import inspect

    from pysyncobj import SyncObj

    from hacluster.raft import replicated_store
    from hacluster.raft.replicated_store import _RaftStateMachine

    for name in ("_onTick", "_SyncObj__sendNextNodeIdx", "_SyncObj__onBecomeLeader", "_SyncObj__loadDumpFile"):
        assert callable(getattr(SyncObj, name, None)), f"pysyncobj has no {name} any more"
        assert name in _RaftStateMachine.__dict__
    init = inspect.getsource(SyncObj.__init__)
    assert "createJournal(self.__conf.journalFile)" in init
    assert replicated_store._PYSYNCOBJ_CREATE_JOURNAL.__module__ == "pysyncobj.journal"


def test_a_follower_acknowledges_only_after_its_fsync(tmp_path: Path) -> None:
    from pysyncobj import SyncObjConf

    from hacluster.raft.replicated_store import _RaftStateMachine
    from tests.property.harness import _free_port

    journal = RecordingJournal(tmp_path, Storage("disk"), on_fatal=_raise_fatal)
    journal.events = []
    me, leader_addr = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    node = _RaftStateMachine(me, [leader_addr], SyncObjConf(autoTick=False, journalFile=journal),
                             lambda payload: pytest.fail("no-ops are not applied"), journal)
    try:
        assert node._SyncObj__raftLog is journal
        leader = next(iter(node._SyncObj__otherNodes))
        transport = node._SyncObj__transport
        transport.send = lambda n, msg: journal.events.append(
            f"send {msg['type']} {msg.get('success')} {msg.get('next_node_idx')}")
        journal.sync()
        journal.events.clear()
        node._SyncObj__onMessageReceived(leader, {
            "type": "append_entries", "term": 1, "commit_index": 1, "prevLogIdx": 1, "prevLogTerm": 0,
            "entries": [(NOOP, i, 1) for i in (2, 3, 4)]})
        assert journal.events == ["fsync", "send next_node_idx True 5"], "one fsync for the batch, then the ack"
    finally:
        node._doDestroy()


def test_a_leader_counts_only_entries_on_stable_storage(tmp_path: Path) -> None:
    """A single master is its own majority: pysyncobj would commit each entry in the tick it was appended
    (count = 1). The journal asserts on every commit index that the entries it covers were synced."""
    from pysyncobj import SyncObjConf

    from hacluster.raft.replicated_store import _RaftStateMachine
    from tests.property.harness import _free_port

    journal = RecordingJournal(tmp_path, Storage("disk"), on_fatal=_raise_fatal)
    journal.events = []
    applied: list[bytes] = []

    def apply(payload: bytes) -> Any:
        applied.append(payload)
        return None

    conf = SyncObjConf(autoTick=False, journalFile=journal, raftMinTimeout=0.05, raftMaxTimeout=0.06,
                       appendEntriesPeriod=0.01, appendEntriesUseBatch=True)
    node = _RaftStateMachine(f"127.0.0.1:{_free_port()}", [], conf, apply, journal)
    try:
        import time

        deadline = time.monotonic() + 10
        while not node._isLeader() and time.monotonic() < deadline:
            node.doTick(0.01)
        assert node._isLeader()
        for n in range(20):
            node.apply_command(f"p{n}".encode())
        while len(applied) < 20 and time.monotonic() < deadline:
            node.doTick(0.0)
        assert applied == [f"p{n}".encode() for n in range(20)]
        assert journal.fsyncs < 20, "group commit: appends of one tick share an fsync"
    finally:
        node._doDestroy()
