"""What a pod asks of a node: its effective resource requests, computed from its spec as Kubernetes does.

Pure helpers shared by the scheduler (`hacluster.scheduler.nodeinfo`, `hacluster.scheduler.policy`) and
the consistency checkers (`hacluster.consistency.invariants`: no node over capacity). Quantities are
parsed exactly with `hacluster.model.quantity` and rounded up the way Kubernetes' `MilliValue()` /
`Value()` round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hacluster.model.quantity import QuantityError, parse_quantity

# kube-scheduler's defaults for containers that request nothing, used for scoring only
# (pkg/scheduler/util: DefaultMilliCPURequest, DefaultMemoryRequest).
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

_CPU = "cpu"
_MEMORY = "memory"
_EPHEMERAL = "ephemeral-storage"
_DEFAULTS = {_CPU: Fraction(DEFAULT_MILLI_CPU_REQUEST, 1000), _MEMORY: Fraction(DEFAULT_MEMORY_REQUEST)}
# Resources a pod may set at pod level (PodLevelResources, beta and on by default since v1.34).
_POD_LEVEL = (_CPU, _MEMORY)


@dataclass(frozen=True, slots=True)
class PodRequests:
    """What one pod asks of a node, in scheduler units, computed once from its spec.

    `milli_cpu` / `memory` are the effective requests kube-scheduler's NodeResourcesFit compares with
    free capacity (`resource.PodRequests`): containers summed, each init container's peak taken, sidecars
    (restartable init containers) added, pod-level requests when set, plus `spec.overhead`. A container that
    sets only limits requests its limits, as the API server defaults it. `nonzero_*` are the same with
    100m CPU / 200Mi memory for each container that asks for nothing, used only by LeastAllocated scoring.
    `scalars` holds ephemeral-storage and extended resources (sorted by name), `priority` is
    `spec.priority` (0 when unset), used when judging whether preemption could help.
    """

    milli_cpu: int
    memory: int
    nonzero_milli_cpu: int
    nonzero_memory: int
    scalars: tuple[tuple[str, int], ...]
    priority: int

    @property
    def is_zero(self) -> bool:
        """True when the pod requests no cpu, memory or other resource (it still takes a pod slot)."""
        return self.milli_cpu == 0 and self.memory == 0 and not self.scalars


def pod_priority(pod: Mapping[str, Any]) -> int:
    """`spec.priority`, 0 when unset (component-helpers `PodPriority`)."""
    value = (pod.get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_scalar_resource(name: str) -> bool:
    """Resources NodeResourcesFit checks besides cpu, memory and pods: ephemeral storage, hugepages,
    attachable volumes and extended resources (a domain-prefixed name outside kubernetes.io)."""
    if name == _EPHEMERAL or name.startswith(("hugepages-", "attachable-volumes-")):
        return True
    return "/" in name and "kubernetes.io/" not in name and not name.startswith("requests.")


def resource_quantities(resources: Any) -> dict[str, Fraction]:
    """Parse a resource list; an unparsable entry is dropped (the API server never stores one)."""
    out: dict[str, Fraction] = {}
    if not isinstance(resources, Mapping):
        return out
    for name, text in resources.items():
        try:
            out[str(name)] = parse_quantity(text).value
        except QuantityError:
            continue
    return out


def _container_requests(container: Mapping[str, Any], nonzero: bool) -> dict[str, Fraction]:
    res = container.get("resources") or {}
    reqs = resource_quantities(res.get("requests"))
    for name, value in resource_quantities(res.get("limits")).items():
        reqs.setdefault(name, value)  # API defaulting: requests default to limits
    if nonzero:
        for name, value in _DEFAULTS.items():
            reqs.setdefault(name, value)
    return reqs


def _add(into: dict[str, Fraction], more: Mapping[str, Fraction]) -> None:
    for name, value in more.items():
        into[name] = into.get(name, Fraction(0)) + value


def _max(into: dict[str, Fraction], other: Mapping[str, Fraction]) -> None:
    for name, value in other.items():
        if name not in into or value > into[name]:
            into[name] = value


def _aggregate(spec: Mapping[str, Any], nonzero: bool) -> dict[str, Fraction]:
    """component-helpers `resource.PodRequests` (spec resources, no status): sum of containers, max with
    each init container's peak (sidecars before it included), pod-level cpu/memory, then overhead."""
    result: dict[str, Fraction] = {}
    for container in spec.get("containers") or ():
        _add(result, _container_requests(container, nonzero))
    sidecars: dict[str, Fraction] = {}
    init_peak: dict[str, Fraction] = {}
    for container in spec.get("initContainers") or ():
        reqs = _container_requests(container, nonzero)
        if container.get("restartPolicy") == "Always":
            _add(result, reqs)
            _add(sidecars, reqs)
            reqs = dict(sidecars)
        else:
            _add(reqs, sidecars)
        _max(init_peak, reqs)
    _max(result, init_peak)
    pod_level = resource_quantities((spec.get("resources") or {}).get("requests"))
    for name in _POD_LEVEL:
        if name in pod_level:
            result[name] = pod_level[name]
    _add(result, resource_quantities(spec.get("overhead")))
    return result


def compute_pod_requests(pod: Mapping[str, Any]) -> PodRequests:
    """Compute a pod's `PodRequests` from its spec (see the class for the rules)."""
    spec = pod.get("spec") or {}
    reqs = _aggregate(spec, nonzero=False)
    nonzero = _aggregate(spec, nonzero=True)
    scalars = tuple(
        sorted((name, math.ceil(v)) for name, v in reqs.items() if is_scalar_resource(name) and v > 0)
    )
    return PodRequests(
        milli_cpu=math.ceil(reqs.get(_CPU, 0) * 1000),
        memory=math.ceil(reqs.get(_MEMORY, 0)),
        nonzero_milli_cpu=math.ceil(nonzero.get(_CPU, 0) * 1000),
        nonzero_memory=math.ceil(nonzero.get(_MEMORY, 0)),
        scalars=scalars,
        priority=pod_priority(pod),
    )
