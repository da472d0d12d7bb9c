"""The record files of a chaos run (history, Raft samples, watch streams): JSON lines appended as they
happen, so a run that is killed still leaves what it saw. Without a path nothing is written (tests)."""

from __future__ import annotations

from pathlib import Path


class JsonLinesFile:
    def __init__(self, path: Path | None) -> None:
        self._file = path.open("w", encoding="utf-8") if path is not None else None

    def write_line(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
