"""Node taints and pod tolerations, parsed, and whether a toleration tolerates a taint.

Pure helpers shared by the scheduler (`hacluster.scheduler.plugins`: the TaintToleration filter and score)
and the node lifecycle controller (`hacluster.controllers.nodelifecycle`: NoExecute eviction), so neither
imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

EFFECT_NO_SCHEDULE = "NoSchedule"
EFFECT_PREFER_NO_SCHEDULE = "PreferNoSchedule"
EFFECT_NO_EXECUTE = "NoExecute"


class Taint(NamedTuple):
    """A node taint (`spec.taints[]`)."""

    key: str
    value: str
    effect: str


class Toleration(NamedTuple):
    """A pod toleration (`spec.tolerations[]`); `operator` "" means Equal, `effect` "" means all."""

    key: str
    operator: str
    value: str
    effect: str


def toleration_tolerates(t: Toleration, taint: Taint) -> bool:
    """`v1.Toleration.ToleratesTaint`: effect ("" = all), key ("" = all), then Equal/Exists.

    Gt/Lt (the alpha TaintTolerationComparisonOperators gate, off by default) tolerate nothing.
    """
    if t.effect and t.effect != taint.effect:
        return False
    if t.key and t.key != taint.key:
        return False
    if t.operator in ("", "Equal"):
        return t.value == taint.value
    return t.operator == "Exists"


def tolerations_tolerate(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """Whether any of the tolerations tolerates the taint."""
    return any(toleration_tolerates(t, taint) for t in tolerations)


def parse_tolerations(spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    return tuple(
        Toleration(
            str(t.get("key") or ""),
            str(t.get("operator") or ""),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in spec.get("tolerations") or ()
    )
