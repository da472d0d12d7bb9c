"""The one small interface between the API server (and leader-only loops) and the replicated store.

The API server, scheduler and controllers talk only to a `ReplicatedStore`; how it is replicated
(pysyncobj's Raft in `hacluster.raft`, or another engine) stays behind it. `hacluster.cluster.engines`
picks the engine by the config's `store.engine`; nothing above this module imports an engine.

Failure contract:
- `Unavailable` (503): the command is in no log and never will be (no leader, this master lacks a quorum,
  or every attempt was refused before anything was appended) — it did not happen.
- `Timeout` (504): an attempt may have reached a log and its outcome is unknown — it may still be committed.
- Any other outcome is the state machine's own `Result` (which may be a refusal such as Conflict).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from hacluster.model.commands import AnyCommand
from hacluster.store.state import Result, StoreState

T = TypeVar("T")


@dataclass(frozen=True)
class PeerView:
    """What one master sees of a peer link."""

    id: str
    address: str
    connected: bool
    match_index: int | None = None
    last_response_age_s: float | None = None


@dataclass(frozen=True)
class RaftView:
    """A consistent picture of this master's Raft state, published once per Raft tick."""

    id: str
    role: str  # "leader" | "follower" | "candidate"
    term: int
    leader: str | None  # id of the master believed to lead, if any
    commit_index: int
    applied_index: int
    quorum: bool  # leader: a majority answered recently; follower: the leader is reachable
    peers: tuple[PeerView, ...] = field(default_factory=tuple)
    log_length: int = 0
    elections: dict[str, Any] = field(default_factory=dict)
    """PreVote / stickiness / CheckQuorum counters and heartbeat-gap counts (`hacluster.raft.election`)."""


@dataclass(frozen=True)
class Leadership:
    """Who runs the leader-only loops (scheduler, controllers) and in which term.

    On pysyncobj it is the Raft leader in its Raft term. An engine may elect them otherwise (etcd: a lease,
    term = the leadership key's create revision) by giving its store a `leadership()` method; whatever the
    engine, every write of those loops carries the term, and the engine refuses it once the term is over."""

    leading: bool
    term: int
    holder: str | None


def leadership_of(store: Any, view: RaftView | None = None) -> Leadership:
    """The leadership as `store` decides it (its `leadership()`), else from its Raft view (or `view`)."""
    own = getattr(store, "leadership", None)
    if own is not None:
        return own()  # type: ignore[no-any-return]
    v = view if view is not None else store.view()
    return Leadership(v.role == "leader", v.term, v.leader)


class ReplicatedStore(Protocol):
    """A state machine replicated across masters."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin replicating; view listeners and results are delivered on `loop`."""
        ...

    def stop(self) -> None:
        """Leave the cluster and release files and sockets (idempotent)."""
        ...

    async def propose(self, command: AnyCommand, *, timeout_s: float | None = None) -> Result:
        """Commit `command` through the log and return its result on this master (see failure contract)."""
        ...

    async def linearizable_barrier(self) -> None:
        """Return once this master's state holds every write committed before the call."""
        ...

    def read(self, fn: Callable[[StoreState], T]) -> T:
        """Run `fn` on the local state, serialised against apply (may be stale: see the barrier)."""
        ...

    async def wait_for_change(self, after_revision: int, timeout_s: float) -> int:
        """Wait until the local revision exceeds `after_revision` (or the timeout); return the revision."""
        ...

    def view(self) -> RaftView:
        ...

    def add_view_listener(self, fn: Callable[[RaftView], None]) -> None:
        """Call `fn` (on the event loop) whenever role, term or leader change."""
        ...
