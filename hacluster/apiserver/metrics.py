"""Prometheus metrics of one master, served at `/metrics`.

Updated by the API server's middleware (requests by verb, resource and code, with latency) and by the
master process (Raft term, role, leader changes, proposal outcomes). One registry per master process, so
tests that run several API servers in one process keep their counts apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# etcd's wal_fsync_duration_seconds buckets: 1 ms doubling to ~8 s
_FSYNC_BUCKETS_S = tuple(0.001 * 2**i for i in range(14))
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MasterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("apiserver_request_total", "API requests by verb, resource and HTTP code",
                                ["verb", "resource", "code"], registry=self.registry)
        self.latency = Histogram("apiserver_request_duration_seconds", "API request latency",
                                 ["verb", "resource"], buckets=_LATENCY_BUCKETS_S, registry=self.registry)
        self.proposals = Counter("hacluster_proposals_total", "Raft proposals by outcome",
                                 ["outcome"], registry=self.registry)
        self.term = Gauge("hacluster_raft_term", "Current Raft term", registry=self.registry)
        self.is_leader = Gauge("hacluster_raft_is_leader", "1 when this master is the Raft leader",
                               registry=self.registry)
        self.leader_changes = Counter("hacluster_raft_leader_changes_total", "Leader changes seen by this master",
                                      registry=self.registry)
        self.commit_index = Gauge("hacluster_raft_commit_index", "Raft commit index", registry=self.registry)
        self.revision = Gauge("hacluster_store_revision", "Store revision", registry=self.registry)
        self.journal_fsync = Histogram("hacluster_raft_journal_fsync_duration_seconds",
                                       "Latency of the Raft journal's fsyncs (one per group commit)",
                                       buckets=_FSYNC_BUCKETS_S, registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Open watches", registry=self.registry)
        # flow control (hacluster.apiserver.flowcontrol), named as kube-apiserver names them
        self.inflight = Gauge("apiserver_current_inflight_requests", "Requests holding a seat, by kind",
                              ["request_kind"], registry=self.registry)
        self.inqueue = Gauge("apiserver_flowcontrol_current_inqueue_requests", "Requests waiting for a seat",
                             ["request_kind"], registry=self.registry)
        self.rejected = Counter("apiserver_flowcontrol_rejected_requests_total",
                                "Requests refused with 429 (no seat, or the user's watch cap)",
                                ["request_kind"], registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
