"""The Node and Lease objects a kubelet writes, as pure functions of its profile, state and `now`.

Called by the kubelet agent at registration (`node_object`), on every node status post (`node_status`) and on
every Lease renewal (`lease_object`). Conditions keep their lastTransitionTime while their status does not
change; lastHeartbeatTime is the time of the post. Wording follows Kubernetes v1.30's kubelet
(`pkg/kubelet/nodestatus/setters.go`).
"""

from __future__ import annotations

import functools
import os
import platform
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from hacluster.kubelet.behaviour import NodeProfile
from hacluster.model.timestamps import rfc3339

Obj = dict[str, Any]

KUBELET_VERSION = "v1.30.0-hacluster"
LEASE_NAMESPACE = "kube-node-lease"

_CONDITION_TEXT = {
    ("MemoryPressure", False): ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("MemoryPressure", True): ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    ("DiskPressure", False): ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("DiskPressure", True): ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    ("PIDPressure", False): ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("PIDPressure", True): ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
    ("Ready", True): ("KubeletReady", "kubelet is posting ready status"),
    ("Ready", False): ("KubeletNotReady", "container runtime is down"),
}
NODE_CONDITION_TYPES = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")


def micro_time(t: float) -> str:
    """Kubernetes' MicroTime (Lease renewTime): 2026-01-01T00:00:00.123456Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1_000_000):06d}Z"


@dataclass(frozen=True)
class NodeIdentity:
    """What does not change while a kubelet runs: its name, index (for the pod CIDR) and system info."""

    name: str
    index: int
    runtime_version: str
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def pod_cidr(self) -> str:
        return f"10.{128 + (self.index >> 8) % 128}.{self.index & 255}.0/24"

    def pod_ip(self, n: int) -> str:
        """The n-th pod address of this node (1 … 253, then wrapping)."""
        base = self.pod_cidr.split("/")[0].rsplit(".", 1)[0]
        return f"{base}.{(n - 1) % 253 + 2}"


def node_index(name: str) -> int:
    """node-7 → 7, fleet-1234 → 1234, anything else → a stable hash."""
    tail = name.rsplit("-", 1)[-1]
    if tail.isdigit():
        return int(tail)
    return zlib.crc32(name.encode()) % 32768


def node_info(identity: NodeIdentity) -> Obj:
    """The ten nodeInfo fields."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "amd64")
    machine_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"hacluster.{identity.name}").hex
    try:
        kernel = os.uname().release
    except AttributeError:
        kernel = platform.release()
    return {
        "machineID": machine_id,
        "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hacluster:{identity.name}")),
        "bootID": identity.boot_id,
        "kernelVersion": kernel,
        "osImage": _os_image(),
        "containerRuntimeVersion": identity.runtime_version,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": arch,
    }


@functools.lru_cache(maxsize=1)
def _os_image() -> str:
    try:
        for line in open("/etc/os-release", encoding="utf-8"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def node_labels(identity: NodeIdentity, profile: NodeProfile, extra: dict[str, str]) -> dict[str, str]:
    arch = node_info(identity)["architecture"]
    labels = {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
              "kubernetes.io/hostname": identity.name, "kubernetes.io/os": "linux"}
    labels.update(profile.labels)
    labels.update(extra)
    return labels


def node_object(identity: NodeIdentity, profile: NodeProfile, *, labels: dict[str, str],
                taints: list[Obj], status: Obj) -> Obj:
    """The Node a kubelet registers."""
    spec: Obj = {"podCIDR": identity.pod_cidr, "podCIDRs": [identity.pod_cidr]}
    if taints:
        spec["taints"] = taints
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": identity.name, "labels": node_labels(identity, profile, labels),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": status,
    }


def node_conditions(pressure: dict[str, bool], ready: bool, old: list[Obj], now: float) -> list[Obj]:
    """The four conditions; lastTransitionTime kept from `old` while the status is the same."""
    out = []
    stamp = rfc3339(now)
    for ctype in NODE_CONDITION_TYPES:
        value = ready if ctype == "Ready" else pressure.get(ctype, False)
        reason, message = _CONDITION_TEXT[(ctype, value)]
        status = "True" if value else "False"
        prev = next((c for c in old if c.get("type") == ctype), None)
        transition = prev["lastTransitionTime"] if prev and prev.get("status") == status and \
            prev.get("lastTransitionTime") else stamp
        out.append({"type": ctype, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": transition,
                    "reason": reason, "message": message})
    return out


def node_status(identity: NodeIdentity, profile: NodeProfile, *, pressure: dict[str, bool], ready: bool,
                old_conditions: list[Obj], kubelet_port: int, images: list[tuple[str, int]], now: float,
                max_images: int = 50) -> Obj:
    """status of the Node: capacity, allocatable, conditions, addresses, daemonEndpoints, nodeInfo, images."""
    capacity = dict(profile.capacity)
    capacity.setdefault("hugepages-1Gi", "0")
    capacity.setdefault("hugepages-2Mi", "0")
    allocatable = profile.allocatable()
    allocatable.setdefault("hugepages-1Gi", "0")
    allocatable.setdefault("hugepages-2Mi", "0")
    imgs = sorted(images, key=lambda i: -i[1])[:max_images]
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": node_conditions(pressure, ready, old_conditions, now),
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": identity.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": node_info(identity),
        "images": [{"names": [name], "sizeBytes": size} for name, size in imgs],
    }


def conditions_differ(a: list[Obj], b: list[Obj]) -> bool:
    """Whether two condition lists differ in anything but their heartbeat times."""
    def key(cs: list[Obj]) -> list[tuple[Any, ...]]:
        return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in cs
                      if c.get("type") in NODE_CONDITION_TYPES)
    return key(a) != key(b)


def lease_object(node: str, node_uid: str, duration_s: int, now: float, resource_version: str = "") -> Obj:
    meta: Obj = {"name": node, "namespace": LEASE_NAMESPACE}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_s, "renewTime": micro_time(now)}}
