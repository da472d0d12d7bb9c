"""Durations as Kubernetes and Go print them: `human_duration` (an AGE: apimachinery's
`duration.HumanDuration`, `translate_timestamp_since`) and `go_duration` (Go's `time.Duration.String()`, as
the kubelet writes back-offs and pull times into events and waiting reasons).

Used by the table printers (`hacluster.format`), the CLI's describers and the kubelet's pod workers.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hacluster.model.timestamps import parse_datetime

_NS_PER_S = 1_000_000_000
_NS_PER_MIN = 60 * _NS_PER_S
_NS_PER_H = 60 * _NS_PER_MIN


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def human_duration_ns(d: int) -> str:
    """`duration.HumanDuration` on a Go `time.Duration` (integer nanoseconds)."""
    # Allow deviation no more than 2 seconds (excluded) to tolerate machine time inconsistence.
    seconds = _trunc_div(d, _NS_PER_S)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = d // _NS_PER_MIN
    if minutes < 10:
        s = (d // _NS_PER_S) % 60
        if s == 0:
            return f"{minutes}m"
        return f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = d // _NS_PER_H
    if hours < 8:
        m = (d // _NS_PER_MIN) % 60
        if m == 0:
            return f"{hours}h"
        return f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        if h == 0:
            return f"{hours // 24}d"
        return f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        if dy == 0:
            return f"{hours // 24 // 365}y"
        return f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def human_duration(seconds: float) -> str:
    """How Kubernetes prints an age: "5s", "119s", "3m20s", "10m", "7h59m", "2d3h", "3y45d", "9y".

    Exactly `duration.HumanDuration`: up to 2 s in the future still reads "0s", further is "<invalid>".
    The float is rounded to whole nanoseconds first, as Go's `time.Duration` holds them.
    """
    return human_duration_ns(round(seconds * _NS_PER_S))



def _aware(now: datetime) -> datetime:
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def since(then: datetime | None, now: datetime) -> str:
    """`translateTimestampSince`: "<unknown>" for a zero time, else the human duration since it."""
    if then is None:
        return "<unknown>"
    delta = _aware(now) - then
    ns = (delta.days * 86_400 + delta.seconds) * _NS_PER_S + delta.microseconds * 1_000
    return human_duration_ns(ns)


def translate_timestamp_since(ts: str | None, now: datetime) -> str:
    """The AGE of an RFC 3339 timestamp at `now` (naive `now` is taken as UTC); "<unknown>" when the
    timestamp is missing or unreadable."""
    return since(parse_datetime(ts), now)



def go_duration(seconds: float, *, resolution_s: float = 1.0) -> str:
    """Go's `time.Duration.String()` of `seconds` after rounding to `resolution_s` (whole seconds by default,
    milliseconds below one second): "250ms", "10s", "1m20s", "5m0s", "1h0m0s". With `resolution_s=0.001`
    the duration is truncated to milliseconds first, as the kubelet prints pull times: "523ms", "1.163s"."""
    if resolution_s >= 1 and 0 < seconds < 1:
        ns = round(seconds * 1000) * 1_000_000
    elif resolution_s >= 1:
        ns = round(seconds / resolution_s) * round(resolution_s * _NS_PER_S)
    else:
        step = round(resolution_s * _NS_PER_S)
        ns = int(seconds * _NS_PER_S) // step * step
    return go_duration_ns(ns)


def go_duration_ns(d: int) -> str:
    """Go's `time.Duration.String()` of `d` nanoseconds: "0s", "1.5µs", "523ms", "1.163s", "1h2m3.5s"."""
    if d == 0:
        return "0s"
    sign = "-" if d < 0 else ""
    u = abs(d)
    if u < _NS_PER_S:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if u >= size:
                return sign + _fraction(u, size) + unit
    hours, rem = divmod(u, _NS_PER_H)
    minutes, rem = divmod(rem, _NS_PER_MIN)
    text = _fraction(rem, _NS_PER_S) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _fraction(value: int, unit: int) -> str:
    """`value / unit` with the fraction's trailing zeros dropped, as Go's fmtFrac does."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")
