"""Fenced writes of the leader-only loops: every command they propose carries the term they lead in.

Used by the scheduler (`hacluster.scheduler.loop`), the controllers and their event recorders, one
`FencedProposer` per loop and term. `propose(command)` stamps the command — and every command inside a
`Batch` — with `fence_term=term` and the Batch (or lone command) with a fresh request id, then proposes it:

- an unknown outcome (`Timeout`, any error that is not definite) or a refusal before proposing
  (`Unavailable`) is retried with the *same*
  request id, after a bounded back-off, for as long as this master still leads `term` (as its Raft view
  says); the state machine answers a repeated request id with its first outcome, so a retry never applies
  anything twice. The first attempt is made whatever the view says: safety rests on the term in the
  command, which the state machine checks, not on a master's belief that it still leads;
- `NotLeading` is raised when this master no longer leads `term`, or when the state machine refused the
  command because a newer term has begun ("fenced: ..."): the loop must stop, another leader acts now.

A proposal already handed to Raft cannot be withdrawn. When the calling loop is cancelled (leadership
lost) while one is in flight, the proposal is left to settle on its own within `timeout_s` — committed in
the old term, dropped by Raft, or refused by the state machine's fencing — and its outcome is logged and
counted in `STATS`; nothing else of the cancelled loop keeps running.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from hacluster.ids import new_request_id
from hacluster.model.commands import AnyCommand, Batch, encode
from hacluster.model.errors import ApiError, Unavailable
from hacluster.store.api import ReplicatedStore, leadership_of
from hacluster.store.state import Result

log = logging.getLogger(__name__)

FENCED_PREFIX = "fenced:"
MAX_ENTRY_BYTES = 48 * 1024
"""Largest encoded command (a Batch included) the loops propose. pysyncobj sends a log entry of 64 KiB or
more (its appendEntriesBatchSizeBytes) in chunks, one per heartbeat round, which stalled replication for
tens of seconds when a follower had to catch up on many of them; everything stays below that."""
BATCH_OVERHEAD_BYTES = 64
RETRY_WAIT_S_MIN = 0.05
RETRY_WAIT_S_MAX = 1.0

C = TypeVar("C", bound=AnyCommand)


@dataclass
class ProposerStats:
    """Process-wide counters of the leader-only loops' proposals (read by tests and logs)."""

    proposed: int = 0
    """Commands (a Batch counts once) proposed."""
    retried: int = 0
    """Re-proposals with the same request id after an unknown outcome or an unavailable store."""
    fenced: int = 0
    """Proposals the state machine refused because a newer Raft term had begun."""
    settled_after_cancel: int = 0
    """Proposals whose loop was cancelled while they were in flight and that settled afterwards."""


STATS = ProposerStats()


class NotLeading(Exception):
    """This loop's term is over: the master no longer leads it, or the state machine fenced a write."""

    def __init__(self, term: int, why: str) -> None:
        super().__init__(f"no longer leading term {term}: {why}")
        self.term = term
        self.why = why


def is_fenced(result: Result) -> bool:
    """True if the state machine refused the command because its fence term is stale."""
    return (not result.ok and result.error is not None and result.error.reason == "Conflict"
            and result.error.message.startswith(FENCED_PREFIX))


def encoded_size(command: AnyCommand) -> int:
    """Bytes of `command` in a log entry (as `commands.encode` writes it)."""
    return len(encode(command))


def batches(commands: list[AnyCommand], *, max_count: int, max_bytes: int = MAX_ENTRY_BYTES) -> list[Batch]:
    """Group commands, in order, into Batches of at most `max_count` commands and about `max_bytes`
    encoded (a single larger command gets a Batch of its own)."""
    out: list[Batch] = []
    current: list[AnyCommand] = []
    size = BATCH_OVERHEAD_BYTES
    for command in commands:
        n = encoded_size(command)
        if current and (len(current) >= max_count or size + n > max_bytes):
            out.append(Batch(commands=current))
            current, size = [], BATCH_OVERHEAD_BYTES
        current.append(command)
        size += n
    if current:
        out.append(Batch(commands=current))
    return out


