"""Where the Raft journal and the snapshot writer put their bytes: one small interface, two modes.

Used by `hacluster.raft.journal` (segments, term/vote, commit hint) and by the snapshot writer in
`hacluster.raft.replicated_store`. Nothing else in hacluster writes Raft state.

Modes
- `disk` (the default, and the only mode `hacluster up` ever uses): real files. `AppendFile.append` buffers
  in this process, `flush` hands the bytes to the kernel, `sync` flushes and fsyncs. With `raft.fsync: false`
  `sync` only flushes: the bytes sit in the kernel's page cache, which survives a SIGKILL but not a power cut.
- `write-back` (tests and chaos runs only): appends and truncations stay in this process's memory until
  `sync` writes and fsyncs them, so a SIGKILL loses exactly the bytes that were not fsynced — as a power cut
  loses the page cache. With `raft.fsync: false` nothing is ever fsynced; like the kernel's writeback, data
  buffered for more than WRITEBACK_EXPIRE_S (Linux's `vm.dirty_expire_centisecs` default, 30 s) is written
  out when `expire` runs (the journal calls it every second). Creating, renaming and removing files happen at
  once in both modes (the journal orders them so that this is safe). Snapshots are written by a forked child
  that fsyncs the file and its directory before the snapshot counts.

CONTRACT (used by the chaos layer's power-loss nemesis; keep it exactly):
- `hacluster master ... --unsafe-test-storage write-back` runs a master with write-back storage (a hidden
  option; the default is `disk`).
- `hacluster.cluster.launcher.up(cfg, state_dir, ..., test_storage="write-back")` records the mode in the
  state directory (file `test-storage`), so every later `launcher.start_master` passes the option too;
  `hacluster up` never sets it. `hacluster status -o json` shows `"storage": "disk"|"write-back"` per master.
- Disk faults (write-back storage only): `POST /debug/storage/fault` with the admin token and the JSON body
  `{"operation": "write"|"fsync", "errno": "ENOSPC"|"EIO"}` makes every later journal write (or fsync) fail
  with that errno; `{"clear": true}` removes the fault; a master with `disk` storage answers 404.
- On any journal write or fsync error the master fail-stops: it logs one line
  (`fatal: journal write failed: [Errno 28] No space left on device (<file>); stopping so that nothing
  unpersisted is acknowledged`) and exits with FAIL_STOP_EXIT_CODE (see `hacluster.raft.journal`).
"""

from __future__ import annotations

import errno as errno_mod
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STORAGE_MODES = ("disk", "write-back")
WRITEBACK_EXPIRE_S = 30.0
DISK_BUFFER_BYTES = 1 << 20  # `disk` mode hands its buffer to the kernel when it grows past this
FAULT_OPERATIONS = ("write", "fsync")
FAULT_ERRNOS = {"ENOSPC": errno_mod.ENOSPC, "EIO": errno_mod.EIO}


@dataclass(frozen=True)
class Fault:
    """An injected disk fault: every later `operation` ("write" or "fsync") fails with `errno`."""

    operation: str
    errno: int


