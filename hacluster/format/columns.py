"""Column definitions of the Tables the API server prints (`AddHandlers` in printers.go, descriptions from
the Go types' `SwaggerDoc()`; informational: kubectl ignores them).

Used by the table builders (`hacluster.format.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def name_column(priority: int = 0) -> Column:
    return Column("Name", "string", _DESC_NAME, format="name", priority=priority)


def age_column() -> Column:
    return Column("Age", "string", _DESC_CREATION_TIMESTAMP)


POD_COLUMNS: tuple[Column, ...] = (
    name_column(),
    Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "string", "The aggregate status of the containers in this pod."),
    Column("Restarts", "string",
           "The number of times the containers in this pod have been restarted and when the last "
           "container in this pod has restarted."),
    age_column(),
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
    name_column(),
    Column("Status", "string", "The status of the node"),
    Column("Roles", "string", "The roles of the node"),
    age_column(),
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
    name_column(priority=1),
)

# printers.go describes these with extensions/v1beta1's SwaggerDoc (typo "oberved" included).
REPLICASET_COLUMNS: tuple[Column, ...] = (
    name_column(),
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
    age_column(),
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
    name_column(),
    Column("Status", "string", "The status of the namespace"),
    age_column(),
)

LEASE_COLUMNS: tuple[Column, ...] = (
    name_column(),
    Column("Holder", "string",
           "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader "
           "Election is used, the holder identity must be equal to the elected "
           "LeaseCandidate.metadata.name field."),
    age_column(),
)

# rest.NewDefaultTableConvertor: what the API server prints for a resource without its own printer.
DEFAULT_COLUMNS: tuple[Column, ...] = (
    name_column(),
    Column("Created At", "date", _DESC_CREATION_TIMESTAMP),
)


_CONTAINERS = Column("Containers", "string", "Names of each container in the template.", priority=1)
_IMAGES = Column("Images", "string", "Images referenced by each container in the template.", priority=1)

DEPLOYMENT_COLUMNS: tuple[Column, ...] = (
    name_column(),
    Column("Ready", "string", "Number of the pod with ready state"),
    Column("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have "
                                   "the desired template spec."),
    Column("Available", "string", "Total number of available pods (ready for at least minReadySeconds) "
                                  "targeted by this deployment."),
    age_column(),
    _CONTAINERS,
    _IMAGES,
    Column("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by "
                                 "this will be the ones affected by this deployment.", priority=1),
)

JOB_COLUMNS: tuple[Column, ...] = (
    name_column(),
    Column("Status", "string", "Status of the job."),
    Column("Completions", "string", "The completion status of the job"),
    Column("Duration", "string", "Time required to complete the job."),
    age_column(),
    _CONTAINERS,
    _IMAGES,
    Column("Selector", "string", "A label query over pods that should match the pod count. Normally, the "
                                 "system sets this field for you.", priority=1),
)

