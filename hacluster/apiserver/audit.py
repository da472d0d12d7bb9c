"""The audit trail of one master: one JSON line per API request in Kubernetes' `audit.k8s.io/v1` Event
shape at level Metadata (who, what, on which object, with which answer, when), rotated by size.

Written by the API server's outermost middleware (`hacluster.apiserver.frontdoor`) into
`<state dir>/audit/<master>.jsonl` (`<master>.jsonl.1` … after rotation, `api.audit_log_max_bytes`,
`api.audit_log_backups`); read back and merged across masters by `hacluster audit`
(`hacluster.cli.audit_cmd`) and copied into chaos run records (`chaos.runner`). For a write that went
through Raft the event carries the log index and term of its entry in the annotations
`hacluster.io/raft-index` and `hacluster.io/raft-term`.

Written by hand rather than through `logging.handlers.RotatingFileHandler`: that handler flushes every
record (a system call per request) behind logging's locks — measured at ~60 µs of the event loop per request
on the development machine, against ~10 µs here, where lines are encoded by msgspec, buffered and flushed
`FLUSH_PERIOD_S` after the first unflushed one (and on close). Rotation renames `<master>.jsonl` to
`.jsonl.1`, `.1` to `.2`, … as that handler does, keeping `backups` files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from hacluster.model.timestamps import parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

AUDIT_DIR = "audit"
API_VERSION = "audit.k8s.io/v1"
RAFT_INDEX = "hacluster.io/raft-index"
RAFT_TERM = "hacluster.io/raft-term"
MASTER = "hacluster.io/master"
Obj = dict[str, Any]
FLUSH_PERIOD_S = 0.2
_encoder = msgspec.json.Encoder()


def log_path(state_dir: Path, master_id: str) -> Path:
    return state_dir / AUDIT_DIR / f"{master_id}.jsonl"


@dataclass(frozen=True)
class ObjectRef:
    """What a request names: Kubernetes' `objectRef`."""

    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    api_group: str = ""
    api_version: str = ""


def event(*, audit_id: str, master_id: str, verb: str, uri: str, username: str, groups: tuple[str, ...],
          source_ip: str, user_agent: str, ref: ObjectRef | None, code: int, status: Obj | None,
          received: float, completed: float, raft: tuple[int, int] | None) -> Obj:
    """One audit Event at level Metadata (no request or response bodies), stage ResponseComplete. `status`
    is the failure Status of the answer (its reason and message are kept), None for a success."""
    ev: Obj = {
        "kind": "Event", "apiVersion": API_VERSION, "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
        "user": {"username": username, "groups": list(groups)},
        "sourceIPs": [source_ip] if source_ip else [],
        "userAgent": user_agent,
    }
    if ref is not None and ref.resource:
        obj_ref: Obj = {"resource": ref.resource}
        for key, value in (("namespace", ref.namespace), ("name", ref.name), ("subresource", ref.subresource),
                           ("apiGroup", ref.api_group), ("apiVersion", ref.api_version)):
            if value:
                obj_ref[key] = value
        ev["objectRef"] = obj_ref
    response: Obj = {"metadata": {}, "code": code}
    if status is not None and code >= 400:
        response.update(status="Failure", reason=str(status.get("reason", "")),
                        message=str(status.get("message", ""))[:1024])
    ev["responseStatus"] = response
    ev["requestReceivedTimestamp"] = _micro_time(received)
    ev["stageTimestamp"] = _micro_time(completed)
    annotations = {MASTER: master_id}
    if raft is not None:
        annotations[RAFT_INDEX], annotations[RAFT_TERM] = str(raft[0]), str(raft[1])
    ev["annotations"] = annotations
    return ev


_second_cache: list[Any] = [-1, ""]


def _micro_time(t: float) -> str:
    """`rfc3339_micro(t)`, with the formatted second kept: two timestamps per request, most in the same
    second, and gmtime/strftime were a third of an event's cost."""
    second = int(t)
    if _second_cache[0] != second:
        _second_cache[0], _second_cache[1] = second, rfc3339(second)[:-1]
    return f"{_second_cache[1]}.{int(t * 1e6) % 1_000_000:06d}Z"


class AuditLog:
    """Appends events to one master's audit file, rotating it by size. `close()` when the master stops."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self._file = open(path, "ab")  # noqa: SIM115 - held open for the master's life, closed by close()
        self._size = self._file.tell()
        self._flush_pending = False
        self.written = 0

    def write(self, ev: Obj) -> None:
        """Append one event; an unwritable disk is logged, never raised to a request."""
        line = _encoder.encode(ev) + b"\n"
        try:
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
        except OSError as exc:
            log.error("audit log %s: %s", self.path, exc)
            return
        self._size += len(line)
        self.written += 1
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a tool writing events): write through
            self.flush()
            return
        self._flush_pending = True
        loop.call_later(FLUSH_PERIOD_S, self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if not self._file.closed:
            try:
                self._file.flush()
            except OSError as exc:
                log.error("audit log %s: %s", self.path, exc)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self.flush()
        self._file.close()


# ------------------------------------------------------------------------------------------- reading
def log_files(audit_dir: Path) -> list[Path]:
    """Every audit file of every master in a directory, rotated ones included."""
    if not audit_dir.is_dir():
        return []
    return sorted(p for p in audit_dir.iterdir() if p.is_file() and ".jsonl" in p.name)


def read_events(files: Iterable[Path]) -> Iterator[Obj]:
    """The events of these files; a torn or foreign line (a master killed mid-write) is skipped."""
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict) and ev.get("apiVersion") == API_VERSION:
                    yield ev


def received_at(ev: Obj) -> float:
    return parse_rfc3339(ev.get("requestReceivedTimestamp")) or 0.0


def merged(events: Iterable[Obj], *, user: str | None = None, since: float | None = None) -> list[Obj]:
    """Events of every master in the order they were received, optionally of one user and from a time on."""
    out = [ev for ev in events
           if (user is None or (ev.get("user") or {}).get("username") == user)
           and (since is None or received_at(ev) >= since)]
    out.sort(key=lambda ev: (received_at(ev), str((ev.get("annotations") or {}).get(MASTER, ""))))
    return out
