"""Node-pressure eviction, as pure functions: the memory signal, the kubelet's ranking of pods, the message.

Called by the kubelet agent's eviction loop every `kubelet.eviction_interval_s` (scaled): it measures
`memory.available` = capacity − the node's own use − what the pods use; below the hard threshold the node
reports MemoryPressure and the first pod of `rank_for_memory` is evicted (one per interval, as the
kubelet does). Followed from Kubernetes' `pkg/kubelet/eviction/helpers.go` (`rankMemoryPressure`:
`orderedBy(exceedMemoryRequests, priority, memory)`, `evictionMessage`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hacluster.kubelet.behaviour import format_bytes
from hacluster.model.quantity import QuantityError, parse_quantity

REASON = "Evicted"
NODE_LOW_MESSAGE = "The node was low on resource: {}. "
THRESHOLD_MET_MESSAGE = "Threshold quantity: {}, available: {}. "
CONTAINER_MESSAGE = "Container {} was using {}, request is {}, has larger consumption of {}. "
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
"""Pods at or above this priority (system-node-critical, system-cluster-critical) are never evicted."""


@dataclass(frozen=True)
class ContainerUsage:
    name: str
    usage_bytes: int
    request_bytes: int
    request_text: str
    """The request as the pod spec writes it ("100Mi"), or "0"."""


@dataclass(frozen=True)
class PodUsage:
    """One running pod's memory use, the input of the ranking."""

    uid: str
    namespace: str
    name: str
    priority: int
    containers: tuple[ContainerUsage, ...]

    @property
    def usage_bytes(self) -> int:
        return sum(c.usage_bytes for c in self.containers)

    @property
    def request_bytes(self) -> int:
        return sum(c.request_bytes for c in self.containers)


def memory_request(container: dict[str, Any]) -> tuple[int, str]:
    raw = ((container.get("resources") or {}).get("requests") or {}).get("memory")
    if raw is None:
        return 0, "0"
    try:
        return parse_quantity(raw).units(), str(raw)
    except QuantityError:
        return 0, "0"


def pod_usage(pod: dict[str, Any], usage_by_container: dict[str, int]) -> PodUsage:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = []
    for c in spec.get("containers") or []:
        req, text = memory_request(c)
        containers.append(ContainerUsage(c.get("name", ""), usage_by_container.get(c.get("name", ""), 0), req, text))
    return PodUsage(uid=meta.get("uid", ""), namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                    priority=int(spec.get("priority") or 0), containers=tuple(containers))


def rank_for_memory(pods: Iterable[PodUsage]) -> list[PodUsage]:
    """Eviction order under memory pressure: pods whose usage exceeds their requests first, then lower
    priority first, then larger usage above requests first. Critical pods are left out."""
    candidates = [p for p in pods if p.priority < SYSTEM_CRITICAL_PRIORITY]
    return sorted(candidates, key=lambda p: (0 if p.usage_bytes > p.request_bytes else 1, p.priority,
                                             -(p.usage_bytes - p.request_bytes), p.namespace, p.name))


def memory_available(capacity_bytes: int, base_used_bytes: int, pods_used_bytes: int) -> int:
    """The memory.available signal: what is left of the node's memory."""
    return capacity_bytes - base_used_bytes - pods_used_bytes


def eviction_message(pod: PodUsage, threshold_text: str, available_bytes: int) -> str:
    """Kubernetes' message on an evicted pod (status.message and the Evicted event)."""
    msg = NODE_LOW_MESSAGE.format("memory")
    msg += THRESHOLD_MET_MESSAGE.format(threshold_text, format_signed_bytes(available_bytes))
    for c in pod.containers:
        if c.usage_bytes > c.request_bytes:
            msg += CONTAINER_MESSAGE.format(c.name, format_bytes(c.usage_bytes), c.request_text, "memory")
    return msg


def format_signed_bytes(n: int) -> str:
    return "-" + format_bytes(-n) if n < 0 else format_bytes(n)


def disruption_condition(message: str) -> dict[str, Any]:
    """The DisruptionTarget condition the kubelet adds to a pod it evicts."""
    return {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": message}
