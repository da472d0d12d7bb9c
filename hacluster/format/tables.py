"""Server-side printing: Kubernetes `meta.k8s.io/v1` Table answers for `kubectl get`, as pure functions.

Called by the API server's reads (`hacluster.apiserver.reads`) when a client asks for
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (a list, a single object, or one watch event).
Everything here is a pure function of the objects and of `now`, which the caller passes in: no clock, no
I/O, nothing mutated.

Followed line by line, and kept in the same order so the two can be compared:
- `pkg/printers/internalversion/printers.go` of kubernetes/kubernetes at v1.32 (the tree stored as
  yongruilin/kubernetes@144a7980762c, whose printers.go matches the v1.32 release: sidecar-aware
  `printPod`, `Restarts` a string column, wide event columns, `Terminating` not shown for terminal pods) —
  the rows are in `pods`, `nodes`, `events` and `workloads`, the columns in `columns`;
- `pkg/printers/storage/storage.go` and `pkg/printers/tablegenerator.go`: the API server always prints
  with `Wide: true`, so every row carries the priority-1 cells too and the client hides them;
- `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go` (`asTable`): `includeObject`
  `Metadata` (the default) → a `PartialObjectMetadata`, `Object` → the object, `None` → no object;
- `staging/src/k8s.io/apiserver/pkg/registry/rest/table.go`: the default convertor (Name, Created At).

Objects are plain Kubernetes JSON dicts. Missing fields read as Go's zero values, so a half-built object
prints rather than raises. Rows share the input's `metadata` dicts (or whole objects); callers serialise
the table and must not mutate either afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from hacluster.format.accessors import as_map, as_str, metadata_of
from hacluster.format.columns import (
    DEFAULT_COLUMNS,
    DEPLOYMENT_COLUMNS,
    EVENT_COLUMNS,
    JOB_COLUMNS,
    LEASE_COLUMNS,
    NAMESPACE_COLUMNS,
    NODE_COLUMNS,
    POD_COLUMNS,
    REPLICASET_COLUMNS,
    Column,
)
from hacluster.format.durations import since
from hacluster.format.events import event_row
from hacluster.format.nodes import node_row
from hacluster.format.pods import print_pod
from hacluster.format.workloads import deployment_row, job_row, replicaset_row
from hacluster.model.errors import BadRequest
from hacluster.model.timestamps import parse_datetime


def namespace_row(namespace: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Status (the phase, "" when unset), Age."""
    metadata = metadata_of(namespace)
    return [as_str(metadata.get("name")), as_str(as_map(namespace.get("status")).get("phase")),
            since(parse_datetime(metadata.get("creationTimestamp")), now)]


def lease_row(lease: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Holder (holderIdentity, "" when unset), Age."""
    metadata = metadata_of(lease)
    return [as_str(metadata.get("name")), as_str(as_map(lease.get("spec")).get("holderIdentity")),
            since(parse_datetime(metadata.get("creationTimestamp")), now)]


def default_row(obj: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name and Created At (RFC 3339, UTC, whole seconds; Go's zero time when unset)."""
    metadata = metadata_of(obj)
    created = parse_datetime(metadata.get("creationTimestamp"))
    created_at = (created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created is not None
                  else "0001-01-01T00:00:00Z")
    return [as_str(metadata.get("name")), created_at]



INCLUDE_OBJECT_VALUES = ("", "None", "Metadata", "Object")


def _row_object(obj: Mapping[str, Any], include_object: str) -> Mapping[str, Any] | None:
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata_of(obj)}


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
        result = print_pod(pod, now)
        printed.append((pod, result.cells, result.conditions))
    return _table(POD_COLUMNS, printed, include_object, resource_version, continue_token,
                  remaining_item_count, no_headers)


class TableBuilder(Protocol):
    """The signature every builder in TABLE_BUILDERS shares."""

    def __call__(self, objs: Iterable[Mapping[str, Any]], now: datetime, /, include_object: str = ..., *,
                 resource_version: str = ..., continue_token: str = ...,
                 remaining_item_count: int | None = ..., no_headers: bool = ...) -> dict[str, Any]: ...


def plain_table_builder(columns: Sequence[Column],
                        row: Callable[[Mapping[str, Any], datetime], list[Any]]) -> TableBuilder:
    """The builder of a Table whose rows carry no conditions: `row(obj, now)` gives each row's cells."""

    def build(objs: Iterable[Mapping[str, Any]], now: datetime, /, include_object: str = "Metadata", *,
              resource_version: str = "", continue_token: str = "", remaining_item_count: int | None = None,
              no_headers: bool = False) -> dict[str, Any]:
        printed: list[_Printed] = [(obj, row(obj, now), ()) for obj in objs]
        return _table(columns, printed, include_object, resource_version, continue_token, remaining_item_count,
                      no_headers)

    return build


node_table = plain_table_builder(NODE_COLUMNS, node_row)
"""A Table of nodes (ten columns); arguments as for `pod_table`."""
event_table = plain_table_builder(EVENT_COLUMNS, event_row)
"""A Table of core/v1 events (ten columns); arguments as for `pod_table`."""
replicaset_table = plain_table_builder(REPLICASET_COLUMNS, replicaset_row)
"""A Table of ReplicaSets (eight columns); arguments as for `pod_table`."""
namespace_table = plain_table_builder(NAMESPACE_COLUMNS, namespace_row)
"""A Table of namespaces (Name, Status, Age); arguments as for `pod_table`."""
lease_table = plain_table_builder(LEASE_COLUMNS, lease_row)
"""A Table of leases (Name, Holder, Age); arguments as for `pod_table`."""
default_table = plain_table_builder(DEFAULT_COLUMNS, default_row)
"""The Table the API server prints for a resource without a printer (Name, Created At); arguments as for
`pod_table` (`now` is unused: Created At is absolute)."""
deployment_table = plain_table_builder(DEPLOYMENT_COLUMNS, deployment_row)
"""A Table of Deployments (eight columns); arguments as for `pod_table`."""
job_table = plain_table_builder(JOB_COLUMNS, job_row)
"""A Table of Jobs (eight columns); arguments as for `pod_table`."""


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

