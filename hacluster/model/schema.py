"""The typed shape of the objects hacluster serves, used to decode request bodies as Kubernetes does.

Called by the API server before validation: it checks that every known field has the right JSON type
(a wrong type is a 400 BadRequest in Kubernetes' words), and collects the paths of unknown fields, which
Kubernetes drops with a warning (or refuses with `fieldValidation=Strict`). Sub-objects that hacluster
passes through without interpreting (volumes, probes, security contexts …) are typed `ANY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Scalar:
    """A JSON scalar of one Go type ("string", "int64", "bool") or a quantity (string or number)."""

    go_type: str

    def accepts(self, value: Any) -> bool:
        if value is None:
            return True  # JSON null decodes to the zero value in Go
        if self.go_type == "string":
            return isinstance(value, str)
        if self.go_type in ("int32", "int64"):
            bits = 31 if self.go_type == "int32" else 63
            return isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
        if self.go_type == "bool":
            return isinstance(value, bool)
        if self.go_type == "Quantity":
            return isinstance(value, (str, int, float)) and not isinstance(value, bool)
        if self.go_type == "IntOrString":
            return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)
                                              and -(2**31) <= value < 2**31)
        return True

    def zero(self) -> Any:
        return {"string": "", "bool": False, "Quantity": "0"}.get(self.go_type, 0)


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class MapOf:
    """A JSON object with arbitrary keys whose values all have one shape (labels, resource lists)."""

    value: Shape


@dataclass(frozen=True)
class Struct:
    go_name: str
    fields: dict[str, Shape]


class _Any:
    """Any JSON value, passed through untouched."""


ANY = _Any()
Shape = Union[Scalar, ListOf, MapOf, Struct, _Any]

STR = Scalar("string")
INT = Scalar("int64")
INT32 = Scalar("int32")
BOOL = Scalar("bool")
QUANTITY = Scalar("Quantity")
INT_OR_STR = Scalar("IntOrString")
STRINGS = ListOf(STR)
STRING_MAP = MapOf(STR)
RESOURCE_LIST = MapOf(QUANTITY)

OWNER_REFERENCE = Struct("OwnerReference", {
    "apiVersion": STR, "kind": STR, "name": STR, "uid": STR, "controller": BOOL, "blockOwnerDeletion": BOOL,
})

OBJECT_META = Struct("ObjectMeta", {
    "name": STR, "generateName": STR, "namespace": STR, "selfLink": STR, "uid": STR,
    "resourceVersion": STR, "generation": INT, "creationTimestamp": STR, "deletionTimestamp": STR,
    "deletionGracePeriodSeconds": INT, "labels": STRING_MAP, "annotations": STRING_MAP,
    "ownerReferences": ListOf(OWNER_REFERENCE), "finalizers": STRINGS, "managedFields": ANY,
})

LABEL_SELECTOR = Struct("LabelSelector", {
    "matchLabels": STRING_MAP,
    "matchExpressions": ListOf(Struct("LabelSelectorRequirement",
                                      {"key": STR, "operator": STR, "values": STRINGS})),
})

RESOURCE_REQUIREMENTS = Struct("ResourceRequirements", {
    "limits": RESOURCE_LIST, "requests": RESOURCE_LIST, "claims": ANY,
})

CONTAINER = Struct("Container", {
    "name": STR, "image": STR, "command": STRINGS, "args": STRINGS, "workingDir": STR,
    "ports": ListOf(Struct("ContainerPort", {
        "name": STR, "hostPort": INT32, "containerPort": INT32, "protocol": STR, "hostIP": STR})),
    "envFrom": ANY,
    "env": ListOf(Struct("EnvVar", {"name": STR, "value": STR, "valueFrom": ANY})),
    "resources": RESOURCE_REQUIREMENTS, "resizePolicy": ANY, "restartPolicy": STR,
    "volumeMounts": ANY, "volumeDevices": ANY, "livenessProbe": ANY, "readinessProbe": ANY,
    "startupProbe": ANY, "lifecycle": ANY, "terminationMessagePath": STR, "terminationMessagePolicy": STR,
    "imagePullPolicy": STR, "securityContext": ANY, "stdin": BOOL, "stdinOnce": BOOL, "tty": BOOL,
})

NODE_SELECTOR_REQUIREMENT = Struct("NodeSelectorRequirement", {"key": STR, "operator": STR, "values": STRINGS})
NODE_SELECTOR_TERM = Struct("NodeSelectorTerm", {
    "matchExpressions": ListOf(NODE_SELECTOR_REQUIREMENT), "matchFields": ListOf(NODE_SELECTOR_REQUIREMENT),
})
AFFINITY = Struct("Affinity", {
    "nodeAffinity": Struct("NodeAffinity", {
        "requiredDuringSchedulingIgnoredDuringExecution": Struct("NodeSelector", {
            "nodeSelectorTerms": ListOf(NODE_SELECTOR_TERM)}),
        "preferredDuringSchedulingIgnoredDuringExecution": ListOf(Struct("PreferredSchedulingTerm", {
            "weight": INT32, "preference": NODE_SELECTOR_TERM})),
    }),
    "podAffinity": ANY, "podAntiAffinity": ANY,
})

TOLERATION = Struct("Toleration", {
    "key": STR, "operator": STR, "value": STR, "effect": STR, "tolerationSeconds": INT,
})
TAINT = Struct("Taint", {"key": STR, "value": STR, "effect": STR, "timeAdded": STR})

POD_SPEC = Struct("PodSpec", {
    "volumes": ANY, "initContainers": ListOf(CONTAINER), "containers": ListOf(CONTAINER),
    "ephemeralContainers": ANY, "restartPolicy": STR, "terminationGracePeriodSeconds": INT,
    "activeDeadlineSeconds": INT, "dnsPolicy": STR, "nodeSelector": STRING_MAP,
    "serviceAccountName": STR, "serviceAccount": STR, "automountServiceAccountToken": BOOL,
    "nodeName": STR, "hostNetwork": BOOL, "hostPID": BOOL, "hostIPC": BOOL, "shareProcessNamespace": BOOL,
    "securityContext": ANY, "imagePullSecrets": ANY, "hostname": STR, "subdomain": STR,
    "affinity": AFFINITY, "schedulerName": STR, "tolerations": ListOf(TOLERATION), "hostAliases": ANY,
    "priorityClassName": STR, "priority": INT32, "dnsConfig": ANY, "readinessGates": ANY,
    "runtimeClassName": STR, "enableServiceLinks": BOOL, "preemptionPolicy": STR, "overhead": RESOURCE_LIST,
    "topologySpreadConstraints": ANY, "setHostnameAsFQDN": BOOL, "os": ANY, "hostUsers": BOOL,
    "schedulingGates": ANY, "resourceClaims": ANY, "resources": ANY,
})

CONTAINER_STATE = Struct("ContainerState", {
    "waiting": Struct("ContainerStateWaiting", {"reason": STR, "message": STR}),
    "running": Struct("ContainerStateRunning", {"startedAt": STR}),
    "terminated": Struct("ContainerStateTerminated", {
        "exitCode": INT32, "signal": INT32, "reason": STR, "message": STR, "startedAt": STR,
        "finishedAt": STR, "containerID": STR}),
})
CONTAINER_STATUS = Struct("ContainerStatus", {
    "name": STR, "state": CONTAINER_STATE, "lastState": CONTAINER_STATE, "ready": BOOL,
    "restartCount": INT32, "image": STR, "imageID": STR, "containerID": STR, "started": BOOL,
    "allocatedResources": ANY, "resources": ANY, "volumeMounts": ANY, "user": ANY,
    "allocatedResourcesStatus": ANY, "stopSignal": ANY,
})
POD_CONDITION = Struct("PodCondition", {
    "type": STR, "status": STR, "lastProbeTime": STR, "lastTransitionTime": STR, "reason": STR,
    "message": STR, "observedGeneration": INT,
})
POD_STATUS = Struct("PodStatus", {
    "phase": STR, "conditions": ListOf(POD_CONDITION), "message": STR, "reason": STR,
    "nominatedNodeName": STR, "hostIP": STR, "hostIPs": ANY, "podIP": STR, "podIPs": ANY,
    "startTime": STR, "initContainerStatuses": ListOf(CONTAINER_STATUS),
    "containerStatuses": ListOf(CONTAINER_STATUS), "qosClass": STR,
    "ephemeralContainerStatuses": ANY, "resize": STR, "resourceClaimStatuses": ANY,
    "observedGeneration": INT,
})

POD = Struct("Pod", {"apiVersion": STR, "kind": STR, "metadata": OBJECT_META, "spec": POD_SPEC,
                     "status": POD_STATUS})

NODE_STATUS = Struct("NodeStatus", {
    "capacity": RESOURCE_LIST, "allocatable": RESOURCE_LIST, "phase": STR,
    "conditions": ListOf(Struct("NodeCondition", {
        "type": STR, "status": STR, "lastHeartbeatTime": STR, "lastTransitionTime": STR,
        "reason": STR, "message": STR})),
    "addresses": ListOf(Struct("NodeAddress", {"type": STR, "address": STR})),
    "daemonEndpoints": ANY,
    "nodeInfo": Struct("NodeSystemInfo", {
        "machineID": STR, "systemUUID": STR, "bootID": STR, "kernelVersion": STR, "osImage": STR,
        "containerRuntimeVersion": STR, "kubeletVersion": STR, "kubeProxyVersion": STR,
        "operatingSystem": STR, "architecture": STR, "swap": ANY}),
    "images": ANY, "volumesInUse": ANY, "volumesAttached": ANY, "config": ANY, "runtimeHandlers": ANY,
    "features": ANY, "declaredFeatures": ANY,
})
NODE = Struct("Node", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("NodeSpec", {
        "podCIDR": STR, "podCIDRs": STRINGS, "providerID": STR, "unschedulable": BOOL,
        "taints": ListOf(TAINT), "configSource": ANY, "externalID": STR}),
    "status": NODE_STATUS,
})

OBJECT_REFERENCE = Struct("ObjectReference", {
    "kind": STR, "namespace": STR, "name": STR, "uid": STR, "apiVersion": STR, "resourceVersion": STR,
    "fieldPath": STR,
})
EVENT = Struct("Event", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META, "involvedObject": OBJECT_REFERENCE,
    "reason": STR, "message": STR, "source": Struct("EventSource", {"component": STR, "host": STR}),
    "firstTimestamp": STR, "lastTimestamp": STR, "count": INT32, "type": STR, "eventTime": ANY,
    "series": ANY, "action": STR, "related": ANY, "reportingComponent": STR, "reportingInstance": STR,
})

LEASE = Struct("Lease", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("LeaseSpec", {
        "holderIdentity": STR, "leaseDurationSeconds": INT32, "acquireTime": STR, "renewTime": STR,
        "leaseTransitions": INT32, "strategy": STR, "preferredHolder": STR}),
})

NAMESPACE = Struct("Namespace", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("NamespaceSpec", {"finalizers": STRINGS}),
    "status": Struct("NamespaceStatus", {"phase": STR, "conditions": ANY}),
})

POD_TEMPLATE_SPEC = Struct("PodTemplateSpec", {"metadata": OBJECT_META, "spec": POD_SPEC})
REPLICA_SET = Struct("ReplicaSet", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("ReplicaSetSpec", {
        "replicas": INT32, "minReadySeconds": INT32, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE_SPEC}),
    "status": Struct("ReplicaSetStatus", {
        "replicas": INT32, "fullyLabeledReplicas": INT32, "readyReplicas": INT32, "availableReplicas": INT32,
        "terminatingReplicas": INT32, "observedGeneration": INT, "conditions": ANY}),
})

DEPLOYMENT = Struct("Deployment", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("DeploymentSpec", {
        "replicas": INT32, "selector": LABEL_SELECTOR, "template": POD_TEMPLATE_SPEC,
        "strategy": Struct("DeploymentStrategy", {
            "type": STR,
            "rollingUpdate": Struct("RollingUpdateDeployment", {"maxUnavailable": INT_OR_STR,
                                                                 "maxSurge": INT_OR_STR})}),
        "minReadySeconds": INT32, "revisionHistoryLimit": INT32, "paused": BOOL,
        "progressDeadlineSeconds": INT32, "rollbackTo": ANY}),
    "status": Struct("DeploymentStatus", {
        "observedGeneration": INT, "replicas": INT32, "updatedReplicas": INT32, "readyReplicas": INT32,
        "availableReplicas": INT32, "unavailableReplicas": INT32, "terminatingReplicas": INT32,
        "conditions": ANY, "collisionCount": INT32}),
})

JOB = Struct("Job", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("JobSpec", {
        "parallelism": INT32, "completions": INT32, "activeDeadlineSeconds": INT, "backoffLimit": INT32,
        "backoffLimitPerIndex": INT32, "maxFailedIndexes": INT32, "podFailurePolicy": ANY,
        "successPolicy": ANY, "selector": LABEL_SELECTOR, "manualSelector": BOOL,
        "template": POD_TEMPLATE_SPEC, "ttlSecondsAfterFinished": INT32, "completionMode": STR,
        "suspend": BOOL, "podReplacementPolicy": STR, "managedBy": STR}),
    "status": Struct("JobStatus", {
        "conditions": ANY, "startTime": STR, "completionTime": STR, "active": INT32, "succeeded": INT32,
        "failed": INT32, "terminating": INT32, "ready": INT32, "completedIndexes": STR, "failedIndexes": STR,
        "uncountedTerminatedPods": ANY}),
})

BINDING = Struct("Binding", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "target": Struct("ObjectReference", OBJECT_REFERENCE.fields),
})

DELETE_OPTIONS = Struct("DeleteOptions", {
    "apiVersion": STR, "kind": STR, "gracePeriodSeconds": INT, "propagationPolicy": STR,
    "orphanDependents": BOOL, "dryRun": STRINGS,
    "preconditions": Struct("Preconditions", {"uid": STR, "resourceVersion": STR}),
    "ignoreStoreReadErrorWithClusterBreakingPotential": BOOL,
})

EVICTION = Struct("Eviction", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META, "deleteOptions": DELETE_OPTIONS,
})

SCALE = Struct("Scale", {
    "apiVersion": STR, "kind": STR, "metadata": OBJECT_META,
    "spec": Struct("ScaleSpec", {"replicas": INT32}),
    "status": Struct("ScaleStatus", {"replicas": INT32, "selector": STR}),
})

_JSON_TYPE = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


@dataclass(frozen=True)
class TypeMismatch:
    """A value of the wrong JSON type, described as Go's decoder describes it."""

    path: str
    struct: str
    json_type: str
    go_type: str

    def message(self) -> str:
        return (f"json: cannot unmarshal {self.json_type} into Go struct field {self.struct}.{self.path} "
                f"of type {self.go_type}")


