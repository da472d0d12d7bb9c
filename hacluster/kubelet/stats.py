"""The kubelet's resource usage summary: what `GET /stats/summary` answers (the Summary API's shape).

Built from the runtime's live numbers — memory from the simulated image's usage-over-time data or the
process tree's resident memory (cgroup or /proc), CPU from the image's `cpu` or the processes' CPU time —
for the API server's `metrics.k8s.io` (`kubectl top`), as metrics-server reads it from real kubelets.
The node's own use is the profile's `base_memory_used` plus what its pods use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hacluster.model.timestamps import rfc3339

Obj = dict[str, Any]


def container_stats(name: str, cpu_millis: int, memory_bytes: int, now_text: str) -> Obj:
    return {"name": name,
            "cpu": {"time": now_text, "usageNanoCores": cpu_millis * 1_000_000},
            "memory": {"time": now_text, "workingSetBytes": memory_bytes, "usageBytes": memory_bytes}}


def summary(node: str, pods: Iterable[tuple[str, str, str, dict[str, int], dict[str, int]]],
            base_memory_bytes: int, now: float) -> Obj:
    """The Summary of `node`: `pods` are (namespace, name, uid, memory bytes by container, CPU millicores
    by container) of the pods it runs."""
    now_text = rfc3339(now)
    out_pods = []
    cpu_total = 0
    memory_total = base_memory_bytes
    for namespace, name, uid, memory, cpu in pods:
        names = sorted(set(memory) | set(cpu))
        containers = [container_stats(c, cpu.get(c, 0), memory.get(c, 0), now_text) for c in names]
        pod_cpu, pod_memory = sum(cpu.values()), sum(memory.values())
        cpu_total += pod_cpu
        memory_total += pod_memory
        out_pods.append({
            "podRef": {"name": name, "namespace": namespace, "uid": uid}, "startTime": now_text,
            "containers": containers,
            "cpu": {"time": now_text, "usageNanoCores": pod_cpu * 1_000_000},
            "memory": {"time": now_text, "workingSetBytes": pod_memory, "usageBytes": pod_memory}})
    return {"node": {"nodeName": node, "startTime": now_text,
                     "cpu": {"time": now_text, "usageNanoCores": cpu_total * 1_000_000},
                     "memory": {"time": now_text, "workingSetBytes": memory_total, "usageBytes": memory_total}},
            "pods": out_pods}
