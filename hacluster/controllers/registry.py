"""The controllers a master runs while it leads: node lifecycle, ReplicaSet, Deployment and Job.

`register` is called once per master process by `hacluster.cluster.master.leader_loop_factories()`; each
controller gets a fresh object per leadership term (its caches and queues start empty and are dropped
when the term ends) and fences its writes with that term.
"""

from __future__ import annotations

from hacluster.config import ClusterConfig
from hacluster.controllers.deployment import DeploymentController
from hacluster.controllers.job import JobController
from hacluster.controllers.leadership import LeaderLoops
from hacluster.controllers.nodelifecycle import NodeLifecycleController
from hacluster.controllers.replicaset import ReplicaSetController
from hacluster.store.api import ReplicatedStore


def register(cfg: ClusterConfig, master_id: str, store: ReplicatedStore, leader_loops: LeaderLoops) -> None:
    """Register the leader-only controller loops of this master."""

    async def node_lifecycle(term: int) -> None:
        await NodeLifecycleController(store, cfg.controllers, instance=master_id).run(term)

    async def replicasets(term: int) -> None:
        await ReplicaSetController(store, cfg.controllers, instance=master_id).run(term)

    async def deployments(term: int) -> None:
        await DeploymentController(store, cfg.controllers, instance=master_id).run(term)

    async def jobs(term: int) -> None:
        await JobController(store, cfg.controllers, instance=master_id).run(term)

    leader_loops.register("node-lifecycle", node_lifecycle)
    leader_loops.register("replicaset", replicasets)
    leader_loops.register("deployment", deployments)
    leader_loops.register("job", jobs)
