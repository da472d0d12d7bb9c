"""The ReplicaSet controller: keeps `spec.replicas` pods of each ReplicaSet alive.

A leader-only loop (registered by `hacluster.controllers.registry`), like kube-controller-manager's
replicaset controller. It follows ReplicaSets and pods in the leader's local store and syncs every
ReplicaSet that changed, whose pods changed, or that an orphan pod's labels match:

- **Ownership.** A pod belongs to the ReplicaSet named by its controller `ownerReference` (uid). Orphans
  in the namespace whose labels match the selector are adopted (an ownerReference is added, with the pod's
  resourceVersion as precondition); owned pods whose labels no longer match are released.
- **Counting.** Pods that are terminating (`deletionTimestamp`) or finished (Succeeded, Failed) do not
  count, so a pod evicted from a lost node is replaced at once, as in Kubernetes.
- **Scaling.** Missing pods are created from `spec.template` — name `<rs>-<5 random characters>`
  (`generateName`), the template's labels and annotations, `ownerReferences` with `controller: true` and
  `blockOwnerDeletion: true`, the API server's defaults — and extra ones deleted, chosen as Kubernetes
  ranks them (unassigned before assigned, Pending before Unknown before Running, not ready before ready,
  lower `controller.kubernetes.io/pod-deletion-cost` first, more replicas on the same node first, more
  recently ready first, more restarts first, newer first).
  At most `replicaset_burst_replicas` per sync. `SuccessfulCreate` / `SuccessfulDelete` events
  ("Created pod: web-x7k2p"), `FailedCreate` when a pod cannot be created.
- **Status.** replicas, fullyLabeledReplicas, readyReplicas, availableReplicas (ready for
  `minReadySeconds`), observedGeneration — written through the status subresource when they change.
- **Garbage collection.** Pods controlled by a ReplicaSet that no longer exists are deleted (the garbage
  collector's background propagation).

The loop reads the leader's own state machine, which has applied every proposal of this loop by the time
`propose` returns, so it needs no "expectations" cache: the next sync already sees its pods.
Every write is fenced by the term.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from hacluster.config import ControllersConfig
from hacluster.controllers.syncloop import SyncLoop, controller_ref
from hacluster.controllers.syncloop import object_key as _key
from hacluster.ids import new_uid
from hacluster.leader.events import NORMAL, WARNING
from hacluster.leader.proposer import propose_all
from hacluster.model import validation
from hacluster.model.commands import AnyCommand, Create, Delete, Replace
from hacluster.model.conditions import condition
from hacluster.model.selectors import LabelSelector, label_selector_from_object
from hacluster.model.timestamps import parse_rfc3339, rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import DELETED, Result, StoreState, WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "replicaset-controller"
BATCH_MAX_COMMANDS = 100
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' utilrand alphabet
GENERATED_SUFFIX_LEN = 5
MAX_NAME_LEN = 63
TERMINAL = ("Succeeded", "Failed")
PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


def is_active(pod: Obj) -> bool:
    """Counted towards replicas: not terminating and not finished (controller.FilterActivePods)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in TERMINAL