class AppendFile:
    """An append-only file with a logical size; see the module docstring for what each mode keeps where.

    `append`, `truncate`, `flush` and `sync` raise OSError when the disk (or an injected fault) fails."""

    def __init__(self, storage: Storage, path: Path) -> None:
        self.storage = storage
        self.path = path
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o644)
        self._written = os.fstat(self._fd).st_size  # bytes in the real file
        self._base = self._written  # logical size of the real file's prefix that is still valid
        self._buffer = bytearray()  # appended after `_base`, not yet in the real file
        self._unwritten_since: float | None = None  # oldest change not yet in the real file
        self._dirty = False  # something changed since the last sync

    @property
    def size(self) -> int:
        return self._base + len(self._buffer)

    @property
    def dirty(self) -> bool:
        return self._dirty

    def append(self, data: bytes) -> None:
        self.storage.check("write", self.path)
        self._note_change()
        self._buffer += data
        self._dirty = True
        if self.storage.mode == "disk" and len(self._buffer) >= DISK_BUFFER_BYTES:
            self.flush()

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes (<= its size)."""
        self.storage.check("write", self.path)
        self._note_change()
        if size >= self._base:
            del self._buffer[size - self._base:]
        else:
            self._buffer.clear()
            self._base = size
            if self.storage.mode == "disk":
                os.ftruncate(self._fd, size)
                self._written = size
        self._dirty = True

    def _note_change(self) -> None:
        if self._unwritten_since is None:
            self._unwritten_since = self.storage.clock()

    def flush(self) -> None:
        """`disk`: hand buffered bytes to the kernel. `write-back`: nothing (they stay in this process)."""
        if self.storage.mode == "disk":
            self._write_out()

    def sync(self) -> None:
        """Make everything appended or truncated so far durable (with fsync off: as durable as the mode
        allows without fsync — see the module docstring)."""
        if not self._dirty:
            return
        if self.storage.fsync:
            self.storage.check("fsync", self.path)  # before writing out: a failed fsync persists nothing
            self._write_out()
            os.fsync(self._fd)
            self._dirty = False
        elif self.storage.mode == "disk":
            self._write_out()
            self._dirty = False
        else:
            self.expire()

    def expire(self) -> None:
        """`write-back` with fsync off: write out data buffered for longer than WRITEBACK_EXPIRE_S."""
        since = self._unwritten_since
        if since is not None and self.storage.clock() - since >= WRITEBACK_EXPIRE_S:
            self._write_out()

    def _write_out(self) -> None:
        if self._base < self._written:
            os.ftruncate(self._fd, self._base)
            self._written = self._base
        if self._buffer:
            view = memoryview(self._buffer)
            done = 0
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], self._base + done)
            view.release()
            self._base += len(self._buffer)
            self._written = self._base
            self._buffer.clear()
        self._unwritten_since = None

    def close(self) -> None:
        """Close the file. What was appended stays written (a closed file's pages stay in the page cache);
        only a crash loses what was never synced."""
        try:
            self._write_out()
        finally:
            os.close(self._fd)


class Storage:
    """Files of one master's Raft state in one mode, with an optional injected fault (write-back only)."""

    def __init__(self, mode: str = "disk", *, fsync: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in STORAGE_MODES:
            raise ValueError(f"storage mode must be one of {', '.join(STORAGE_MODES)} (got {mode!r})")
        self.mode = mode
        self.fsync = fsync
        self.clock = clock
        self._fault: Fault | None = None
        self._pending: dict[Path, tuple[bytes, float]] = {}  # write-back: whole files not yet written out
        self._lock = threading.Lock()  # the fault is set from the event loop, read on the Raft thread

    # ---------------------------------------------------------------------------------- faults
    @property
    def fault(self) -> Fault | None:
        return self._fault

    def set_fault(self, fault: Fault | None) -> None:
        if self.mode != "write-back":
            raise ValueError("disk faults can be injected only with write-back test storage")
        with self._lock:
            self._fault = fault

    def check(self, operation: str, path: Path) -> None:
        """Raise the injected fault's OSError if it applies to `operation`."""
        fault = self._fault
        if fault is not None and fault.operation == operation:
            raise OSError(fault.errno, os.strerror(fault.errno), str(path))

    # ----------------------------------------------------------------------------------- files
    def open_append(self, path: Path) -> AppendFile:
        return AppendFile(self, path)

    def read(self, path: Path) -> bytes | None:
        """The file's content as this process sees it (including write-back data not yet written out)."""
        pending = self._pending.get(path)
        if pending is not None:
            return pending[0]
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def write_atomically(self, path: Path, data: bytes, *, durable: bool) -> None:
        """Replace `path` by `data` all at once: write a temporary file, fsync it, rename it over `path`,
        fsync the directory. Not `durable` (a hint): no fsync, and in write-back mode kept in memory until
        `expire` writes it out."""
        self.check("write", path)
        if self.mode == "write-back" and not (durable and self.fsync):
            self._pending[path] = (data, self._pending.get(path, (b"", self.clock()))[1])
            return
        self._pending.pop(path, None)
        write_file_atomically(path, data, fsync=durable and self.fsync, check=self.check)

    def expire(self) -> None:
        """`write-back`: write out whole files buffered for longer than WRITEBACK_EXPIRE_S."""
        now = self.clock()
        for path, (data, since) in list(self._pending.items()):
            if now - since >= WRITEBACK_EXPIRE_S:
                del self._pending[path]
                write_file_atomically(path, data, fsync=False, check=None)

    def remove(self, path: Path) -> None:
        self._pending.pop(path, None)
        path.unlink(missing_ok=True)

    def sync_dir(self, directory: Path) -> None:
        if self.fsync:
            self.check("fsync", directory)
            fsync_dir(directory)

    def sync_file(self, path: Path) -> None:
        """fsync a file something else wrote (a snapshot pysyncobj received) and its directory."""
        if not self.fsync:
            return
        self.check("fsync", path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)

    def publish(self, source: Path, target: Path) -> None:
        """Rename `source` over `target` and make the rename durable."""
        os.replace(source, target)
        if self.fsync:
            fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, fsync: bool,
                          check: Callable[[str, Path], None] | None) -> None:
    """tmp file, (fsync), rename, (fsync the directory): `path` holds the old or the new bytes, never a mix."""
    if fsync and check is not None:
        check("fsync", path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(path.parent)
