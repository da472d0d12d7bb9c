"""Cluster configuration: YAML files loaded into typed, frozen settings, validated with every error named.

Read by `hacluster up` (which resolves free ports and tokens and writes the result into the state
directory), by each `hacluster master` process and by the kubelets. A bad file is reported as one line per
problem: `configs/x.yaml: raft.election_timeout_ms_min: must be > 3 × heartbeat_ms (got 100, heartbeat 50)`.
Environment variables are read here and nowhere else.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hacluster.store.state import DEDUP_MAX as STATE_MACHINE_DEDUP_MAX
from hacluster.store.state import EVENTS_MAX as STATE_MACHINE_EVENTS_MAX


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file, the key and the reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class MasterConfig(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=32)
    """Name of the master, used in status output and logs (e.g. "m1")."""
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$")
    """Address by which the other masters, the kubelets and clients reach this master (its advertised
    address): the host of its API URLs and of its Raft peer address, which is also its identity among the
    peers. One machine may give each master its own loopback address (127.0.0.2, …); see configs/multi-host/."""
    bind_host: str = Field(default="", max_length=253, pattern=r"^[A-Za-z0-9.-]*$")
    """Address the API listens on; empty: `host`. `0.0.0.0` serves every interface of a real host. (Raft
    listens on `host`: pysyncobj binds the address that names it.)"""
    api_port: int = Field(default=0, ge=0, le=65535)
    """Port of the Kubernetes API on `host`; 0 means `hacluster up` picks a free one."""
    raft_port: int = Field(default=0, ge=0, le=65535)
    """Port of the Raft peer link on `host`; 0 means `hacluster up` picks a free one."""
    api_tls_port: int = Field(default=0, ge=0, le=65535)
    """Port of the same API over HTTPS (kubectl sends tokens only over TLS); 0 means `up` picks one."""
    etcd_client_port: int = Field(default=0, ge=0, le=65535)
    """With `store.engine: etcd` and no `store.etcd.endpoints`: client port on `host` of the etcd member
    `hacluster up` runs beside this master (`hacluster.cluster.etcd_members`); 0 means `up` picks one."""
    etcd_peer_port: int = Field(default=0, ge=0, le=65535)
    """…and the peer (etcd Raft) port of that member; 0 means `up` picks one."""

    def api_url(self, *, tls: bool = False) -> str:
        """The API's URL as the others reach it (on `host`)."""
        return f"https://{self.host}:{self.api_tls_port}" if tls else f"http://{self.host}:{self.api_port}"

    @property
    def raft_address(self) -> str:
        """`host:port` of the Raft peer link: where the peers dial this master, and its name among them."""
        return f"{self.host}:{self.raft_port}"

    @property
    def listen_host(self) -> str:
        """Where the API listens: `bind_host`, else `host`."""
        return self.bind_host or self.host