def is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def availability(pod: Obj, min_ready_s: int, now: float) -> tuple[bool, float | None]:
    """Whether the pod is available (Ready for `min_ready_s` seconds, Kubernetes' IsPodAvailable), and if it
    is ready but not yet long enough, when it will be (to look again then)."""
    if not is_ready(pod):
        return False, None
    since = parse_rfc3339((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if min_ready_s <= 0 or since is None or since + min_ready_s <= now:
        return True, None
    return False, since + min_ready_s


def _deletion_cost(meta: Obj) -> int:
    """The `controller.kubernetes.io/pod-deletion-cost` annotation (0 when absent or not an int32)."""
    text = (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        value = int(str(text)) if text is not None else 0
    except ValueError:
        return 0
    return value if -(2**31) <= value < 2**31 else 0


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """The pods in the order the controller deletes them (first = deleted first), as Kubernetes'
    `ActivePodsWithRanks` sorts them; the rank is the number of this ReplicaSet's pods on the same node."""
    on_node: dict[str, int] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName") or ""
        if node:
            on_node[node] = on_node.get(node, 0) + 1

    def key(p: Obj) -> tuple[Any, ...]:
        spec, status, meta = p.get("spec") or {}, p.get("status") or {}, p.get("metadata") or {}
        node = spec.get("nodeName") or ""
        ready = is_ready(p)
        ready_since = parse_rfc3339((condition(p, "Ready") or {}).get("lastTransitionTime")) if ready else None
        restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or ())
        created = parse_rfc3339(meta.get("creationTimestamp")) or 0.0
        return (
            1 if node else 0,                                   # unassigned first
            PHASE_ORDER.get(status.get("phase", "Pending"), 3),  # Pending < Unknown < Running
            1 if ready else 0,                                  # not ready first
            _deletion_cost(meta),                               # lower pod-deletion-cost first
            -on_node.get(node, 0) if node else 0,               # more co-located replicas first
            -(ready_since or 0.0),                              # more recently ready first
            -restarts,                                          # more restarts first
            -created,                                           # newer first
            meta.get("name", ""),
        )

    return sorted(pods, key=key)


class ReplicaSetController(SyncLoop):
    """The ReplicaSet controller of one leadership term (see the module docstring)."""

    kind = "replicaset"
    component = COMPONENT
    followed = ("replicasets", "pods")
    owner_kind = "ReplicaSet"
    forget_deleted = True
    garbage_words = ("pods", "ReplicaSets")

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str = "",
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        super().__init__(store, settings, instance=instance, clock=clock)
        self.rng = rng or random.Random()
        # recheck_at: availability to re-evaluate (minReadySeconds)

    # ------------------------------------------------------------------------- following the store
    def _dependent_changed(self, ev: WatchEvent) -> None:
        """A pod changed: its ReplicaSet is dirty (or gone); an orphan makes the sets that could adopt it dirty."""
        for pod in (ev.obj, ev.prev):
            if pod is None:
                continue
            ref = controller_ref(pod)
            if ref is not None:
                owner = self.by_uid.get(str(ref.get("uid")))
                if owner is not None:
                    self.dirty.add(owner)
                elif ref.get("kind") == "ReplicaSet" and ev.type != DELETED:
                    self.gone_owners.add(str(ref.get("uid")))
            elif ev.type != DELETED:
                self.dirty.update(self._matching_sets(pod))

    def _matching_sets(self, pod: Obj) -> list[str]:
        """ReplicaSets in the pod's namespace whose selector matches its labels (adoption candidates)."""
        ns = pod["metadata"].get("namespace", "")
        labels = pod["metadata"].get("labels") or {}
        if not labels:
            return []

        def find(s: StoreState) -> list[str]:
            out = []
            prefix = ns + "/"
            for k, rs in s.objects["replicasets"].items():
                if k.startswith(prefix) and _selector(rs).matches(labels):
                    out.append(k)
            return out
        return self.store.read(find)

    # ---------------------------------------------------------------------------------- syncing
    async def sync(self, key: str) -> None:
        """Bring one ReplicaSet ("ns/name") to its desired pods and status."""
        ns, _, name = key.partition("/")
        rs = self.store.read(lambda s: s.get("replicasets", ns, name))
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        uid = rs["metadata"]["uid"]
        selector = _selector(rs)
        pods = self._pods_in(ns)
        commands: list[AnyCommand] = []
        owned: list[Obj] = []
        for pod in pods:
            ref = controller_ref(pod)
            labels = pod["metadata"].get("labels") or {}
            matches = not selector.empty and selector.matches(labels)
            if ref is not None and ref.get("uid") == uid:
                if matches or not is_active(pod):
                    owned.append(pod)
                else:
                    commands.append(self._release(pod, uid))
            elif ref is None and matches and is_active(pod):
                commands.append(self._adopt(pod, rs))
                owned.append(pod)
        active = [p for p in owned if is_active(p)]
        replicas = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(active) - replicas
        burst = self.settings.replicaset_burst_replicas
        creating: list[Obj] = []
        deleting: list[Obj] = []
        if diff < 0:
            for _ in range(min(-diff, burst)):
                pod = self._new_pod(rs)
                causes = validation.VALIDATORS["pods"](pod)
                if causes:
                    message = "; ".join(c.render() for c in causes)
                    self.recorder.emit(rs, WARNING, "FailedCreate", f"Error creating: {message}")
                    break
                creating.append(pod)
                commands.append(Create(resource="pods", namespace=ns, obj=pod))
        elif diff > 0:
            now_text = rfc3339(self.clock())
            for pod in deletion_order(active)[:min(diff, burst)]:
                deleting.append(pod)
                commands.append(Delete(resource="pods", namespace=ns, name=pod["metadata"]["name"], time=now_text,
                                       expected_uid=pod["metadata"].get("uid", "")))
        if commands:
            if creating or deleting:
                log.info("replicaset %s: %d active of %d wanted: creating %d, deleting %d", key, len(active),
                         replicas, len(creating), len(deleting))
            for c, r in await self._propose_all(commands):
                if isinstance(c, Create):
                    if r.ok:
                        self.recorder.emit(rs, NORMAL, "SuccessfulCreate", f"Created pod: {c.obj['metadata']['name']}")
                    else:
                        self.recorder.emit(rs, WARNING, "FailedCreate",
                                           f"Error creating: {r.error.message if r.error else 'unknown error'}")
                        self.dirty.add(key)  # e.g. a name collision: try again
                elif isinstance(c, Delete) and r.ok:
                    self.recorder.emit(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {c.name}")
        await self._update_status(ns, name)

    async def _update_status(self, ns: str, name: str) -> None:
        rs = self.store.read(lambda s: s.get("replicasets", ns, name))
        if rs is None:
            return
        uid = rs["metadata"]["uid"]
        active = [p for p in self._pods_in(ns) if is_active(p) and (controller_ref(p) or {}).get("uid") == uid]
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.clock()
        ready = [p for p in active if is_ready(p)]
        available = 0
        for p in ready:
            ok, later = availability(p, min_ready, now)
            if ok:
                available += 1
            elif later is not None:
                key = _key(rs)
                self.recheck_at[key] = min(self.recheck_at.get(key, math.inf), later)
        labeled = sum(1 for p in active if all((p["metadata"].get("labels") or {}).get(k) == v
                                                for k, v in template_labels.items()))
        old = rs.get("status") or {}
        status = {k: v for k, v in old.items()
                  if k not in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas",
                               "observedGeneration")}
        status.update(replicas=len(active), fullyLabeledReplicas=labeled, readyReplicas=len(ready),
                      availableReplicas=available, observedGeneration=rs["metadata"].get("generation", 1))
        if status == old:
            return
        await self._propose_all([Replace(resource="replicasets", namespace=ns, name=name,
                                         obj={"metadata": {"uid": uid}, "status": status},
                                         expected_rv=str(rs["metadata"]["resourceVersion"]), subresource="status")])

    # --------------------------------------------------------------------------------- pieces
    def _pods_in(self, ns: str) -> list[Obj]:
        prefix = ns + "/"
        return self.store.read(lambda s: [p for k, p in s.objects["pods"].items() if k.startswith(prefix)])

    def _new_pod(self, rs: Obj) -> Obj:
        return pod_from_template(rs, api_version="apps/v1", kind="ReplicaSet", rng=self.rng, now=self.clock())

    def _adopt(self, pod: Obj, rs: Obj) -> AnyCommand:
        meta = dict(pod["metadata"])
        meta["ownerReferences"] = list(meta.get("ownerReferences") or ()) + [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["metadata"]["name"],
            "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
        log.info("replicaset %s adopts pod %s", _key(rs), meta["name"])
        return Replace(resource="pods", namespace=meta.get("namespace", ""), name=meta["name"],
                       obj={**pod, "metadata": meta}, expected_rv=str(meta["resourceVersion"]))

    def _release(self, pod: Obj, owner_uid: str) -> AnyCommand:
        meta = dict(pod["metadata"])
        meta["ownerReferences"] = [r for r in meta.get("ownerReferences") or () if r.get("uid") != owner_uid]
        log.info("replicaset releases pod %s (labels no longer match)", meta["name"])
        return Replace(resource="pods", namespace=meta.get("namespace", ""), name=meta["name"],
                       obj={**pod, "metadata": meta}, expected_rv=str(meta["resourceVersion"]))

    async def _propose_all(self, commands: list[AnyCommand]) -> list[tuple[AnyCommand, Result]]:
        assert self.proposer is not None
        return await propose_all(self.proposer, commands, max_count=BATCH_MAX_COMMANDS)


def pod_from_template(owner: Obj, *, api_version: str, kind: str, rng: random.Random, now: float,
                      finalizers: tuple[str, ...] = ()) -> Obj:
    """A new pod of `owner` (a ReplicaSet or a Job) from its template: a generated name, the template's labels
    and annotations, an owner reference naming `owner` its controller, and the defaults the API would set."""
    meta = owner["metadata"]
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    base = f"{meta['name']}-"[:MAX_NAME_LEN - GENERATED_SUFFIX_LEN]
    name = base + "".join(rng.choice(NAME_ALPHABET) for _ in range(GENERATED_SUFFIX_LEN))
    pod_meta: Obj = {
        "name": name, "generateName": f"{meta['name']}-", "namespace": meta.get("namespace", ""),
        "uid": new_uid(), "creationTimestamp": rfc3339(now),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": meta["name"],
                             "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
    }
    if finalizers:
        pod_meta["finalizers"] = list(finalizers)
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}
    validation.default_object("pods", pod)
    return pod


def _selector(rs: Obj) -> LabelSelector:
    return label_selector_from_object((rs.get("spec") or {}).get("selector"))