def check_shape(value: Any, shape: Shape) -> tuple[list[TypeMismatch], list[str]]:
    """Walk `value` against `shape`; return (type mismatches, unknown field paths)."""
    mismatches: list[TypeMismatch] = []
    unknown: list[str] = []
    _walk(value, shape, "", "", mismatches, unknown)
    return mismatches, unknown


def _go_type_name(shape: Shape) -> str:
    if isinstance(shape, Scalar):
        return {"Quantity": "resource.Quantity", "IntOrString": "intstr.IntOrString"}.get(shape.go_type,
                                                                                          shape.go_type)
    if isinstance(shape, ListOf):
        return "[]" + _go_type_name(shape.item)
    if isinstance(shape, MapOf):
        return "map[string]" + _go_type_name(shape.value)
    if isinstance(shape, Struct):
        return "v1." + shape.go_name
    return "interface {}"


def _walk(value: Any, shape: Shape, path: str, struct: str,
          mismatches: list[TypeMismatch], unknown: list[str]) -> None:
    if isinstance(shape, _Any) or value is None:
        return
    jtype = _JSON_TYPE.get(type(value), "value")
    if isinstance(shape, Scalar):
        if not shape.accepts(value):
            mismatches.append(TypeMismatch(path, struct or "?", jtype, _go_type_name(shape)))
        return
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            mismatches.append(TypeMismatch(path, struct or "?", jtype, _go_type_name(shape)))
            return
        for i, item in enumerate(value):
            _walk(item, shape.item, f"{path}[{i}]", struct, mismatches, unknown)
        return
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            mismatches.append(TypeMismatch(path, struct or "?", jtype, _go_type_name(shape)))
            return
        for k, v in value.items():
            _walk(v, shape.value, f"{path}[{k}]", struct, mismatches, unknown)
        return
    if isinstance(shape, Struct):
        if not isinstance(value, dict):
            mismatches.append(TypeMismatch(path, struct or "?", jtype, _go_type_name(shape)))
            return
        for k, v in value.items():
            sub = shape.fields.get(k)
            sub_path = f"{path}.{k}" if path else k
            if sub is None:
                unknown.append(sub_path)
                continue
            _walk(v, sub, sub_path, shape.go_name, mismatches, unknown)