async def propose_all(proposer: FencedProposer, commands: list[AnyCommand], *,
                      max_count: int = 100) -> list[tuple[AnyCommand, Result]]:
    """Propose `commands` in order, in Batches of at most `max_count`; each command with its own result
    (a refused Batch gives its refusal to every command in it). Raises NotLeading as `propose` does."""
    out: list[tuple[AnyCommand, Result]] = []
    for batch in batches(commands, max_count=max_count):
        chunk = batch.commands
        result = await proposer.propose(batch)
        results = result.results if result.ok else tuple(result for _ in chunk)
        for c, r in zip(chunk, results, strict=True):
            out.append((c, r))
            if not r.ok:
                log.info("%s: %s refused: %s", proposer.component, type(c).__name__,
                         r.error.message if r.error else "?")
    return out


def stamp(command: C, term: int) -> C:
    """`command` with `fence_term=term` (inside a Batch too) and a request id if it has none."""
    if isinstance(command, Batch):
        inner = [msgspec.structs.replace(c, fence_term=term) for c in command.commands]
        return msgspec.structs.replace(command, commands=inner, fence_term=term,
                                       request_id=command.request_id or new_request_id())
    return msgspec.structs.replace(command, fence_term=term, request_id=command.request_id or new_request_id())


class FencedProposer:
    """Proposes commands for one leader-only loop in one term (see the module docstring)."""

    def __init__(self, store: ReplicatedStore, term: int, *, component: str, timeout_s: float) -> None:
        self.store = store
        self.term = term
        self.component = component
        self.timeout_s = timeout_s

    def check_leading(self) -> None:
        """Raise NotLeading unless this master still leads `term` (as far as it knows)."""
        lead = leadership_of(self.store)
        if not lead.leading or lead.term != self.term:
            raise NotLeading(self.term, f"this master does not lead term {self.term} (leader loops of "
                             f"{lead.holder or 'nobody'} in term {lead.term})")

    async def propose(self, command: AnyCommand) -> Result:
        """Commit `command` fenced by this term and return its result (which may be a refusal such as
        Conflict for a single command, or per-command results inside a Batch). Raises NotLeading."""
        command = stamp(command, self.term)
        attempt = 0
        while True:
            if attempt:
                # Only before a retry: the first attempt goes to the state machine even from a master that
                # has just been deposed without noticing — the term it carries is what decides, not this
                # master's (possibly stale) view of itself.
                self.check_leading()
            STATS.proposed += 1
            task = asyncio.ensure_future(self.store.propose(command, timeout_s=self.timeout_s))
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(self._settled_after_cancel)
                raise
            except ApiError as exc:
                if not (isinstance(exc, Unavailable) or not exc.definite):
                    raise  # certainly not applied, and retrying would not help
                attempt += 1
                STATS.retried += 1
                wait_s = min(RETRY_WAIT_S_MIN * 2 ** (attempt - 1), RETRY_WAIT_S_MAX)
                log.info("%s: proposal %s of term %d not confirmed (%s); retrying in %.2fs with the same request "
                         "id", self.component, command.request_id, self.term, exc.reason, wait_s)
                await asyncio.sleep(wait_s)  # bounded back-off before the retry; the loop stops with the term
                continue
            if is_fenced(result):
                self._count_fenced(result)
                raise NotLeading(self.term, result.error.message if result.error else "fenced")
            return result

    def _count_fenced(self, result: Result) -> None:
        STATS.fenced += 1
        log.warning("%s: write of term %d refused by fencing: %s", self.component, self.term,
                    result.error.message if result.error else "")

    def _settled_after_cancel(self, task: asyncio.Future[Result]) -> None:
        if task.cancelled():
            return
        STATS.settled_after_cancel += 1
        exc = task.exception()
        if exc is not None:
            log.info("%s: in-flight proposal of term %d ended after the loop stopped: %s", self.component,
                     self.term, exc)
            return
        result = task.result()
        if is_fenced(result):
            self._count_fenced(result)
        else:
            log.info("%s: in-flight proposal of term %d settled after the loop stopped (ok=%s)", self.component,
                     self.term, result.ok)
