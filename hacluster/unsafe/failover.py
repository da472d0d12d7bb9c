"""Timeout-based failover of the unsafe primary-backup engine, as pure decisions (no clock, no sockets).

Used by `hacluster.unsafe.async_primary`, which feeds it the time and what arrived from peers and carries
out what it decides. This is the deliberately unsafe design the split-brain experiment measures:
- a backup that has not heard from its primary for `failover_timeout_s` promotes itself with a higher epoch
  — without asking anyone, so a partitioned primary and a new one both accept writes;
- backups wait longer the later they come in id order (`stagger_s` per place), so that on one side of a cut
  the first to promote is heard by the others before their own timeout fires;
- when two primaries meet again, the higher epoch wins (equal epochs: the smaller id), and the loser
  becomes a backup and takes the winner's copy whole, discarding every write only it had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PRIMARY = "primary"
BACKUP = "backup"


def outranks(epoch_a: int, id_a: str, epoch_b: int, id_b: str) -> bool:
    """Does primary (epoch_a, id_a) win over (epoch_b, id_b) when they meet? Higher epoch, then smaller id."""
    return epoch_a > epoch_b or (epoch_a == epoch_b and id_a < id_b)


@dataclass(frozen=True)
class FailoverState:
    """What one master believes: its role, the epoch it is in, whom it follows, when it last heard them."""

    me: str
    members: tuple[str, ...]
    role: str = BACKUP
    epoch: int = 0
    primary: str | None = None
    heard_primary_at: float = 0.0
    """When the primary was last heard from (backup), or when this master started (none known yet)."""
    max_epoch_seen: int = 0
    """The highest epoch any peer announced: a promotion goes above it."""


@dataclass(frozen=True)
class Decision:
    """What the engine must do after a step: the new state, and whether to fetch the primary's copy."""

    state: FailoverState
    resync: bool = False
    """This master now follows a primary whose history it may not share: replace its copy with the primary's."""
    promoted: bool = False
    stepped_down: bool = False


def initial(me: str, members: tuple[str, ...], now: float) -> FailoverState:
    """A master that just started: a backup of nobody, epoch 0 (nothing is kept on disk)."""
    return FailoverState(me=me, members=tuple(sorted(members)), heard_primary_at=now)


def promotion_delay_s(state: FailoverState, failover_timeout_s: float, stagger_s: float) -> float:
    """How long this backup waits without hearing a primary before it promotes itself.

    Masters other than the lost primary take turns in id order. At start-up (no primary known, epoch 0)
    the first in order promotes at once, so a new cluster has a primary without waiting a whole timeout."""
    candidates = [m for m in state.members if m != state.primary]
    rank = candidates.index(state.me) if state.me in candidates else len(candidates)
    base = 0.0 if state.primary is None and state.epoch == 0 else failover_timeout_s
    return base + rank * stagger_s


def on_tick(state: FailoverState, now: float, failover_timeout_s: float, stagger_s: float) -> Decision:
    """Promote a backup whose primary has been silent too long (the unsafe step: nobody is asked)."""
    if state.role == PRIMARY:
        return Decision(state)
    if now - state.heard_primary_at < promotion_delay_s(state, failover_timeout_s, stagger_s):
        return Decision(state)
    epoch = max(state.epoch, state.max_epoch_seen) + 1
    return Decision(replace(state, role=PRIMARY, epoch=epoch, primary=state.me, max_epoch_seen=epoch),
                    promoted=True)


def on_heartbeat(state: FailoverState, sender: str, sender_role: str, sender_epoch: int,
                 now: float) -> Decision:
    """A peer announced (role, epoch). Follow a primary at least as strong as what this master knows; a
    primary that meets a stronger one steps down and must take its copy (its own writes are discarded)."""
    seen = replace(state, max_epoch_seen=max(state.max_epoch_seen, sender_epoch))
    if sender_role != PRIMARY or sender == state.me:
        return Decision(seen)
    if state.role == PRIMARY:
        if outranks(sender_epoch, sender, state.epoch, state.me):
            return Decision(replace(seen, role=BACKUP, epoch=sender_epoch, primary=sender, heard_primary_at=now),
                            resync=True, stepped_down=True)
        return Decision(seen)  # the sender is the loser; it steps down when it hears this master
    if state.primary == sender and sender_epoch == state.epoch:
        return Decision(replace(seen, heard_primary_at=now))
    if sender_epoch > state.epoch or (sender_epoch == state.epoch and (
            state.primary is None or outranks(sender_epoch, sender, state.epoch, state.primary))):
        return Decision(replace(seen, epoch=sender_epoch, primary=sender, heard_primary_at=now), resync=True)
    return Decision(seen)  # an older primary still speaking from the other side of a healed cut: ignored


def accepts_entry(state: FailoverState, sender: str, sender_epoch: int) -> bool:
    """Does this backup apply a replicated entry from `sender`? Only from the primary it follows, in its epoch."""
    return state.role == BACKUP and state.primary == sender and sender_epoch == state.epoch
