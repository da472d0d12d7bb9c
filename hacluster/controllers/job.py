"""The Job controller: runs a Job's pods until `completions` of them succeed, or the Job fails.

A leader-only loop (registered by `hacluster.controllers.registry`), like kube-controller-manager's job
controller, fenced by the term. It follows Jobs and pods in the leader's local store:

- **Pods.** A Job owns the pods whose controller `ownerReference` names its uid; it keeps
  `min(parallelism, completions - succeeded)` of them active (a work queue without `completions` keeps
  `parallelism` until one succeeds), named `<job>-<5 random characters>` from `spec.template`. A failed
  pod is replaced after Kubernetes' back-off (10 s doubling, at most 6 min, from the last failure).
- **Counting.** With Kubernetes' tracking finalizer `batch.kubernetes.io/job-tracking` on every pod it
  creates (see `Tally`): a finished pod's uid is recorded in `status.uncountedTerminatedPods`, then its
  finalizer is released, then the uid moves into `succeeded` / `failed`. Each step is keyed by uid, so a
  retry or the next leader repeating it counts nothing twice, and a finished pod deleted by anybody before
  it was counted stays until it is. A pod that failed because it was deleted is not a failure of the work;
  for `restartPolicy: OnFailure` the containers' restarts count towards `backoffLimit`. The Job is
  Complete once `completions` successes are counted.
- **Ending.** Complete when `succeeded >= completions` (`completionTime` set, remaining pods deleted);
  Failed with reason BackoffLimitExceeded when failures exceed `backoffLimit`, or DeadlineExceeded after
  `activeDeadlineSeconds` from `startTime` (active pods deleted). `spec.suspend` deletes the active pods
  and sets the Suspended condition. A finished Job with `ttlSecondsAfterFinished` is deleted that long
  after it finished.
- **Garbage collection.** Pods controlled by a Job that no longer exists are released and deleted.

`job_step` is the pure decision (from the Job and its pods to the pods to create or delete and the
status); the class reads the store and proposes, fenced by its term.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hacluster.config import ControllersConfig
from hacluster.controllers.replicaset import (
    controller_ref,
    deletion_order,
    is_active,
    is_ready,
    pod_from_template,
)
from hacluster.controllers.syncloop import SyncLoop
from hacluster.leader.events import NORMAL, WARNING
from hacluster.leader.proposer import propose_all
from hacluster.model import validation
from hacluster.model.commands import AnyCommand, Create, Delete, Replace
from hacluster.model.timestamps import parse_rfc3339, rfc3339
from hacluster.store.api import ReplicatedStore
from hacluster.store.state import DELETED, StoreState, WatchEvent

log = logging.getLogger(__name__)
Obj = dict[str, Any]

COMPONENT = "job-controller"
BATCH_MAX_COMMANDS = 100
BACKOFF_BASE_S = 10.0
BACKOFF_MAX_S = 360.0
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"


@dataclass
class JobStep:
    """What one sync of a Job decides."""

    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    finished: str = ""  # "", "Complete" or "Failed"
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    recheck_at: float | None = None
    release: list[Obj] = field(default_factory=list)  # pods whose tracking finalizer to remove after the status


def _true(status: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or ())


def finished_at(job: Obj) -> float | None:
    """When the Job finished (its Complete or Failed condition became True), or None."""
    for c in (job.get("status") or {}).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_rfc3339(c.get("lastTransitionTime"))
    return None


def _condition(ctype: str, reason: str, message: str, now_text: str) -> Obj:
    return {"type": ctype, "status": "True", "lastProbeTime": now_text, "lastTransitionTime": now_text,
            "reason": reason, "message": message}


def restarts(pods: list[Obj]) -> int:
    """Container restarts of the pods (with restartPolicy OnFailure each counts towards backoffLimit)."""
    return sum(int(cs.get("restartCount") or 0) for p in pods if is_active(p)
               for cs in (p.get("status") or {}).get("containerStatuses") or ())


def _tracked(pod: Obj) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or ())


@dataclass
class Tally:
    """Kubernetes' Job tracking with finalizers: a finished pod's uid goes into
    `status.uncountedTerminatedPods` (one status write), then its finalizer is removed (`release`), then
    — once no pod with that uid holds the finalizer — the uid moves into `succeeded`/`failed` (a later
    status write). Every step is keyed by uid, so repeating any of them (a retry, a new leader) counts
    nothing twice, and a finished pod deleted by anybody before it was counted cannot be lost: the
    finalizer keeps it until the uid is recorded."""

    succeeded: int
    failed: int
    uncounted_succeeded: list[str]
    uncounted_failed: list[str]
    release: list[Obj]

    @property
    def total_succeeded(self) -> int:
        return self.succeeded + len(self.uncounted_succeeded)

    @property
    def total_failed(self) -> int:
        return self.failed + len(self.uncounted_failed)


def tally(status: Obj, pods: list[Obj]) -> Tally:
    """The counts of a Job from its status and its pods (pure; see `Tally`)."""
    uncounted = status.get("uncountedTerminatedPods") or {}
    unc_s = [str(u) for u in uncounted.get("succeeded") or ()]
    unc_f = [str(u) for u in uncounted.get("failed") or ()]
    still_tracked = set()
    release = []
    for p in pods:
        if not _tracked(p):
            continue
        uid = str((p.get("metadata") or {}).get("uid"))
        phase = (p.get("status") or {}).get("phase")
        deleting = bool((p.get("metadata") or {}).get("deletionTimestamp"))
        if uid not in unc_s and uid not in unc_f:
            if phase == "Succeeded":
                unc_s.append(uid)  # a success counts, even if the pod is being deleted (an evicted node …)
            elif phase == "Failed" and not deleting:
                unc_f.append(uid)  # a pod that failed because it was deleted is not a failure of the work
        if uid in unc_s or uid in unc_f:
            release.append(p)
            still_tracked.add(uid)
        elif deleting:
            release.append(p)  # deleted before it finished: nothing to count, let the deletion complete
    succeeded = int(status.get("succeeded") or 0) + sum(1 for u in unc_s if u not in still_tracked)
    failed = int(status.get("failed") or 0) + sum(1 for u in unc_f if u not in still_tracked)
    return Tally(succeeded, failed, [u for u in unc_s if u in still_tracked], [u for u in unc_f if u in still_tracked],
                 release)


def last_failure(pods: list[Obj]) -> float | None:
    """When the most recent failed pod's containers finished (for the replacement back-off)."""
    latest: float | None = None
    for p in pods:
        status = p.get("status") or {}
        if status.get("phase") != "Failed":
            continue
        for cs in status.get("containerStatuses") or ():
            t = parse_rfc3339(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            if t is not None and (latest is None or t > latest):
                latest = t
    return latest


def job_step(job: Obj, pods: list[Obj], now: float) -> JobStep:
    """The pods to create/delete and the status of `job`, given its owned `pods` (pure)."""
    spec, old = job.get("spec") or {}, job.get("status") or {}
    now_text = rfc3339(now)
    step = JobStep()
    active = [p for p in pods if is_active(p)]
    counts = tally(old, pods)
    step.release = counts.release
    succeeded = counts.total_succeeded
    restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "Never")
    failed = counts.total_failed + (restarts(pods) if restart_policy == "OnFailure" else 0)
    status: Obj = {k: v for k, v in old.items() if k in ("conditions", "startTime", "completionTime")}
    conditions: list[Obj] = [dict(c) for c in status.get("conditions") or ()]
    done = _true(old, "Complete") or _true(old, "Failed")
    suspended = bool(spec.get("suspend"))
    if not done and not suspended and not status.get("startTime"):
        status["startTime"] = now_text
    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1))
    if not done:
        start = parse_rfc3339(status.get("startTime"))
        deadline = spec.get("activeDeadlineSeconds")
        backoff_limit = int(spec.get("backoffLimit", 6))
        complete = (succeeded >= int(completions)) if completions is not None else (succeeded > 0 and not active)
        if complete and (counts.uncounted_succeeded or counts.uncounted_failed):
            pass  # Complete once every finished pod is counted (the sync after their finalizers are released)
        elif complete:
            step.finished = "Complete"
            conditions = [c for c in conditions if c.get("type") != "Suspended"]
            conditions.append(_condition("Complete", "", "", now_text))
            status["completionTime"] = now_text
            step.event = (NORMAL, "Completed", "Job completed")
        elif failed > backoff_limit:
            step.finished = "Failed"
            conditions.append(_condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff "
                                                                           "limit", now_text))
            step.event = (WARNING, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and start is not None and not suspended and start + int(deadline) <= now:
            step.finished = "Failed"
            conditions.append(_condition("Failed", "DeadlineExceeded", "Job was active longer than specified "
                                                                       "deadline", now_text))
            step.event = (WARNING, "DeadlineExceeded", "Job was active longer than specified deadline")
        elif deadline is not None and start is not None and not suspended:
            step.recheck_at = start + int(deadline)
    if step.finished or done or suspended:
        step.delete = list(active)
        if suspended and not done and not _true(old, "Suspended"):
            conditions = [c for c in conditions if c.get("type") != "Suspended"]
            conditions.append(_condition("Suspended", "JobSuspended", "Job suspended", now_text))
    else:
        if _true(old, "Suspended"):
            conditions = [c for c in conditions if c.get("type") != "Suspended"]
        if completions is not None:
            wanted = min(parallelism, int(completions) - succeeded)
        else:
            wanted = parallelism if succeeded == 0 else 0
        diff = wanted - len(active)
        if diff > 0 and failed > 0:
            last = last_failure(pods)
            delay = min(BACKOFF_BASE_S * 2 ** (failed - 1), BACKOFF_MAX_S)
            if last is not None and last + delay > now:
                step.recheck_at = min(step.recheck_at or math.inf, last + delay)
                diff = 0
        if diff > 0:
            step.create = diff
        elif diff < 0:
            step.delete = deletion_order(active)[:-diff]
    if conditions:
        status["conditions"] = conditions
    remaining_active = len(active) - len(step.delete) + step.create
    status["active"] = remaining_active
    status["ready"] = sum(1 for p in active if is_ready(p) and p not in step.delete)
    status["succeeded"] = counts.succeeded
    status["failed"] = counts.failed
    for k in ("active", "succeeded", "failed"):
        if not status[k]:
            del status[k]  # omitempty
    uncounted: Obj = {}
    if counts.uncounted_succeeded:
        uncounted["succeeded"] = counts.uncounted_succeeded
    if counts.uncounted_failed:
        uncounted["failed"] = counts.uncounted_failed
    status["uncountedTerminatedPods"] = uncounted
    step.status = status
    return step


class JobController(SyncLoop):
    """The Job controller of one leadership term (see the module docstring)."""

    kind = "job"
    component = COMPONENT
    followed = ("jobs", "pods")
    owner_kind = "Job"
    garbage_words = ("pods", "Jobs")

    def __init__(self, store: ReplicatedStore, settings: ControllersConfig, *, instance: str = "",
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        super().__init__(store, settings, instance=instance, clock=clock)
        self.rng = rng or random.Random()

    def _fell_behind(self) -> None:
        self.start(self._proposer().term)

    def _dependent_changed(self, ev: WatchEvent) -> None:
        """A pod changed: its Job is dirty (or gone, when the pod names a Job that no longer exists)."""
        for pod in (ev.obj, ev.prev):
            ref = controller_ref(pod) if pod is not None else None
            if ref is not None and ref.get("kind") == "Job":
                owner = self.by_uid.get(str(ref.get("uid")))
                if owner is not None:
                    self.dirty.add(owner)
                elif ev.type != DELETED:
                    self.gone_owners.add(str(ref.get("uid")))

    async def sync(self, key: str) -> None:
        """Bring one Job ("ns/name") one step further and write its status."""
        ns, _, name = key.partition("/")
        job = self.store.read(lambda s: s.get("jobs", ns, name))
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        uid = job["metadata"]["uid"]
        now = self.clock()
        ended = finished_at(job)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ended is not None and ttl is not None:
            if ended + int(ttl) <= now:
                log.info("job %s finished %ss ago: deleting it (ttlSecondsAfterFinished)", key, int(now - ended))
                await propose_all(self._proposer(), [Delete(resource="jobs", namespace=ns, name=name,
                                                            time=rfc3339(now), expected_uid=uid)])
                return
            self.recheck_at[key] = min(self.recheck_at.get(key, math.inf), ended + int(ttl))

        def owned(s: StoreState) -> list[Obj]:
            prefix = ns + "/"
            return [p for k, p in s.objects["pods"].items()
                    if k.startswith(prefix) and (controller_ref(p) or {}).get("uid") == uid]
        pods = self.store.read(owned)
        step = job_step(job, pods, now)
        if step.recheck_at is not None:
            self.recheck_at[key] = min(self.recheck_at.get(key, math.inf), step.recheck_at)
        commands: list[AnyCommand] = []
        now_text = rfc3339(now)
        for _ in range(step.create):
            pod = self._new_pod(job)
            causes = validation.VALIDATORS["pods"](pod)
            if causes:
                self.recorder.emit(job, WARNING, "FailedCreate",
                                   "Error creating: " + "; ".join(c.render() for c in causes))
                break
            commands.append(Create(resource="pods", namespace=ns, obj=pod))
        for pod in step.delete:
            commands.append(Delete(resource="pods", namespace=ns, name=pod["metadata"]["name"], time=now_text,
                                   expected_uid=pod["metadata"].get("uid", "")))
        if commands:
            for c, r in await propose_all(self._proposer(), commands, max_count=BATCH_MAX_COMMANDS):
                if isinstance(c, Create):
                    if r.ok:
                        self.recorder.emit(job, NORMAL, "SuccessfulCreate", f"Created pod: {c.obj['metadata']['name']}")
                    else:
                        self.dirty.add(key)
                elif isinstance(c, Delete) and r.ok:
                    self.recorder.emit(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {c.name}")
        if step.status != (job.get("status") or {}):
            result = await propose_all(self._proposer(), [Replace(
                resource="jobs", namespace=ns, name=name, obj={"metadata": {"uid": uid}, "status": step.status},
                expected_rv=str(job["metadata"]["resourceVersion"]),
                subresource="status")])
            if not all(r.ok for _, r in result):
                self.dirty.add(key)
                return  # the finished pods are not recorded: keep their finalizers, read again
        if step.event is not None:
            self.recorder.emit(job, *step.event)
        if step.release:
            # Recorded in status.uncountedTerminatedPods (or nothing to count): the pods may go now. The next
            # sync moves their uids into the counts.
            await propose_all(self._proposer(), [release_finalizer(p) for p in step.release])
            self.dirty.add(key)

    def _new_pod(self, job: Obj) -> Obj:
        return pod_from_template(job, api_version="batch/v1", kind="Job", rng=self.rng, now=self.clock(),
                                 finalizers=(TRACKING_FINALIZER,))

    def _garbage_commands(self, found: list[Obj], now_text: str) -> list[AnyCommand]:
        """Release the tracking finalizer of the pods that carry it, then delete them all."""
        commands: list[AnyCommand] = [release_finalizer(p) for p in found if _tracked(p)]
        return commands + super()._garbage_commands(found, now_text)


def release_finalizer(pod: Obj) -> Replace:
    """The pod without the Job tracking finalizer (compare-and-set on its resourceVersion)."""
    meta = dict(pod["metadata"])
    meta["finalizers"] = [f for f in meta.get("finalizers") or () if f != TRACKING_FINALIZER]
    if not meta["finalizers"]:
        del meta["finalizers"]
    return Replace(resource="pods", namespace=meta.get("namespace", ""), name=meta["name"],
                   obj={**pod, "metadata": meta}, expected_rv=str(meta.get("resourceVersion", "")))
