"""The replicated state machine of hacluster: every object, the global revision and the watch history.

Pure: `apply(command)` reads no clock, no random source, no environment and does no I/O; whatever it
needs (time, UIDs, terms) is inside the command. The Raft layer (`hacluster.raft`) calls `apply` for each
committed log entry on every master, in log order, so every master holds the same state. `apply` never
raises: a command that cannot be carried out returns a failed `Result` (pysyncobj would retry a raising
command forever).

Like etcd, one global revision counts changes; an object's `metadata.resourceVersion` is the revision of
its last change, and every change is one `WatchEvent` in a bounded history that feeds watches.
Reads (`get`, `list_objects`, `events_since`) are for the owner of this object; the Raft layer serialises
them against `apply` with a lock.

Everything it stores and hands out — objects, watch events, results — is frozen (`hacluster.store.frozen`):
readers get the stored objects without a copy, and an attempt to change one in place raises instead of
changing this master's state outside the log. `fingerprint()` digests every object's content; it is kept
up to date by `apply` one object at a time, so taking it costs nothing however large the store.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hacluster.model import resources
from hacluster.model.commands import AnyCommand, Barrier, Batch, Bind, Create, Delete, LeaderElected, Replace
from hacluster.model.errors import ErrorInfo
from hacluster.model.timestamps import add_seconds
from hacluster.store.frozen import freeze

Obj = dict[str, Any]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


DEDUP_MAX = 20_000
"""Request ids remembered so that a retried proposal is answered with its first outcome. A constant of this
state machine's version, not configuration: which outcome a retry gets depends on it, so every master
must apply with the same value (a per-master setting would let two masters answer a retry differently)."""
EVENTS_MAX = 5_000
"""Event objects kept; the oldest are deleted beyond this (Kubernetes expires them after 1 h). A constant
of this state machine's version for the same reason: it decides which objects exist."""


