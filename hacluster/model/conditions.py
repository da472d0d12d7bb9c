"""Status conditions of objects (`status.conditions[]`): find one by type, read a node's Ready status.

Pure helpers shared by the node lifecycle controller (`hacluster.controllers.nodelifecycle`) and the kubelet
benchmark (`hacluster.kubelet.bench`).
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def condition(obj: Obj | None, ctype: str) -> Obj | None:
    """The condition of type `ctype` in `obj`'s `status.conditions`, or None."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return c  # type: ignore[no-any-return]
    return None


def ready_status(node: Obj) -> str:
    """The node's Ready condition status: "True", "False" or "Unknown" (missing counts as Unknown)."""
    c = condition(node, "Ready")
    return str(c.get("status", "Unknown")) if c else "Unknown"
