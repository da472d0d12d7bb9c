"""Container log files in the CRI format (`<RFC3339Nano> stdout|stderr F|P <text>`), as containerd writes them.

Used by the process runtime (`hacluster.kubelet.process`): `LogWriter` appends a container's output and
rotates the file at `max_bytes` (one old file kept), `read_cri_log` reads both back for the log endpoint,
`remove_log` deletes them when the attempt is forgotten.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hacluster.kubelet.runtime import LogLine


class LogWriter:
    """Appends CRI-format lines to a container log, rotating it at `max_bytes` (one old file kept)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "ab")
        self._size = self._f.tell()

    def write(self, stream: str, text: bytes, partial: bool) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int((now % 1) * 1e9):09d}Z"
        line = f"{stamp} {stream} {'P' if partial else 'F'} ".encode() + text + b"\n"
        if self._size + len(line) > self.max_bytes and self._size > 0:
            self._f.close()
            os.replace(self.path, self.path.with_suffix(self.path.suffix + ".1"))
            self._f = open(self.path, "ab")
            self._size = 0
        self._f.write(line)
        self._f.flush()
        self._size += len(line)

    def close(self) -> None:
        self._f.close()


def read_cri_log(path: Path) -> list[LogLine]:
    """The lines of a container log (and its rotated predecessor), partial lines joined."""
    out: list[LogLine] = []
    pending: dict[str, str] = {}
    for p in (path.with_suffix(path.suffix + ".1"), path):
        try:
            data = p.read_bytes()
        except OSError:
            continue
        for raw in data.decode(errors="replace").splitlines():
            parts = raw.split(" ", 3)
            if len(parts) < 3:
                continue
            stamp, stream, tag = parts[0], parts[1], parts[2]
            text = parts[3] if len(parts) > 3 else ""
            if tag == "P":
                pending[stream] = pending.get(stream, "") + text
                continue
            text = pending.pop(stream, "") + text
            out.append(LogLine(_parse_stamp(stamp), stream, text))
    return out


def _parse_stamp(stamp: str) -> float:
    try:
        base, frac = stamp.rstrip("Z").split(".")
        return time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone + float("0." + frac)
    except ValueError:
        return 0.0


def remove_log(path: Path) -> None:
    """Delete a forgotten attempt's log file and its rotated predecessor."""
    for suffix in ("", ".1"):
        try:
            path.with_suffix(path.suffix + suffix).unlink()
        except OSError:
            pass
