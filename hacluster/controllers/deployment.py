"""The Deployment controller: rolls a Deployment's pods from one pod template to the next through ReplicaSets.

A leader-only loop (registered by `hacluster.controllers.registry`), like kube-controller-manager's
deployment controller, fenced by the term like every leader loop. It follows Deployments, ReplicaSets and
pods in the leader's local store; the ReplicaSet controller creates and deletes the pods.

- **Ownership.** A Deployment owns the ReplicaSets whose controller `ownerReference` names its uid. The
  ReplicaSet of the current template (compared without the `pod-template-hash` label) is the *new* one; it
  is named `<deployment>-<pod-template-hash>`, so a retried or repeated creation after a leader change finds
  the same name (AlreadyExists) instead of creating a second one.
- **Strategies.** RollingUpdate with `maxSurge` (rounded up) and `maxUnavailable` (rounded down), integers
  or percentages of `spec.replicas`, exactly Kubernetes' `NewRSNewReplicas` and `reconcileOldReplicaSets`
  (unhealthy old pods first, then old ReplicaSets oldest first); Recreate (old ReplicaSets to zero, wait
  until none of their pods is left, then the new one to `spec.replicas`).
- **Counting from pods.** Where Kubernetes reads ReplicaSets' `status`, this controller counts the pods in
  the leader's own store: a ReplicaSet counts `max(spec.replicas, active pods)` towards the surge limit and
  `min(available pods, spec.replicas)` towards availability, so pods the ReplicaSet controller has yet to
  delete or create never let a step overshoot `replicas + maxSurge` or undershoot
  `replicas - maxUnavailable`.
- **Revisions.** `deployment.kubernetes.io/revision` on ReplicaSets and the Deployment (the new ReplicaSet
  gets the highest); `kubectl rollout undo` copies an old ReplicaSet's template back, which makes that
  ReplicaSet the new one again with a new revision. Old ReplicaSets scaled to zero beyond
  `revisionHistoryLimit` are deleted, oldest revision first. `kubernetes.io/change-cause` is copied.
- **Scaling.** A change of `spec.replicas` (an active set sized for another count, by its
  `desired-replicas` annotation) or a paused Deployment is only scaled, never rolled: one active set takes
  the whole count, otherwise `replicas + maxSurge` is spread over the sets in proportion to their size, as
  Kubernetes' `scale` does (`proportional_scale`).
- **Status.** replicas, updatedReplicas, readyReplicas, availableReplicas (ready for `minReadySeconds`),
  unavailableReplicas, observedGeneration and the Available / Progressing conditions with Kubernetes'
  reasons and messages (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
  NewReplicaSetAvailable, ProgressDeadlineExceeded after `progressDeadlineSeconds` without progress,
  DeploymentPaused / DeploymentResumed), which `kubectl rollout status` reads.
- **Garbage collection.** ReplicaSets controlled by a Deployment that no longer exists are deleted (their
  pods follow through the ReplicaSet controller's collector).

The decisions are pure functions (`fenceposts`, `new_rs_replicas`, `old_rs_scale_down`, `recreate_step`,
`proportional_scale`, `plan`) of plain counts, tested without a store; the class only reads the store and proposes.
It is one file of some 660 lines because the decisions mirror Kubernetes' deployment helpers one to one and
are read beside the controller that applies them; the loop it shares is `hacluster.controllers.syncloop`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hacluster.config import ControllersConfig
from hacluster.controllers.replicaset import availability, controller_ref, is_active, is_ready
from hacluster.controllers.syncloop import SyncLoop
from hacluster.controllers.syncloop import object_key as _key
from hacluster.ids import new_uid
from hacluster.leader.events import NORMAL
from hacluster.leader.proposer import propose_all
from hacluster.model import validation
from hacluster.model.commands import AnyCommand, Create, Delete, Replace
from hacluster.model.intstr import scaled_value
from hacluster.model.timestamps import parse_rfc3339, rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import DELETED, StoreState, WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "deployment-controller"
BATCH_MAX_COMMANDS = 100
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' rand.SafeEncodeString alphabet
MAX_NAME_LEN = 63


# ------------------------------------------------------------------------------------ pure decisions
def template_hash(template: Obj, collision_count: int = 0) -> str:
    """The `pod-template-hash` of a pod template: FNV-1a (32 bit) of its canonical JSON and the collision
    count, written in Kubernetes' safe alphabet. Stable across masters and restarts (not Kubernetes' exact
    digits, which hash Go's spew output)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    digits = str(h)
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in digits)


