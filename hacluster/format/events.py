"""`kubectl get events` as Kubernetes prints it (`printEvent`): the ten cells of one core/v1 Event.

Used by the table builders (`hacluster.format.tables`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hacluster.format.accessors import as_int, as_map, as_str, is_set, metadata_of
from hacluster.format.durations import since
from hacluster.model.timestamps import parse_datetime


def _first_non_empty(*values: str) -> str:
    for value in values:
        if len(value) > 0:
            return value
    return ""


def _format_event_source(event: Mapping[str, Any]) -> str:
    """`formatEventSource`: "component, host", falling back to reportingComponent / reportingInstance."""
    source = as_map(event.get("source"))
    component = _first_non_empty(as_str(source.get("component")), as_str(event.get("reportingComponent")))
    instance = _first_non_empty(as_str(source.get("host")), as_str(event.get("reportingInstance")))
    if len(instance) == 0:
        return component
    return component + ", " + instance


def event_row(event: Mapping[str, Any], now: datetime) -> list[Any]:
    """All ten cells of an event: Last Seen, Type, Reason, Object, Subobject, Source, Message, First Seen,
    Count (an integer), Name."""
    metadata = metadata_of(event)
    first_time = parse_datetime(event.get("firstTimestamp"))
    first_timestamp = since(first_time, now)
    if first_time is None:
        first_timestamp = since(parse_datetime(event.get("eventTime")), now)

    last_time = parse_datetime(event.get("lastTimestamp"))
    last_timestamp = since(last_time, now)
    if last_time is None:
        last_timestamp = first_timestamp

    count = as_int(event.get("count"))
    series = event.get("series")
    if is_set(series):
        last_timestamp = since(parse_datetime(as_map(series).get("lastObservedTime")), now)
        count = as_int(as_map(series).get("count"))
    elif count == 0:
        # Singleton events don't have a count set in the new API.
        count = 1

    involved = as_map(event.get("involvedObject"))
    if len(as_str(involved.get("name"))) > 0:
        target = f"{as_str(involved.get('kind')).lower()}/{as_str(involved.get('name'))}"
    else:
        target = as_str(involved.get("kind")).lower()

    return [
        last_timestamp, as_str(event.get("type")), as_str(event.get("reason")), target,
        as_str(involved.get("fieldPath")), _format_event_source(event), as_str(event.get("message")).strip(),
        first_timestamp, count, as_str(metadata.get("name")),
    ]

