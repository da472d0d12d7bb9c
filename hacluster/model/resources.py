"""The resources hacluster serves: names, kinds, groups, scope and verbs, in one table.

Read by the store (which buckets exist, which are namespaced), by the API server (routing, discovery
documents, schema of request bodies) and by the CLI. Adding a resource means adding one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hacluster.model import schema

READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    """One served resource, as it appears in an APIResourceList."""

    plural: str
    singular: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    shape: schema.Struct
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    has_status: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_resource(self) -> str:
        """How Kubernetes names the resource in messages: "pods", "leases.coordination.k8s.io"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = Resource("pods", "pod", "Pod", "", "v1", True, schema.POD, ("po",),
                subresources=("status", "binding", "log", "eviction"), has_status=True)
NODES = Resource("nodes", "node", "Node", "", "v1", False, schema.NODE, ("no",),
                 subresources=("status",), has_status=True)
EVENTS = Resource("events", "event", "Event", "", "v1", True, schema.EVENT, ("ev",))
NAMESPACES = Resource("namespaces", "namespace", "Namespace", "", "v1", False, schema.NAMESPACE, ("ns",),
                      verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
                      subresources=("status",), has_status=True)
LEASES = Resource("leases", "lease", "Lease", "coordination.k8s.io", "v1", True, schema.LEASE)
REPLICASETS = Resource("replicasets", "replicaset", "ReplicaSet", "apps", "v1", True, schema.REPLICA_SET,
                       ("rs",), subresources=("status", "scale"), has_status=True)

DEPLOYMENTS = Resource("deployments", "deployment", "Deployment", "apps", "v1", True, schema.DEPLOYMENT,
                        ("deploy",), subresources=("status", "scale"), has_status=True)
JOBS = Resource("jobs", "job", "Job", "batch", "v1", True, schema.JOB, (), subresources=("status",),
                has_status=True)

ALL: tuple[Resource, ...] = (PODS, NODES, EVENTS, NAMESPACES, LEASES, DEPLOYMENTS, REPLICASETS, JOBS)
"""In discovery order: apps/v1 lists deployments before replicasets, as Kubernetes does (`kubectl get all`)."""
BY_PLURAL: dict[str, Resource] = {r.plural: r for r in ALL}
BY_GROUP_VERSION: dict[str, tuple[Resource, ...]] = {}
for _r in ALL:
    BY_GROUP_VERSION[_r.api_version] = BY_GROUP_VERSION.get(_r.api_version, ()) + (_r,)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def lookup(group_version: str, plural: str) -> Resource | None:
    """The resource served at /api/v1/<plural> or /apis/<group>/<version>/<plural>, if any."""
    for r in BY_GROUP_VERSION.get(group_version, ()):
        if r.plural == plural:
            return r
    return None


def object_key(namespace: str, name: str) -> str:
    """The store key of an object inside its resource bucket: "ns/name", or "name" when cluster-scoped."""
    return f"{namespace}/{name}" if namespace else name