class RaftConfig(_Frozen):
    election_timeout_ms_min: int = Field(default=300, gt=0)
    """Lower bound of the randomised election timeout."""
    election_timeout_ms_max: int = Field(default=600, gt=0)
    """Upper bound of the randomised election timeout."""
    heartbeat_ms: int = Field(default=50, gt=0)
    """Period of the leader's AppendEntries heartbeats."""
    leader_fallback_ms: int = Field(default=1000, gt=0)
    """A leader that hears from no majority for this long steps down (pysyncobj's leaderFallbackTimeout)."""
    quorum_contact_ms: int = Field(default=600, gt=0)
    """A leader counts a peer towards its quorum only if that peer answered within this time; without a
    quorum the API refuses writes and linearizable reads at once with 503."""
    connection_timeout_ms: int = Field(default=1000, gt=0)
    """A peer link silent for this long is considered dead (must be >= election_timeout_ms_max)."""
    connection_retry_ms: int = Field(default=200, ge=0)
    """Pause between attempts to redial a lost peer."""
    tick_ms: int = Field(default=10, gt=0, le=100)
    """Longest the Raft thread sleeps between ticks. Election timeouts fire on tick boundaries, so a coarse
    tick (pysyncobj's default is 50 ms) makes candidates' random timeouts collide and split votes."""
    append_batch_bytes: int = Field(default=256 * 1024, ge=4096, le=64 * 1024 * 1024)
    """Most bytes of entries one AppendEntries carries (a single larger entry still goes alone): large enough
    to catch a follower up in few messages, small enough that one message does not hold the Raft thread."""
    proposal_retry_wait_ms: int = Field(default=50, gt=0, le=5000)
    """Longest a proposal waits for news of a new leader between two attempts (a new leader wakes it
    earlier); the request's own deadline bounds the whole."""
    journal_segment_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    """The Raft journal starts a new segment file once the current one is this large; whole segments
    behind a snapshot are deleted, so this bounds what compaction leaves on disk."""
    log_compaction_min_entries: int = Field(default=50_000, ge=2)
    """Compact the Raft log (snapshot the store) once it holds this many entries…"""
    log_compaction_min_time_s: int = Field(default=600, gt=0)
    """…or once this much time passed since the last snapshot."""
    fsync: bool = True
    """fsync the Raft journal before a follower acknowledges entries and before the leader counts them
    toward the commit index (and the term and vote before a vote is granted), as Raft's safety proof
    assumes. `false` acknowledges entries that a power cut would erase — for experiments that show what
    fsync buys; benchmarks print which mode ran."""
    password: str = Field(default="", max_length=256)
    """Shared secret that authenticates Raft traffic (a MAC on every peer frame, `hacluster.raft.peer_wire`;
    the frames are not encrypted); `hacluster up` generates one if empty."""
    pre_vote: bool = True
    """PreVote (Raft thesis §9.6, etcd's `PreVote`): when its election timeout fires, a master first asks for
    pre-votes at term+1 without raising its own term, and starts a real election only with a majority. A
    master that was cut off or paused then comes back without a higher term and deposes no healthy leader.
    Off: pysyncobj's plain elections (for experiments that show what PreVote buys)."""
    check_quorum: bool = True
    """Leader stickiness and CheckQuorum (etcd's `CheckQuorum`): a master that heard from its leader within
    election_timeout_ms_min, and the leader itself, ignore vote and pre-vote requests without adopting their
    term; a leader that had no answer from a majority within leader_fallback_ms steps down (only checked
    when its Raft thread has just read its sockets, so a starved leader does not step down over answers it
    has not read). Off: no lease, and pysyncobj's own step-down after leader_fallback_ms."""
    linearizable_reads: Literal["read-index", "log"] = "read-index"
    """How a default (linearizable) read is made safe. `read-index` (etcd's default, Raft thesis §6.4): the
    leader confirms its commit index with a round of probes to a majority and the reading master waits until
    it has applied that index — no log entry, no fsync (`hacluster.raft.read_index`). `log`: a Barrier
    command through the log, a whole write round per read round (the way before ReadIndex; for comparing)."""

    @model_validator(mode="after")
    def _check_timing(self) -> RaftConfig:
        problems = []
        if self.election_timeout_ms_min <= 3 * self.heartbeat_ms:
            problems.append(f"election_timeout_ms_min: must be > 3 × heartbeat_ms (got "
                            f"{self.election_timeout_ms_min}, heartbeat_ms {self.heartbeat_ms})")
        if self.election_timeout_ms_max <= self.election_timeout_ms_min:
            problems.append(f"election_timeout_ms_max: must be > election_timeout_ms_min (got "
                            f"{self.election_timeout_ms_max} <= {self.election_timeout_ms_min})")
        if self.connection_timeout_ms < self.election_timeout_ms_max:
            problems.append(f"connection_timeout_ms: must be >= election_timeout_ms_max (got "
                            f"{self.connection_timeout_ms} < {self.election_timeout_ms_max})")
        if self.leader_fallback_ms <= self.heartbeat_ms:
            problems.append("leader_fallback_ms: must be > heartbeat_ms")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ApiConfig(_Frozen):
    proposal_timeout_s: float = Field(default=1.5, gt=0, le=60)
    """How long a write or linearizable read may wait for Raft before it is answered 504 (outcome unknown)
    or, if it was never proposed for want of a leader or quorum, 503."""
    max_body_bytes: int = Field(default=3 * 1024 * 1024, gt=0)
    """Largest request body accepted (Kubernetes' limit is 3 MiB); larger gets 413."""
    watch_queue_max: int = Field(default=1000, gt=0)
    """Events a slow watcher may fall behind before its watch is closed (it then resumes or relists)."""
    watch_stop_spread_s: float = Field(default=2.0, ge=0, le=60)
    """When a master loses its quorum it ends its watches over this many seconds (clients resume
    elsewhere), rather than all at once, which would make every client relist at the same moment."""
    watch_timeout_s_max: int = Field(default=1800, gt=0)
    """Longest a watch stays open; clients resume from the last resourceVersion they saw."""
    watch_bookmark_period_s: float = Field(default=10.0, gt=0, le=600)
    """How often a watch that asked for bookmarks (allowWatchBookmarks) gets one when nothing else happens."""
    watch_future_revision_wait_s: float = Field(default=3.0, gt=0, le=60)
    """A watch from a resourceVersion this master has not reached yet waits this long for it, then is
    answered 504 ResourceVersionTooLarge (kube-apiserver waits 3 s)."""
    update_conflict_retries: int = Field(default=5, ge=1, le=100)
    """Times a server-side read-modify-write (a patch, a status merge) is retried when another write changed
    the object in between, before the client gets 409 Conflict."""
    list_limit_max: int = Field(default=5000, gt=0)
    """Largest page a list returns even when the client asks for more or for no limit."""
    # -- the front door: overload, slow clients, audit (hacluster.apiserver.flowcontrol, .limits, .audit)
    max_requests_inflight: int = Field(default=400, ge=1)
    """Reads (get, list) one master serves at once, as kube-apiserver's --max-requests-inflight; past it and a
    full queue a read is refused with 429 TooManyRequests and `Retry-After: 1`. Watches and followed logs
    are not counted."""
    max_mutating_requests_inflight: int = Field(default=200, ge=1)
    """Writes (create, update, patch, delete) one master serves at once, as kube-apiserver's
    --max-mutating-requests-inflight; past it and a full queue a write is refused with 429, unproposed."""
    system_reserved_share: float = Field(default=0.1, ge=0, lt=1)
    """Share of each in-flight limit kept for system users (kubelets, `system:*`), rounded up to at least one
    seat, so that nodes stay Ready while another user floods the API."""
    queue_length_per_user: int = Field(default=10, ge=0)
    """Requests of one user that may wait for a seat when every seat is taken; one more is refused at once
    with 429. Freed seats go to the waiting user holding the fewest (per-user fair queueing)."""
    queue_wait_s: float = Field(default=1.0, gt=0, le=60)
    """Longest a request waits in its user's queue for a seat before it is refused with 429."""
    request_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Longest a request other than a watch or a followed log may run (Kubernetes' default request timeout);
    past it the answer is 504 Timeout (outcome unknown for a write)."""
    body_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """Longest a client may take to send a request body once its headers arrived; past it the answer is
    408 and nothing is done (a client trickling its body is cut off)."""
    idle_connection_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """A connection must bring the complete headers of a request within this many seconds of being opened
    or of its previous answer, else it is closed: this closes idle keep-alive connections and cuts off
    clients trickling their headers (slowloris)."""
    max_watches_per_user: int = Field(default=500, ge=1)
    """Watches one user may hold open on one master; one more is refused with 429 TooManyRequests."""
    watch_write_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """A watcher whose connection does not take a write for this long (it stopped reading and the socket
    buffers are full) is dropped; the fan-out to other watchers never waits for it."""
    audit_log_max_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    """Size at which a master's audit log (`audit/<master>.log` in the state directory) is rotated."""
    audit_log_backups: int = Field(default=3, ge=1, le=100)
    """Rotated audit logs kept per master (`<master>.log.1` … ); older ones are deleted."""


UNSAFE_ENGINES = frozenset({"unsafe-async-primary"})
"""Engines that lose acknowledged writes by design (for the split-brain experiment): never a default, and
`hacluster status` and the dashboard mark a cluster running one UNSAFE."""


class UnsafeAsyncPrimaryConfig(_Frozen):
    loses_acknowledged_writes: bool = False
    """Must be set to true to run the "unsafe-async-primary" engine: it acknowledges a write before any
    backup has it and fails over on a timeout, so a partition makes two primaries and the heal discards the
    loser's acknowledged writes. It exists only to measure that (`hacluster experiment split-brain`)."""
    heartbeat_ms: int = Field(default=100, gt=0, le=10_000)
    """How often every master tells its peers its role and epoch."""
    failover_timeout_ms: int = Field(default=1000, gt=0, le=60_000)
    """A backup that heard nothing from its primary for this long promotes itself (with a higher epoch)."""
    failover_stagger_ms: int = Field(default=500, ge=0, le=60_000)
    """Each later backup in id order waits this much longer, so one side of a cut promotes one master."""
    link_silence_timeout_ms: int = Field(default=1500, gt=0, le=60_000)
    """A peer link that delivered nothing for this long is closed and dialled again."""
    link_retry_ms: int = Field(default=200, gt=0, le=60_000)
    """Pause between attempts to dial a lost peer."""
    send_buffer_max_bytes: int = Field(default=64 * 1024 * 1024, ge=65_536)
    """Bytes queued for a peer that does not read before its link is dropped (it then copies the primary)."""

    @model_validator(mode="after")
    def _check_timing(self) -> UnsafeAsyncPrimaryConfig:
        if self.failover_timeout_ms <= 2 * self.heartbeat_ms:
            raise ValueError(f"failover_timeout_ms: must be > 2 × heartbeat_ms (got {self.failover_timeout_ms}, "
                             f"heartbeat_ms {self.heartbeat_ms})")
        return self


class EtcdConfig(_Frozen):
    endpoints: tuple[str, ...] = ()
    """Client URLs of an existing etcd cluster (e.g. "http://127.0.0.1:2379"); empty: `hacluster up` runs
    one etcd member beside each master (`hacluster.cluster.etcd_members`) and uses those."""
    ca_file: str = ""
    """CA bundle that signed the etcd servers' certificates (https endpoints); "" for plain http."""
    cert_file: str = ""
    """Client certificate presented to etcd (client TLS authentication); "" for none."""
    key_file: str = ""
    """Private key of `cert_file`."""
    prefix: str = Field(default="/registry/", pattern=r"^/([^/]+/)+$")
    """Key prefix of the objects: `<prefix><resource>/<namespace>/<name>`, as kube-apiserver lays them out
    (starts and ends with "/"; clusters sharing one etcd need different prefixes)."""
    leader_lease_ttl_s: int = Field(default=3, ge=2, le=60)
    """TTL of the etcd lease behind the leader-only loops' leadership key: a leader that cannot renew it
    (paused, partitioned) loses it after this long, and its writes are fenced from then on."""
    heartbeat_ms: int = Field(default=100, gt=0)
    """etcd's `--heartbeat-interval` for members `hacluster up` runs."""
    election_timeout_ms: int = Field(default=1000, gt=0)
    """etcd's `--election-timeout` for members `hacluster up` runs (etcd wants ≥ 5 × heartbeat)."""
    compaction_retention_revisions: int = Field(default=20_000, gt=0)
    """Members `hacluster up` runs compact history older than this many revisions (etcd's revision
    auto-compaction); a watch from before the compacted revision gets 410 Expired."""


class StoreConfig(_Frozen):
    engine: Literal["pysyncobj", "etcd", "unsafe-async-primary"] = "pysyncobj"
    """The replication engine under the store (`hacluster.cluster.engines`): "pysyncobj" is Raft inside
    each master process; "etcd" keeps the objects in etcd (`hacluster.etcd`), kube-apiserver's layout.
    "unsafe-async-primary" is a deliberately unsafe primary-backup engine that loses
    acknowledged writes in a partition (`hacluster.unsafe`); it is refused unless
    `unsafe_async_primary.loses_acknowledged_writes` is true — not a storage option for real use."""
    etcd: EtcdConfig = EtcdConfig()
    """Settings of the etcd engine (used only with `engine: etcd`)."""
    unsafe_async_primary: UnsafeAsyncPrimaryConfig = UnsafeAsyncPrimaryConfig()
    """Settings of the "unsafe-async-primary" engine (ignored by the others)."""
    watch_history_max: int = Field(default=10_000, gt=0)
    """Changes kept for watches; an older resourceVersion gets 410 Expired."""
    dedup_max: int = Field(default=STATE_MACHINE_DEDUP_MAX, gt=0)
    """Request ids remembered to answer a retried proposal with its first outcome. A constant of the
    replicated state machine (it changes what a command returns, so every master must apply with the same
    value); accepted only with that value, for config files written when it was a setting."""
    events_max: int = Field(default=STATE_MACHINE_EVENTS_MAX, gt=0)
    """Event objects kept before the oldest are deleted. A constant of the replicated state machine (it
    decides which objects exist); accepted only with that value."""

    @property
    def unsafe(self) -> bool:
        """Does this store run an engine that loses acknowledged writes by design?"""
        return self.engine in UNSAFE_ENGINES

    def summary(self) -> dict[str, Any]:
        """What status output shows of the store (`status -o json`'s "store", `/debug/raft`'s "store"): the
        engine, and `"unsafe": true` for one that loses acknowledged writes."""
        return {"engine": self.engine, **({"unsafe": True} if self.unsafe else {})}

    @model_validator(mode="after")
    def _unsafe_only_when_acknowledged(self) -> StoreConfig:
        if self.engine == "unsafe-async-primary" and not self.unsafe_async_primary.loses_acknowledged_writes:
            raise ValueError("engine: \"unsafe-async-primary\" loses acknowledged writes in a partition and is "
                             "only for the split-brain experiment (set "
                             "store.unsafe_async_primary.loses_acknowledged_writes: true to run it anyway)")
        return self

    @model_validator(mode="after")
    def _state_machine_constants(self) -> StoreConfig:
        problems = [f"{key}: is a constant of the replicated state machine ({constant}), the same on every "
                    f"master; remove it from the config (got {value})"
                    for key, value, constant in (("dedup_max", self.dedup_max, STATE_MACHINE_DEDUP_MAX),
                                                 ("events_max", self.events_max, STATE_MACHINE_EVENTS_MAX))
                    if value != constant]
        if problems:
            raise ValueError("; ".join(problems))
        return self


class UserConfig(_Frozen):
    name: str = Field(min_length=1)
    """User name, e.g. "admin", "viewer" or "system:node:node-1"."""
    token: str = Field(min_length=8)
    """Bearer token of this user."""
    groups: tuple[str, ...] = ()
    """Groups: "system:masters" may do anything, "system:nodes" gets the NodeRestriction rules, anything
    else may only read."""


class SchedulerConfig(_Frozen):
    seed: int = 0
    """Seed of the tie-breaking choice between equally scored nodes (same seed, same placements)."""
    batch_max_pods: int = Field(default=100, gt=0, le=1000)
    """Most bindings (and unschedulable-status updates) proposed together in one Batch log entry."""
    inflight_batches_max: int = Field(default=2, gt=0, le=16)
    """Batches proposed and not yet answered; the scheduler places the next pods while they commit."""
    batch_window_ms: float = Field(default=10.0, ge=0, le=1000)
    """An idle scheduler woken by a change waits this long for more before it places a batch, so that pods
    created one by one share a Raft entry (a round with an fsync on every master) instead of taking one each
    — the cost that otherwise doubles the Raft work of a lone client's creates. 0: place at once. Under load
    the scheduler is never idle and this adds nothing."""
    proposal_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Deadline of one proposal of the scheduler; an unknown outcome is retried with the same request id
    (answered once by the state machine) for as long as this master leads its term."""
    backoff_initial_s: float = Field(default=1.0, gt=0)
    """Back-off before an unschedulable pod is tried again (kube-scheduler's podInitialBackoffSeconds)…"""
    backoff_max_s: float = Field(default=10.0, gt=0)
    """…doubling per failed attempt up to this (podMaxBackoffSeconds)."""
    unschedulable_max_wait_s: float = Field(default=60.0, gt=0)
    """An unschedulable pod waits for a change of nodes or pods after its back-off, but at most this long
    before it is tried again anyway (kube-scheduler's podMaxInUnschedulablePodsDuration is 5 min)."""
    percentage_of_nodes_to_score: int = Field(default=0, ge=0, le=100)
    """Share of nodes to find feasible before scoring stops (0: kube-scheduler's adaptive default)."""
    events_queue_max: int = Field(default=1000, gt=0)
    """Events (Scheduled, FailedScheduling) waiting to be written; beyond it new ones are dropped."""

    @model_validator(mode="after")
    def _check_backoff(self) -> SchedulerConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"backoff_max_s: must be >= backoff_initial_s (got {self.backoff_max_s} "
                             f"< {self.backoff_initial_s})")
        return self


class ControllersConfig(_Frozen):
    node_monitor_period_s: float = Field(default=1.0, gt=0, le=60)
    """How often the node lifecycle controller checks heartbeats (Kubernetes: 5 s)."""
    node_monitor_grace_period_s: float = Field(default=5.0, gt=0)
    """A node without a heartbeat (Lease renewal in kube-node-lease, or a new Ready lastHeartbeatTime) for
    this long is marked Ready=Unknown and tainted unreachable (Kubernetes: 50 s; the testbed is faster)."""
    toleration_seconds_scale: float = Field(default=0.1, ge=0, le=1)
    """Factor applied to pods' NoExecute `tolerationSeconds` before eviction (1 = Kubernetes' timing; the
    default toleration of 300 s becomes 30 s at 0.1)."""
    replicaset_burst_replicas: int = Field(default=500, gt=0)
    """Most pods one ReplicaSet sync creates or deletes (Kubernetes' BurstReplicas)."""
    proposal_timeout_s: float = Field(default=5.0, gt=0, le=60)
    """Deadline of one proposal of a controller; an unknown outcome is retried with the same request id
    while this master leads its term."""
    events_queue_max: int = Field(default=1000, gt=0)
    """Events waiting to be written per controller; beyond it new ones are dropped."""

    @model_validator(mode="after")
    def _check_periods(self) -> ControllersConfig:
        if self.node_monitor_grace_period_s <= self.node_monitor_period_s:
            raise ValueError("node_monitor_grace_period_s: must be > node_monitor_period_s (got "
                             f"{self.node_monitor_grace_period_s} <= {self.node_monitor_period_s})")
        return self


class TaintConfig(_Frozen):
    key: str = Field(min_length=1, max_length=253)
    """Taint key, e.g. "dedicated"."""
    value: str = Field(default="", max_length=63)
    """Taint value (may be empty)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    """What the taint does to pods that do not tolerate it."""


class NodeConfig(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)
    """Node name: its kubelet registers Node `name` and authenticates as user `system:node:<name>`."""
    profile: str = "default"
    """Node profile from the kubelet's node-profiles file (capacity, labels, taints, memory baseline)."""
    labels: dict[str, str] = {}
    """Labels added to the profile's (and to kubernetes.io/hostname, os, arch)."""
    taints: tuple[TaintConfig, ...] = ()
    """Taints added to the profile's at registration."""
    runtime: Literal["sim", "process"] | None = None
    """Container runtime of this node's kubelet; unset: the one `hacluster up --runtime` names."""


class KubeletConfig(_Frozen):
    runtime: Literal["sim", "process"] = "sim"
    """Container runtime of kubelets started without --runtime: simulated, or real local processes."""
    time_scale: float = Field(default=1.0, gt=0, le=100)
    """Multiplies every kubelet-side duration — restart and image-pull back-offs, termination grace periods,
    eviction intervals, simulated pull/run times — so 0.01 turns a 10 s back-off into 0.1 s without
    changing its shape (messages still say "back-off 10s"). Heartbeat periods below are not scaled."""
    seed: int = 0
    """Seed of the simulated runtime's random choices (same seed, same pod names: same behaviour)."""
    node_lease_duration_s: int = Field(default=40, gt=0, le=3600)
    """leaseDurationSeconds written into the node's Lease in kube-node-lease (Kubernetes: 40)."""
    node_lease_renew_s: float = Field(default=2.0, gt=0, le=600)
    """Period of Lease renewals (Kubernetes: 10 s; shorter here because the testbed's node-monitor grace
    period is a few seconds)."""
    node_status_update_s: float = Field(default=2.0, gt=0, le=600)
    """How often the kubelet recomputes node status; it is posted at once when a condition changes."""
    node_status_report_s: float = Field(default=60.0, gt=0, le=3600)
    """Longest interval between two node status posts when nothing changed (Kubernetes: 5 min)."""
    crashloop_backoff_initial_s: float = Field(default=10.0, gt=0)
    """First restart back-off of a crashing container (doubles per crash; before scaling)."""
    crashloop_backoff_max_s: float = Field(default=300.0, gt=0)
    """Cap of the restart back-off; a container that ran twice this long starts over at the initial value."""
    image_pull_backoff_initial_s: float = Field(default=10.0, gt=0)
    """First back-off after a failed image pull (ErrImagePull → ImagePullBackOff; doubles per failure)."""
    image_pull_backoff_max_s: float = Field(default=300.0, gt=0)
    """Cap of the image-pull back-off."""
    max_parallel_image_pulls: int = Field(default=1, ge=1, le=64)
    """Image pulls one node runs at once (Kubernetes serializes them by default: 1)."""
    eviction_interval_s: float = Field(default=10.0, gt=0)
    """Period of the node-pressure eviction check (Kubernetes' housekeeping interval; scaled)."""
    eviction_pressure_transition_s: float = Field(default=300.0, ge=0)
    """How long MemoryPressure stays True after memory recovered (evictionPressureTransitionPeriod; scaled)."""
    pod_resync_s: float = Field(default=60.0, gt=0, le=3600)
    """Longest a pod worker sleeps without a reason before it syncs its pod again (the kubelet's periodic
    resync: 1 min; not scaled)."""
    pod_worker_backoff_s: float = Field(default=10.0, gt=0, le=600)
    """Delay before a pod whose sync failed is synced again (the kubelet's pod worker backOffPeriod; scaled)."""
    watch_timeout_s_min: int = Field(default=240, gt=0)
    """A kubelet's pod watch asks the server to close it after a random time between this…"""
    watch_timeout_s_max: int = Field(default=360, gt=0)
    """…and this (client-go's reflectors pick 5–10 min), then resumes from the last resourceVersion."""
    list_page_size: int = Field(default=500, ge=1, le=5000)
    """Items per page when the kubelet lists its pods (Kubernetes' reflectors list in pages of 500)."""
    status_write_concurrency: int = Field(default=8, ge=1, le=256)
    """Pod status writes one kubelet keeps in flight at once."""
    events_per_pod_max: int = Field(default=40, ge=0, le=1000)
    """Distinct events one kubelet creates per pod; repeats only raise an existing event's count."""
    event_writes_per_s_max: float = Field(default=50.0, gt=0)
    """Event writes (creates and count updates) per second per kubelet; beyond it events are dropped."""
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=4096)
    """Size at which a container log is rotated (one rotated file is kept), like containerLogMaxSize."""
    memory_enforcement: Literal["auto", "cgroup", "watchdog"] = "auto"
    """Process runtime: enforce limits.memory with a cgroup (v2 memory.max, or v1 memory.limit_in_bytes)
    where one can be created, else with a resident-memory watchdog that SIGKILLs (auto picks)."""
    watchdog_interval_ms: int = Field(default=50, ge=5, le=5000)
    """Process runtime: period of the resident-memory watchdog."""
    images_file: str = ""
    """Simulated images (pull time, run time, exit code, memory, readiness); empty: configs/kubelet/images.yaml."""
    profiles_file: str = ""
    """Node profiles (capacity, labels, taints, memory baseline); empty: configs/kubelet/node-profiles.yaml."""
    fleet_nodes: int = Field(default=0, ge=0, le=20_000)
    """Identities `system:node:fleet-1` … `fleet-N` that `hacluster up` creates for `hacluster kubelet-fleet`."""

    @model_validator(mode="after")
    def _check_backoff(self) -> KubeletConfig:
        problems = []
        if self.crashloop_backoff_max_s < self.crashloop_backoff_initial_s:
            problems.append("crashloop_backoff_max_s: must be >= crashloop_backoff_initial_s")
        if self.image_pull_backoff_max_s < self.image_pull_backoff_initial_s:
            problems.append("image_pull_backoff_max_s: must be >= image_pull_backoff_initial_s")
        if self.watch_timeout_s_max < self.watch_timeout_s_min:
            problems.append("watch_timeout_s_max: must be >= watch_timeout_s_min")
        if self.node_lease_renew_s >= self.node_lease_duration_s:
            problems.append("node_lease_renew_s: must be < node_lease_duration_s")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ClusterConfig(_Frozen):
    name: str = "hacluster"
    """Name of the cluster (kubeconfig context name)."""
    masters: tuple[MasterConfig, ...] = Field(min_length=1, max_length=9)
    """The masters; their count is the Raft cluster size."""
    raft: RaftConfig = RaftConfig()
    """Raft timings, durability and elections (`hacluster.raft`)."""
    api: ApiConfig = ApiConfig()
    """The API servers: timeouts, limits, watches, the front door and the audit log (`hacluster.apiserver`)."""
    store: StoreConfig = StoreConfig()
    """The replicated store: which engine, and how much history it keeps (`hacluster.store`)."""
    scheduler: SchedulerConfig = SchedulerConfig()
    """The leader's scheduler (`hacluster.scheduler`)."""
    controllers: ControllersConfig = ControllersConfig()
    """The leader's controllers (`hacluster.controllers`)."""
    kubelet: KubeletConfig = KubeletConfig()
    """Kubelets started by `hacluster up` and `hacluster kubelet` (`hacluster.kubelet`)."""
    nodes: tuple[NodeConfig, ...] = ()
    """Nodes whose kubelets `hacluster up` starts (besides node-1 … node-K of `--nodes K`)."""
    users: tuple[UserConfig, ...] = ()
    """Bearer-token users; `hacluster up` adds an admin and a viewer if none are given."""
    data_dir: str = "data"
    """Where masters keep their Raft journal and snapshots, relative to this file (one sub-directory per master)."""

    @model_validator(mode="after")
    def _unique(self) -> ClusterConfig:
        ids = [m.id for m in self.masters]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"masters: duplicate id {', '.join(dup)}")
        ports = [(m.host, p) for m in self.masters
                 for p in (m.api_port, m.raft_port, m.api_tls_port, m.etcd_client_port, m.etcd_peer_port) if p]
        dup_ports = sorted({p for p in ports if ports.count(p) > 1})
        if dup_ports:
            raise ValueError(f"masters: port used twice: {', '.join(f'{h}:{p}' for h, p in dup_ports)}")
        return self

    @model_validator(mode="after")
    def _unique_nodes(self) -> ClusterConfig:
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"nodes: duplicate name {', '.join(dup)}")
        return self

    def master(self, master_id: str) -> MasterConfig:
        for m in self.masters:
            if m.id == master_id:
                return m
        raise ConfigError(f"no master with id {master_id!r} (have {', '.join(m.id for m in self.masters)})")

    def user_by_name(self, name: str) -> UserConfig | None:
        for u in self.users:
            if u.name == name:
                return u
        return None


