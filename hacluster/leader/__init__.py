"""The leader-side runtime: what every leader-only loop (the scheduler, the controllers) stands on.

- `leadership.LeaderLoops` starts the registered loops when this master leads a term and cancels them
  when it stops leading;
- `registry.LeaderLoopRegistry` is the one table of those loops, filled by `hacluster.scheduler` and
  `hacluster.controllers` and installed by the master (`hacluster.cluster.master`);
- `proposer.FencedProposer` stamps every write with the loop's term (fencing) and retries unknown outcomes;
- `informer.StoreFollower` follows the leader's local store (list, then every change in order);
- `events.EventRecorder` writes Kubernetes Events, aggregating repeats (`hacluster.model.events`).

Layering: above `hacluster.store` (and beside the replication engines), below the scheduler and the
controllers, which import it; it imports neither of them.
"""
