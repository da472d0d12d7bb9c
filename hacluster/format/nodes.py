"""`kubectl get nodes` as Kubernetes prints it (`printNode`): the STATUS and ROLES words and the ten cells of
one node.

Used by the table builders (`hacluster.format.tables`), the CLI's describers and the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hacluster.format.accessors import as_list, as_map, as_str, metadata_of
from hacluster.format.durations import since
from hacluster.model.timestamps import parse_datetime

_LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_LABEL_ROLE = "kubernetes.io/role"


def node_status(node: Mapping[str, Any]) -> str:
    """The STATUS cell: "Ready", "NotReady" (Ready condition False *or* Unknown), "Unknown" (no Ready
    condition), with ",SchedulingDisabled" when `spec.unschedulable`."""
    condition_map: dict[str, Mapping[str, Any]] = {}
    for condition in as_list(as_map(node.get("status")).get("conditions")):
        condition = as_map(condition)
        condition_map[as_str(condition.get("type"))] = condition
    status: list[str] = []
    for valid_condition in ("Ready",):
        found = condition_map.get(valid_condition)
        if found is not None:
            if found.get("status") == "True":
                status.append(as_str(found.get("type")))
            else:
                status.append("Not" + as_str(found.get("type")))
    if not status:
        status.append("Unknown")
    if as_map(node.get("spec")).get("unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: Mapping[str, Any]) -> str:
    """The ROLES cell: sorted roles from `node-role.kubernetes.io/<role>` label keys and
    `kubernetes.io/role=<role>` values, comma-joined; "<none>" when there are none."""
    roles: set[str] = set()
    for key, value in as_map(metadata_of(node).get("labels")).items():
        if key.startswith(_LABEL_NODE_ROLE_PREFIX):
            role = key[len(_LABEL_NODE_ROLE_PREFIX):]
            if len(role) > 0:
                roles.add(role)
        elif key == _NODE_LABEL_ROLE and as_str(value) != "":
            roles.add(as_str(value))
    joined = ",".join(sorted(roles))
    return joined if joined else "<none>"


def _node_address(node: Mapping[str, Any], address_type: str) -> str:
    for address in as_list(as_map(node.get("status")).get("addresses")):
        address = as_map(address)
        if address.get("type") == address_type:
            return as_str(address.get("address"))
    return "<none>"


def node_row(node: Mapping[str, Any], now: datetime) -> list[Any]:
    """All ten cells of a node: Name, Status, Roles, Age, Version, Internal-IP, External-IP, OS-Image,
    Kernel-Version, Container-Runtime."""
    metadata = metadata_of(node)
    node_info = as_map(as_map(node.get("status")).get("nodeInfo"))
    os_image = as_str(node_info.get("osImage")) or "<unknown>"
    kernel_version = as_str(node_info.get("kernelVersion")) or "<unknown>"
    cr_version = as_str(node_info.get("containerRuntimeVersion")) or "<unknown>"
    return [
        as_str(metadata.get("name")), node_status(node), node_roles(node),
        since(parse_datetime(metadata.get("creationTimestamp")), now), as_str(node_info.get("kubeletVersion")),
        _node_address(node, "InternalIP"), _node_address(node, "ExternalIP"),
        os_image, kernel_version, cr_version,
    ]

