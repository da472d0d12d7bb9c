"""Pod status as the kubelet computes it, as pure functions of the pod, what the runtime reports and `now`.

Called by the kubelet agent after every sync of a pod; the result is written through `pods/{name}/status`.
Nothing here reads a clock, a random source or the network, so `tests/unit/test_kubelet_status.py` checks
it on saved input/expected files — and checks that the STATUS word kubectl prints for the result
(`hacluster.format.pods.pod_status_reason`) is the one a user expects for that situation.

Followed from Kubernetes v1.30 (`pkg/kubelet/kubelet_pods.go`: `generateAPIPodStatus`, `getPhase`,
`convertToAPIContainerStatuses`; `pkg/kubelet/status/generate.go`: the Ready, ContainersReady, Initialized
and PodReadyToStartContainers conditions; `pkg/kubelet/status/status_manager.go`: lastTransitionTime is kept
while a condition's status does not change, and a pod never leaves a terminal phase).

One deliberate choice: the containers of a pod evicted for node pressure keep the state they had when the
eviction was decided (not ready). Kubelets before 1.22 reported exactly that, and it is why `kubectl get
pods` prints `Evicted` for such pods; newer kubelets mark the killed containers terminated (exit 137,
reason Error) and kubectl then prints `Error` for an evicted pod.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hacluster.kubelet.runtime import CREATED, EXITED, RUNNING, ContainerRecord
from hacluster.model.timestamps import rfc3339_or_none
from hacluster.model.validation import qos_class

Obj = dict[str, Any]

CONTAINER_CREATING = "ContainerCreating"
POD_INITIALIZING = "PodInitializing"
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
TERMINAL_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True)
class PodFacts:
    """What the kubelet knows of one pod besides the pod object: the input of `pod_status`."""

    records: tuple[ContainerRecord, ...] = ()
    """Every attempt the runtime still knows of (the last two per container), oldest first."""
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Container name → (reason, message) of the last sync's failure to start it: ErrImagePull,
    ImagePullBackOff, CrashLoopBackOff, CreateContainerError … (the kubelet's reason cache)."""
    sandbox_ready: bool = False
    """The pod's sandbox (network, IP) exists."""
    pod_ip: str = ""
    host_ip: str = "127.0.0.1"
    start_time: str = ""
    """When the kubelet admitted the pod (RFC 3339); "" keeps what the pod has."""
    terminal: tuple[str, str, str] | None = None
    """(phase, reason, message) decided by the kubelet itself: an eviction or an admission rejection."""
    disruption: Obj | None = None
    """A DisruptionTarget condition to add (eviction)."""
    pod_is_terminal: bool = False
    """The pod is being deleted and every container has stopped: nothing restarts any more."""


def go_list(names: Iterable[str]) -> str:
    """A string slice as Go's %v prints it: [a b]."""
    return "[" + " ".join(names) + "]"


# ------------------------------------------------------------------------------- containers
def latest_records(records: Iterable[ContainerRecord], init: bool) -> dict[str, list[ContainerRecord]]:
    """Attempts per container name, oldest first."""
    out: dict[str, list[ContainerRecord]] = {}
    for r in records:
        if r.init == init:
            out.setdefault(r.name, []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r.attempt)
    return out


def should_restart(restart_policy: str, record: ContainerRecord | None, *, init: bool = False,
                   pod_is_terminal: bool = False) -> bool:
    """Kubernetes' ShouldContainerBeRestarted for a container whose latest attempt is `record`."""
    if pod_is_terminal or record is None or record.state != EXITED:
        return False
    if init and record.exit_code == 0:
        return False
    if restart_policy == "Never":
        return False
    if restart_policy == "OnFailure" and record.exit_code == 0:
        return False
    return True


def terminated_state(r: ContainerRecord) -> Obj:
    t: Obj = {"exitCode": int(r.exit_code or 0)}
    if r.reason:
        t["reason"] = r.reason
    if r.message:
        t["message"] = r.message
    t["startedAt"] = rfc3339_or_none(r.started_at)
    t["finishedAt"] = rfc3339_or_none(r.finished_at)
    t["containerID"] = r.id
    return t


