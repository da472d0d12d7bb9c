"""A command of the pure state machine, planned against the watch cache and turned into one etcd transaction.

The etcd engine keeps Kubernetes' semantics by running the same `StoreState.apply` the pysyncobj engine
runs, on a copy-on-write view of the watch cache (`Plan`): the view records every object key the command
looked at (with the mod revision it saw: 0 for "absent") and every key it wrote. `EtcdStore.propose` then
sends one transaction: *if* every key read still has the mod revision seen (and, for a leader loop's
command, the leadership key still has the create revision the loop was elected at: fencing) *then* write
the results. If anything moved, the cache catches up and the command is planned again (bounded). So a
transaction commits only what the state machine would have decided on etcd's current state, and
Kubernetes' optimistic concurrency (409 on a stale resourceVersion) falls out of the state machine itself.

What a plan does not see: keys it never looked up by name. A namespace's deletion removes the objects the
cache holds in it; an object created there by another master in the same instant is not compared.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any

from hacluster.model.commands import AnyCommand
from hacluster.store.state import Obj, Result, StoreState

Key = tuple[str, str]  # (plural, store key)


class _Overlay(MutableMapping[str, Obj]):
    """One resource's objects: the cache's dict underneath, this plan's writes on top; reads recorded."""

    def __init__(self, plural: str, base: dict[str, Obj], reads: dict[Key, int]) -> None:
        self.plural = plural
        self.base = base
        self.reads = reads
        self.written: dict[str, Obj | None] = {}

    def _seen(self, key: str) -> None:
        k = (self.plural, key)
        if k not in self.reads:
            obj = self.base.get(key)
            self.reads[k] = 0 if obj is None else int(obj["metadata"]["resourceVersion"])

    def __getitem__(self, key: str) -> Obj:
        self._seen(key)
        if key in self.written:
            obj = self.written[key]
            if obj is None:
                raise KeyError(key)
            return obj
        return self.base[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        self._seen(key)
        if key in self.written:
            return self.written[key] is not None
        return key in self.base

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Obj) -> None:
        self._seen(key)
        self.written[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.written[key] = None

    def __iter__(self) -> Iterator[str]:
        for key in self.base:
            if self.written.get(key, True) is not None:
                yield key
        for key, obj in self.written.items():
            if obj is not None and key not in self.base:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Plan(StoreState):
    """The state machine run on a copy-on-write view of `cache`; see the module docstring."""

    def __init__(self, cache: StoreState) -> None:
        super().__init__(cache.limits)
        self.reads: dict[Key, int] = {}
        self.base_revision = cache.revision
        self.revision = cache.revision
        self.objects = {p: _Overlay(p, bucket, self.reads) for p, bucket in cache.objects.items()}  # type: ignore[misc]
        self.event_keys = OrderedDict(cache.event_keys)
        # Fencing is etcd's compare on the leadership key, not the state machine's term check.
        self.term_seen = 0

    def _set_digest(self, plural: str, key: str, obj: Obj | None) -> None:
        """A plan's content is never fingerprinted."""

    def run(self, command: AnyCommand) -> Result:
        """Plan `command` (request ids are not remembered: each plan is a first attempt)."""
        return self._apply_once(command)

    def _apply_once(self, command: AnyCommand) -> Result:
        try:
            return self._apply(command)
        except Exception as exc:  # a bug in the state machine: refuse the command, as `apply` does
            return Result(ok=False, error=_internal(exc))

    def writes(self) -> dict[Key, Obj | None]:
        """Every key this plan writes: the object to store, or None to delete it."""
        out: dict[Key, Obj | None] = {}
        for plural, overlay in self.objects.items():
            assert isinstance(overlay, _Overlay)
            for key, obj in overlay.written.items():
                if obj is None and key not in overlay.base:
                    continue  # created and removed again within the plan
                out[(plural, key)] = obj
        return out


def _internal(exc: Exception) -> Any:
    from hacluster.model.errors import ErrorInfo

    return ErrorInfo(reason="InternalError", message=f"state machine error: {type(exc).__name__}: {exc}")


def with_revision(result: Result, planned_after: int, revision: int) -> Result:
    """`result` as committed at etcd `revision`: every object the plan wrote (planned resourceVersion above
    `planned_after`) gets `revision`, the one revision of the whole transaction."""
    from dataclasses import replace

    from hacluster.store.frozen import freeze

    obj = result.obj
    if obj is not None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv is not None and rv.isdigit() and int(rv) > planned_after:
            plain = dict(obj)
            plain["metadata"] = dict(obj["metadata"])
            plain["metadata"]["resourceVersion"] = str(revision)
            obj = freeze(plain)
    inner = tuple(with_revision(r, planned_after, revision) for r in result.results)
    return replace(result, obj=obj, revision=revision if result.ok else result.revision, results=inner)
