"""The scheduler's view of the cluster: per-node capacity and what the pods placed there ask for.

`ClusterSnapshot` is kube-scheduler's cache + snapshot in one pure object. The leader's scheduling loop
builds one from the store (`ClusterSnapshot(nodes, pods)`), keeps it current from watch events
(`add_node`, `update_node`, `remove_node`, `add_pod`, `update_pod`, `remove_pod`) and, after each decision,
`assume`s the pod on its node so the next decision sees it; `forget` undoes an assumption whose binding
was refused. `policy.schedule_one` only reads it.

Everything a filter or score needs per node (labels, taints split by effect, allocatable, requested sums)
is parsed once here, when the node or pod changes, never per decision. What a pod asks for is computed by
`hacluster.model.pods`, taints are parsed with `hacluster.model.taints`.

No I/O, no clock, no randomness. Not thread-safe: one owner (the scheduling loop) mutates it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from hacluster.model.pods import (
    TERMINAL_PHASES,
    PodRequests,
    compute_pod_requests,
    is_scalar_resource,
    resource_quantities,
)
from hacluster.model.taints import EFFECT_NO_EXECUTE, EFFECT_NO_SCHEDULE, EFFECT_PREFER_NO_SCHEDULE, Taint

_CPU = "cpu"
_MEMORY = "memory"
_PODS = "pods"


class SnapshotError(ValueError):
    """An operation the snapshot refuses: assuming a pod that is already placed, forgetting one that
    was never assumed, or a pod without a name. The snapshot is unchanged when it is raised."""


def pod_key(pod: Mapping[str, Any]) -> str:
    """The identity a pod is accounted under: its UID, or `namespace/name` before it has one.

    Raises SnapshotError for a pod with neither.
    """
    meta = pod.get("metadata") or {}
    uid = meta.get("uid")
    if uid:
        return str(uid)
    name = meta.get("name")
    if not name:
        raise SnapshotError("pod has neither metadata.uid nor metadata.name")
    return f"{meta.get('namespace') or 'default'}/{name}"


def counts_against_node(pod: Mapping[str, Any]) -> str | None:
    """The node whose capacity this pod uses: `spec.nodeName` unless the pod has finished
    (phase Succeeded or Failed, which kube-scheduler's pod informer filters out)."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        return None
    if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
        return None
    return str(node_name)


class NodeInfo:
    """One node as the filters and scores see it (kube-scheduler's `framework.NodeInfo`).

    Parsed node fields: `labels`, `taints`, `hard_taints` (NoSchedule and NoExecute, the ones the
    TaintToleration filter checks), `soft_taints` (PreferNoSchedule, scored), `unschedulable`,
    `alloc_*` from `status.allocatable` (a missing entry is 0, as in kube-scheduler, so a node that
    reports no `pods` allocatable takes no pods). Running sums of the pods placed here: `requested_*`
    (effective requests) and `nonzero_*` (requests with the scoring defaults). `pods` maps pod key to
    its `PodRequests`. `has_node` is False for a placeholder that only holds pods whose node is not
    (or no longer) known. Mutated only by `ClusterSnapshot`.
    """

    __slots__ = (
        "alloc_memory",
        "alloc_milli_cpu",
        "alloc_pods",
        "alloc_scalars",
        "hard_taints",
        "has_node",
        "labels",
        "name",
        "node",
        "nonzero_memory",
        "nonzero_milli_cpu",
        "pods",
        "requested_memory",
        "requested_milli_cpu",
        "requested_scalars",
        "soft_taints",
        "taints",
        "unschedulable",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Mapping[str, Any] | None = None
        self.has_node = False
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.hard_taints: tuple[Taint, ...] = ()
        self.soft_taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.alloc_milli_cpu = 0
        self.alloc_memory = 0
        self.alloc_pods = 0
        self.alloc_scalars: dict[str, int] = {}
        self.requested_milli_cpu = 0
        self.requested_memory = 0
        self.nonzero_milli_cpu = 0
        self.nonzero_memory = 0
        self.requested_scalars: dict[str, int] = {}
        self.pods: dict[str, PodRequests] = {}

    def __repr__(self) -> str:
        return (
            f"NodeInfo({self.name!r}, cpu={self.requested_milli_cpu}/{self.alloc_milli_cpu}m, "
            f"mem={self.requested_memory}/{self.alloc_memory}, pods={len(self.pods)}/{self.alloc_pods})"
        )

    def set_node(self, node: Mapping[str, Any]) -> None:
        """Take the node's labels, taints, unschedulable flag and allocatable."""
        meta = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.node = node
        self.has_node = True
        self.labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        taints = tuple(
            Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
            for t in spec.get("taints") or ()
        )
        self.taints = taints
        self.hard_taints = tuple(t for t in taints if t.effect in (EFFECT_NO_SCHEDULE, EFFECT_NO_EXECUTE))
        self.soft_taints = tuple(t for t in taints if t.effect == EFFECT_PREFER_NO_SCHEDULE)
        self.unschedulable = bool(spec.get("unschedulable"))
        alloc = resource_quantities(status.get("allocatable"))
        self.alloc_milli_cpu = math.ceil(alloc.get(_CPU, 0) * 1000)
        self.alloc_memory = math.ceil(alloc.get(_MEMORY, 0))
        self.alloc_pods = math.ceil(alloc.get(_PODS, 0))
        self.alloc_scalars = {n: math.ceil(v) for n, v in alloc.items() if is_scalar_resource(n)}

    def clear_node(self) -> None:
        """Forget the node object but keep the pods accounted here (they may come back with it)."""
        self.node = None
        self.has_node = False
        self.labels = {}
        self.taints = self.hard_taints = self.soft_taints = ()
        self.unschedulable = False
        self.alloc_milli_cpu = self.alloc_memory = self.alloc_pods = 0
        self.alloc_scalars = {}

    def add(self, key: str, req: PodRequests) -> None:
        """Account a pod here. The caller has made sure `key` is not already here."""
        self.pods[key] = req
        self.requested_milli_cpu += req.milli_cpu
        self.requested_memory += req.memory
        self.nonzero_milli_cpu += req.nonzero_milli_cpu
        self.nonzero_memory += req.nonzero_memory
        for name, value in req.scalars:
            self.requested_scalars[name] = self.requested_scalars.get(name, 0) + value

    def remove(self, key: str) -> PodRequests:
        """Stop accounting a pod here and return what it had asked for. `key` must be here."""
        req = self.pods.pop(key)
        self.requested_milli_cpu -= req.milli_cpu
        self.requested_memory -= req.memory
        self.nonzero_milli_cpu -= req.nonzero_milli_cpu
        self.nonzero_memory -= req.nonzero_memory
        for name, value in req.scalars:
            left = self.requested_scalars[name] - value
            if left:
                self.requested_scalars[name] = left
            else:
                del self.requested_scalars[name]
        return req


class ClusterSnapshot:
    """Nodes (sorted by name, so every master builds the same order) and the pods counted against them.

    A pod counts against `spec.nodeName` unless it is Succeeded or Failed. Pods whose node is unknown are
    kept on a placeholder `NodeInfo` and counted as soon as the node appears (watch events may arrive in
    any order). All mutators are idempotent upserts/removals except `assume`/`forget`, which raise
    `SnapshotError` on misuse and leave the snapshot unchanged.
    """

    def __init__(
        self, nodes: Iterable[Mapping[str, Any]] = (), pods: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        self._infos: dict[str, NodeInfo] = {}
        self._names: list[str] = []  # names of real nodes, sorted
        self._order: list[NodeInfo] | None = None  # cached NodeInfos in name order
        self._pod_node: dict[str, str] = {}  # pod key -> node it is accounted on
        self._assumed: set[str] = set()
        for node in nodes:
            self.add_node(node)
        for pod in pods:
            self.add_pod(pod)

    # ---- reading -------------------------------------------------------------------------------

    @property
    def num_nodes(self) -> int:
        """How many nodes are known (placeholders for unknown nodes excluded)."""
        return len(self._names)

    def node_infos(self) -> list[NodeInfo]:
        """Known nodes in name order. The list is shared: callers must not change it."""
        if self._order is None:
            self._order = [self._infos[n] for n in self._names]
        return self._order

    def get(self, node_name: str) -> NodeInfo | None:
        """The known node of that name, or None."""
        info = self._infos.get(node_name)
        return info if info is not None and info.has_node else None

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self.node_infos())

    def __len__(self) -> int:
        return len(self._names)

    def node_of(self, pod: Mapping[str, Any] | str) -> str | None:
        """Where the pod (or pod key) is accounted, or None."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        return self._pod_node.get(key)

    def is_assumed(self, pod: Mapping[str, Any] | str) -> bool:
        """True if the pod was placed by `assume` and no watch event has confirmed it yet."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        return key in self._assumed

    # ---- nodes ---------------------------------------------------------------------------------

    def add_node(self, node: Mapping[str, Any]) -> None:
        """Add or replace a node (same as `update_node`)."""
        name = (node.get("metadata") or {}).get("name")
        if not name:
            raise SnapshotError("node has no metadata.name")
        name = str(name)
        info = self._infos.get(name)
        if info is None:
            info = self._infos[name] = NodeInfo(name)
        if not info.has_node:
            bisect.insort(self._names, name)
            self._order = None
        info.set_node(node)

    update_node = add_node

    def remove_node(self, node: Mapping[str, Any] | str) -> None:
        """Remove a node; its pods stay accounted on a placeholder until they are removed too."""
        name = node if isinstance(node, str) else str((node.get("metadata") or {}).get("name") or "")
        info = self._infos.get(name)
        if info is None or not info.has_node:
            return
        self._names.remove(name)
        self._order = None
        if info.pods:
            info.clear_node()
        else:
            del self._infos[name]

    # ---- pods ----------------------------------------------------------------------------------

    def add_pod(self, pod: Mapping[str, Any]) -> None:
        """Add or replace a pod from the store or a watch event (same as `update_pod`).

        A pod that is unassigned or finished is (or stays) not counted. An assumed pod reported by a
        watch event is confirmed: it is no longer assumed and is counted where the event says.
        """
        key = pod_key(pod)
        self._unaccount(key)
        self._assumed.discard(key)
        node_name = counts_against_node(pod)
        if node_name is not None:
            self._account(key, node_name, compute_pod_requests(pod))

    update_pod = add_pod

    def remove_pod(self, pod: Mapping[str, Any] | str) -> None:
        """Stop counting a pod (deleted, or its key). Unknown pods are ignored."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        self._unaccount(key)
        self._assumed.discard(key)

    def assume(self, pod: Mapping[str, Any], node_name: str) -> None:
        """Count a pod the scheduler has just placed on `node_name`, before its binding is stored.

        Raises SnapshotError if the pod is already counted somewhere or the node is unknown.
        """
        key = pod_key(pod)
        if key in self._pod_node:
            raise SnapshotError(
                f"pod {key} is already counted on node {self._pod_node[key]}, can't assume it"
            )
        if self.get(node_name) is None:
            raise SnapshotError(f"can't assume pod {key} on unknown node {node_name}")
        self._account(key, node_name, compute_pod_requests(pod))
        self._assumed.add(key)

    def confirm(self, pod: Mapping[str, Any] | str) -> bool:
        """An assumed pod's binding was stored: stop treating it as assumed, keeping its accounting (its
        requests cannot have changed). Returns False, changing nothing, if it was not assumed."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        if key not in self._assumed:
            return False
        self._assumed.discard(key)
        return True

    def forget(self, pod: Mapping[str, Any] | str) -> None:
        """Undo `assume` (the binding was refused). Raises SnapshotError if the pod is not assumed."""
        key = pod if isinstance(pod, str) else pod_key(pod)
        if key not in self._assumed:
            raise SnapshotError(f"pod {key} is not assumed, can't forget it")
        self._assumed.discard(key)
        self._unaccount(key)

    # ---- internals -----------------------------------------------------------------------------

    def _account(self, key: str, node_name: str, req: PodRequests) -> None:
        info = self._infos.get(node_name)
        if info is None:
            info = self._infos[node_name] = NodeInfo(node_name)
        info.add(key, req)
        self._pod_node[key] = node_name

    def _unaccount(self, key: str) -> None:
        node_name = self._pod_node.pop(key, None)
        if node_name is None:
            return
        info = self._infos[node_name]
        info.remove(key)
        if not info.has_node and not info.pods:
            del self._infos[node_name]
