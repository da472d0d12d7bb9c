"""Readers of Kubernetes JSON dicts that give Go's zero value for anything missing or of the wrong type, so a
half-built object prints rather than raises.

Used by the table printers (`hacluster.format`) and the CLI's describers (`hacluster.cli.describe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def as_str(value: object) -> str:
    """A Go string field: the string, or "" for anything else."""
    return value if isinstance(value, str) else ""


def as_text(value: object) -> str:
    """Any scalar as text to show (numbers and booleans as Python prints them), "" for null."""
    return "" if value is None else value if isinstance(value, str) else str(value)


def as_int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def is_set(value: object) -> bool:
    """A Go pointer field is non-nil: the key is there and not JSON null."""
    return value is not None


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(obj.get("metadata"))

