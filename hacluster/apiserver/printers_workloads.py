"""Server-side tables of Deployments and Jobs, as the Kubernetes API server prints them for kubectl.

Registered in `hacluster.apiserver.printers.TABLE_BUILDERS`; the cells follow Kubernetes'
`printDeployment` and `printJob` (pkg/printers/internalversion), the shared pieces (name and age
columns, container/image cells, selector text, durations) come from `printers`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from hacluster.apiserver.printers import (
    Column,
    _age_column,
    _int,
    _layout_container_cells,
    _list,
    _map,
    _metadata,
    _name_column,
    _parse_time,
    _plain_table,
    _present,
    _since,
    _str,
    format_label_selector,
    human_duration,
)

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
