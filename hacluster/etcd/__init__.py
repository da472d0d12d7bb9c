"""The etcd store engine: objects kept in etcd the way kube-apiserver keeps them, behind `ReplicatedStore`.

- `hacluster.etcd.layout`: keys (`/registry/<resource>/<namespace>/<name>`) and JSON values;
- `hacluster.etcd.cache`: the watch cache, a `StoreState` mirrored from one etcd watch (reads, watches);
- `hacluster.etcd.plan`: a command planned by the pure state machine against the cache (what it read,
  what it writes), turned into one etcd transaction;
- `hacluster.etcd.client`: the etcd connection (aetcd's gRPC stubs over several endpoints) and the
  mapping of etcd's failures onto 503 (nothing done) / 504 (outcome unknown);
- `hacluster.etcd.election`: the leader-only loops' leadership, an etcd lease (as kube-scheduler's Lease);
- `hacluster.etcd.store`: `EtcdStore`, which wires them together (opened by `hacluster.cluster.engines`).
"""
