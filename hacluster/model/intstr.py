"""Kubernetes' IntOrString values such as a Deployment's `maxSurge: 25%` or `maxUnavailable: 1`.

Used by validation (is the value well formed?) and by the Deployment controller (how many pods does it
mean for a given replica count?), with the rounding of `intstr.GetScaledValueFromIntOrPercent`.
"""

from __future__ import annotations

import re
from typing import Any

_PERCENT_RE = re.compile(r"^([0-9]+)%$")


class IntOrPercentError(ValueError):
    """A value that is neither a non-negative integer nor a percentage like "25%"."""


def percent_of(value: Any) -> int | None:
    """The percentage of "25%" (25); None for an integer value. IntOrPercentError when malformed."""
    if isinstance(value, bool):
        raise IntOrPercentError("must be an integer or percentage (e.g. '5%')")
    if isinstance(value, int):
        return None
    if isinstance(value, str):
        m = _PERCENT_RE.match(value)
        if m:
            return int(m.group(1))
    raise IntOrPercentError("a valid percent string must be a numeric string followed by an ending '%' (e.g. "
                            "'1%',  or '93%', regex used for validation is '[0-9]+%')")


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """The number `value` means out of `total`: an integer as is; a percentage of `total`, rounded up
    (maxSurge) or down (maxUnavailable) as Kubernetes rounds them. IntOrPercentError when malformed."""
    pct = percent_of(value)
    if pct is None:
        return int(value)
    exact = pct * total
    return -(-exact // 100) if round_up else exact // 100


def is_zero(value: Any) -> bool:
    """True for 0 and "0%" (validation refuses maxSurge and maxUnavailable both zero)."""
    try:
        pct = percent_of(value)
    except IntOrPercentError:
        return False
    return (pct == 0) if pct is not None else int(value) == 0



