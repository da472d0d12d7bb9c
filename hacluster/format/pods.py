"""`kubectl get pods` as Kubernetes prints it (`printPod` in printers.go at v1.32): the READY, STATUS and
RESTARTS words and the nine wide cells of one pod.

Used by the table builders (`hacluster.format.tables`), the dashboard and the tests that read pod states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hacluster.format.accessors import as_int, as_list, as_map, as_str, is_set, metadata_of
from hacluster.format.durations import since
from hacluster.model.timestamps import parse_datetime

_NODE_UNREACHABLE_POD_REASON = "NodeLost"  # k8s.io/kubernetes/pkg/util/node.NodeUnreachablePodReason

_POD_SUCCESS_CONDITIONS: tuple[dict[str, str], ...] = (
    {"type": "Completed", "status": "True", "reason": "Succeeded",
     "message": "The pod has completed successfully."},
)
_POD_FAILED_CONDITIONS: tuple[dict[str, str], ...] = (
    {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."},
)


@dataclass(frozen=True, slots=True)
class PrintedPod:
    """What `printPod` computes for one pod; `cells` are the nine wide cells."""

    ready: str
    status: str
    restarts: str
    cells: list[Any]
    conditions: tuple[dict[str, str], ...]


def _is_restartable_init_container(container: Mapping[str, Any] | None) -> bool:
    """`podutil.IsRestartableInitContainer`: a sidecar (`restartPolicy: Always`); nil is not one."""
    if container is None:
        return False
    return container.get("restartPolicy") == "Always"


def _is_pod_initialized_condition_true(status: Mapping[str, Any]) -> bool:
    for condition in as_list(status.get("conditions")):
        condition = as_map(condition)
        if condition.get("type") != "Initialized":
            continue
        return condition.get("status") == "True"
    return False


def _has_pod_ready_condition(conditions: list[Any]) -> bool:
    for condition in conditions:
        condition = as_map(condition)
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return False


def _last_termination(container_status: Mapping[str, Any]) -> tuple[bool, datetime | None]:
    """(`LastTerminationState.Terminated != nil`, its `FinishedAt`, None being Go's zero time)."""
    terminated = as_map(container_status.get("lastState")).get("terminated")
    if not is_set(terminated):
        return False, None
    return True, parse_datetime(as_map(terminated).get("finishedAt"))


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    """`if current.Before(&candidate) { current = candidate }` with None as Go's zero time."""
    if candidate is None:
        return current
    if current is None or current < candidate:
        return candidate
    return current


def print_pod(pod: Mapping[str, Any], now: datetime) -> PrintedPod:
    metadata = metadata_of(pod)
    spec = as_map(pod.get("spec"))
    status = as_map(pod.get("status"))
    conditions = as_list(status.get("conditions"))
    init_specs = as_list(spec.get("initContainers"))

    restarts = 0
    restartable_init_container_restarts = 0
    total_containers = len(as_list(spec.get("containers")))
    ready_containers = 0
    last_restart_date: datetime | None = None
    last_restartable_init_container_restart_date: datetime | None = None

    pod_phase = as_str(status.get("phase"))
    reason = pod_phase
    if as_str(status.get("reason")) != "":
        reason = as_str(status.get("reason"))

    # If the Pod carries {type:PodScheduled, reason:SchedulingGated}, set reason to 'SchedulingGated'.
    for condition in conditions:
        condition = as_map(condition)
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    row_conditions: tuple[dict[str, str], ...] = ()
    if pod_phase == "Succeeded":
        row_conditions = _POD_SUCCESS_CONDITIONS
    elif pod_phase == "Failed":
        row_conditions = _POD_FAILED_CONDITIONS

    init_containers: dict[str, Mapping[str, Any]] = {}
    for init_spec in init_specs:
        init_spec = as_map(init_spec)
        init_containers[as_str(init_spec.get("name"))] = init_spec
        if _is_restartable_init_container(init_spec):
            total_containers += 1

    initializing = False
    for i, container in enumerate(as_list(status.get("initContainerStatuses"))):
        container = as_map(container)
        restarts += as_int(container.get("restartCount"))
        has_terminated, finished = _last_termination(container)
        if has_terminated:
            last_restart_date = _later(last_restart_date, finished)
        restartable = _is_restartable_init_container(init_containers.get(as_str(container.get("name"))))
        if restartable:
            restartable_init_container_restarts += as_int(container.get("restartCount"))
            if has_terminated:
                last_restartable_init_container_restart_date = _later(
                    last_restartable_init_container_restart_date, finished)
        state = as_map(container.get("state"))
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if is_set(terminated) and as_int(as_map(terminated).get("exitCode")) == 0:
            continue
        if restartable and container.get("started") is True:
            if container.get("ready") is True:
                ready_containers += 1
            continue
        if is_set(terminated):
            # initialization is failed
            terminated = as_map(terminated)
            if len(as_str(terminated.get("reason"))) == 0:
                if as_int(terminated.get("signal")) != 0:
                    reason = f"Init:Signal:{as_int(terminated.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{as_int(terminated.get('exitCode'))}"
            else:
                reason = "Init:" + as_str(terminated.get("reason"))
            initializing = True
        elif (is_set(waiting) and len(as_str(as_map(waiting).get("reason"))) > 0
              and as_str(as_map(waiting).get("reason")) != "PodInitializing"):
            reason = "Init:" + as_str(as_map(waiting).get("reason"))
            initializing = True
        else:
            reason = f"Init:{i}/{len(init_specs)}"
            initializing = True
        break

    if not initializing or _is_pod_initialized_condition_true(status):
        restarts = restartable_init_container_restarts
        last_restart_date = last_restartable_init_container_restart_date
        has_running = False
        for container in reversed(as_list(status.get("containerStatuses"))):
            container = as_map(container)
            restarts += as_int(container.get("restartCount"))
            has_terminated, finished = _last_termination(container)
            if has_terminated:
                last_restart_date = _later(last_restart_date, finished)
            state = as_map(container.get("state"))
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if is_set(waiting) and as_str(as_map(waiting).get("reason")) != "":
                reason = as_str(as_map(waiting).get("reason"))
            elif is_set(terminated) and as_str(as_map(terminated).get("reason")) != "":
                reason = as_str(as_map(terminated).get("reason"))
            elif is_set(terminated) and as_str(as_map(terminated).get("reason")) == "":
                terminated = as_map(terminated)
                if as_int(terminated.get("signal")) != 0:
                    reason = f"Signal:{as_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{as_int(terminated.get('exitCode'))}"
            elif container.get("ready") is True and is_set(state.get("running")):
                has_running = True
                ready_containers += 1

        # change pod status back to "Running" if there is at least one container still reporting as "Running"
        if reason == "Completed" and has_running:
            if _has_pod_ready_condition(conditions):
                reason = "Running"
            else:
                reason = "NotReady"

    deleting = is_set(metadata.get("deletionTimestamp"))
    if deleting and as_str(status.get("reason")) == _NODE_UNREACHABLE_POD_REASON:
        reason = "Unknown"
    elif deleting and pod_phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts != 0 and last_restart_date is not None:
        restarts_str = f"{restarts} ({since(last_restart_date, now)} ago)"

    ready = f"{ready_containers}/{total_containers}"
    cells: list[Any] = [as_str(metadata.get("name")), ready, reason, restarts_str,
                        since(parse_datetime(metadata.get("creationTimestamp")), now)]

    # Wide cells (the API server always prints wide).
    node_name = as_str(spec.get("nodeName"))
    nominated_node_name = as_str(status.get("nominatedNodeName"))
    pod_ips = as_list(status.get("podIPs"))
    # The v1 → internal conversion fills podIPs from podIP when only the latter is set.
    pod_ip = as_str(as_map(pod_ips[0]).get("ip")) if pod_ips else as_str(status.get("podIP"))
    if pod_ip == "":
        pod_ip = "<none>"
    if node_name == "":
        node_name = "<none>"
    if nominated_node_name == "":
        nominated_node_name = "<none>"
    readiness_gates = "<none>"
    gates = as_list(spec.get("readinessGates"))
    if gates:
        true_conditions = 0
        for gate in gates:
            condition_type = as_map(gate).get("conditionType")
            for condition in conditions:
                condition = as_map(condition)
                if condition.get("type") == condition_type:
                    if condition.get("status") == "True":
                        true_conditions += 1
                    break
        readiness_gates = f"{true_conditions}/{len(gates)}"
    cells += [pod_ip, node_name, nominated_node_name, readiness_gates]

    return PrintedPod(ready=ready, status=reason, restarts=restarts_str, cells=cells,
                       conditions=row_conditions)


def pod_status_reason(pod: Mapping[str, Any]) -> str:
    """The STATUS word of `kubectl get pods` (Running, Pending, ContainerCreating, CrashLoopBackOff,
    Completed, Error, OOMKilled, Evicted, Init:0/1, Init:CrashLoopBackOff, PodInitializing, Signal:9,
    ExitCode:2, NotReady, SchedulingGated, Terminating, Unknown, ...), exactly as `printPod` computes it.

    Does not depend on the clock. "SchedulingGated" comes from the PodScheduled condition with reason
    SchedulingGated, which Kubernetes' pod strategy adds on create when `spec.schedulingGates` is set.
    """
    return print_pod(pod, datetime.fromtimestamp(0, UTC)).status


def pod_ready(pod: Mapping[str, Any]) -> str:
    """The READY cell, "ready/total": ready running containers (plus started, ready sidecars) over
    containers plus sidecar init containers."""
    return print_pod(pod, datetime.fromtimestamp(0, UTC)).ready


def pod_restarts(pod: Mapping[str, Any], now: datetime) -> str:
    """The RESTARTS cell: "3", or "3 (45s ago)" when a last termination time is known. Always a string,
    as the column's type is "string" (older releases, before the last-restart time, used "integer")."""
    return print_pod(pod, now).restarts


def pod_row(pod: Mapping[str, Any], now: datetime) -> list[Any]:
    """All nine cells of a pod: Name, Ready, Status, Restarts, Age, IP, Node, Nominated Node, Readiness
    Gates."""
    return list(print_pod(pod, now).cells)


