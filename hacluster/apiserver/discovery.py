"""Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and the minimal OpenAPI
document kubectl downloads before validating a manifest.

Pure builders called by the API server's discovery routes; all content comes from the resource table
(`hacluster.model.resources`).
"""

from __future__ import annotations

from typing import Any

from hacluster.model import resources

KUBERNETES_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-hacluster",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def _virtual(name: str, kind: str, namespaced: bool, verbs: list[str]) -> dict[str, Any]:
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}


VIRTUAL_RESOURCES: dict[str, list[dict[str, Any]]] = {
    "authentication.k8s.io/v1": [_virtual("selfsubjectreviews", "SelfSubjectReview", False, ["create"])],
    "authorization.k8s.io/v1": [
        _virtual("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ["create"]),
        _virtual("selfsubjectrulesreviews", "SelfSubjectRulesReview", False, ["create"]),
    ],
    "metrics.k8s.io/v1beta1": [_virtual("nodes", "NodeMetrics", False, ["get", "list"]),
                               _virtual("pods", "PodMetrics", True, ["get", "list"])],
}
"""APIs answered by handlers of their own, not stored (`hacluster.apiserver.reviews`,
`hacluster.apiserver.metrics_api`): their discovery entries, by group/version."""


def _groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in resources.ALL:
        if r.group:
            out.setdefault(r.group, [])
            if r.version not in out[r.group]:
                out[r.group].append(r.version)
    for gv in VIRTUAL_RESOURCES:
        group, version = gv.split("/")
        out.setdefault(group, []).append(version)
    return out


def api_group_list() -> dict[str, Any]:
    groups = []
    for g, versions in sorted(_groups().items()):
        vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
        groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    versions = _groups().get(group)
    if not versions:
        return None
    vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}


_SUB_VERBS = {"status": ["get", "patch", "update"], "binding": ["create"], "log": ["get"],
              "eviction": ["create"], "scale": ["get", "patch", "update"]}
_SUB_KIND = {"binding": "Binding", "log": "Pod", "eviction": "Eviction", "scale": "Scale"}


def api_resource_list(group_version: str) -> dict[str, Any] | None:
    served = resources.BY_GROUP_VERSION.get(group_version)
    if not served:
        virtual = VIRTUAL_RESOURCES.get(group_version)
        if virtual is None:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": [dict(v) for v in virtual]}
    items: list[dict[str, Any]] = []
    for r in served:
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.plural in ("pods", "replicasets", "deployments", "jobs"):
            entry["categories"] = ["all"]
        items.append(entry)
        for sub in r.subresources:
            sub_entry: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "",
                                         "namespaced": r.namespaced, "kind": _SUB_KIND.get(sub, r.kind),
                                         "verbs": _SUB_VERBS.get(sub, ["get"])}
            if sub == "scale":
                sub_entry["group"] = "autoscaling"
                sub_entry["version"] = "v1"
            items.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": items}


def _pb_bytes(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    key = bytes([(field << 3) | 2])
    n = len(payload)
    length = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            length += bytes([b | 0x80])
        else:
            length += bytes([b])
            break
    return key + length + payload


def openapi_v2_protobuf() -> bytes:
    """A minimal `openapi_v2.Document` (swagger "2.0", info, empty paths) that kubectl's validation accepts."""
    info = _pb_bytes(1, b"hacluster") + _pb_bytes(2, KUBERNETES_VERSION["gitVersion"].encode())
    return _pb_bytes(1, b"2.0") + _pb_bytes(2, info) + _pb_bytes(8, b"")


def openapi_v2_json() -> dict[str, Any]:
    return {"swagger": "2.0", "info": {"title": "hacluster", "version": KUBERNETES_VERSION["gitVersion"]},
            "paths": {}, "definitions": {}}
