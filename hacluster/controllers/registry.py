"""The controllers a master runs while it leads: node lifecycle, ReplicaSet, Deployment and Job.

`register` adds them to the leader loop registry (`hacluster.leader.registry`), which
`hacluster.cluster.master.leader_loop_registry()` builds once per master process; each controller gets a
fresh object per leadership term (its caches and queues start empty and are dropped when the term ends)
and fences its writes with that term.
"""

from __future__ import annotations

from hacluster.controllers.deployment import DeploymentController
from hacluster.controllers.job import JobController
from hacluster.controllers.nodelifecycle import NodeLifecycleController
from hacluster.controllers.replicaset import ReplicaSetController
from hacluster.leader.registry import LeaderContext, LeaderLoopRegistry


async def run_node_lifecycle(ctx: LeaderContext, term: int) -> None:
    await NodeLifecycleController(ctx.store, ctx.cfg.controllers, instance=ctx.master_id).run(term)


async def run_replicasets(ctx: LeaderContext, term: int) -> None:
    await ReplicaSetController(ctx.store, ctx.cfg.controllers, instance=ctx.master_id).run(term)


async def run_deployments(ctx: LeaderContext, term: int) -> None:
    await DeploymentController(ctx.store, ctx.cfg.controllers, instance=ctx.master_id).run(term)


async def run_jobs(ctx: LeaderContext, term: int) -> None:
    await JobController(ctx.store, ctx.cfg.controllers, instance=ctx.master_id).run(term)


def register(registry: LeaderLoopRegistry) -> None:
    """Add the leader-only controller loops."""
    registry.add("node-lifecycle", run_node_lifecycle)
    registry.add("replicaset", run_replicasets)
    registry.add("deployment", run_deployments)
    registry.add("job", run_jobs)