def container_status(spec: Mapping[str, Any], attempts: list[ContainerRecord], facts: PodFacts,
                     restart_policy: str, default_reason: str, *, init: bool,
                     old: Mapping[str, Any] | None = None) -> Obj:
    """One entry of status.containerStatuses (or initContainerStatuses). `old` is the container's entry in
    the previous status: a container the runtime no longer knows keeps its old terminated state, or at least
    its restart count and last state (as Kubernetes' convertToAPIContainerStatuses does)."""
    name = str(spec.get("name", ""))
    image = str(spec.get("image", ""))
    latest = attempts[-1] if attempts else None
    previous = attempts[-2] if len(attempts) > 1 else None
    cs: Obj = {"name": name, "state": {}, "lastState": {}, "ready": False, "restartCount": 0, "image": image,
               "imageID": ""}
    if latest is None:
        if old and "terminated" in (old.get("state") or {}) and name not in facts.waiting:
            return dict(old, ready=False)
        if old:
            cs["restartCount"] = int(old.get("restartCount") or 0)
            cs["lastState"] = old.get("lastState") or {}
        reason, message = facts.waiting.get(name, (default_reason, ""))
        waiting: Obj = {"reason": reason}
        if message:
            waiting["message"] = message
        cs["state"] = {"waiting": waiting}
        cs["started"] = False
        return cs
    cs["restartCount"] = latest.attempt
    cs["imageID"] = latest.image_id
    cs["containerID"] = latest.id
    if previous is not None and previous.state == EXITED:
        cs["lastState"] = {"terminated": terminated_state(previous)}
    if latest.state == RUNNING:
        cs["state"] = {"running": {"startedAt": rfc3339_or_none(latest.started_at)}}
        cs["ready"] = bool(latest.ready)
        cs["started"] = True
    elif latest.state == CREATED:
        cs["state"] = {"waiting": {"reason": CONTAINER_CREATING}}
        cs["started"] = False
    else:
        cs["started"] = False
        restart = should_restart(restart_policy, latest, init=init, pod_is_terminal=facts.pod_is_terminal)
        if restart and name in facts.waiting:
            reason, message = facts.waiting[name]
            waiting = {"reason": reason}
            if message:
                waiting["message"] = message
            cs["lastState"] = {"terminated": terminated_state(latest)}
            cs["state"] = {"waiting": waiting}
        else:
            cs["state"] = {"terminated": terminated_state(latest)}
    return cs


# ------------------------------------------------------------------------------------ phase
def _status_of(statuses: list[Obj], name: str) -> Obj | None:
    for s in statuses:
        if s.get("name") == name:
            return s
    return None


def pod_phase(spec: Mapping[str, Any], init_statuses: list[Obj], statuses: list[Obj], pod_is_terminal: bool) -> str:
    """Kubernetes' getPhase."""
    policy = spec.get("restartPolicy") or "Always"
    pending_init = failed_init = 0
    for c in spec.get("initContainers") or []:
        s = _status_of(init_statuses, c.get("name"))
        if s is None:
            pending_init += 1
            continue
        state, last = s.get("state") or {}, s.get("lastState") or {}
        if "running" in state:
            pending_init += 1
        elif "terminated" in state:
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif "waiting" in state:
            if "terminated" in last:
                if last["terminated"].get("exitCode", 0) != 0:
                    failed_init += 1
            else:
                pending_init += 1
        else:
            pending_init += 1
    unknown = running = waiting = stopped = succeeded = 0
    any_started = False
    for c in spec.get("containers") or []:
        s = _status_of(statuses, c.get("name"))
        if s is None:
            unknown += 1
            continue
        state, last = s.get("state") or {}, s.get("lastState") or {}
        if "running" in state:
            running += 1
            any_started = True
        elif "terminated" in state:
            stopped += 1
            any_started = True
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
                any_started = True
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if (pending_init > 0 and not any_started) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if pod_is_terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


# ------------------------------------------------------------------------------- conditions
def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": ctype, "status": "True" if ok else "False"}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def containers_ready_condition(spec: Mapping[str, Any], statuses: list[Obj], phase: str) -> Obj:
    unknown, unready = [], []
    for c in spec.get("containers") or []:
        s = _status_of(statuses, c.get("name"))
        if s is None:
            unknown.append(c.get("name", ""))
        elif not s.get("ready"):
            unready.append(c.get("name", ""))
    if phase == "Succeeded" and not unknown:
        return _condition("ContainersReady", False, "PodCompleted")
    parts = []
    if unknown:
        parts.append(f"containers with unknown status: {go_list(unknown)}")
    if unready:
        parts.append(f"containers with unready status: {go_list(unready)}")
    if parts:
        return _condition("ContainersReady", False, "ContainersNotReady", ", ".join(parts))
    return _condition("ContainersReady", True)


def ready_condition(spec: Mapping[str, Any], statuses: list[Obj], phase: str, conditions: list[Obj]) -> Obj:
    cr = containers_ready_condition(spec, statuses, phase)
    if cr["status"] != "True":
        return dict(cr, type="Ready")
    unready = []
    for gate in spec.get("readinessGates") or []:
        ctype = gate.get("conditionType", "")
        found = next((c for c in conditions if c.get("type") == ctype), None)
        if found is None:
            unready.append(f"corresponding condition of pod readiness gate \"{ctype}\" does not exist.")
        elif found.get("status") != "True":
            unready.append(f"the status of pod readiness gate \"{ctype}\" is not \"True\", but "
                           f"{found.get('status')}")
    if unready:
        return _condition("Ready", False, "ReadinessGatesNotReady", ", ".join(unready))
    return _condition("Ready", True)


