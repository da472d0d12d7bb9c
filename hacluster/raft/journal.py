"""hacluster's Raft journal: pysyncobj's `Journal` interface over checksummed, fsynced segment files.

Created by `hacluster.raft.replicated_store.RaftStore.start` and handed to pysyncobj as its journal (see
`install_journal_hook`). pysyncobj calls it on its Raft thread only; `stats()` may be read from any thread.

Files in the master's data directory:
- `wal-<first index>.log`: segments of records. A segment starts with SEGMENT_MAGIC and holds consecutive
  entries. Each record is a header `<length u32, index u64, term u64, payload crc32 u32, header crc32 u32>`
  followed by the payload (the command bytes). The header has its own checksum so that a damaged length can
  never make the reader skip records. zlib.crc32 (the standard library's, hardware-assisted where zlib is)
  rather than crc32c: it needs no extra dependency and detects torn and bit-flipped records as well; the
  choice of polynomial only matters for interoperating with other tools, which we do not.
- `raft.term`: current term and vote, replaced atomically and durably (tmp, fsync, rename, fsync the
  directory) BEFORE `setCurrentTerm` returns, because pysyncobj sends the vote right after.
- `raft.commit`: the commit index, a hint written lazily (once a second, no fsync) and clamped to the
  log's end on load.

Durability: `add` buffers; `sync` makes every entry appended (and every truncation) since the last sync
durable with one fsync (group commit) and does nothing when nothing is pending. The pysyncobj subclass calls
`sync` before a follower acknowledges an AppendEntries and before the leader counts itself toward the
commit index. Compaction (`deleteEntriesTo`) drops entries from memory, removes whole segments that hold
only compacted entries and starts a new segment; it never rewrites entries. Memory holds only entries after
the latest snapshot (plus the one before it, which pysyncobj keeps).

On open, a torn or corrupt LAST record (a crash in the middle of a write) is cut off with one log line
naming file, offset and bytes dropped; the master then catches up from the leader. Damage anywhere before
the tail raises `JournalCorrupt` and the master refuses to start. A write or fsync that fails (disk full,
I/O error) calls `on_fatal`, which in a master process logs one line and exits with FAIL_STOP_EXIT_CODE
before anything that could not be persisted is acknowledged (as etcd does on a WAL error).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import msgspec
from pysyncobj.journal import Journal

from hacluster.raft.storage import Storage

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"HACLWAL\x01"
SEGMENT_PREFIX = "wal-"
SEGMENT_SUFFIX = ".log"
SEGMENT_MAX_BYTES = 64 * 1024 * 1024  # default of `raft.journal_segment_max_bytes`
TERM_FILE = "raft.term"
COMMIT_FILE = "raft.commit"
LEGACY_FILES = ("raft.journal", "raft.journal.meta")  # pysyncobj's own FileJournal (unchecked, unsynced)
FAIL_STOP_EXIT_CODE = 75  # EX_TEMPFAIL: the master stopped because its journal could not be written

_HEADER = struct.Struct("<IQQII")  # length, index, term, payload crc, header crc (of the first 24 bytes)
_HEADER_CRC_SPAN = 24

Entry = tuple[bytes, int, int]  # pysyncobj's (command, index, term)


class JournalCorrupt(Exception):
    """The journal is damaged before its last record: the master must not start (it would lose entries)."""


class _Hint(msgspec.Struct):
    term: int = 0
    voted_for: str | None = None
    commit_index: int = 1


def encode_record(command: bytes, index: int, term: int) -> bytes:
    head = struct.pack("<IQQI", len(command), index, term, zlib.crc32(command))
    return head + struct.pack("<I", zlib.crc32(head)) + command


def _checked_blob(payload: bytes) -> bytes:
    return b"%08x " % zlib.crc32(payload) + payload


def _unchecked_blob(blob: bytes) -> bytes | None:
    if len(blob) < 9 or blob[8:9] != b" ":
        return None
    payload = blob[9:]
    try:
        crc = int(blob[:8], 16)
    except ValueError:
        return None
    return payload if crc == zlib.crc32(payload) else None


def segment_path(directory: Path, first_index: int) -> Path:
    return directory / f"{SEGMENT_PREFIX}{first_index:020d}{SEGMENT_SUFFIX}"


def _segment_first_index(path: Path) -> int | None:
    name = path.name
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
    return int(digits) if digits.isdigit() else None


class _Segment:
    def __init__(self, first_index: int, path: Path) -> None:
        self.first_index = first_index
        self.path = path
        self.size = 0


def fail_stop(exc: OSError, path: str) -> NoReturn:
    """Default `on_fatal`: one log line, then leave at once (no cleanup that could acknowledge anything)."""
    log.critical("fatal: journal write failed: %s (%s); stopping so that nothing unpersisted is acknowledged",
                 _describe(exc), path)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
    os._exit(FAIL_STOP_EXIT_CODE)


def _describe(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno is not None else str(exc)


class DurableJournal(Journal):  # type: ignore[misc]
    """pysyncobj's Journal interface over segment files in `directory`; see the module docstring."""

    def __init__(self, directory: str | Path, storage: Storage, *,
                 on_fatal: Callable[[OSError, str], NoReturn] = fail_stop,
                 on_fsync: Callable[[float], None] | None = None,
                 segment_max_bytes: int = SEGMENT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.segment_max_bytes = segment_max_bytes
        self.storage = storage
        self._on_fatal = on_fatal
        self._on_fsync = on_fsync
        self._entries: list[Entry] = []
        self._offsets: list[int] = []  # where each entry's record starts in its segment
        self._segments: list[_Segment] = []
        self._tail: Any = None  # AppendFile of the last segment, opened lazily
        self._roll_next = False  # the next append starts a new segment (set by compaction)
        self._pending = False  # appends or truncations not yet synced
        self._dir_dirty = False  # segments created or removed since the last directory fsync
        self._commit_hint = 1
        self._commit_saved = 1
        self.fsyncs = 0
        self.last_fsync_ms: float | None = None
        self.aligning_to_snapshot = False  # set while pysyncobj loads our own snapshot at start
        self.directory.mkdir(parents=True, exist_ok=True)
        for legacy in LEGACY_FILES:
            if (self.directory / legacy).exists() and not any(self._segment_files()):
                raise JournalCorrupt(
                    f"journal {self.directory / legacy} was written by pysyncobj's own journal (an older "
                    "hacluster), which has no checksums and cannot be read safely; refusing to start: move "
                    "the master's data directory away to start it empty (it then catches up from the leader)")
        self._load_hints()
        self._load_segments()

    # ------------------------------------------------------------------------------------- load
    def _segment_files(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.directory.iterdir():
            first = _segment_first_index(p)
            if first is not None:
                found.append((first, p))
        return sorted(found)

    def _load_hints(self) -> None:
        blob = self.storage.read(self.directory / TERM_FILE)
        if blob is not None:
            payload = _unchecked_blob(blob)
            if payload is None:
                raise JournalCorrupt(f"journal {self.directory / TERM_FILE} corrupt at offset 0: checksum "
                                     "mismatch in the term and vote record; refusing to start")
            hint = msgspec.json.decode(payload, type=_Hint)
            self._term, self._voted_for = hint.term, hint.voted_for
        else:
            self._term, self._voted_for = 0, None
        blob = self.storage.read(self.directory / COMMIT_FILE)
        payload = _unchecked_blob(blob) if blob is not None else None
        if payload is not None:
            try:
                self._commit_hint = msgspec.json.decode(payload, type=_Hint).commit_index
            except msgspec.DecodeError:
                self._commit_hint = 1
        elif blob is not None:
            log.warning("journal %s: commit index hint unreadable; starting from 1 (it is only a hint)",
                        self.directory / COMMIT_FILE)
        self._commit_saved = self._commit_hint

    def _load_segments(self) -> None:
        files = self._segment_files()
        expected: int | None = None
        for n, (first, path) in enumerate(files):
            last_segment = n == len(files) - 1
            data = self.storage.read(path) or b""
            segment = _Segment(first, path)
            good = self._parse_segment(path, data, first, expected, last_segment)
            if good < len(data):
                dropped = len(data) - good
                log.warning("journal %s: torn or corrupt last record at offset %d; dropping %d bytes (this "
                            "master catches up from the leader)", path, good, dropped)
                tail = self.storage.open_append(path)
                tail.truncate(good)
                self._sync_file(tail)
                tail.close()
            segment.size = good
            self._segments.append(segment)
            if self._entries:
                expected = self._entries[-1][1] + 1

    def _parse_segment(self, path: Path, data: bytes, first: int, expected: int | None, last: bool) -> int:
        """Append the segment's entries; return how many bytes of it are good (the rest is a torn tail)."""
        def corrupt(offset: int, why: str) -> JournalCorrupt:
            return JournalCorrupt(f"journal {path} corrupt at offset {offset}: {why}; refusing to start")

        if expected is not None and first != expected:
            raise corrupt(0, f"segment starts at index {first}, expected {expected} (a segment is missing)")
        magic = len(SEGMENT_MAGIC)
        if len(data) < magic:
            if last and SEGMENT_MAGIC.startswith(data):
                return 0  # a segment created just before the crash
            raise corrupt(0, "not a journal segment (bad magic)")
        if data[:magic] != SEGMENT_MAGIC:
            raise corrupt(0, "not a journal segment (bad magic)")
        pos = magic
        index = first
        size = len(data)
        while pos < size:
            if size - pos < _HEADER.size:
                if last:
                    return pos
                raise corrupt(pos, "truncated record header")
            length, idx, term, payload_crc, header_crc = _HEADER.unpack_from(data, pos)
            if zlib.crc32(data[pos:pos + _HEADER_CRC_SPAN]) != header_crc:
                if last and not any(data[pos:]):
                    return pos  # zeroes past the last record: space the file system allocated, never written
                raise corrupt(pos, "record header checksum mismatch")
            end = pos + _HEADER.size + length
            if end > size:
                if last:
                    return pos
                raise corrupt(pos, f"record of {length} bytes runs past the end of the segment")
            payload = data[pos + _HEADER.size:end]
            if zlib.crc32(payload) != payload_crc:
                if last and end == size:
                    return pos
                raise corrupt(pos, "record payload checksum mismatch")
            if idx != index:
                raise corrupt(pos, f"record has index {idx}, expected {index}")
            self._entries.append((payload, idx, term))
            self._offsets.append(pos)
            index += 1
            pos = end
        return pos

    # ------------------------------------------------------------------------------- failures
    def _fatal(self, exc: OSError, path: Path | str) -> NoReturn:
        self._on_fatal(exc, str(path))

    def _sync_file(self, f: Any) -> None:
        try:
            f.sync()
        except OSError as exc:
            self._fatal(exc, f.path)

    # -------------------------------------------------------------------------- pysyncobj API
    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        tail = self._tail_for(idx)
        offset = tail.size
        try:
            tail.append(encode_record(command, idx, term))
        except OSError as exc:
            self._fatal(exc, tail.path)
        self._segments[-1].size = tail.size
        self._entries.append((command, idx, term))
        self._offsets.append(offset)
        self._pending = True

    def _tail_for(self, idx: int) -> Any:
        """The open last segment, or a new one starting at `idx` when the log is empty, the last segment is
        full, or a compaction asked for a new one."""
        seg = self._segments[-1] if self._segments else None
        if (seg is None or not self._entries or self._roll_next or seg.size >= self.segment_max_bytes
                or self._entries[-1][1] + 1 != idx
                or (self._entries[-1][1] < seg.first_index and seg.first_index != idx)):
            return self._start_segment(idx)
        if self._tail is None:
            try:
                self._tail = self.storage.open_append(seg.path)
            except OSError as exc:
                self._fatal(exc, seg.path)
        if self._tail.size == 0:  # created just before a crash, its magic never written
            self._write_magic(self._tail)
            seg.size = self._tail.size
        return self._tail

    def _start_segment(self, first_index: int) -> Any:
        self._close_tail()
        self._roll_next = False
        last_kept = self._entries[-1][1] if self._entries else None
        while self._segments and (last_kept is None or last_kept < self._segments[-1].first_index):
            self.storage.remove(self._segments.pop().path)  # holds no kept entry
        path = segment_path(self.directory, first_index)
        self.storage.remove(path)  # a stale file of that name holds nothing we keep
        seg = _Segment(first_index, path)
        self._segments.append(seg)
        try:
            self._tail = self.storage.open_append(path)
        except OSError as exc:
            self._fatal(exc, path)
        self._write_magic(self._tail)
        seg.size = self._tail.size
        self._dir_dirty = True
        return self._tail

    def _write_magic(self, tail: Any) -> None:
        try:
            tail.append(SEGMENT_MAGIC)
        except OSError as exc:
            self._fatal(exc, tail.path)
        self._pending = True

    def _close_tail(self) -> None:
        if self._tail is not None:
            self._sync_file(self._tail)
            self._tail.close()
            self._tail = None

    def clear(self) -> None:
        self._close_tail()
        for seg in self._segments:
            self.storage.remove(seg.path)
        self._segments.clear()
        self._entries.clear()
        self._offsets.clear()
        self._roll_next = False
        self._dir_dirty = True
        self._pending = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Truncate the tail from position `entryFrom` (durable at the next `sync`)."""
        if entryFrom >= len(self._entries):
            return
        idx = self._entries[entryFrom][1]
        offset = self._offsets[entryFrom]
        while self._segments and self._segments[-1].first_index > idx:
            seg = self._segments.pop()
            if self._tail is not None and self._tail.path == seg.path:
                self._tail.close()
                self._tail = None
            self.storage.remove(seg.path)
            self._dir_dirty = True
        seg = self._segments[-1]
        try:
            if self._tail is None:
                self._tail = self.storage.open_append(seg.path)
            self._tail.truncate(offset)
        except OSError as exc:
            self._fatal(exc, seg.path)
        seg.size = self._tail.size
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        self._pending = True

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Compaction after a snapshot: forget the first `entryTo` entries. Whole segments holding only
        forgotten entries are removed (oldest first); the next append starts a new segment, so that the
        current one can go at the next compaction. No entry is rewritten."""
        if entryTo <= 0:
            return
        del self._entries[:entryTo]
        del self._offsets[:entryTo]
        first = self._entries[0][1] if self._entries else None
        removed = False
        while len(self._segments) > 1 and first is not None and self._segments[1].first_index <= first:
            seg = self._segments.pop(0)
            self.storage.remove(seg.path)
            removed = True
        if removed:
            self._dir_dirty = True
        self._roll_next = True

    def __getitem__(self, item: Any) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.sync()
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self.onOneSecondTimer()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit_hint = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        last = self._entries[-1][1] if self._entries else 1
        return max(1, min(self._commit_hint, last))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        voted = None if votedForNodeId is None else str(votedForNodeId)
        if (term, voted) == (self._term, self._voted_for):
            return
        path = self.directory / TERM_FILE
        blob = _checked_blob(msgspec.json.encode(_Hint(term=term, voted_for=voted)))
        try:
            self.storage.write_atomically(path, blob, durable=True)
        except OSError as exc:
            self._fatal(exc, path)
        self._term, self._voted_for = term, voted

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> Any:
        return self._voted_for

    def onOneSecondTimer(self) -> None:
        hint = self._commit_hint
        if hint != self._commit_saved:
            path = self.directory / COMMIT_FILE
            try:
                self.storage.write_atomically(
                    path, _checked_blob(msgspec.json.encode(_Hint(commit_index=hint))), durable=False)
            except OSError as exc:
                self._fatal(exc, path)
            self._commit_saved = hint
        try:
            self.storage.expire()
            if self._tail is not None and not self.storage.fsync:
                self._tail.expire()
        except OSError as exc:
            self._fatal(exc, self.directory)

    # ---------------------------------------------------------------------------- durability
    @property
    def pending(self) -> bool:
        return self._pending or self._dir_dirty

    def sync(self) -> None:
        """Make every append and truncation since the last sync durable: one fsync for all of them."""
        if not (self._pending or self._dir_dirty):
            return
        start = time.perf_counter()
        fsynced = self.storage.fsync
        if self._tail is not None:
            self._sync_file(self._tail)
        if self._dir_dirty:
            try:
                self.storage.sync_dir(self.directory)
            except OSError as exc:
                self._fatal(exc, self.directory)
        self._pending = False
        self._dir_dirty = False
        if fsynced:
            elapsed = time.perf_counter() - start
            self.fsyncs += 1
            self.last_fsync_ms = elapsed * 1000
            if self._on_fsync is not None:
                self._on_fsync(elapsed)

    def align_to_snapshot(self, prev: Entry, last: Entry) -> None:
        """Called while a snapshot is loaded at start, before pysyncobj compares it with the log: drop
        (from memory) the entries before the snapshot's `prev` entry, so that pysyncobj keeps the entries
        after it instead of clearing the journal — which would lose entries this master acknowledged.
        A journal that starts after `prev` was compacted past this snapshot: entries would be missing."""
        if not self._entries:
            return
        first = self._entries[0][1]
        if first > prev[1]:
            raise JournalCorrupt(
                f"journal {self.directory} starts at index {first}, after the snapshot's index {prev[1]}: "
                "entries in between are missing; refusing to start")
        pos = prev[1] - first
        if pos + 1 >= len(self._entries):
            return  # the log ends before the snapshot: pysyncobj restarts the log from the snapshot
        if tuple(self._entries[pos]) != tuple(prev) or tuple(self._entries[pos + 1]) != tuple(last):
            log.warning("journal %s: entries %d-%d differ from the snapshot's; the log restarts from the "
                        "snapshot", self.directory, prev[1], last[1])
            return
        self.deleteEntriesTo(pos)

    # -------------------------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        segments = list(self._segments)
        return {"path": str(self.directory), "bytes": sum(s.size for s in segments), "segments": len(segments),
                "entries": len(self._entries), "fsyncs": self.fsyncs,
                "last_fsync_ms": None if self.last_fsync_ms is None else round(self.last_fsync_ms, 3),
                "fsync": self.storage.fsync, "storage": self.storage.mode}