def _format_errors(path: str, exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        loc = prefix + ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        for part in msg.split("; "):
            if not err["loc"]:  # a cross-field check names its own key: "raft.election_timeout_ms_min: ..."
                lines.append(f"{path}: {prefix}{part}")
            else:
                lines.append(f"{path}: {loc}: {part}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> ClusterConfig:
    """Validate plain data into a ClusterConfig; ConfigError lists every problem with file and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must hold a mapping (got {type(data).__name__})")
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        lines = _format_errors(source, exc)
        # Cross-field checks of a section run only once its fields are valid; check the sections on their
        # own too, so that every problem of the file is reported at once.
        sections: tuple[tuple[str, type[_Frozen]], ...] = (
            ("raft", RaftConfig), ("scheduler", SchedulerConfig), ("controllers", ControllersConfig))
        for key, model in sections:
            section = data.get(key)
            if isinstance(section, dict):
                try:
                    model.model_validate({k: v for k, v in section.items() if k in model.model_fields})
                except ValidationError as sub:
                    lines += [line for line in _format_errors(source, sub, key + ".") if line not in lines]
        raise ConfigError("\n".join(lines)) from exc


def load_config(path: str | Path) -> ClusterConfig:
    """Load and validate a cluster YAML file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    return parse_config(data, str(p))


def dump_config(cfg: ClusterConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def default_config(masters: int) -> ClusterConfig:
    """A cluster of `masters` masters with every port left for `up` to pick."""
    return ClusterConfig(name=f"local-{masters}",
                         masters=tuple(MasterConfig(id=f"m{i + 1}") for i in range(masters)))


def with_engine(cfg: ClusterConfig, engine: str) -> ClusterConfig:
    """`cfg` with `store.engine` set to `engine` (`hacluster up --store`, chaos runs' `--store`)."""
    return parse_config({**cfg.model_dump(mode="json"), "store": {**cfg.store.model_dump(mode="json"),
                                                                  "engine": engine}}, "--store")


def with_generated_secrets(cfg: ClusterConfig) -> ClusterConfig:
    """Fill in a Raft password and admin/viewer users where the config left them out."""
    raft = cfg.raft if cfg.raft.password else cfg.raft.model_copy(update={"password": secrets.token_hex(16)})
    users = list(cfg.users)
    if not any("system:masters" in u.groups for u in users):
        users.append(UserConfig(name="admin", token=secrets.token_hex(16), groups=("system:masters",)))
    if not any(u.name == "viewer" for u in users):
        users.append(UserConfig(name="viewer", token=secrets.token_hex(16), groups=("viewers",)))
    return cfg.model_copy(update={"raft": raft, "users": tuple(users)})


# ---------------------------------------------------------------------------- the environment
def env_state_dir() -> str:
    """Default state directory: $HACLUSTER_STATE_DIR or `.hacluster` in the current directory."""
    return os.environ.get("HACLUSTER_STATE_DIR", ".hacluster")


def env_log_level() -> str:
    return os.environ.get("HACLUSTER_LOG_LEVEL", "WARNING").upper()
