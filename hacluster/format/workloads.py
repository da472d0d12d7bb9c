"""`kubectl get` of workloads as Kubernetes prints them (`printReplicaSet`, `printDeployment`, `printJob`):
the cells of one ReplicaSet, Deployment or Job.

Used by the table builders (`hacluster.format.tables`) and the CLI's describers (`job_status_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hacluster.format.accessors import as_int, as_list, as_map, as_str, is_set, metadata_of
from hacluster.format.durations import human_duration, since
from hacluster.format.selectors import format_label_selector
from hacluster.model.timestamps import parse_datetime


def layout_container_cells(containers: list[Any]) -> tuple[str, str]:
    names = ",".join(as_str(as_map(c).get("name")) for c in containers)
    images = ",".join(as_str(as_map(c).get("image")) for c in containers)
    return names, images



def replicaset_row(rs: Mapping[str, Any], now: datetime) -> list[Any]:
    """All eight cells of a ReplicaSet: Name, Desired, Current, Ready (integers), Age, Containers, Images,
    Selector. An unset `spec.replicas` reads as its default, 1."""
    metadata = metadata_of(rs)
    spec = as_map(rs.get("spec"))
    status = as_map(rs.get("status"))
    desired = as_int(spec["replicas"]) if is_set(spec.get("replicas")) else 1
    template_spec = as_map(as_map(spec.get("template")).get("spec"))
    names, images = layout_container_cells(as_list(template_spec.get("containers")))
    selector = spec.get("selector")
    return [
        as_str(metadata.get("name")), desired, as_int(status.get("replicas")), as_int(status.get("readyReplicas")),
        since(parse_datetime(metadata.get("creationTimestamp")), now),
        names, images, format_label_selector(as_map(selector) if is_set(selector) else None),
    ]



def _template_cells(spec: Mapping[str, Any]) -> tuple[str, str]:
    return layout_container_cells(as_list(as_map(as_map(spec.get("template")).get("spec")).get("containers")))


def _selector(spec: Mapping[str, Any]) -> str:
    selector = spec.get("selector")
    return format_label_selector(as_map(selector) if is_set(selector) else None)


def deployment_row(d: Mapping[str, Any], now: datetime) -> list[Any]:
    """Name, Ready ("ready/desired"), Up-to-date, Available (integers), Age, Containers, Images, Selector."""
    metadata, spec, status = metadata_of(d), as_map(d.get("spec")), as_map(d.get("status"))
    desired = as_int(spec["replicas"]) if is_set(spec.get("replicas")) else 1
    names, images = _template_cells(spec)
    return [as_str(metadata.get("name")), f"{as_int(status.get('readyReplicas'))}/{desired}",
            as_int(status.get("updatedReplicas")), as_int(status.get("availableReplicas")),
            since(parse_datetime(metadata.get("creationTimestamp")), now), names, images, _selector(spec)]


def _condition_true(status: Mapping[str, Any], ctype: str) -> bool:
    return any(as_map(c).get("type") == ctype and as_map(c).get("status") == "True"
               for c in as_list(status.get("conditions")))


def job_status_text(job: Mapping[str, Any]) -> str:
    """Kubernetes' Job status cell: Complete, Failed, Suspended, Running (or the terminal conditions'
    "…ing" forms while pods are still being cleaned up)."""
    status, spec = as_map(job.get("status")), as_map(job.get("spec"))
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
    metadata, spec, status = metadata_of(job), as_map(job.get("spec")), as_map(job.get("status"))
    succeeded = as_int(status.get("succeeded"))
    if is_set(spec.get("completions")):
        completions = f"{succeeded}/{as_int(spec.get('completions'))}"
    else:
        parallelism = as_int(spec.get("parallelism"))
        completions = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    start = parse_datetime(status.get("startTime"))
    end = parse_datetime(status.get("completionTime"))
    if start is None:
        duration = ""
    else:
        until = end if end is not None else now
        duration = human_duration((until - start).total_seconds())
    names, images = _template_cells(spec)
    return [as_str(metadata.get("name")), job_status_text(job), completions, duration,
            since(parse_datetime(metadata.get("creationTimestamp")), now), names, images, _selector(spec)]

