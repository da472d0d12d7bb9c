"""Kubernetes timestamps: RFC 3339 in UTC, to the second (`2026-01-01T00:00:00Z`) or to the microsecond
(`MicroTime`, as Lease renewals and events carry).

Pure helpers used by whoever stamps objects (the API server, controllers, kubelets) and whoever reads the
stamps back (the state machine's graceful-deletion deadline, the node lifecycle controller, the scheduler's
queue order).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any


def rfc3339(t: float) -> str:
    """Seconds since the epoch as `2026-01-01T00:00:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def rfc3339_or_none(t: float | None) -> str | None:
    """`rfc3339`, passing None through (a time not known yet)."""
    return None if t is None else rfc3339(t)


def rfc3339_micro(t: float) -> str:
    """Seconds since the epoch as a MicroTime, `2026-01-01T00:00:00.123456Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1e6) % 1_000_000:06d}Z"


def parse_datetime(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (with or without a fraction) as an aware datetime (UTC when it names no zone);
    None for a missing, empty or unreadable one (Go's zero `metav1.Time`)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp


def parse_rfc3339(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (with or without a fraction); None if unparsable."""
    stamp = parse_datetime(text)
    return None if stamp is None else stamp.timestamp()


def add_seconds(text: str, seconds: int) -> str:
    """`text` (second precision, UTC) plus `seconds`, in the same form."""
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (t + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
