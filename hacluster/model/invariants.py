"""Invariants of the control plane, as pure functions over objects, change events and Raft status samples.

The one home of the promises hacluster keeps under faults (STYLE rule 10): a pod is bound at most once and
never to two nodes; resourceVersions only rise; no node's allocatable is exceeded by the requests of the
pods bound to it; there is at most one leader per Raft term; masters that applied the same log prefix hold
the same state; a watch stream delivers every change it promises, in order. Used by the property tests of
the state machine and of the in-process Raft cluster (`tests/property`) and by the chaos checkers
(`hacluster.consistency.invariants.check_run`).

Every function takes plain data (the dicts the API serves, or the records a chaos run writes) and returns
the `InvariantViolation`s it finds — an empty list when the invariant holds. None of them raises on odd
data: a missing field counts as absent. Whoever holds the data decides what a violation means (a test
asserts; a chaos checker reports). Imports nothing from the project outside `hacluster.model`; how much a
pod requests is the caller's business (`requests_of`), since the exact rules live with the scheduler
(`hacluster.scheduler.nodeinfo`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hacluster.model.quantity import QuantityError, parse_quantity

Obj = Mapping[str, Any]

BOUND_ONCE = "pod-bound-once"
RV_RISES = "resource-version-rises"
CAPACITY = "node-capacity"
ONE_LEADER = "one-leader-per-term"
SAME_STATE = "same-state-at-same-index"
WATCH_ORDER = "watch-rv-rises"
WATCH_GAP = "watch-no-gap"

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# Most examples one violation lists in its details.
DETAILS_MAX = 10


@dataclass(frozen=True)
class InvariantViolation:
    """One broken promise: which invariant, a sentence for a person, and the data that shows it."""

    invariant: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "message": self.message, **dict(self.details)}


# ---------------------------------------------------------------------------------------------- helpers
def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def object_key(obj: Obj) -> str:
    """"namespace/name" (or "name" for cluster-scoped objects)."""
    meta = _meta(obj)
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def pod_identity(obj: Obj) -> str:
    """A pod's identity: its uid, or its key when it has none. A pod deleted and created again under the
    same name is another pod (another uid) and may be bound again."""
    uid = _meta(obj).get("uid")
    return str(uid) if uid else object_key(obj)


def resource_version(obj: Obj) -> int | None:
    """`metadata.resourceVersion` as an integer, None when absent or not a number."""
    raw = _meta(obj).get("resourceVersion")
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def node_name(obj: Obj) -> str:
    spec = obj.get("spec")
    return str((spec or {}).get("nodeName") or "") if isinstance(spec, Mapping) else ""


# ---------------------------------------------------------------------------------------------- binding
def binding_violations(versions: Iterable[Obj]) -> list[InvariantViolation]:
    """A pod is bound at most once and never to two nodes.

    `versions`: successive versions of pods in the order they were written (e.g. the objects of watch
    events in revision order, or the objects a state machine stored). Per pod identity, once
    `spec.nodeName` is set it must never change nor be cleared.
    """
    bound_to: dict[str, tuple[str, int | None]] = {}
    out: list[InvariantViolation] = []
    for obj in versions:
        ident = pod_identity(obj)
        node = node_name(obj)
        rv = resource_version(obj)
        first = bound_to.get(ident)
        if first is None:
            if node:
                bound_to[ident] = (node, rv)
            continue
        if node != first[0]:
            what = "unbound" if not node else f"bound again to {node!r}"
            out.append(InvariantViolation(
                BOUND_ONCE,
                f"pod {object_key(obj)} (uid {ident}) was bound to {first[0]!r} at resourceVersion {first[1]} "
                f"and {what} at resourceVersion {rv}",
                {"pod": object_key(obj), "uid": ident, "first_node": first[0], "first_rv": first[1],
                 "node": node, "rv": rv}))
            bound_to[ident] = (node, rv) if node else first
    return out


def bind_acknowledgement_violations(acknowledged: Iterable[tuple[str, str]]) -> list[InvariantViolation]:
    """At most one binding of a pod is acknowledged. `acknowledged`: (pod identity, node) per
    successful Bind, in any order."""
    seen: dict[str, list[str]] = defaultdict(list)
    for ident, node in acknowledged:
        seen[ident].append(node)
    return [InvariantViolation(BOUND_ONCE, f"pod {ident} had {len(nodes)} bindings acknowledged: {nodes}",
                               {"uid": ident, "nodes": nodes})
            for ident, nodes in sorted(seen.items()) if len(nodes) > 1]


# ------------------------------------------------------------------------------------- resourceVersion
def resource_version_violations(versions: Iterable[Obj]) -> list[InvariantViolation]:
    """resourceVersion only rises: each successive version of an object (by key, across deletion and
    re-creation, since one global revision counts every change) has a greater resourceVersion."""
    last: dict[str, int] = {}
    out: list[InvariantViolation] = []
    for obj in versions:
        rv = resource_version(obj)
        if rv is None:
            out.append(InvariantViolation(RV_RISES, f"{object_key(obj)} has no numeric resourceVersion",
                                          {"key": object_key(obj)}))
            continue
        key = object_key(obj)
        prev = last.get(key)
        if prev is not None and rv <= prev:
            out.append(InvariantViolation(RV_RISES, f"{key}: resourceVersion went from {prev} to {rv}",
                                          {"key": key, "from": prev, "to": rv}))
        last[key] = rv if prev is None else max(prev, rv)
    return out


def rising_violations(revisions: Sequence[int], *, after: int | None = None, what: str = "stream",
                      invariant: str = WATCH_ORDER) -> list[InvariantViolation]:
    """`revisions` strictly rise, and (when `after` is given) the first is greater than `after` — the
    resourceVersion a watch was started or resumed from."""
    out: list[InvariantViolation] = []
    prev = after
    for i, rv in enumerate(revisions):
        if prev is not None and rv <= prev:
            where = f"its start rv {after}" if i == 0 else f"the previous event's {prev}"
            out.append(InvariantViolation(invariant, f"{what}: event {i} has resourceVersion {rv}, not above {where}",
                                          {"index": i, "rv": rv, "previous": prev}))
        prev = rv if prev is None else max(prev, rv)
    return out


# --------------------------------------------------------------------------------------------- capacity
def allocatable(node: Obj) -> dict[str, int]:
    """A node's `status.allocatable` in scheduler units: "cpu" in millicores, everything else (memory,
    pods, extended resources) in whole units, rounded up as Kubernetes rounds. Unparsable entries are
    left out (the API server never stores one)."""
    status = node.get("status")
    raw = (status or {}).get("allocatable") if isinstance(status, Mapping) else None
    out: dict[str, int] = {}
    for name, text in (raw or {}).items():
        try:
            q = parse_quantity(text)
        except QuantityError:
            continue
        out[str(name)] = q.millis() if name == "cpu" else q.units()
    return out


def counts_against(pod: Obj) -> str | None:
    """The node whose capacity `pod` uses: its nodeName unless it has finished (Succeeded or Failed)."""
    node = node_name(pod)
    if not node:
        return None
    status = pod.get("status")
    if isinstance(status, Mapping) and status.get("phase") in TERMINAL_PHASES:
        return None
    return node


def capacity_violations(nodes: Iterable[Obj], pods: Iterable[Obj],
                        requests_of: Callable[[Obj], Mapping[str, int]],
                        *, only_nodes: Iterable[str] | None = None,
                        only_resources: Iterable[str] | None = None) -> list[InvariantViolation]:
    """No node's allocatable is exceeded by the requests of the pods bound to it (one state).

    `requests_of(pod)` gives what a pod asks, in the units of `allocatable` ("cpu" in millicores); each
    pod also takes one "pods" slot. A resource the node does not report counts as 0 allocatable, as the
    scheduler counts it, but only resources some pod asks for (> 0) are compared. Pods on nodes that are
    not in `nodes` are not judged. `only_nodes` / `only_resources` narrow the check (e.g. to the node and
    the resources of one binding).
    """
    alloc = {str(_meta(n).get("name", "")): allocatable(n) for n in nodes}
    wanted_nodes = set(only_nodes) if only_nodes is not None else None
    wanted_resources = set(only_resources) if only_resources is not None else None
    used: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    members: dict[str, list[str]] = defaultdict(list)
    for pod in pods:
        node = counts_against(pod)
        if node is None or node not in alloc or (wanted_nodes is not None and node not in wanted_nodes):
            continue
        members[node].append(object_key(pod))
        used[node]["pods"] += 1
        for name, amount in requests_of(pod).items():
            if amount > 0:
                used[node][name] += amount
    out: list[InvariantViolation] = []
    for node in sorted(used):
        for name in sorted(used[node]):
            if wanted_resources is not None and name not in wanted_resources:
                continue
            have = alloc[node].get(name, 0)
            if used[node][name] > have:
                out.append(InvariantViolation(
                    CAPACITY,
                    f"node {node}: pods bound to it request {used[node][name]} {name}"
                    f"{'m' if name == 'cpu' else ''}, allocatable is {have}",
                    {"node": node, "resource": name, "requested": used[node][name], "allocatable": have,
                     "pods": sorted(members[node])[:DETAILS_MAX]}))
    return out


# ------------------------------------------------------------------------------------------------ Raft
def leader_violations(samples: Iterable[Mapping[str, Any]]) -> list[InvariantViolation]:
    """At most one leader per term.

    `samples`: Raft status observations, each with "master", "term", "role" and optionally "leader" (the
    master it follows). A master that says it is leader in term t claims t; a master in term t that names
    its leader names that leader for t. Two different masters claimed or named for one term is a
    violation. Observations without a term (an unreachable master) are skipped.
    """
    holders: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        term = s.get("term")
        if not isinstance(term, int) or isinstance(term, bool):
            continue
        master = s.get("master")
        if s.get("role") == "leader" and master:
            who = f"{master} (itself)"
            if who not in holders[term][str(master)]:
                holders[term][str(master)].append(who)
        leader = s.get("leader")
        if leader and master and s.get("role") != "leader":
            who = f"{master}"
            if who not in holders[term][str(leader)]:
                holders[term][str(leader)].append(who)
    out: list[InvariantViolation] = []
    for term in sorted(holders):
        leaders = holders[term]
        if len(leaders) > 1:
            said = "; ".join(f"{ld} according to {', '.join(by)}" for ld, by in sorted(leaders.items()))
            out.append(InvariantViolation(ONE_LEADER, f"term {term} had {len(leaders)} leaders: {said}",
                                          {"term": term, "leaders": sorted(leaders),
                                           "according_to": {k: v for k, v in sorted(leaders.items())}}))
    return out


def same_state_violations(samples: Iterable[Mapping[str, Any]]) -> list[InvariantViolation]:
    """Masters that applied the same log prefix hold the same state.

    `samples`: each with "master", "applied_index" and "fingerprint" (and optionally "revision"), taken
    while nothing was being applied. Samples with equal applied index must have equal fingerprints (and
    revisions).
    """
    by_index: dict[int, dict[tuple[Any, Any], list[str]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        index = s.get("applied_index")
        if index is None or s.get("fingerprint") is None:
            continue
        state = (s.get("fingerprint"), s.get("revision"))
        if str(s.get("master")) not in by_index[index][state]:
            by_index[index][state].append(str(s.get("master")))
    out: list[InvariantViolation] = []
    for index in sorted(by_index):
        states = by_index[index]
        if len(states) > 1:
            said = "; ".join(f"{', '.join(ms)}: fingerprint {fp} revision {rev}"
                             for (fp, rev), ms in sorted(states.items(), key=lambda kv: kv[1]))
            out.append(InvariantViolation(SAME_STATE, f"masters at applied index {index} hold different states: "
                                          f"{said}", {"applied_index": index,
                                                      "states": [{"masters": ms, "fingerprint": fp,
                                                                  "revision": rev}
                                                                 for (fp, rev), ms in states.items()]}))
    return out


# ----------------------------------------------------------------------------------------------- watch
@dataclass(frozen=True)
class Change:
    """One change a watch delivers: its revision, event type and object key (plus what it wrote)."""

    rv: int
    type: str
    key: str
    value: Any = None


def gap_violations(stream: Sequence[Change], reference: Sequence[Change], *, after: int, upto: int,
                   what: str = "stream") -> list[InvariantViolation]:
    """No gap in what a watch promises: a stream started (or resumed) after revision `after` and last
    known to be current at revision `upto` must have delivered exactly the `reference` changes with
    after < rv <= upto, in order and with the same type and key.

    `reference` is the complete sequence of changes to the watched objects (e.g. a replay watch taken
    after the run from a healed cluster). Reports the first missing, extra or different change.
    """
    expected = [c for c in reference if after < c.rv <= upto]
    got = list(stream)
    out: list[InvariantViolation] = []
    exp_by_rv = {c.rv: c for c in expected}
    got_by_rv = {c.rv: c for c in got}
    missing = [c for c in expected if c.rv not in got_by_rv]
    extra = [c for c in got if c.rv not in exp_by_rv]
    different = [(got_by_rv[rv], exp_by_rv[rv]) for rv in sorted(set(exp_by_rv) & set(got_by_rv))
                 if (got_by_rv[rv].type, got_by_rv[rv].key) != (exp_by_rv[rv].type, exp_by_rv[rv].key)]
    if missing:
        first = missing[0]
        out.append(InvariantViolation(
            WATCH_GAP, f"{what} (after rv {after}, current at {upto}) skipped {len(missing)} change(s), first "
            f"{first.type} {first.key} at rv {first.rv}",
            {"after": after, "upto": upto, "missing": [c.rv for c in missing[:DETAILS_MAX]]}))
    if extra:
        first = extra[0]
        out.append(InvariantViolation(
            WATCH_GAP, f"{what} delivered {len(extra)} change(s) that are not in the reference, first "
            f"{first.type} {first.key} at rv {first.rv}",
            {"after": after, "upto": upto, "extra": [c.rv for c in extra[:DETAILS_MAX]]}))
    if different:
        g, e = different[0]
        out.append(InvariantViolation(
            WATCH_GAP, f"{what} delivered rv {g.rv} as {g.type} {g.key}, the reference has {e.type} {e.key}",
            {"rv": g.rv, "got": [g.type, g.key], "expected": [e.type, e.key]}))
    return out