def initialized_condition(spec: Mapping[str, Any], init_statuses: list[Obj], statuses: list[Obj],
                          phase: str) -> Obj:
    inits = spec.get("initContainers") or []
    unknown, incomplete = [], []
    for c in inits:
        s = _status_of(init_statuses, c.get("name"))
        if s is None:
            unknown.append(c.get("name", ""))
            continue
        term = (s.get("state") or {}).get("terminated")
        if term is None or term.get("exitCode", 0) != 0:
            incomplete.append(c.get("name", ""))
    if phase == "Succeeded" and not unknown:
        return _condition("Initialized", True, "PodCompleted")
    if any("running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
           or "terminated" in (s.get("lastState") or {}) for s in statuses):
        return _condition("Initialized", True)
    parts = []
    if unknown:
        parts.append(f"containers with unknown status: {go_list(unknown)}")
    if incomplete:
        parts.append(f"containers with incomplete status: {go_list(incomplete)}")
    if parts:
        return _condition("Initialized", False, "ContainersNotInitialized", ", ".join(parts))
    return _condition("Initialized", True)


def _with_transition_times(conditions: list[Obj], old: list[Obj], now_s: str) -> list[Obj]:
    out = []
    for c in conditions:
        prev = next((o for o in old if o.get("type") == c["type"]), None)
        c = dict(c)
        c.setdefault("lastProbeTime", None)
        if prev is not None and prev.get("status") == c["status"] and prev.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev["lastTransitionTime"]
        else:
            c["lastTransitionTime"] = now_s
        out.append(c)
    return out


# ---------------------------------------------------------------------------------- the pod
def pod_status(pod: Mapping[str, Any], facts: PodFacts, now: float, previous: Mapping[str, Any] | None = None) -> Obj:
    """The status the kubelet writes for `pod` (its `status` field), given what it knows and `now`.

    Conditions the kubelet does not own are kept from the pod's status; transition times, the start time
    and a terminal phase are kept from `previous` (the kubelet's own last computed status, which may be
    newer than the pod it was given) or else from the pod's status."""
    spec = pod.get("spec") or {}
    api = pod.get("status") or {}
    old = previous if previous is not None else api
    policy = spec.get("restartPolicy") or "Always"
    has_init = bool(spec.get("initContainers"))
    default_reason = POD_INITIALIZING if has_init else CONTAINER_CREATING
    init_attempts = latest_records(facts.records, True)
    attempts = latest_records(facts.records, False)
    old_init = {c.get("name"): c for c in old.get("initContainerStatuses") or [] if isinstance(c, dict)}
    old_main = {c.get("name"): c for c in old.get("containerStatuses") or [] if isinstance(c, dict)}
    init_statuses = [container_status(c, init_attempts.get(c.get("name", ""), []), facts, policy, default_reason,
                                      init=True, old=old_init.get(c.get("name")))
                     for c in spec.get("initContainers") or []]
    statuses = [container_status(c, attempts.get(c.get("name", ""), []), facts, policy, default_reason, init=False,
                                 old=old_main.get(c.get("name")))
                for c in spec.get("containers") or []]
    phase = pod_phase(spec, init_statuses, statuses, facts.pod_is_terminal)
    reason = message = ""
    if facts.terminal is not None:
        phase, reason, message = facts.terminal
    for earlier in (old, api):
        if earlier.get("phase") in TERMINAL_PHASES:
            phase = earlier["phase"]  # the kubelet never moves a pod out of a terminal phase
            if facts.terminal is None:
                reason, message = earlier.get("reason", ""), earlier.get("message", "")
            break
    now_s = rfc3339_or_none(now) or ""
    old_conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    api_conditions = [c for c in api.get("conditions") or [] if isinstance(c, dict)]
    foreign = [c for c in api_conditions if c.get("type") not in KUBELET_CONDITIONS
               and not (facts.disruption and c.get("type") == "DisruptionTarget")]
    if facts.disruption:
        foreign.append(dict(facts.disruption))
    ready_to_start = facts.sandbox_ready and phase not in TERMINAL_PHASES
    scheduled = next((c for c in api_conditions if c.get("type") == "PodScheduled"), None)
    ours = [
        _condition("PodReadyToStartContainers", ready_to_start),
        initialized_condition(spec, init_statuses, statuses, phase),
        ready_condition(spec, statuses, phase, api_conditions),
        containers_ready_condition(spec, statuses, phase),
    ]
    ours.append({k: v for k, v in scheduled.items()} if scheduled and scheduled.get("status") == "True"
                else _condition("PodScheduled", True))
    conditions = _with_transition_times(foreign + ours, old_conditions + api_conditions, now_s)
    status: Obj = {"phase": phase, "conditions": conditions}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if api.get("nominatedNodeName"):
        status["nominatedNodeName"] = api["nominatedNodeName"]
    status["hostIP"] = facts.host_ip
    status["hostIPs"] = [{"ip": facts.host_ip}]
    pod_ip = facts.pod_ip or old.get("podIP") or api.get("podIP") or ""
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    start = facts.start_time or old.get("startTime") or api.get("startTime")
    if start:
        status["startTime"] = start
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = api.get("qosClass") or old.get("qosClass") or qos_class(dict(spec))
    return status


def freeze_for_eviction(records: Iterable[ContainerRecord]) -> tuple[ContainerRecord, ...]:
    """The records an evicted pod keeps reporting: as they were, none ready (see the module docstring)."""
    from dataclasses import replace

    return tuple(replace(r, ready=False) for r in records)
