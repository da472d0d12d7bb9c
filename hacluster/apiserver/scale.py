"""The `scale` subresource's view of an object with replicas (autoscaling/v1 `Scale`).

Used by the API server's reads (GET .../scale, `hacluster.apiserver.reads`) and writes (PUT/PATCH
.../scale, `hacluster.apiserver.writes`).
"""

from __future__ import annotations

from typing import Any

from hacluster.format.selectors import label_selector_string

Obj = dict[str, Any]


def scale_of(rs: Obj) -> Obj:
    meta = rs["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", ""), "uid": meta.get("uid"),
                         "resourceVersion": meta.get("resourceVersion"),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"replicas": (rs.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (rs.get("status") or {}).get("replicas", 0),
                       "selector": label_selector_string((rs.get("spec") or {}).get("selector")) or ""}}