def template_without_hash(template: Obj) -> Obj:
    """The template with the `pod-template-hash` label removed (for comparing an RS with its Deployment)."""
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    if "metadata" in t and not t["metadata"]:
        t.pop("metadata")
    return t


def fenceposts(replicas: int, max_surge: Any, max_unavailable: Any) -> tuple[int, int]:
    """(surge, unavailable) in pods for `replicas` (Kubernetes' ResolveFenceposts): surge rounds up,
    unavailable rounds down, and both zero means one unavailable so a rollout can move."""
    surge = scaled_value(max_surge if max_surge is not None else "25%", replicas, round_up=True)
    unavailable = scaled_value(max_unavailable if max_unavailable is not None else "25%", replicas,
                               round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


@dataclass(frozen=True)
class SetCounts:
    """What the controller knows of one ReplicaSet: spec.replicas and its pods counted in the store."""

    name: str
    replicas: int
    active: int = 0
    ready: int = 0
    available: int = 0
    revision: int = 0
    created: float = 0.0
    desired_annotation: int | None = None
    """`deployment.kubernetes.io/desired-replicas`: the Deployment's replicas when this set was last sized."""
    max_annotation: int | None = None
    """`deployment.kubernetes.io/max-replicas`: replicas + maxSurge then."""

    @property
    def occupying(self) -> int:
        """Pods it has or is about to have (a scale-down not yet carried out still occupies its pods)."""
        return max(self.replicas, self.active)

    @property
    def counted_available(self) -> int:
        """Available pods that will remain once the ReplicaSet matches its spec (the controller deletes
        unavailable pods first)."""
        return min(self.available, self.replicas)


def new_rs_replicas(desired: int, surge: int, new: SetCounts, olds: list[SetCounts]) -> int:
    """RollingUpdate: how far to scale the new ReplicaSet up now (NewRSNewReplicas)."""
    if new.replicas >= desired:
        return desired if new.replicas > desired else new.replicas
    current = new.occupying + sum(o.occupying for o in olds)
    max_total = desired + surge
    if current >= max_total:
        return new.replicas
    scale_up = min(max_total - current, desired - new.replicas)
    return new.replicas + max(scale_up, 0)


def old_rs_scale_down(desired: int, unavailable: int, new: SetCounts, olds: list[SetCounts]) -> dict[str, int]:
    """RollingUpdate: the old ReplicaSets to scale down now and their new replicas (reconcileOldReplicaSets:
    first pods that are not available, oldest ReplicaSet first, then available ones while more than
    `desired - unavailable` stay available)."""
    olds = sorted(olds, key=lambda o: (o.created, o.name))
    total = new.occupying + sum(o.occupying for o in olds)
    min_available = desired - unavailable
    new_unavailable = max(new.replicas - new.counted_available, 0)
    max_scaled_down = total - min_available - new_unavailable
    out: dict[str, int] = {}
    if max_scaled_down <= 0:
        return out
    replicas = {o.name: o.replicas for o in olds}
    scaled = 0
    for o in olds:  # cleanupUnhealthyReplicas
        if scaled >= max_scaled_down:
            break
        unhealthy = o.replicas - o.counted_available
        if o.replicas == 0 or unhealthy <= 0:
            continue
        n = min(max_scaled_down - scaled, unhealthy)
        replicas[o.name] -= n
        scaled += n
    available = new.counted_available + sum(min(o.counted_available, replicas[o.name]) for o in olds)
    if available > min_available:
        budget = available - min_available
        down = 0
        for o in olds:  # scaleDownOldReplicaSetsForRollingUpdate
            if down >= budget:
                break
            if replicas[o.name] == 0:
                continue
            n = min(replicas[o.name], budget - down)
            replicas[o.name] -= n
            down += n
    for o in olds:
        if replicas[o.name] != o.replicas:
            out[o.name] = replicas[o.name]
    return out


def recreate_step(desired: int, new: SetCounts | None, olds: list[SetCounts]) -> tuple[dict[str, int], int | None]:
    """Recreate: (old ReplicaSets to scale to zero, new ReplicaSet's replicas or None to wait)."""
    downs = {o.name: 0 for o in olds if o.replicas > 0}
    if downs:
        return downs, None
    if any(o.active > 0 for o in olds):
        return {}, None  # wait until every old pod is gone
    return {}, desired


@dataclass
class Plan:
    """What one sync of a Deployment decides: ReplicaSet replicas to set, and the status to write."""

    scale: dict[str, int] = field(default_factory=dict)
    new_replicas: int | None = None  # replicas of the new ReplicaSet (created if missing)


def is_scaling_event(desired: int, sets: list[SetCounts]) -> bool:
    """Kubernetes' isScalingEvent: an active ReplicaSet was sized for another `spec.replicas`."""
    return any(s.replicas > 0 and s.desired_annotation is not None and s.desired_annotation != desired
               for s in sets)


def proportional_scale(spec: Obj, new: SetCounts | None, olds: list[SetCounts],
                       status_replicas: int) -> dict[str, int]:
    """Kubernetes' `scale` (sync.go): one active set takes the whole count; a saturated new set sends the old
    ones to zero; otherwise (RollingUpdate) `replicas + maxSurge` minus what the sets hold is spread over
    them in proportion to their size (largest first, newer first when adding, older first when removing;
    the leftover to the first)."""
    desired = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    active = [s for s in ([new] if new else []) + olds if s.replicas > 0]
    if len(active) <= 1:
        target = active[0] if active else (new or max(olds, key=lambda o: (o.created, o.name), default=None))
        if target is None or target.replicas == desired:
            return {}
        return {target.name: desired}
    if new is not None and new.replicas == desired and new.available >= desired:
        return {o.name: 0 for o in olds if o.replicas > 0}
    if strategy.get("type") != "RollingUpdate":
        return {}
    rolling = strategy.get("rollingUpdate") or {}
    surge, _ = fenceposts(desired, rolling.get("maxSurge"), rolling.get("maxUnavailable"))
    allowed = desired + surge if desired > 0 else 0
    to_add = allowed - sum(s.replicas for s in active)
    if to_add == 0:
        return {}
    if to_add > 0:
        active.sort(key=lambda s: (-s.replicas, -s.created, s.name))  # ReplicaSetsBySizeNewer
    else:
        active.sort(key=lambda s: (-s.replicas, s.created, s.name))  # ReplicaSetsBySizeOlder
    sizes: dict[str, int] = {}
    added = 0
    for s in active:
        if s.replicas == 0 or to_add == added:
            proportion = 0
        else:
            if desired == 0:
                fraction = -s.replicas
            else:
                annotated = s.max_annotation if s.max_annotation else status_replicas
                fraction = (int(s.replicas * allowed / annotated + 0.5) - s.replicas) if annotated else 0
            allowed_left = to_add - added
            proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
        sizes[s.name] = s.replicas + proportion
        added += proportion
    first = active[0].name
    sizes[first] = max(sizes[first] + to_add - added, 0)
    return {name: size for name, size in sizes.items() if size != next(s.replicas for s in active if s.name == name)}


def plan(spec: Obj, new: SetCounts | None, olds: list[SetCounts], status_replicas: int = 0) -> Plan:
    """One step of the Deployment's rollout, from its spec and the counts of its ReplicaSets."""
    desired = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if spec.get("paused") or is_scaling_event(desired, ([new] if new else []) + olds):
        return Plan(scale=proportional_scale(spec, new, olds, status_replicas))
    if strategy.get("type") == "Recreate":
        downs, new_replicas = recreate_step(desired, new, olds)
        if downs:
            return Plan(scale=downs)
        if new_replicas is None:
            return Plan()
        return Plan(new_replicas=new_replicas)
    rolling = strategy.get("rollingUpdate") or {}
    surge, unavailable = fenceposts(desired, rolling.get("maxSurge"), rolling.get("maxUnavailable"))
    current_new = new or SetCounts(name="", replicas=0)
    target = new_rs_replicas(desired, surge, current_new, olds)
    if new is None or target != new.replicas:
        return Plan(new_replicas=target)
    return Plan(scale=old_rs_scale_down(desired, unavailable, new, olds))


def is_complete(desired: int, status: Obj) -> bool:
    """Kubernetes' DeploymentComplete: every replica updated and available, no old one left."""
    return bool(status.get("updatedReplicas", 0) == desired and status.get("replicas", 0) == desired
                and status.get("availableReplicas", 0) == desired)


def _condition(status: Obj, ctype: str) -> Obj | None:
    for c in status.get("conditions") or ():
        if c.get("type") == ctype:
            return c  # type: ignore[no-any-return]
    return None


def with_condition(conditions: list[Obj], ctype: str, cstatus: str, reason: str, message: str,
                   now_text: str, *, touch: bool = True) -> list[Obj]:
    """Conditions with `ctype` set: lastTransitionTime moves when the status changes, lastUpdateTime when
    `touch` (progress) or anything changed."""
    out = [dict(c) for c in conditions if c.get("type") != ctype]
    old = next((c for c in conditions if c.get("type") == ctype), None)
    if old is not None and old.get("status") == cstatus and old.get("reason") == reason \
            and old.get("message") == message and not touch:
        out.append(dict(old))
    else:
        transition = old.get("lastTransitionTime") if old is not None and old.get("status") == cstatus else now_text
        out.append({"type": ctype, "status": cstatus, "lastUpdateTime": now_text,
                    "lastTransitionTime": transition or now_text, "reason": reason, "message": message})
    order = {"Available": 0, "Progressing": 1, "ReplicaFailure": 2}
    return sorted(out, key=lambda c: order.get(str(c.get("type")), 9))


# ------------------------------------------------------------------------------------- the controller
class DeploymentController(SyncLoop):
    """The Deployment controller of one leadership term (see the module docstring)."""

    kind = "deployment"
    component = COMPONENT
    followed = ("deployments", "replicasets", "pods")
    dependents = "replicasets"
    garbage_words = ("replica sets", "Deployments")

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, settings, instance=instance, clock=clock)
        self.rs_owner: dict[str, str] = {}  # ReplicaSet uid -> Deployment uid

    # ------------------------------------------------------------------------------ following the store
    def _relist(self) -> None:
        objs = self.follower.list_all()
        self.by_uid = {d["metadata"]["uid"]: _key(d) for d in objs["deployments"]}
        self.dirty = set(self.by_uid.values())
        self.rs_owner = {}
        for rs in objs["replicasets"]:
            self._note_rs(rs)

    def _note_rs(self, rs: Obj) -> None:
        ref = controller_ref(rs)
        if ref is None or ref.get("kind") != "Deployment":
            return
        owner = str(ref.get("uid"))
        self.rs_owner[rs["metadata"]["uid"]] = owner
        if owner not in self.by_uid:
            self.gone_owners.add(owner)

    def _dependent_changed(self, ev: WatchEvent) -> None:
        """A ReplicaSet changed (its Deployment is dirty), or a pod (the Deployment of its ReplicaSet is)."""
        if ev.resource == "replicasets":
            uid = ev.obj["metadata"]["uid"]
            if ev.type != DELETED:
                self._note_rs(ev.obj)
            owner = self.rs_owner.get(uid)
            if ev.type == DELETED:
                self.rs_owner.pop(uid, None)
            if owner is not None and owner in self.by_uid:
                self.dirty.add(self.by_uid[owner])
            return
        for pod in (ev.obj, ev.prev):
            ref = controller_ref(pod) if pod is not None else None
            if ref is not None and ref.get("kind") == "ReplicaSet":
                owner = self.rs_owner.get(str(ref.get("uid")))
                if owner is not None and owner in self.by_uid:
                    self.dirty.add(self.by_uid[owner])

    # ---------------------------------------------------------------------------------------- syncing
    def _recheck(self, key: str, when: float) -> None:
        self.recheck_at[key] = min(self.recheck_at.get(key, math.inf), when)

    def _counts(self, d: Obj) -> tuple[list[Obj], dict[str, SetCounts]]:
        """The Deployment's ReplicaSets (oldest first) and their counts from the pods in the store."""
        ns, uid = d["metadata"].get("namespace", ""), d["metadata"]["uid"]
        min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        now = self.clock()

        def read(s: StoreState) -> tuple[list[Obj], list[Obj]]:
            prefix = ns + "/"
            sets = [rs for k, rs in s.objects["replicasets"].items()
                    if k.startswith(prefix) and (controller_ref(rs) or {}).get("uid") == uid]
            uids = {rs["metadata"]["uid"] for rs in sets}
            pods = [p for k, p in s.objects["pods"].items()
                    if k.startswith(prefix) and (controller_ref(p) or {}).get("uid") in uids]
            return sets, pods

        sets, pods = self.store.read(read)
        sets.sort(key=lambda rs: (parse_rfc3339(rs["metadata"].get("creationTimestamp")) or 0.0,
                                  rs["metadata"]["name"]))
        by_rs: dict[str, list[Obj]] = {}
        for p in pods:
            by_rs.setdefault(str((controller_ref(p) or {}).get("uid")), []).append(p)
        counts: dict[str, SetCounts] = {}
        for rs in sets:
            mine = [p for p in by_rs.get(rs["metadata"]["uid"], []) if is_active(p)]
            available = 0
            for p in mine:
                ok, later = availability(p, min_ready, now)
                available += ok
                if later is not None:
                    self._recheck(_key(d), later)
            name = rs["metadata"]["name"]
            counts[name] = SetCounts(
                name=name, replicas=int((rs.get("spec") or {}).get("replicas", 0)), active=len(mine),
                ready=sum(1 for p in mine if is_ready(p)), available=available, revision=_revision(rs),
                created=parse_rfc3339(rs["metadata"].get("creationTimestamp")) or 0.0,
                desired_annotation=_int_annotation(rs, DESIRED_REPLICAS),
                max_annotation=_int_annotation(rs, MAX_REPLICAS))
        return sets, counts

    async def sync(self, key: str) -> None:
        """Bring one Deployment ("ns/name") one step further and write its status."""
        ns, _, name = key.partition("/")
        d = self.store.read(lambda s: s.get("deployments", ns, name))
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        spec = d.get("spec") or {}
        sets, counts = self._counts(d)
        template = spec.get("template") or {}
        new_rs = next((rs for rs in reversed(sets)
                       if template_without_hash((rs.get("spec") or {}).get("template") or {})
                       == template_without_hash(template)), None)
        olds = [counts[rs["metadata"]["name"]] for rs in sets if rs is not new_rs]
        max_old_revision = max((o.revision for o in olds), default=0)
        progress: tuple[str, str] | None = None
        commands: list[AnyCommand] = []
        revise: int | None = None
        if new_rs is not None and _revision(new_rs) <= max_old_revision and not spec.get("paused"):
            revise = max_old_revision + 1  # a rollback: the old template's ReplicaSet is the newest revision
            progress = ("FoundNewReplicaSet", f'Found new replica set "{new_rs["metadata"]["name"]}"')
        step = plan(spec, counts[new_rs["metadata"]["name"]] if new_rs is not None else None, olds,
                    int((d.get("status") or {}).get("replicas") or 0))
        if new_rs is None and not spec.get("paused") and step.new_replicas is not None:
            created = self._new_rs(d, step.new_replicas, max_old_revision + 1)
            commands.append(Create(resource="replicasets", namespace=ns, obj=created))
            progress = ("NewReplicaSetCreated", f'Created new replica set "{created["metadata"]["name"]}"')
            new_name = created["metadata"]["name"]
            self.recorder.emit(d, NORMAL, "ScalingReplicaSet",
                               f"Scaled up replica set {new_name} to {step.new_replicas}")
        elif new_rs is not None and step.new_replicas is not None:
            step.scale[new_rs["metadata"]["name"]] = step.new_replicas
        by_name = {rs["metadata"]["name"]: rs for rs in sets}
        if new_rs is not None and revise is not None and new_rs["metadata"]["name"] not in step.scale:
            commands.append(self._set_rs(new_rs, None, d=d, revision=revise))
        for rs_name, replicas in sorted(step.scale.items()):
            rs = by_name[rs_name]
            before = int((rs.get("spec") or {}).get("replicas", 0))
            commands.append(self._set_rs(rs, replicas, d=d, revision=revise if rs is new_rs else None))
            verb = "up" if replicas > before else "down"
            self.recorder.emit(d, NORMAL, "ScalingReplicaSet", f"Scaled {verb} replica set {rs_name} from "
                                                               f"{before} to {replicas}")
            if progress is None:
                progress = ("ReplicaSetUpdated", "")
        if commands:
            log.info("deployment %s: %s", key, ", ".join(_describe(c) for c in commands))
            for c, r in await propose_all(self._proposer(), commands, max_count=BATCH_MAX_COMMANDS):
                if not r.ok:
                    self.dirty.add(key)  # a conflict with another writer: read again and redo the step
                    if isinstance(c, Create) and r.error is not None and r.error.reason == "AlreadyExists":
                        log.info("deployment %s: replica set %s exists already", key, c.obj["metadata"]["name"])
            if any(isinstance(c, Create) for c in commands):
                self.dirty.add(key)  # the new ReplicaSet is there now: continue with the old ones
        await self._cleanup(d, key)
        await self._update_status(ns, name, progress)

    def _new_rs(self, d: Obj, replicas: int, revision: int) -> Obj:
        meta, spec = d["metadata"], d.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        h = template_hash(template, int((d.get("status") or {}).get("collisionCount") or 0))
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
        annotations = {REVISION: str(revision), **_size_annotations(d)}
        cause = (meta.get("annotations") or {}).get(CHANGE_CAUSE)
        if cause:
            annotations[CHANGE_CAUSE] = cause
        name = f"{meta['name']}-{h}"
        if len(name) > MAX_NAME_LEN:
            name = f"{meta['name'][:MAX_NAME_LEN - len(h) - 1]}-{h}"
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": meta.get("namespace", ""), "uid": new_uid(),
                         "creationTimestamp": rfc3339(self.clock()), "labels": dict(tmeta["labels"]),
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": replicas, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        validation.default_object("replicasets", rs)
        return rs

    def _set_rs(self, rs: Obj, replicas: int | None, *, d: Obj, revision: int | None = None) -> Replace:
        new = copy.deepcopy(rs)
        new.pop("status", None)
        annotations = new["metadata"].setdefault("annotations", {})
        if replicas is not None:
            new["spec"]["replicas"] = replicas
            annotations.update(_size_annotations(d))
        if revision is not None:
            annotations[REVISION] = str(revision)
            cause = (d["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
            if cause:
                annotations[CHANGE_CAUSE] = cause
        new["spec"]["minReadySeconds"] = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        return Replace(resource="replicasets", namespace=rs["metadata"].get("namespace", ""),
                       name=rs["metadata"]["name"], obj=new, expected_rv=str(rs["metadata"]["resourceVersion"]))

    async def _cleanup(self, d: Obj, key: str) -> None:
        """Delete old ReplicaSets beyond revisionHistoryLimit (scaled to zero and without pods)."""
        spec = d.get("spec") or {}
        limit = spec.get("revisionHistoryLimit")
        if limit is None or spec.get("paused"):
            return
        sets, counts = self._counts(d)
        template = template_without_hash(spec.get("template") or {})
        idle = [rs for rs in sets if counts[rs["metadata"]["name"]].occupying == 0
                and template_without_hash((rs.get("spec") or {}).get("template") or {}) != template]
        excess = len(idle) - int(limit)
        if excess <= 0:
            return
        idle.sort(key=lambda rs: (_revision(rs), rs["metadata"]["name"]))
        now_text = rfc3339(self.clock())
        await propose_all(self._proposer(), [
            Delete(resource="replicasets", namespace=rs["metadata"].get("namespace", ""), name=rs["metadata"]["name"],
                   time=now_text, expected_uid=rs["metadata"]["uid"]) for rs in idle[:excess]])

    async def _update_status(self, ns: str, name: str, progress: tuple[str, str] | None) -> None:
        d = self.store.read(lambda s: s.get("deployments", ns, name))
        if d is None:
            return
        key = _key(d)
        spec = d.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        sets, counts = self._counts(d)
        template = template_without_hash(spec.get("template") or {})
        new_rs = next((rs for rs in reversed(sets)
                       if template_without_hash((rs.get("spec") or {}).get("template") or {}) == template), None)
        new_counts = counts[new_rs["metadata"]["name"]] if new_rs is not None else None
        old = d.get("status") or {}
        status: Obj = {k: v for k, v in old.items() if k in ("collisionCount",)}
        status["observedGeneration"] = d["metadata"].get("generation", 1)
        status["replicas"] = sum(c.active for c in counts.values())
        status["updatedReplicas"] = new_counts.active if new_counts else 0
        status["readyReplicas"] = sum(c.ready for c in counts.values())
        status["availableReplicas"] = sum(c.available for c in counts.values())
        status["unavailableReplicas"] = max(desired - status["availableReplicas"], 0)
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "updatedReplicas", "replicas"):
            if status[k] == 0:
                del status[k]  # omitempty, as Kubernetes writes them
        now = self.clock()
        now_text = rfc3339(now)
        conditions = list(old.get("conditions") or [])
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "RollingUpdate":
            rolling = strategy.get("rollingUpdate") or {}
            _, unavailable = fenceposts(desired, rolling.get("maxSurge"), rolling.get("maxUnavailable"))
            unavailable = min(unavailable, desired)
        else:
            unavailable = 0
        if status.get("availableReplicas", 0) >= desired - unavailable:
            conditions = with_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.", now_text, touch=False)
        else:
            conditions = with_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.", now_text, touch=False)
        progressing = _condition(old, "Progressing")
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        counts_changed = any(old.get(k, 0) != status.get(k, 0)
                             for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"))
        deadline = spec.get("progressDeadlineSeconds")
        if spec.get("paused"):
            if progressing is None or progressing.get("reason") != "DeploymentPaused":
                conditions = with_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                                            "Deployment is paused", now_text)
        elif progressing is not None and progressing.get("reason") == "DeploymentPaused":
            conditions = with_condition(conditions, "Progressing", "Unknown", "DeploymentResumed",
                                        "Deployment is resumed", now_text)
            self.dirty.add(key)
        elif new_rs is not None and is_complete(desired, {"replicas": status.get("replicas", 0),
                                                          "updatedReplicas": status.get("updatedReplicas", 0),
                                                          "availableReplicas": status.get("availableReplicas", 0)}):
            conditions = with_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                        f'ReplicaSet "{rs_name}" has successfully progressed.', now_text,
                                        touch=progressing is None or progressing.get("reason")
                                        != "NewReplicaSetAvailable")
        elif progress is not None or counts_changed or progressing is None:
            reason, message = progress or ("ReplicaSetUpdated", "")
            if reason == "ReplicaSetUpdated" or not message:
                reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
            conditions = with_condition(conditions, "Progressing", "True", reason, message, now_text)
        elif progressing.get("reason") != "ProgressDeadlineExceeded" and deadline is not None:
            since = parse_rfc3339(progressing.get("lastUpdateTime")) or now
            if since + int(deadline) <= now:
                conditions = with_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                                            f'ReplicaSet "{rs_name}" has timed out progressing.', now_text)
        now_progressing = _condition({"conditions": conditions}, "Progressing") or {}
        if deadline is not None and now_progressing.get("status") == "True" \
                and now_progressing.get("reason") != "NewReplicaSetAvailable":
            since = parse_rfc3339(now_progressing.get("lastUpdateTime")) or now
            self._recheck(key, since + int(deadline))  # to declare ProgressDeadlineExceeded then
        status["conditions"] = conditions
        annotations = dict(d["metadata"].get("annotations") or {})
        revision = str(_revision(new_rs)) if new_rs is not None else None
        commands: list[AnyCommand] = []
        if revision is not None and annotations.get(REVISION) != revision and not spec.get("paused"):
            annotations[REVISION] = revision
            main = copy.deepcopy(d)
            main["metadata"]["annotations"] = annotations
            main.pop("status", None)
            commands.append(Replace(resource="deployments", namespace=ns, name=name, obj=main,
                                    expected_rv=str(d["metadata"]["resourceVersion"])))
        if status != old:
            commands.append(Replace(resource="deployments", namespace=ns, name=name,
                                    obj={"metadata": {"uid": d["metadata"]["uid"]}, "status": status},
                                    subresource="status"))
        if commands:
            for _, r in await propose_all(self._proposer(), commands):
                if not r.ok:
                    self.dirty.add(key)


def _size_annotations(d: Obj) -> dict[str, str]:
    """desired-replicas and max-replicas for a ReplicaSet sized now (SetReplicasAnnotations)."""
    spec = d.get("spec") or {}
    desired = int(spec.get("replicas", 1))
    surge = 0
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        surge, _ = fenceposts(desired, rolling.get("maxSurge"), rolling.get("maxUnavailable"))
    return {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + surge)}


def _int_annotation(rs: Obj, key: str) -> int | None:
    try:
        return int((rs["metadata"].get("annotations") or {})[key])
    except (KeyError, ValueError):
        return None


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _describe(c: AnyCommand) -> str:
    if isinstance(c, Create):
        return f"create {c.resource}/{c.obj['metadata']['name']} ({c.obj.get('spec', {}).get('replicas')})"
    if isinstance(c, Replace):
        return f"set {c.resource}/{c.name} to {c.obj.get('spec', {}).get('replicas')}"
    if isinstance(c, Delete):
        return f"delete {c.resource}/{c.name}"
    return type(c).__name__
