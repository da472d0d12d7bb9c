"""Builders shared by the unit tests of the leader-only loops (scheduler, controllers) over a LocalStore.

Objects are built as the API server would store them (defaults applied, uid and creationTimestamp set)
and written with plain commands, so the loops see exactly what they would see on a real leader.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from hacluster.model import commands as C
from hacluster.model import validation
from hacluster.store.local import LocalStore
from hacluster.store.state import Result

Obj = dict[str, Any]
T0 = 1_700_000_000.0  # a fixed wall-clock start for fake clocks


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class FakeClock:
    """Wall-clock seconds that move only when told to."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def leader_store(term: int = 1, **kw: Any) -> LocalStore:
    store = LocalStore(term=term, **kw)
    result = await store.propose(C.LeaderElected(leader_id="m1", term=term, time=stamp(T0), fence_term=term))
    assert result.ok
    return store


async def must(store: LocalStore, command: C.AnyCommand) -> Result:
    result = await store.propose(command)
    assert result.ok, result.error
    return result


def node_obj(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", *, labels: Obj | None = None,
             taints: list[Obj] | None = None, ready: str | None = "True", heartbeat: str = "",
             created: float = T0) -> Obj:
    status: Obj = {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                   "capacity": {"cpu": cpu, "memory": memory, "pods": pods}}
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": heartbeat or stamp(created), "lastTransitionTime": stamp(created)},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available", "lastHeartbeatTime": heartbeat or stamp(created),
             "lastTransitionTime": stamp(created)},
        ]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": f"node-{name}", "creationTimestamp": stamp(created),
                         "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or []}, "status": status}


def pod_obj(name: str, *, cpu: str | None = None, memory: str | None = None, node: str = "", ns: str = "default",
            created: float = T0, labels: Obj | None = None, **spec: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    container: Obj = {"name": "c", "image": "nginx"}
    if requests:
        container["resources"] = {"requests": requests}
    pod: Obj = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()),
                             "creationTimestamp": stamp(created), "labels": labels or {}},
                "spec": {"containers": [container], **spec}}
    if node:
        pod["spec"]["nodeName"] = node
    validation.default_object("pods", pod)
    return pod


def lease_obj(node: str, renew: str) -> Obj:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease", "uid": f"lease-{node}",
                         "creationTimestamp": renew},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": renew}}


async def add(store: LocalStore, resource: str, obj: Obj) -> Obj:
    result = await must(store, C.Create(resource=resource, namespace=obj["metadata"].get("namespace", ""), obj=obj))
    assert result.obj is not None
    return result.obj


def get(store: LocalStore, resource: str, ns: str, name: str) -> Obj | None:
    return store.read(lambda s: s.get(resource, ns, name))


def objects(store: LocalStore, resource: str, ns: str = "") -> list[Obj]:
    return store.read(lambda s: s.list_objects(resource, ns))


def events(store: LocalStore, reason: str | None = None) -> list[Obj]:
    return [e for e in objects(store, "events") if reason is None or e["reason"] == reason]


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    """Poll `check` (bounded) until it returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.01)
