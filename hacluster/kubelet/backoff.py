"""Per-key exponential back-off, as Kubernetes' `flowcontrol.Backoff` that the kubelet uses for restarts
(CrashLoopBackOff) and image pulls (ImagePullBackOff).

Pure: every method takes the current time (`now`, seconds on any clock) from the caller, so tests drive it
with a fake clock. Durations are already time-scaled by the caller; `nominal_s` turns a delay back into the
unscaled seconds Kubernetes would print ("back-off 20s").

Semantics, as in Kubernetes:
- `next(key, now, event_time)` records one more failure: the first failure (or the first after the entry expired) sets
  the delay to `initial_s`, each further one doubles it, capped at `max_s`.
- an entry expires when `event_time - last_update > 2 * max_s`: for restarts that means a container that ran
  10 minutes (twice the 5-minute cap) starts over at 10 s.
- `in_backoff_since(key, event_time, now)`: is `now` still within the delay counted from `event_time`
  (a container's finishedAt)? The kubelet restarts a container only when it is not.
- `in_backoff_since_update(key, now)`: the same counted from the last `next` (image pulls).
Entries are bounded: `gc(now)` drops expired ones, and at most `max_entries` are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

_EPSILON_S = 1e-6
"""Times closer than this count as equal (a timer set for the end of a back-off may fire a hair early)."""


@dataclass
class _Entry:
    delay_s: float
    last_update: float


class BackOff:
    """Exponential back-off per key (a pod UID and container name)."""

    def __init__(self, initial_s: float, max_s: float, *, time_scale: float = 1.0, max_entries: int = 100_000) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("need 0 < initial_s <= max_s")
        self.initial_s = initial_s
        self.max_s = max_s
        self.time_scale = time_scale
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _expired(self, event_time: float, entry: _Entry) -> bool:
        return event_time - entry.last_update > 2 * self.max_s

    def get(self, key: str) -> float:
        """The current delay of `key` (0 when it has none)."""
        e = self._entries.get(key)
        return e.delay_s if e else 0.0

    def next(self, key: str, now: float, event_time: float | None = None) -> float:
        """Record a failure of `key` at `now` (for restarts `event_time` is the container's finishedAt: the
        entry expires when it is more than 2 × max_s after the last failure); return the new delay."""
        e = self._entries.get(key)
        if e is None or self._expired(now if event_time is None else event_time, e):
            e = _Entry(self.initial_s, now)
        else:
            e = _Entry(min(e.delay_s * 2, self.max_s), now)
        self._entries[key] = e
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return e.delay_s

    def in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        """True while `now` is within `key`'s delay counted from `event_time`."""
        e = self._entries.get(key)
        if e is None or self._expired(event_time, e):
            return False
        return now - event_time + _EPSILON_S < e.delay_s

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        """True while `now` is within `key`'s delay counted from its last failure."""
        e = self._entries.get(key)
        if e is None or self._expired(now, e):
            return False
        return now - e.last_update + _EPSILON_S < e.delay_s

    def ends_at_since_update(self, key: str) -> float:
        e = self._entries.get(key)
        return 0.0 if e is None else e.last_update + e.delay_s

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every key of one pod (its UID is the prefix) once the pod is gone."""
        for k in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[k]

    def gc(self, now: float) -> None:
        for k in [k for k, e in self._entries.items() if self._expired(now, e)]:
            del self._entries[k]

    def nominal_s(self, delay_s: float) -> float:
        """The unscaled delay, as Kubernetes would print it."""
        return delay_s / self.time_scale

    def __len__(self) -> int:
        return len(self._entries)
