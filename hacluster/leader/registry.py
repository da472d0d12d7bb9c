"""The one registry of leader-only loops: every component that runs while this master leads adds its loops
here, and the master installs them into its `LeaderLoops`.

The scheduler (`hacluster.scheduler.loop.register`) and the controllers (`hacluster.controllers.registry.register`)
each add their loops; `hacluster.cluster.master.leader_loop_registry` builds the registry with both, by plain
imports, so a component that fails to import stops the master instead of leaving a cluster that silently
runs without it. A loop is an async function of its context (config, master id, store) and the term it
leads in.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hacluster.config import ClusterConfig
from hacluster.leader.leadership import LeaderLoops
from hacluster.store.api import ReplicatedStore


@dataclass(frozen=True)
class LeaderContext:
    """What a leader-only loop is given besides its term: the cluster config, this master's id, its store."""

    cfg: ClusterConfig
    master_id: str
    store: ReplicatedStore


RegisteredLoop = Callable[[LeaderContext, int], Awaitable[None]]
"""A leader-only loop: runs while this master leads `term` (the int), cancelled when leadership ends."""


class DuplicateLeaderLoop(ValueError):
    """Two components registered a loop under the same name (a bug: names label logs and restarts)."""


class LeaderLoopRegistry:
    """Leader-only loops by name, in registration order."""

    def __init__(self) -> None:
        self._loops: dict[str, RegisteredLoop] = {}

    def add(self, name: str, loop: RegisteredLoop) -> None:
        """Register `loop` under `name`; raises `DuplicateLeaderLoop` if the name is taken."""
        if name in self._loops:
            raise DuplicateLeaderLoop(f"leader loop {name!r} is registered twice")
        self._loops[name] = loop

    def names(self) -> list[str]:
        return list(self._loops)

    def install(self, ctx: LeaderContext, leader_loops: LeaderLoops) -> None:
        """Hand every registered loop, bound to `ctx`, to the master's `LeaderLoops`."""
        for name, loop in self._loops.items():
            leader_loops.register(name, functools.partial(loop, ctx))
