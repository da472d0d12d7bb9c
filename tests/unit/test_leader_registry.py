"""The one registry of leader-only loops: the master installs the scheduler's and the controllers' loops,
a name registered twice is refused, and installed loops run with their context and term."""

from __future__ import annotations

import asyncio

import pytest

from hacluster.cluster.master import leader_loop_registry
from hacluster.config import default_config
from hacluster.leader.registry import DuplicateLeaderLoop, LeaderContext, LeaderLoopRegistry


def test_master_registers_the_scheduler_and_every_controller() -> None:
    assert leader_loop_registry().names() == ["scheduler", "node-lifecycle", "replicaset", "deployment", "job"]


def test_a_name_registered_twice_is_refused() -> None:
    registry = LeaderLoopRegistry()

    async def loop(ctx: LeaderContext, term: int) -> None:
        return None

    registry.add("scheduler", loop)
    with pytest.raises(DuplicateLeaderLoop):
        registry.add("scheduler", loop)


class RecordingLoops:
    """Stands in for `LeaderLoops`: keeps what is registered."""

    def __init__(self) -> None:
        self.loops: dict[str, object] = {}

    def register(self, name: str, loop: object) -> None:
        self.loops[name] = loop


async def test_installed_loops_get_their_context_and_term() -> None:
    seen: list[tuple[str, int]] = []

    async def loop(ctx: LeaderContext, term: int) -> None:
        seen.append((ctx.master_id, term))

    registry = LeaderLoopRegistry()
    registry.add("probe", loop)
    target = RecordingLoops()
    ctx = LeaderContext(default_config(1), "m1", store=None)  # type: ignore[arg-type]
    registry.install(ctx, target)  # type: ignore[arg-type]
    assert list(target.loops) == ["probe"]
    await asyncio.wait_for(target.loops["probe"](7), 1.0)  # type: ignore[operator]
    assert seen == [("m1", 7)]