_INT64 = (-(2**63), 2**63)


def decoded(value: Any, shape: Shape) -> Any:
    """`value` as Go's decoder leaves it for `shape` (call once `check_shape` found no mismatch): unknown fields
    dropped; a null object, list or map field absent (Kubernetes' optional fields are pointers, slices and maps
    with omitempty); a null list item or map value its type's zero value; a null scalar field kept (a
    `metav1.Time` such as a condition's `lastProbeTime` is written back as null); and a number too large for
    int64 in an untyped part a float64 — so what is stored is what Kubernetes would store, and every value
    survives the command encoding."""
    if isinstance(shape, _Any):
        return _untyped(value)
    if value is None:  # an item of a list or a value of a map (fields are handled by their struct)
        return _zero(shape)
    if isinstance(shape, ListOf) and isinstance(value, list):
        return [decoded(v, shape.item) for v in value]
    if isinstance(shape, MapOf) and isinstance(value, dict):
        return {k: decoded(v, shape.value) for k, v in value.items()}
    if isinstance(shape, Struct) and isinstance(value, dict):
        return {k: None if v is None else decoded(v, shape.fields[k]) for k, v in value.items()
                if k in shape.fields and (v is not None or isinstance(shape.fields[k], (Scalar, _Any)))}
    if isinstance(shape, Scalar) and shape.go_type == "Quantity" and isinstance(value, int) \
            and not _INT64[0] <= value < _INT64[1]:
        return str(value)
    return value


def _zero(shape: Shape) -> Any:
    if isinstance(shape, Scalar):
        return shape.zero()
    if isinstance(shape, ListOf):
        return []
    if isinstance(shape, (MapOf, Struct)):
        return {}
    return None


def _untyped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untyped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untyped(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value < _INT64[1]:
        return float(value)
    return value