@dataclass(frozen=True)
class StoreLimits:
    """Bounds of the state machine. `dedup_max` and `events_max` change what `apply` does, so the Raft
    store always runs with the defaults (`DEDUP_MAX`, `EVENTS_MAX`); other values are for tests of the pure
    state machine. `watch_history_max` only bounds what this master keeps for its own watches."""

    watch_history_max: int = 10_000
    """Change events kept for watches; a watch from an older revision gets 410 Expired."""
    dedup_max: int = DEDUP_MAX
    """Request ids remembered so that a retried proposal is answered with its first outcome."""
    events_max: int = EVENTS_MAX
    """Event objects kept; the oldest are deleted beyond this (Kubernetes expires them after 1 h)."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: its revision, type, resource bucket, store key, the object after, and before."""

    revision: int
    type: str
    resource: str
    key: str
    obj: Obj
    prev: Obj | None


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one command on this master. Never crosses the wire."""

    ok: bool
    obj: Obj | None = None
    error: ErrorInfo | None = None
    revision: int = 0
    results: tuple[Result, ...] = field(default_factory=tuple)


def _fail(reason: str, message: str, kind: str = "", name: str = "") -> Result:
    return Result(ok=False, error=ErrorInfo(reason=reason, message=message, kind=kind, name=name))


def _qualified(plural: str) -> str:
    r = resources.BY_PLURAL.get(plural)
    return r.group_resource if r else plural


def _not_found(plural: str, name: str) -> Result:
    return _fail("NotFound", f'{_qualified(plural)} "{name}" not found', plural, name)


def _conflict(plural: str, name: str) -> Result:
    return _fail("Conflict", f'Operation cannot be fulfilled on {_qualified(plural)} "{name}": the object has '
                 "been modified; please apply your changes to the latest version and try again", plural, name)


_STATUS_OWNED_BY_MAIN = ("apiVersion", "kind", "metadata", "spec")


class StoreState:
    """All objects by resource and key, the revision, the watch history and the fencing term."""

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self.limits = limits or StoreLimits()
        self.revision = 0
        self.objects: dict[str, dict[str, Obj]] = {r.plural: {} for r in resources.ALL}
        self.history: deque[WatchEvent] = deque(maxlen=self.limits.watch_history_max)
        # The oldest revision a watch may start *after*: events (history_floor, revision] are all kept.
        self.history_floor = 0
        self.term_seen = 0
        self.fenced_refusals = 0  # commands refused because their term was stale (observability)
        self.leader_id = ""
        self.dedup: OrderedDict[str, Result] = OrderedDict()
        self.event_keys: OrderedDict[str, None] = OrderedDict()  # events in creation order, for expiry
        # The content fingerprint, kept incrementally: a digest per stored object, and their sum.
        self._digests: dict[tuple[str, str], int] = {}
        self._digest_sum = 0

    # ----------------------------------------------------------------------------------------- apply
    def apply(self, command: AnyCommand) -> Result:
        """Apply one committed command; never raises."""
        if command.request_id:
            seen = self.dedup.get(command.request_id)
            if seen is not None:
                return seen
        try:
            result = self._apply(command)
        except Exception as exc:  # a bug, but the log must keep moving on every master alike
            result = _fail("InternalError", f"state machine error: {type(exc).__name__}: {exc}")
        if command.request_id:
            self.dedup[command.request_id] = result
            while len(self.dedup) > self.limits.dedup_max:
                self.dedup.popitem(last=False)
        return result

    def _apply(self, command: AnyCommand) -> Result:
        if command.fence_term:
            if command.fence_term < self.term_seen:
                self.fenced_refusals += 1
                return _fail("Conflict", f"fenced: proposed in Raft term {command.fence_term}, but term "
                             f"{self.term_seen} has begun (a newer leader has taken over)")
            self.term_seen = command.fence_term
        if isinstance(command, Create):
            return self._create(command)
        if isinstance(command, Replace):
            return self._replace(command)
        if isinstance(command, Delete):
            return self._delete(command)
        if isinstance(command, Bind):
            return self._bind(command)
        if isinstance(command, LeaderElected):
            return self._leader_elected(command)
        if isinstance(command, Barrier):
            return Result(ok=True, revision=self.revision)
        if isinstance(command, Batch):
            results = tuple(self.apply(c) for c in command.commands)
            return Result(ok=True, revision=self.revision, results=results)
        return _fail("BadRequest", f"unknown command {type(command).__name__}")

    # ---------------------------------------------------------------------------------- primitives
    def _bucket(self, plural: str) -> dict[str, Obj] | None:
        return self.objects.get(plural)

    def _record(self, etype: str, plural: str, key: str, obj: Obj, prev: Obj | None) -> None:
        if len(self.history) == self.history.maxlen and self.history:
            self.history_floor = self.history[0].revision
        self.history.append(WatchEvent(self.revision, etype, plural, key, obj, prev))

    def _set_digest(self, plural: str, key: str, obj: Obj | None) -> None:
        """Keep the content fingerprint: replace the digest of one object (None: it is gone)."""
        old = self._digests.pop((plural, key), 0)
        new = 0
        if obj is not None:
            new = _object_digest(plural, key, obj)
            self._digests[(plural, key)] = new
        self._digest_sum = (self._digest_sum - old + new) % _DIGEST_MODULUS

    def _next_revision(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _put(self, plural: str, key: str, obj: Obj, prev: Obj | None) -> Obj:
        """Store `obj` (metadata already a fresh dict) at a new revision and record the event."""
        obj["metadata"]["resourceVersion"] = self._next_revision()
        stored: Obj = freeze(obj)
        bucket = self.objects[plural]
        bucket[key] = stored
        self._set_digest(plural, key, stored)
        self._record(ADDED if prev is None else MODIFIED, plural, key, stored, prev)
        return stored

    def _remove(self, plural: str, key: str) -> Obj:
        bucket = self.objects[plural]
        prev = bucket.pop(key)
        last = dict(prev)
        last["metadata"] = dict(prev["metadata"])
        last["metadata"]["resourceVersion"] = self._next_revision()
        gone: Obj = freeze(last)
        self._set_digest(plural, key, None)
        self._record(DELETED, plural, key, gone, prev)
        if plural == "events":
            self.event_keys.pop(key, None)
        return gone

    def _namespace_missing(self, namespace: str) -> Result | None:
        if namespace and namespace not in self.objects["namespaces"]:
            return _not_found("namespaces", namespace)
        return None

    # -------------------------------------------------------------------------------------- create
    def _create(self, c: Create) -> Result:
        bucket = self._bucket(c.resource)
        if bucket is None:
            return _fail("NotFound", f"the server could not find the requested resource ({c.resource})")
        meta = c.obj.get("metadata") or {}
        name = meta.get("name", "")
        if not name:
            return _fail("Invalid", "name or generateName is required", c.resource)
        missing = self._namespace_missing(c.namespace)
        if missing is not None:
            return missing
        key = resources.object_key(c.namespace, name)
        if key in bucket:
            return _fail("AlreadyExists", f'{_qualified(c.resource)} "{name}" already exists', c.resource, name)
        obj = dict(c.obj)
        obj["metadata"] = dict(meta)
        obj["metadata"].setdefault("generation", 1)
        stored = self._put(c.resource, key, obj, None)
        if c.resource == "events":
            self.event_keys[key] = None
            while len(self.event_keys) > self.limits.events_max:
                oldest = next(iter(self.event_keys))
                self._remove("events", oldest)
        return Result(ok=True, obj=stored, revision=self.revision)

    # ------------------------------------------------------------------------------------- replace
    def _replace(self, c: Replace) -> Result:
        bucket = self._bucket(c.resource)
        if bucket is None:
            return _fail("NotFound", f"the server could not find the requested resource ({c.resource})")
        key = resources.object_key(c.namespace, c.name)
        current = bucket.get(key)
        if current is None:
            return _not_found(c.resource, c.name)
        cur_meta = current["metadata"]
        if c.expected_rv and c.expected_rv != cur_meta.get("resourceVersion"):
            return _conflict(c.resource, c.name)
        new_meta_in = c.obj.get("metadata") or {}
        uid = new_meta_in.get("uid")
        if uid and uid != cur_meta.get("uid"):
            return _fail("Conflict", f'Precondition failed: UID in precondition: {uid}, UID in object meta: '
                         f'{cur_meta.get("uid")}', c.resource, c.name)
        if c.subresource == "status":
            new = dict(current)
            new["metadata"] = dict(cur_meta)
            if "status" in c.obj:
                new["status"] = c.obj["status"]
        else:
            new = {k: v for k, v in c.obj.items() if k != "metadata"}
            meta = dict(new_meta_in)
            for kept in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                         "namespace", "name", "generation"):
                if kept in cur_meta:
                    meta[kept] = cur_meta[kept]
                else:
                    meta.pop(kept, None)
            has_status = c.resource in resources.BY_PLURAL and resources.BY_PLURAL[c.resource].has_status
            if has_status and "status" in current:
                new["status"] = current["status"]
            elif has_status:
                new.pop("status", None)
            if new.get("spec") != current.get("spec"):
                meta["generation"] = int(cur_meta.get("generation", 1)) + 1
            new["metadata"] = meta
        if _same_except_rv(new, current):
            return Result(ok=True, obj=current, revision=self.revision)
        # An object being deleted whose finalizers are gone, and whose grace is over, goes away.
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and meta.get(
                "deletionGracePeriodSeconds", 0) == 0:
            gone = self._remove(c.resource, key)
            return Result(ok=True, obj=gone, revision=self.revision)
        stored = self._put(c.resource, key, new, current)
        return Result(ok=True, obj=stored, revision=self.revision)

    # -------------------------------------------------------------------------------------- delete
    def _delete(self, c: Delete) -> Result:
        bucket = self._bucket(c.resource)
        if bucket is None:
            return _fail("NotFound", f"the server could not find the requested resource ({c.resource})")
        key = resources.object_key(c.namespace, c.name)
        current = bucket.get(key)
        if current is None:
            return _not_found(c.resource, c.name)
        meta = current["metadata"]
        if c.expected_uid and c.expected_uid != meta.get("uid"):
            return _fail("Conflict", f"Precondition failed: UID in precondition: {c.expected_uid}, UID in "
                         f'object meta: {meta.get("uid")}', c.resource, c.name)
        if c.expected_rv and c.expected_rv != meta.get("resourceVersion"):
            return _fail("Conflict", f"Precondition failed: ResourceVersion in precondition: {c.expected_rv}, "
                         f'ResourceVersion in object meta: {meta.get("resourceVersion")}', c.resource, c.name)
        if c.resource == "namespaces":
            if c.name in resources.SYSTEM_NAMESPACES:
                return _fail("Forbidden", f'namespaces "{c.name}" is forbidden: this namespace may not be '
                             "deleted", c.resource, c.name)
            for plural, objs in self.objects.items():
                r = resources.BY_PLURAL.get(plural)
                if r is not None and r.namespaced:
                    for k in [k for k in objs if k.startswith(c.name + "/")]:
                        self._remove(plural, k)
        grace = 0
        if c.resource == "pods":
            grace = self._pod_grace(current, c.grace_period_s)
        if grace > 0 or meta.get("finalizers"):
            return self._mark_terminating(c, key, current, grace)
        gone = self._remove(c.resource, key)
        return Result(ok=True, obj=gone, revision=self.revision)

    def _pod_grace(self, pod: Obj, requested: int | None) -> int:
        """Kubernetes' graceful-deletion rules for pods (pod strategy CheckGracefulDelete)."""
        spec = pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase", "")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else int(spec.get("terminationGracePeriodSeconds", 30))
        return max(grace, 0)

    def _mark_terminating(self, c: Delete, key: str, current: Obj, grace: int) -> Result:
        meta = current["metadata"]
        already = meta.get("deletionTimestamp")
        deadline = add_seconds(c.time, grace)
        if already and meta.get("deletionGracePeriodSeconds", 0) <= grace:
            return Result(ok=True, obj=current, revision=self.revision)  # a deletion may only shorten
        new = dict(current)
        new["metadata"] = dict(meta)
        new["metadata"]["deletionTimestamp"] = min(deadline, already) if already else deadline
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        stored = self._put(c.resource, key, new, current)
        return Result(ok=True, obj=stored, revision=self.revision)

    # ---------------------------------------------------------------------------------------- bind
    def _bind(self, c: Bind) -> Result:
        key = resources.object_key(c.namespace, c.name)
        pod = self.objects["pods"].get(key)
        if pod is None:
            return _not_found("pods", c.name)
        meta = pod["metadata"]
        if c.expected_uid and c.expected_uid != meta.get("uid"):
            return _fail("Conflict", f"Precondition failed: UID in precondition: {c.expected_uid}, UID in "
                         f'object meta: {meta.get("uid")}', "pods", c.name)
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return _fail("Conflict", f'Operation cannot be fulfilled on pods/binding "{c.name}": pod {c.name} '
                         f'is already assigned to node "{spec["nodeName"]}"', "pods/binding", c.name)
        if meta.get("deletionTimestamp"):
            return _fail("Conflict", f'Operation cannot be fulfilled on pods/binding "{c.name}": pod {c.name} '
                         "is being deleted, cannot be assigned to a host", "pods/binding", c.name)
        new = dict(pod)
        new["metadata"] = dict(meta)
        if c.annotations:
            new["metadata"]["annotations"] = {**(meta.get("annotations") or {}), **c.annotations}
        new["spec"] = dict(spec)
        new["spec"]["nodeName"] = c.node_name
        status = dict(pod.get("status") or {})
        conditions = [cond for cond in status.get("conditions") or [] if cond.get("type") != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": c.time})
        status["conditions"] = conditions
        new["status"] = status
        stored = self._put("pods", key, new, pod)
        return Result(ok=True, obj=stored, revision=self.revision)

    # ------------------------------------------------------------------------------ leadership
    def _leader_elected(self, c: LeaderElected) -> Result:
        if c.term < self.term_seen:
            self.fenced_refusals += 1
            return _fail("Conflict", f"fenced: leader of term {c.term} announced after term {self.term_seen}")
        self.term_seen = c.term
        self.leader_id = c.leader_id
        for ns in resources.SYSTEM_NAMESPACES:
            if ns not in self.objects["namespaces"]:
                obj: Obj = {
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": f"namespace-{ns}", "creationTimestamp": c.time,
                                 "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
                self._put("namespaces", ns, obj, None)
        return Result(ok=True, revision=self.revision)

    # ------------------------------------------------------------------------------------- reads
    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        bucket = self.objects.get(plural)
        return None if bucket is None else bucket.get(resources.object_key(namespace, name))

    def list_objects(self, plural: str, namespace: str = "") -> list[Obj]:
        """Objects of one resource (in one namespace, or all), ordered by key as etcd lists them."""
        bucket = self.objects.get(plural) or {}
        if namespace:
            prefix = namespace + "/"
            return [bucket[k] for k in sorted(k for k in bucket if k.startswith(prefix))]
        return [bucket[k] for k in sorted(bucket)]

    def events_since(self, revision: int) -> list[WatchEvent] | None:
        """Every change after `revision`, or None when some of them have left the history (410)."""
        if revision < self.history_floor:
            return None
        if revision >= self.revision:
            return []
        first = self.history[0].revision if self.history else self.revision + 1
        start = max(0, revision + 1 - first)
        return newest(self.history, len(self.history) - start)

    # ---------------------------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, Any]:
        """Plain data from which `restore` rebuilds this state (the watch history is not kept)."""
        return {
            "revision": self.revision,
            "objects": self.objects,
            "term_seen": self.term_seen,
            "fenced_refusals": self.fenced_refusals,
            "leader_id": self.leader_id,
            "dedup": [[rid, result_to_plain(r)] for rid, r in self.dedup.items()],
            "event_keys": list(self.event_keys),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], limits: StoreLimits | None = None) -> StoreState:
        s = cls(limits)
        s.revision = int(data["revision"])
        for plural, objs in data["objects"].items():
            s.objects[plural] = {key: freeze(obj) for key, obj in objs.items()}
            for key, obj in s.objects[plural].items():
                s._set_digest(plural, key, obj)
        s.term_seen = int(data["term_seen"])
        s.fenced_refusals = int(data.get("fenced_refusals", 0))
        s.leader_id = str(data["leader_id"])
        s.dedup = OrderedDict((rid, result_from_plain(r)) for rid, r in data["dedup"])
        s.event_keys = OrderedDict((k, None) for k in data["event_keys"])
        s.history_floor = s.revision
        return s

    def fingerprint(self) -> str:
        """A digest of the revision and the full content of every object: equal on masters that applied the
        same log prefix, different as soon as one of them holds different objects. O(1): `apply` keeps the
        sum of per-object digests up to date."""
        return _fingerprint(self.revision, self._digest_sum)

    def recomputed_fingerprint(self) -> str:
        """`fingerprint()` computed from scratch from the objects as they are now (O(store size); for tests
        and checks: it differs from `fingerprint()` if a stored object was changed outside `apply`)."""
        total = 0
        for plural, objs in self.objects.items():
            for key, obj in objs.items():
                total = (total + _object_digest(plural, key, obj)) % _DIGEST_MODULUS
        return _fingerprint(self.revision, total)


_DIGEST_MODULUS = 2 ** 128
_canonical_json = msgspec.json.Encoder(order="sorted")


def _object_digest(plural: str, key: str, obj: Obj) -> int:
    """A digest of one stored object's identity and content (keys sorted, so equal content digests equally;
    a sum of these is independent of the order in which objects were stored)."""
    h = hashlib.blake2b(f"{plural}/{key}\n".encode(), digest_size=16)
    h.update(_canonical_json.encode(obj))
    return int.from_bytes(h.digest(), "big")


def _fingerprint(revision: int, digest_sum: int) -> str:
    return hashlib.sha256(f"{revision}:{digest_sum:032x}".encode()).hexdigest()[:16]


def _same_except_rv(a: Obj, b: Obj) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if k == "metadata":
            ma = {mk: mv for mk, mv in a[k].items() if mk != "resourceVersion"}
            mb = {mk: mv for mk, mv in b[k].items() if mk != "resourceVersion"}
            if ma != mb:
                return False
        elif a[k] != b[k]:
            return False
    return True


def newest(history: deque[WatchEvent], count: int) -> list[WatchEvent]:
    """The last `count` events of `history`, oldest first. Taken from the right end: readers ask for the
    newest few of up to `watch_history_max` events, and a deque reaches an index only by stepping to it
    from one end (slicing from the left cost the leader's loops ~40 % of its CPU at one client)."""
    tail = list(itertools.islice(reversed(history), max(0, count)))
    tail.reverse()
    return tail


def result_to_plain(r: Result) -> list[Any]:
    err = None if r.error is None else [r.error.reason, r.error.message, r.error.kind, r.error.name]
    return [r.ok, r.obj, err, r.revision, [result_to_plain(x) for x in r.results]]


def result_from_plain(p: list[Any]) -> Result:
    ok, obj, err, revision, results = p
    error = None if err is None else ErrorInfo(reason=err[0], message=err[1], kind=err[2], name=err[3])
    return Result(ok=bool(ok), obj=None if obj is None else freeze(obj), error=error, revision=int(revision),
                  results=tuple(result_from_plain(x) for x in results))


def deep_copy(obj: Obj) -> Obj:
    """A private copy of a stored object, for callers that want to modify it."""
    return copy.deepcopy(obj)
