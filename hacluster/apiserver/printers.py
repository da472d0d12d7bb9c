"""Server-side printing: Kubernetes `meta.k8s.io/v1` Table answers for `kubectl get`, as pure functions.

Called by the API server when a client asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
(a list, a single object, or one watch event). Everything here is a pure function of the objects and of
`now`, which the caller passes in: no clock, no I/O, nothing mutated.

Followed line by line, and kept in the same order so the two can be compared:
- `pkg/printers/internalversion/printers.go` of kubernetes/kubernetes at v1.32 (the tree stored as
  yongruilin/kubernetes@144a7980762c, whose printers.go matches the v1.32 release: sidecar-aware
  `printPod`, `Restarts` a string column, wide event columns, `Terminating` not shown for terminal pods);
- `pkg/printers/storage/storage.go` and `pkg/printers/tablegenerator.go`: the API server always prints
  with `Wide: true`, so every row carries the priority-1 cells too and the client hides them;
- `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go` (`asTable`): `includeObject`
  `Metadata` (the default) → a `PartialObjectMetadata`, `Object` → the object, `None` → no object;
- `staging/src/k8s.io/apiserver/pkg/registry/rest/table.go`: the default convertor (Name, Created At);
- `staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go`: `HumanDuration`.

Column descriptions are the Go `SwaggerDoc()` strings; they are informational (kubectl ignores them).

Objects are plain Kubernetes JSON dicts. Missing fields read as Go's zero values, so a half-built object
prints rather than raises. Rows share the input's `metadata` dicts (or whole objects); callers serialise
the table and must not mutate either afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from hacluster.model.errors import BadRequest

# ---------------------------------------------------------------------------------------------------------
# Durations and timestamps (k8s.io/apimachinery/pkg/util/duration)
# ---------------------------------------------------------------------------------------------------------

_NS_PER_S = 1_000_000_000
_NS_PER_MIN = 60 * _NS_PER_S
_NS_PER_H = 60 * _NS_PER_MIN


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _human_duration_ns(d: int) -> str:
    """`duration.HumanDuration` on a Go `time.Duration` (integer nanoseconds)."""
    # Allow deviation no more than 2 seconds (excluded) to tolerate machine time inconsistence.
    seconds = _trunc_div(d, _NS_PER_S)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = d // _NS_PER_MIN
    if minutes < 10:
        s = (d // _NS_PER_S) % 60
        if s == 0:
            return f"{minutes}m"
        return f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = d // _NS_PER_H
    if hours < 8:
        m = (d // _NS_PER_MIN) % 60
        if m == 0:
            return f"{hours}h"
        return f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        if h == 0:
            return f"{hours // 24}d"
        return f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        if dy == 0:
            return f"{hours // 24 // 365}y"
        return f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def human_duration(seconds: float) -> str:
    """How Kubernetes prints an age: "5s", "119s", "3m20s", "10m", "7h59m", "2d3h", "3y45d", "9y".

    Exactly `duration.HumanDuration`: up to 2 s in the future still reads "0s", further is "<invalid>".
    The float is rounded to whole nanoseconds first, as Go's `time.Duration` holds them.
    """
    return _human_duration_ns(round(seconds * _NS_PER_S))


def _parse_time(ts: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None for a missing, empty or unreadable one
    (Go's zero `metav1.Time`)."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _since(then: datetime | None, now: datetime) -> str:
    """`translateTimestampSince`: "<unknown>" for a zero time, else the human duration since it."""
    if then is None:
        return "<unknown>"
    delta = _aware(now) - then
    ns = (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1_000
    return _human_duration_ns(ns)


def translate_timestamp_since(ts: str | None, now: datetime) -> str:
    """The AGE of an RFC 3339 timestamp at `now` (naive `now` is taken as UTC); "<unknown>" when the
    timestamp is missing or unreadable."""
    return _since(_parse_time(ts), now)


# ---------------------------------------------------------------------------------------------------------
# Small readers for JSON dicts (Go zero values for anything missing)
# ---------------------------------------------------------------------------------------------------------


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def _present(value: object) -> bool:
    """A Go pointer field is non-nil: the key is there and not JSON null."""
    return value is not None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(obj.get("metadata"))


# ---------------------------------------------------------------------------------------------------------
# Column definitions (AddHandlers in printers.go, descriptions from SwaggerDoc())
# ---------------------------------------------------------------------------------------------------------

_DESC_NAME = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_DESC_CREATION_TIMESTAMP = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/"
    "api-conventions.md#metadata"
)


@dataclass(frozen=True, slots=True)
class Column:
    """One `TableColumnDefinition`."""

    name: str
    type: str
    description: str
    format: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


def _name_column(priority: int = 0) -> Column:
    return Column("Name", "string", _DESC_NAME, format="name", priority=priority)


def _age_column() -> Column:
    return Column("Age", "string", _DESC_CREATION_TIMESTAMP)


POD_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "string", "The aggregate status of the containers in this pod."),
    Column("Restarts", "string",
           "The number of times the containers in this pod have been restarted and when the last "
           "container in this pod has restarted."),
    _age_column(),
    Column("IP", "string",
           "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
           "allocated.", priority=1),
    Column("Node", "string",
           "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate "
           "for scheduling by the scheduler defined in schedulerName. Once this field is set, the "
           "kubelet for this node becomes responsible for the lifecycle of this pod. This field should "
           "not be used to express a desire for the pod to be scheduled on a specific node. "
           "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", priority=1),
    Column("Nominated Node", "string",
           "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot "
           "be scheduled right away as preemption victims receive their graceful termination periods. "
           "This field does not guarantee that the pod will be scheduled on this node. Scheduler may "
           "decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also "
           "decide to give the resources on this node to a higher priority pod that is created after "
           "preemption. As a result, this field may be different than PodSpec.nodeName when the pod is "
           "scheduled.", priority=1),
    Column("Readiness Gates", "string",
           "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when "
           "all its containers are ready AND all conditions specified in the readiness gates have status "
           "equal to \"True\" More info: "
           "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", priority=1),
)

_DESC_NODE_ADDRESSES = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. More info: "
    "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as "
    "mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is "
    "merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an "
    "example. Consumers should assume that addresses can change during the lifetime of a Node. However, "
    "there are some exceptions where this may not be possible, such as Pods that inherit a Node's "
    "address in its own status or consumers of the downward API (status.hostIP)."
)

NODE_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Status", "string", "The status of the node"),
    Column("Roles", "string", "The roles of the node"),
    _age_column(),
    Column("Version", "string", "Kubelet Version reported by the node."),
    Column("Internal-IP", "string", _DESC_NODE_ADDRESSES, priority=1),
    Column("External-IP", "string", _DESC_NODE_ADDRESSES, priority=1),
    Column("OS-Image", "string",
           "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
           priority=1),
    Column("Kernel-Version", "string",
           "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", priority=1),
    Column("Container-Runtime", "string",
           "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
           "containerd://1.4.2).", priority=1),
)

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column("Reason", "string",
           "This should be a short, machine understandable string that gives the reason for the "
           "transition into the object's current status."),
    Column("Object", "string", "The object that this event is about."),
    Column("Subobject", "string",
           "If referring to a piece of an object instead of an entire object, this string should contain "
           "a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For "
           "example, if the object reference is to a container within a pod, this would take on a value "
           "like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that "
           "triggered the event) or if no container name is specified \"spec.containers[2]\" (container "
           "with index 2 in this pod). This syntax is chosen only to have some well-defined way of "
           "referencing a part of an object.", priority=1),
    Column("Source", "string",
           "The component reporting this event. Should be a short machine understandable string.",
           priority=1),
    Column("Message", "string", "A human-readable description of the status of this operation."),
    Column("First Seen", "string",
           "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
           priority=1),
    Column("Count", "string", "The number of times this event has occurred.", priority=1),
    _name_column(priority=1),
)

# printers.go describes these with extensions/v1beta1's SwaggerDoc (typo "oberved" included).
REPLICASET_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Desired", "integer",
           "Replicas is the number of desired replicas. This is a pointer to distinguish between "
           "explicit zero and unspecified. Defaults to 1. More info: "
           "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/"
           "#what-is-a-replicationcontroller"),
    Column("Current", "integer",
           "Replicas is the most recently oberved number of replicas. More info: "
           "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/"
           "#what-is-a-replicationcontroller"),
    Column("Ready", "integer", "The number of ready replicas for this replica set."),
    _age_column(),
    Column("Containers", "string", "Names of each container in the template.", priority=1),
    Column("Images", "string", "Images referenced by each container in the template.", priority=1),
    Column("Selector", "string",
           "Selector is a label query over pods that should match the replica count. If the selector is "
           "empty, it is defaulted to the labels present on the pod template. Label keys and values that "
           "must match in order to be controlled by this replica set. More info: "
           "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
           priority=1),
)

NAMESPACE_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Status", "string", "The status of the namespace"),
    _age_column(),
)

LEASE_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Holder", "string",
           "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader "
           "Election is used, the holder identity must be equal to the elected "
           "LeaseCandidate.metadata.name field."),
    _age_column(),
)

# rest.NewDefaultTableConvertor: what the API server prints for a resource without its own printer.
DEFAULT_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Created At", "date", _DESC_CREATION_TIMESTAMP),
)


# ---------------------------------------------------------------------------------------------------------
# Pods (printPod)
# ---------------------------------------------------------------------------------------------------------

_NODE_UNREACHABLE_POD_REASON = "NodeLost"  # k8s.io/kubernetes/pkg/util/node.NodeUnreachablePodReason

_POD_SUCCESS_CONDITIONS: tuple[dict[str, str], ...] = (
    {"type": "Completed", "status": "True", "reason": "Succeeded",
     "message": "The pod has completed successfully."},
)
_POD_FAILED_CONDITIONS: tuple[dict[str, str], ...] = (
    {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."},
)


@dataclass(frozen=True, slots=True)
class _PrintedPod:
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
    for condition in _list(status.get("conditions")):
        condition = _map(condition)
        if condition.get("type") != "Initialized":
            continue
        return condition.get("status") == "True"
    return False


def _has_pod_ready_condition(conditions: list[Any]) -> bool:
    for condition in conditions:
        condition = _map(condition)
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return False


def _last_termination(container_status: Mapping[str, Any]) -> tuple[bool, datetime | None]:
    """(`LastTerminationState.Terminated != nil`, its `FinishedAt`, None being Go's zero time)."""
    terminated = _map(container_status.get("lastState")).get("terminated")
    if not _present(terminated):
        return False, None
    return True, _parse_time(_map(terminated).get("finishedAt"))


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    """`if current.Before(&candidate) { current = candidate }` with None as Go's zero time."""
    if candidate is None:
        return current
    if current is None or current < candidate:
        return candidate
    return current


def _print_pod(pod: Mapping[str, Any], now: datetime) -> _PrintedPod:
    metadata = _metadata(pod)
    spec = _map(pod.get("spec"))
    status = _map(pod.get("status"))
    conditions = _list(status.get("conditions"))
    init_specs = _list(spec.get("initContainers"))

    restarts = 0
    restartable_init_container_restarts = 0
    total_containers = len(_list(spec.get("containers")))
    ready_containers = 0
    last_restart_date: datetime | None = None
    last_restartable_init_container_restart_date: datetime | None = None

    pod_phase = _str(status.get("phase"))
    reason = pod_phase
    if _str(status.get("reason")) != "":
        reason = _str(status.get("reason"))

    # If the Pod carries {type:PodScheduled, reason:SchedulingGated}, set reason to 'SchedulingGated'.
    for condition in conditions:
        condition = _map(condition)
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    row_conditions: tuple[dict[str, str], ...] = ()
    if pod_phase == "Succeeded":
        row_conditions = _POD_SUCCESS_CONDITIONS
    elif pod_phase == "Failed":
        row_conditions = _POD_FAILED_CONDITIONS

    init_containers: dict[str, Mapping[str, Any]] = {}
    for init_spec in init_specs:
        init_spec = _map(init_spec)
        init_containers[_str(init_spec.get("name"))] = init_spec
        if _is_restartable_init_container(init_spec):
            total_containers += 1

    initializing = False
    for i, container in enumerate(_list(status.get("initContainerStatuses"))):
        container = _map(container)
        restarts += _int(container.get("restartCount"))
        has_terminated, finished = _last_termination(container)
        if has_terminated:
            last_restart_date = _later(last_restart_date, finished)
        restartable = _is_restartable_init_container(init_containers.get(_str(container.get("name"))))
        if restartable:
            restartable_init_container_restarts += _int(container.get("restartCount"))
            if has_terminated:
                last_restartable_init_container_restart_date = _later(
                    last_restartable_init_container_restart_date, finished)
        state = _map(container.get("state"))
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if _present(terminated) and _int(_map(terminated).get("exitCode")) == 0:
            continue
        if restartable and container.get("started") is True:
            if container.get("ready") is True:
                ready_containers += 1
            continue
        if _present(terminated):
            # initialization is failed
            terminated = _map(terminated)
            if len(_str(terminated.get("reason"))) == 0:
                if _int(terminated.get("signal")) != 0:
                    reason = f"Init:Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{_int(terminated.get('exitCode'))}"
            else:
                reason = "Init:" + _str(terminated.get("reason"))
            initializing = True
        elif (_present(waiting) and len(_str(_map(waiting).get("reason"))) > 0
              and _str(_map(waiting).get("reason")) != "PodInitializing"):
            reason = "Init:" + _str(_map(waiting).get("reason"))
            initializing = True
        else:
            reason = f"Init:{i}/{len(init_specs)}"
            initializing = True
        break

    if not initializing or _is_pod_initialized_condition_true(status):
        restarts = restartable_init_container_restarts
        last_restart_date = last_restartable_init_container_restart_date
        has_running = False
        for container in reversed(_list(status.get("containerStatuses"))):
            container = _map(container)
            restarts += _int(container.get("restartCount"))
            has_terminated, finished = _last_termination(container)
            if has_terminated:
                last_restart_date = _later(last_restart_date, finished)
            state = _map(container.get("state"))
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if _present(waiting) and _str(_map(waiting).get("reason")) != "":
                reason = _str(_map(waiting).get("reason"))
            elif _present(terminated) and _str(_map(terminated).get("reason")) != "":
                reason = _str(_map(terminated).get("reason"))
            elif _present(terminated) and _str(_map(terminated).get("reason")) == "":
                terminated = _map(terminated)
                if _int(terminated.get("signal")) != 0:
                    reason = f"Signal:{_int(terminated.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(terminated.get('exitCode'))}"
            elif container.get("ready") is True and _present(state.get("running")):
                has_running = True
                ready_containers += 1

        # change pod status back to "Running" if there is at least one container still reporting as "Running"
        if reason == "Completed" and has_running:
            if _has_pod_ready_condition(conditions):
                reason = "Running"
            else:
                reason = "NotReady"

    deleting = _present(metadata.get("deletionTimestamp"))
    if deleting and _str(status.get("reason")) == _NODE_UNREACHABLE_POD_REASON:
        reason = "Unknown"
    elif deleting and pod_phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts != 0 and last_restart_date is not None:
        restarts_str = f"{restarts} ({_since(last_restart_date, now)} ago)"

    ready = f"{ready_containers}/{total_containers}"
    cells: list[Any] = [_str(metadata.get("name")), ready, reason, restarts_str,
                        _since(_parse_time(metadata.get("creationTimestamp")), now)]

    # Wide cells (the API server always prints wide).
    node_name = _str(spec.get("nodeName"))
    nominated_node_name = _str(status.get("nominatedNodeName"))
    pod_ips = _list(status.get("podIPs"))
    # The v1 → internal conversion fills podIPs from podIP when only the latter is set.
    pod_ip = _str(_map(pod_ips[0]).get("ip")) if pod_ips else _str(status.get("podIP"))
    if pod_ip == "":
        pod_ip = "<none>"
    if node_name == "":
        node_name = "<none>"
    if nominated_node_name == "":
        nominated_node_name = "<none>"
    readiness_gates = "<none>"
    gates = _list(spec.get("readinessGates"))
    if gates:
        true_conditions = 0
        for gate in gates:
            condition_type = _map(gate).get("conditionType")
            for condition in conditions:
                condition = _map(condition)
                if condition.get("type") == condition_type:
                    if condition.get("status") == "True":
                        true_conditions += 1
                    break
        readiness_gates = f"{true_conditions}/{len(gates)}"
    cells += [pod_ip, node_name, nominated_node_name, readiness_gates]

    return _PrintedPod(ready=ready, status=reason, restarts=restarts_str, cells=cells,
                       conditions=row_conditions)


def pod_status_reason(pod: Mapping[str, Any]) -> str:
    """The STATUS word of `kubectl get pods` (Running, Pending, ContainerCreating, CrashLoopBackOff,
    Completed, Error, OOMKilled, Evicted, Init:0/1, Init:CrashLoopBackOff, PodInitializing, Signal:9,
    ExitCode:2, NotReady, SchedulingGated, Terminating, Unknown, ...), exactly as `printPod` computes it.

    Does not depend on the clock. "SchedulingGated" comes from the PodScheduled condition with reason
    SchedulingGated, which Kubernetes' pod strategy adds on create when `spec.schedulingGates` is set.
    """
    return _print_pod(pod, datetime.fromtimestamp(0, UTC)).status


def pod_ready(pod: Mapping[str, Any]) -> str:
    """The READY cell, "ready/total": ready running containers (plus started, ready sidecars) over
    containers plus sidecar init containers."""
    return _print_pod(pod, datetime.fromtimestamp(0, UTC)).ready


def pod_restarts(pod: Mapping[str, Any], now: datetime) -> str:
    """The RESTARTS cell: "3", or "3 (45s ago)" when a last termination time is known. Always a string,
    as the column's type is "string" (older releases, before the last-restart time, used "integer")."""
    return _print_pod(pod, now).restarts


def pod_row(pod: Mapping[str, Any], now: datetime) -> list[Any]:
    """All nine cells of a pod: Name, Ready, Status, Restarts, Age, IP, Node, Nominated Node, Readiness
    Gates."""
    return list(_print_pod(pod, now).cells)


# ---------------------------------------------------------------------------------------------------------
# Nodes (printNode)
# ---------------------------------------------------------------------------------------------------------

_LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_LABEL_ROLE = "kubernetes.io/role"


def node_status(node: Mapping[str, Any]) -> str:
    """The STATUS cell: "Ready", "NotReady" (Ready condition False *or* Unknown), "Unknown" (no Ready
    condition), with ",SchedulingDisabled" when `spec.unschedulable`."""
    condition_map: dict[str, Mapping[str, Any]] = {}
    for condition in _list(_map(node.get("status")).get("conditions")):
        condition = _map(condition)
        condition_map[_str(condition.get("type"))] = condition
    status: list[str] = []
    for valid_condition in ("Ready",):
        found = condition_map.get(valid_condition)
        if found is not None:
            if found.get("status") == "True":
                status.append(_str(found.get("type")))
            else:
                status.append("Not" + _str(found.get("type")))
    if not status:
        status.append("Unknown")
    if _map(node.get("spec")).get("unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: Mapping[str, Any]) -> str:
    """The ROLES cell: sorted roles from `node-role.kubernetes.io/<role>` label keys and
    `kubernetes.io/role=<role>` values, comma-joined; "<none>" when there are none."""
    roles: set[str] = set()
    for key, value in _map(_metadata(node).get("labels")).items():
        if key.startswith(_LABEL_NODE_ROLE_PREFIX):
            role = key[len(_LABEL_NODE_ROLE_PREFIX):]
            if len(role) > 0:
                roles.add(role)
        elif key == _NODE_LABEL_ROLE and _str(value) != "":
            roles.add(_str(value))
    joined = ",".join(sorted(roles))
    return joined if joined else "<none>"


def _node_address(node: Mapping[str, Any], address_type: str) -> str:
    for address in _list(_map(node.get("status")).get("addresses")):
        address = _map(address)
        if address.get("type") == address_type:
            return _str(address.get("address"))
    return "<none>"


def node_row(node: Mapping[str, Any], now: datetime) -> list[Any]:
    """All ten cells of a node: Name, Status, Roles, Age, Version, Internal-IP, External-IP, OS-Image,
    Kernel-Version, Container-Runtime."""
    metadata = _metadata(node)
    node_info = _map(_map(node.get("status")).get("nodeInfo"))
    os_image = _str(node_info.get("osImage")) or "<unknown>"
    kernel_version = _str(node_info.get("kernelVersion")) or "<unknown>"
    cr_version = _str(node_info.get("containerRuntimeVersion")) or "<unknown>"
    return [
        _str(metadata.get("name")), node_status(node), node_roles(node),
        _since(_parse_time(metadata.get("creationTimestamp")), now), _str(node_info.get("kubeletVersion")),
        _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
        os_image, kernel_version, cr_version,
    ]


# ---------------------------------------------------------------------------------------------------------
# Events (printEvent)
# ---------------------------------------------------------------------------------------------------------


def _first_non_empty(*values: str) -> str:
    for value in values:
        if len(value) > 0:
            return value
    return ""


def _format_event_source(event: Mapping[str, Any]) -> str:
    """`formatEventSource`: "component, host", falling back to reportingComponent / reportingInstance."""
    source = _map(event.get("source"))
    component = _first_non_empty(_str(source.get("component")), _str(event.get("reportingComponent")))
    instance = _first_non_empty(_str(source.get("host")), _str(event.get("reportingInstance")))
    if len(instance) == 0:
        return component
    return component + ", " + instance


def event_row(event: Mapping[str, Any], now: datetime) -> list[Any]:
    """All ten cells of an event: Last Seen, Type, Reason, Object, Subobject, Source, Message, First Seen,
    Count (an integer), Name."""
    metadata = _metadata(event)
    first_time = _parse_time(event.get("firstTimestamp"))
    first_timestamp = _since(first_time, now)
    if first_time is None:
        first_timestamp = _since(_parse_time(event.get("eventTime")), now)

    last_time = _parse_time(event.get("lastTimestamp"))
    last_timestamp = _since(last_time, now)
    if last_time is None:
        last_timestamp = first_timestamp

    count = _int(event.get("count"))
    series = event.get("series")
    if _present(series):
        last_timestamp = _since(_parse_time(_map(series).get("lastObservedTime")), now)
        count = _int(_map(series).get("count"))
    elif count == 0:
        # Singleton events don't have a count set in the new API.
        count = 1

    involved = _map(event.get("involvedObject"))
    if len(_str(involved.get("name"))) > 0:
        target = f"{_str(involved.get('kind')).lower()}/{_str(involved.get('name'))}"
    else:
        target = _str(involved.get("kind")).lower()

    return [
        last_timestamp, _str(event.get("type")), _str(event.get("reason")), target,
        _str(involved.get("fieldPath")), _format_event_source(event), _str(event.get("message")).strip(),
        first_timestamp, count, _str(metadata.get("name")),
    ]


# ---------------------------------------------------------------------------------------------------------
# ReplicaSets (printReplicaSet), namespaces, leases, default
# ---------------------------------------------------------------------------------------------------------


def _layout_container_cells(containers: list[Any]) -> tuple[str, str]:
    names = ",".join(_str(_map(c).get("name")) for c in containers)
    images = ",".join(_str(_map(c).get("image")) for c in containers)
    return names, images


_SELECTOR_OPERATORS = {"In": " in ", "NotIn": " notin ", "Exists": "", "DoesNotExist": ""}


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """`metav1.FormatLabelSelector`: "app=web,tier in (a,b),!legacy"; "<none>" for nil or empty;
    "<error>" for an unconvertible selector."""
    if selector is None:
        return "<none>"  # labels.Nothing() prints as ""
    match_labels = _map(selector.get("matchLabels"))
    expressions = _list(selector.get("matchExpressions"))
    requirements: list[tuple[str, str]] = []
    for key, value in match_labels.items():
        requirements.append((key, f"{key}={_str(value)}"))
    for expression in expressions:
        expression = _map(expression)
        key = _str(expression.get("key"))
        operator = _str(expression.get("operator"))
        values = [_str(v) for v in _list(expression.get("values"))]
        if operator not in _SELECTOR_OPERATORS:
            return "<error>"
        if operator in ("In", "NotIn"):
            if not values:
                return "<error>"
            shown = values[0] if len(values) == 1 else ",".join(sorted(values))
            requirements.append((key, f"{key}{_SELECTOR_OPERATORS[operator]}({shown})"))
        else:
            if values:
                return "<error>"
            requirements.append((key, ("!" if operator == "DoesNotExist" else "") + key))
    requirements.sort(key=lambda r: r[0])
    text = ",".join(r[1] for r in requirements)
    return text if text else "<none>"


def replicaset_row(rs: Mapping[str, Any], now: datetime) -> list[Any]:
    """All eight cells of a ReplicaSet: Name, Desired, Current, Ready (integers), Age, Containers, Images,
    Selector. An unset `spec.replicas` reads as its default, 1."""
    metadata = _metadata(rs)
    spec = _map(rs.get("spec"))
    status = _map(rs.get("status"))
    desired = _int(spec["replicas"]) if _present(spec.get("replicas")) else 1
    template_spec = _map(_map(spec.get("template")).get("spec"))
    names, images = _layout_container_cells(_list(template_spec.get("containers")))
    selector = spec.get("selector")
    return [
        _str(metadata.get("name")), desired, _int(status.get("replicas")), _int(status.get("readyReplicas")),
        _since(_parse_time(metadata.get("creationTimestamp")), now),
        names, images, format_label_selector(_map(selector) if _present(selector) else None),
    ]


def namespace_row(namespace: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Status (the phase, "" when unset), Age."""
    metadata = _metadata(namespace)
    return [_str(metadata.get("name")), _str(_map(namespace.get("status")).get("phase")),
            _since(_parse_time(metadata.get("creationTimestamp")), now)]


def lease_row(lease: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Holder (holderIdentity, "" when unset), Age."""
    metadata = _metadata(lease)
    return [_str(metadata.get("name")), _str(_map(lease.get("spec")).get("holderIdentity")),
            _since(_parse_time(metadata.get("creationTimestamp")), now)]


def default_row(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name and Created At (RFC 3339, UTC, whole seconds; Go's zero time when unset)."""
    metadata = _metadata(obj)
    created = _parse_time(metadata.get("creationTimestamp"))
    created_at = (created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created is not None
                  else "0001-01-01T00:00:00Z")
    return [_str(metadata.get("name")), created_at]


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------

INCLUDE_OBJECT_VALUES = ("", "None", "Metadata", "Object")


def _row_object(obj: Mapping[str, Any], include_object: str) -> Mapping[str, Any] | None:
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _metadata(obj)}


_Printed = tuple[Mapping[str, Any], list[Any], Sequence[Mapping[str, str]]]  # object, cells, row conditions


def _table(columns: Sequence[Column], printed: Iterable[_Printed],
           include_object: str, resource_version: str, continue_token: str,
           remaining_item_count: int | None, no_headers: bool) -> dict[str, Any]:
    if include_object not in INCLUDE_OBJECT_VALUES:
        raise BadRequest(f'includeObject: Invalid value: "{include_object}": '
                         "must be 'Metadata', 'Object', 'None', or empty")
    rows: list[dict[str, Any]] = []
    for obj, cells, conditions in printed:
        row: dict[str, Any] = {"cells": cells}
        if conditions:
            row["conditions"] = [dict(c) for c in conditions]
        shown = _row_object(obj, include_object)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    list_meta: dict[str, Any] = {}
    if resource_version:
        list_meta["resourceVersion"] = resource_version
    if continue_token:
        list_meta["continue"] = continue_token
    if remaining_item_count is not None:
        list_meta["remainingItemCount"] = remaining_item_count
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [] if no_headers else [c.to_dict() for c in columns],
        "rows": rows,
    }


def pod_table(pods: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
              resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
              no_headers: bool = False) -> dict[str, Any]:
    """A `meta.k8s.io/v1` Table of pods, as the API server answers `kubectl get pods` (all nine columns;
    Succeeded and Failed rows carry the `Completed` row condition).

    `include_object` is the request's `includeObject`: "Metadata" or "" (a PartialObjectMetadata per row),
    "Object" (the pod itself) or "None" (no `object` key). Anything else raises `BadRequest` (HTTP 400).
    `resource_version`, `continue_token` and `remaining_item_count` become the Table's list metadata;
    `no_headers` (the request's `noHeaders`) leaves the column definitions out. Every other builder takes
    the same arguments.
    """
    printed: list[_Printed] = []
    for pod in pods:
        result = _print_pod(pod, now)
        printed.append((pod, result.cells, result.conditions))
    return _table(POD_COLUMNS, printed, include_object, resource_version, continue_token,
                  remaining_item_count, no_headers)


def _plain_table(columns: Sequence[Column], row: Callable[[Mapping[str, Any], datetime], list[Any]],
                 objs: Iterable[Mapping[str, Any]], now: datetime, include_object: str, resource_version: str,
                 continue_token: str, remaining_item_count: int | None, no_headers: bool) -> dict[str, Any]:
    printed: list[_Printed] = [(obj, row(obj, now), ()) for obj in objs]
    return _table(columns, printed, include_object, resource_version, continue_token, remaining_item_count,
                  no_headers)


def node_table(nodes: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
               resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
               no_headers: bool = False) -> dict[str, Any]:
    """A Table of nodes (ten columns); arguments as for `pod_table`."""
    return _plain_table(NODE_COLUMNS, node_row, nodes, now, include_object, resource_version, continue_token,
                        remaining_item_count, no_headers)


def event_table(events: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
                resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
                no_headers: bool = False) -> dict[str, Any]:
    """A Table of core/v1 events (ten columns); arguments as for `pod_table`."""
    return _plain_table(EVENT_COLUMNS, event_row, events, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


def replicaset_table(rss: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
                     resource_version: str = "", continue_token: str = "",
                     remaining_item_count: int | None = None, no_headers: bool = False) -> dict[str, Any]:
    """A Table of ReplicaSets (eight columns); arguments as for `pod_table`."""
    return _plain_table(REPLICASET_COLUMNS, replicaset_row, rss, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


def namespace_table(namespaces: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata",
                    *, resource_version: str = "", continue_token: str = "",
                    remaining_item_count: int | None = None, no_headers: bool = False) -> dict[str, Any]:
    """A Table of namespaces (Name, Status, Age); arguments as for `pod_table`."""
    return _plain_table(NAMESPACE_COLUMNS, namespace_row, namespaces, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


def lease_table(leases: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
                resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
                no_headers: bool = False) -> dict[str, Any]:
    """A Table of leases (Name, Holder, Age); arguments as for `pod_table`."""
    return _plain_table(LEASE_COLUMNS, lease_row, leases, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


def default_table(objs: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
                  resource_version: str = "", continue_token: str = "",
                  remaining_item_count: int | None = None, no_headers: bool = False) -> dict[str, Any]:
    """The Table the API server prints for a resource without a printer (Name, Created At); arguments as
    for `pod_table` (`now` is unused: Created At is absolute)."""
    return _plain_table(DEFAULT_COLUMNS, default_row, objs, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


# ---------------------------------------------------------------------------------------------------------
# Deployments and Jobs (printDeployment, printJob)
# ---------------------------------------------------------------------------------------------------------
_CONTAINERS = Column("Containers", "string", "Names of each container in the template.", priority=1)
_IMAGES = Column("Images", "string", "Images referenced by each container in the template.", priority=1)

DEPLOYMENT_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Ready", "string", "Number of the pod with ready state"),
    Column("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have "
                                   "the desired template spec."),
    Column("Available", "string", "Total number of available pods (ready for at least minReadySeconds) "
                                  "targeted by this deployment."),
    _age_column(),
    _CONTAINERS,
    _IMAGES,
    Column("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by "
                                 "this will be the ones affected by this deployment.", priority=1),
)

JOB_COLUMNS: tuple[Column, ...] = (
    _name_column(),
    Column("Status", "string", "Status of the job."),
    Column("Completions", "string", "The completion status of the job"),
    Column("Duration", "string", "Time required to complete the job."),
    _age_column(),
    _CONTAINERS,
    _IMAGES,
    Column("Selector", "string", "A label query over pods that should match the pod count. Normally, the "
                                 "system sets this field for you.", priority=1),
)


def _template_cells(spec: Mapping[str, Any]) -> tuple[str, str]:
    return _layout_container_cells(_list(_map(_map(spec.get("template")).get("spec")).get("containers")))


def _selector(spec: Mapping[str, Any]) -> str:
    selector = spec.get("selector")
    return format_label_selector(_map(selector) if _present(selector) else None)


def deployment_row(d: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Ready ("ready/desired"), Up-to-date, Available (integers), Age, Containers, Images, Selector."""
    metadata, spec, status = _metadata(d), _map(d.get("spec")), _map(d.get("status"))
    desired = _int(spec["replicas"]) if _present(spec.get("replicas")) else 1
    names, images = _template_cells(spec)
    return [_str(metadata.get("name")), f"{_int(status.get('readyReplicas'))}/{desired}",
            _int(status.get("updatedReplicas")), _int(status.get("availableReplicas")),
            _since(_parse_time(metadata.get("creationTimestamp")), now), names, images, _selector(spec)]


def _condition_true(status: Mapping[str, Any], ctype: str) -> bool:
    return any(_map(c).get("type") == ctype and _map(c).get("status") == "True"
               for c in _list(status.get("conditions")))


def job_status_text(job: Mapping[str, Any]) -> str:
    """Kubernetes' Job status cell: Complete, Failed, Suspended, Running (or the terminal conditions'
    "…ing" forms while pods are still being cleaned up)."""
    status, spec = _map(job.get("status")), _map(job.get("spec"))
    if _condition_true(status, "Complete"):
        return "Complete"
    if _condition_true(status, "Failed"):
        return "Failed"
    if _condition_true(status, "Suspended") or spec.get("suspend") is True:
        return "Suspended"
    if _condition_true(status, "FailureTarget"):
        return "FailureTarget"
    if _condition_true(status, "SuccessCriteriaMet"):
        return "SuccessCriteriaMet"
    return "Running"


def job_row(job: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Status, Completions ("succeeded/completions", or "succeeded/1 of parallelism" for a work queue),
    Duration (start to completion, or to now), Age, Containers, Images, Selector."""
    metadata, spec, status = _metadata(job), _map(job.get("spec")), _map(job.get("status"))
    succeeded = _int(status.get("succeeded"))
    if _present(spec.get("completions")):
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    else:
        parallelism = _int(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = _parse_time(status.get("startTime"))
    end = _parse_time(status.get("completionTime"))
    if start is None:
        duration = ""
    else:
        until = end if end is not None else now
        duration = human_duration((until - start).total_seconds())
    names, images = _template_cells(spec)
    return [_str(metadata.get("name")), job_status_text(job), completions, duration,
            _since(_parse_time(metadata.get("creationTimestamp")), now), names, images, _selector(spec)]


def deployment_table(objs: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
                     resource_version: str = "", continue_token: str = "",
                     remaining_item_count: int | None = None, no_headers: bool = False) -> dict[str, Any]:
    """A Table of Deployments (eight columns); arguments as for `printers.pod_table`."""
    return _plain_table(DEPLOYMENT_COLUMNS, deployment_row, objs, now, include_object, resource_version,
                        continue_token, remaining_item_count, no_headers)


def job_table(objs: Iterable[Mapping[str, Any]], now: datetime, include_object: str = "Metadata", *,
              resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
              no_headers: bool = False) -> dict[str, Any]:
    """A Table of Jobs (eight columns); arguments as for `printers.pod_table`."""
    return _plain_table(JOB_COLUMNS, job_row, objs, now, include_object, resource_version, continue_token,
                        remaining_item_count, no_headers)


class TableBuilder(Protocol):
    """The signature every builder in TABLE_BUILDERS shares."""

    def __call__(self, objs: Iterable[Mapping[str, Any]], now: datetime, /, include_object: str = ..., *,
                 resource_version: str = ..., continue_token: str = ...,
                 remaining_item_count: int | None = ..., no_headers: bool = ...) -> dict[str, Any]: ...


TABLE_BUILDERS: dict[str, TableBuilder] = {
    "pods": pod_table,
    "nodes": node_table,
    "events": event_table,
    "replicasets": replicaset_table,
    "namespaces": namespace_table,
    "leases": lease_table,
    "deployments": deployment_table,
    "jobs": job_table,
}
"""Table builder by resource plural; resources not listed use `default_table`."""

