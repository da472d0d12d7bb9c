"""The invariants of a recorded chaos run, checked from its files alone (never from live state).

`check_run(out_dir)` is called by the chaos runner (`chaos.runner._check`, whose result lands in
`summary.json` under "checker" → "invariants") after the linearizability check. It reads what the run
recorded:

- `raft.jsonl` (the Raft sampler): at most one leader per term;
- `history.jsonl` (the workload) with `watch-replay.jsonl` (a watch replayed after the heal: every pod
  change of the run in revision order): no acknowledged write missing — every acknowledged create, write
  or cas put its value into a change, every acknowledged delete has a DELETED change, and the final reads
  agree with the last change; with or without a replay, every key with an acknowledged mutation ends with
  the value of a mutation that may have been its last (`last_write_violations`, the rule `summary.json`'s
  `lost_acknowledged_writes` counts by too);
- `final-state.json` (after the heal): all masters identical at the same applied index;
- `watch.jsonl` (a watcher that fails over between masters) and the replay: a pod bound at most once and
  never to two nodes; no node's allocatable exceeded by a binding; every watch stream's resourceVersions
  strictly rise (the first above the rv it was started or resumed from), with no gap in the changes it
  promises (compared with the replay), all streams agree on what each revision was, and every list
  (the first, and each relist after 410 Expired) matches the state the replay rebuilds at its rv.

The files are written by `chaos.runner` and `chaos.watch_recorder`. A check whose files are missing is
"not checked" (with a note), never "ok". The pure invariants come from `hacluster.model.invariants`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hacluster.consistency.history import HistoryError, Operation, load_history, pair_operations
from hacluster.model import invariants as inv
from hacluster.model.invariants import Change, InvariantViolation
from hacluster.model.pods import compute_pod_requests

# Violations listed per check in the result (the count is always complete).
VIOLATIONS_LISTED_MAX = 20
MUTATIONS = ("create", "write", "cas", "delete")
LOST_WRITE = "no-lost-acknowledged-write"
LIST_MATCHES = "list-matches-changes"
STREAMS_AGREE = "watch-streams-agree"


# ---------------------------------------------------------------------------------- pure checks
def acknowledged_write_violations(operations: Sequence[Operation], changes: Sequence[Change], *,
                                  invoked_after_ns: int | None = None) -> list[InvariantViolation]:
    """No acknowledged write is missing from the store's complete change history.

    `changes`: every change of the keys (a watch replay, or a master's change history), in any order.
    Each ok create / write / cas must have a change of its key that put its value (the new value, for a
    cas) there; a key needs at least as many DELETED changes as it has ok deletes. Values are assumed
    unique per write (the workloads draw them from a counter). When `changes` only start at some revision,
    `invoked_after_ns` limits the check to operations invoked after a moment known to follow it (e.g. the
    completion of the list whose resourceVersion the replay starts from): those took effect later.
    """
    put: dict[str, set[Any]] = defaultdict(set)
    deleted: dict[str, int] = defaultdict(int)
    for c in changes:
        if c.type == "DELETED":
            deleted[c.key] += 1
        else:
            put[c.key].add(c.value)
    out: list[InvariantViolation] = []
    ok_deletes: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        if op.status != "ok" or op.f not in MUTATIONS:
            continue
        if invoked_after_ns is not None and op.invoke_time_ns <= invoked_after_ns:
            continue
        if op.f == "delete":
            ok_deletes[op.key].append(op)
            continue
        value = op.value[1] if op.f == "cas" and isinstance(op.value, tuple) else op.value
        if value not in put[op.key] and str(value) not in {str(v) for v in put[op.key]}:
            out.append(InvariantViolation(
                LOST_WRITE, f"acknowledged {op.f} of {value!r} on {op.key} (process {op.process}) is in no change "
                f"of that key", {"key": op.key, "f": op.f, "value": value, "process": op.process,
                                 "line": op.invoke_line}))
    for key, dels in sorted(ok_deletes.items()):
        if len(dels) > deleted[key]:
            out.append(InvariantViolation(
                LOST_WRITE, f"{len(dels)} acknowledged deletes of {key}, but only {deleted[key]} DELETED "
                "change(s)", {"key": key, "acknowledged": len(dels), "deleted": deleted[key]}))
    return out


def _written(op: Operation) -> Any:
    """The value a mutation leaves: None (absence) for a delete, the new value for a cas."""
    if op.f == "delete":
        return None
    return op.value[1] if op.f == "cas" and isinstance(op.value, tuple) else op.value


def last_write_violations(operations: Sequence[Operation],
                          final_values: Mapping[str, Mapping[str, Any]]) -> tuple[list[InvariantViolation], int]:
    """Each key's final value was left by a mutation that may have been its last one.

    The rule behind both `summary.json`'s `lost_acknowledged_writes` and this checker's lost-write check.
    A key is judged when it has an acknowledged (ok) mutation. Its last mutation to take effect is then
    either an ok one that no other ok mutation certainly followed (none was invoked after it completed), or
    any mutation of unknown outcome (an `info` one may take effect at any time after its invoke, even after
    the client gave up). Every master's final value must be what one of those leaves (absence, for a
    delete); anything else means an acknowledged mutation was lost. Values are compared by their text.
    `final_values`: {master: {key: value or None}}. Returns the violations and how many keys were judged.
    """
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        if op.f in MUTATIONS and op.status in ("ok", "info"):
            by_key[op.key].append(op)
    out: list[InvariantViolation] = []
    judged = 0
    for key, ops in sorted(by_key.items()):
        oks = [op for op in ops if op.status == "ok"]
        if not oks:
            continue
        last_oks = [op for op in oks
                    if not any(o.invoke_time_ns > (op.complete_time_ns or 0) for o in oks if o is not op)]
        may_be_last = last_oks + [op for op in ops if op.status == "info"]
        allowed = {str(_written(op)) for op in may_be_last}
        judged += 1
        for master, values in sorted(final_values.items()):
            if key in values and str(values[key]) not in allowed:
                op = max(last_oks, key=lambda o: o.invoke_time_ns)
                expected = _written(op)
                out.append(InvariantViolation(
                    LOST_WRITE, f"{master} ends with {key} = {values[key]!r}, but the last acknowledged mutation "
                    f"was {op.f} {expected!r} (process {op.process})"
                    + (", nor did any other mutation that may have been last leave that value"
                       if len(may_be_last) > 1 else ""),
                    {"key": key, "master": master, "expected": expected, "found": values[key], "op": op.f,
                     "process": op.process, "invoke_time_ns": op.invoke_time_ns}))
    return out, judged


# ------------------------------------------------------------------------------------ records
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short when the run was interrupted
    return out


def _result(violations: Sequence[InvariantViolation], checked: int, note: str = "",
            **extra: Any) -> dict[str, Any]:
    return {"status": "violated" if violations else "ok", "checked": checked, "count": len(violations),
            "violations": [v.to_json() for v in violations[:VIOLATIONS_LISTED_MAX]], "note": note, **extra}


def _not_checked(note: str) -> dict[str, Any]:
    return {"status": "not checked", "checked": 0, "count": 0, "violations": [], "note": note}


@dataclass
class _Stream:
    """One uninterrupted watch stream: started after `after`, on `master`."""

    id: Any
    master: str
    after: int
    changes: list[Change]
    objects: list[tuple[str, dict[str, Any]]]  # (event type, object) for events that carried one
    last_rv: int  # the newest revision the stream said it was current at (event or bookmark)
    end: str = ""


def _streams(records: Iterable[dict[str, Any]]) -> tuple[list[_Stream], list[dict[str, Any]]]:
    """Watch records into streams (and the list records, in order)."""
    streams: dict[Any, _Stream] = {}
    order: list[Any] = []
    lists = []
    for rec in records:
        kind = rec.get("kind")
        if kind == "list":
            lists.append(rec)
            continue
        sid = rec.get("stream")
        if kind == "start":
            after = int(rec["from_rv"])
            streams[sid] = _Stream(sid, str(rec.get("master")), after, [], [], after)
            order.append(sid)
            continue
        stream = streams.get(sid)
        if stream is None:
            continue
        if kind == "event":
            rv = int(rec["rv"])
            stream.changes.append(Change(rv, str(rec["type"]), str(rec["key"]), rec.get("value")))
            obj = rec.get("object")
            if isinstance(obj, dict):
                stream.objects.append((str(rec["type"]), obj))
            stream.last_rv = max(stream.last_rv, rv)
        elif kind == "bookmark":
            stream.last_rv = max(stream.last_rv, int(rec["rv"]))
        elif kind == "end":
            stream.end = str(rec.get("reason", ""))
    return [streams[s] for s in order], lists


# -------------------------------------------------------------------------------------- checks
def _check_leaders(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "raft.jsonl"
    if not path.exists():
        return _not_checked("no raft.jsonl")
    samples = [s for s in _read_jsonl(path) if s.get("term") is not None]
    return _result(inv.leader_violations(samples), len(samples), "from the sampled Raft status of every master",
                   terms=len({s["term"] for s in samples}))


def _history_ops(out_dir: Path) -> tuple[list[Operation], dict[str, dict[str, Any]]] | None:
    """The workload's operations (final reads excluded) and the final reads: {master: {key: value}}."""
    path = out_dir / "history.jsonl"
    if not path.exists():
        return None
    events = load_history(path)
    operations = pair_operations(events, source=str(path))
    finals: dict[str, dict[str, Any]] = defaultdict(dict)
    final_processes = {e.process for e in events if e.extra.get("final")}
    node_of = {e.process: str(e.extra.get("node")) for e in events if e.type == "invoke"}
    for op in operations:
        if op.process in final_processes and op.f == "read" and op.status == "ok":
            finals[node_of.get(op.process, "?")][op.key] = op.result
    return [op for op in operations if op.process not in final_processes], dict(finals)


def _check_acknowledged(out_dir: Path, replay: _Stream | None, replay_from_ns: int | None) -> dict[str, Any]:
    """`replay`: the complete change history from the first list on (None when there is none)."""
    try:
        loaded = _history_ops(out_dir)
    except (HistoryError, OSError) as exc:
        return _not_checked(f"history unreadable: {exc}")
    if loaded is None:
        return _not_checked("no history.jsonl")
    operations, finals = loaded
    violations: list[InvariantViolation] = []
    acked = sum(1 for op in operations if op.status == "ok" and op.f in MUTATIONS)
    if replay is not None:
        keys = {op.key for op in operations}
        changes = [c for c in replay.changes if c.key in keys]
        violations += acknowledged_write_violations(operations, changes, invoked_after_ns=replay_from_ns)
        last: dict[str, Any] = {}
        for c in sorted(changes, key=lambda c: c.rv):
            last[c.key] = None if c.type == "DELETED" else c.value
        for master, values in sorted(finals.items()):
            for key, value in sorted(values.items()):
                if key in last and str(last[key]) != str(value):
                    violations.append(InvariantViolation(
                        LOST_WRITE, f"{master} ends with {key} = {value!r}, the last change put {last[key]!r}",
                        {"key": key, "master": master, "final": value, "last_change": last[key]}))
        note = ("every acknowledged mutation invoked after the watch's first list against the replayed change "
                "history; final reads against its end")
    else:
        note = ("no complete watch replay: judged by each key's final value against the mutations that may "
                "have been its last")
    more, judged = last_write_violations(operations, finals)
    violations += more
    return _result(violations, acked, note, keys_judged_by_last_write=judged)


def _check_same_state(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "final-state.json"
    if not path.exists():
        return _not_checked("no final-state.json")
    data = json.loads(path.read_text())
    samples = data.get("samples") or []
    violations = inv.same_state_violations(samples)
    indexes = {s.get("applied_index") for s in samples}
    masters_at: dict[Any, set[str]] = defaultdict(set)
    for s in samples:
        masters_at[s.get("applied_index")].add(str(s.get("master")))
    compared = max((len(ms) for ms in masters_at.values()), default=0)
    note = f"{len(samples)} quiescent samples at {len(indexes)} applied index(es)"
    if compared < len(data.get("masters") or []):
        note += f"; at most {compared} master(s) were seen at one index"
    return _result(violations, len(samples), note, masters_compared=compared)


def _pod_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    req = compute_pod_requests(pod)
    out = {"cpu": req.milli_cpu, "memory": req.memory}
    out.update(dict(req.scalars))
    return out


def _versions(first_list: dict[str, Any] | None, streams: Sequence[_Stream]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod version seen — the first list's objects, then every stream's events — once per
    (key, rv), in revision order, with the event type ("LISTED" for the list's objects)."""
    seen: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    for obj in (first_list or {}).get("objects") or []:
        rv = inv.resource_version(obj)
        if rv is not None:
            seen.setdefault((inv.object_key(obj), rv), ("LISTED", obj))
    for s in streams:
        for etype, obj in s.objects:
            rv = inv.resource_version(obj)
            if rv is not None:
                seen.setdefault((inv.object_key(obj), rv), (etype, obj))
    return [seen[k] for k in sorted(seen, key=lambda k: k[1])]


def _check_bound_once(versions: Sequence[tuple[str, dict[str, Any]]],
                      final_pods: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not versions and not final_pods:
        return _not_checked("no watch records")
    ordered = [obj for _, obj in versions] + sorted(final_pods, key=lambda o: inv.resource_version(o) or 0)
    return _result(inv.binding_violations(ordered), len({inv.pod_identity(o) for o in ordered}),
                   "pod versions from the first list, every watch stream, the replay and the final list")


def _check_capacity(versions: Sequence[tuple[str, dict[str, Any]]],
                    nodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    if not nodes:
        return _not_checked("no nodes in the final state")
    current: dict[str, dict[str, Any]] = {}
    counted_on: dict[str, str | None] = {}
    violations: list[InvariantViolation] = []
    bindings = 0
    for etype, obj in versions:
        key = inv.object_key(obj)
        deleted = etype == "DELETED"
        before = counted_on.get(key)
        now = None if deleted else inv.counts_against(obj)
        if deleted:
            current.pop(key, None)
        else:
            current[key] = obj
        counted_on[key] = now
        if now is not None and now != before:
            bindings += 1
            asked = {name for name, v in _pod_requests(obj).items() if v > 0} | {"pods"}
            for v in inv.capacity_violations(nodes, current.values(), _pod_requests, only_nodes=[now],
                                             only_resources=asked):
                violations.append(InvariantViolation(v.invariant, f"after {key} was bound at rv "
                                                     f"{inv.resource_version(obj)}: {v.message}", v.details))
    return _result(violations, bindings, "each binding against the node's final allocatable")


def _check_watch(streams: Sequence[_Stream], replay: _Stream | None, replay_upto: int | None,
                 lists: Sequence[dict[str, Any]], first_list: dict[str, Any] | None) -> dict[str, Any]:
    if not streams:
        return _not_checked("no watch.jsonl (or no stream in it)")
    violations: list[InvariantViolation] = []
    gap_checked = 0
    for s in streams:
        what = f"watch stream {s.id} on {s.master} (after rv {s.after})"
        violations += inv.rising_violations([c.rv for c in s.changes], after=s.after, what=what)
        if replay is not None and replay_upto is not None and replay.after <= s.after:
            upto = min(s.last_rv, replay_upto)
            violations += inv.gap_violations([c for c in s.changes if c.rv <= upto], replay.changes,
                                             after=s.after, upto=upto, what=what)
            gap_checked += 1
    # Every stream (and the replay) says the same about each revision: type, key, value and node.
    said: dict[int, tuple[tuple[Any, ...], Any]] = {}
    for s in list(streams) + ([replay] if replay is not None else []):
        nodes = {inv.resource_version(obj): inv.node_name(obj) for _, obj in s.objects}
        for c in s.changes:
            fact = (c.type, c.key, c.value, nodes.get(c.rv, ""))
            first = said.setdefault(c.rv, (fact, s.id))
            if first[0] != fact:
                violations.append(InvariantViolation(
                    STREAMS_AGREE, f"rv {c.rv} is {_said(first[0])} in stream {first[1]} but {_said(fact)} in "
                    f"stream {s.id}", {"rv": c.rv}))
    # Lists match the state the replay rebuilds at their revision.
    lists_checked = 0
    if replay is not None and replay_upto is not None and first_list is not None \
            and int(first_list["rv"]) == replay.after:
        state = _listed(first_list)
        changes = sorted(replay.changes, key=lambda c: c.rv)
        i = 0
        for lst in sorted(lists, key=lambda rec: int(rec["rv"])):
            rv = int(lst["rv"])
            if rv > replay_upto or rv < replay.after:
                continue
            while i < len(changes) and changes[i].rv <= rv:
                c = changes[i]
                if c.type == "DELETED":
                    state.pop(c.key, None)
                else:
                    state[c.key] = c.rv
                i += 1
            listed = _listed(lst)
            lists_checked += 1
            if listed != state:
                missing = sorted(set(state) - set(listed))[: inv.DETAILS_MAX]
                extra = sorted(set(listed) - set(state))[: inv.DETAILS_MAX]
                stale = sorted(k for k in set(state) & set(listed) if state[k] != listed[k])[: inv.DETAILS_MAX]
                violations.append(InvariantViolation(
                    LIST_MATCHES, f"list at rv {rv} on {lst.get('master')} differs from the replayed changes: "
                    f"missing {missing}, extra {extra}, other versions {stale}", {"rv": rv}))
    note = ("streams compared with the replay" if gap_checked else
            "no complete replay: only the order of each stream was checked")
    return _result(violations, len(streams), note, events=sum(len(s.changes) for s in streams),
                   streams_gap_checked=gap_checked, lists_checked=lists_checked,
                   relists_after_expired=sum(1 for rec in lists if rec.get("reason") == "expired"),
                   ends=_end_reasons(streams))


def _end_reasons(streams: Sequence[_Stream]) -> dict[str, int]:
    """How the streams ended, by the reason's first words ("closed by server": 3, "stopped": 1, ...)."""
    out: dict[str, int] = defaultdict(int)
    for s in streams:
        out[s.end.split(":")[0][:60] or "unknown"] += 1
    return dict(out)


def _said(what: tuple[Any, ...]) -> str:
    etype, key, value, node = what
    return f"{etype} {key} (value {value!r}, node {node or 'none'!r})"


def _listed(list_record: Mapping[str, Any]) -> dict[str, int]:
    """{key: resourceVersion} of the objects a list record holds."""
    out = {}
    for obj in list_record.get("objects") or []:
        rv = inv.resource_version(obj)
        if rv is not None:
            out[inv.object_key(obj)] = rv
    return out


# --------------------------------------------------------------------------------------- entry
def check_run(out_dir: str | Path) -> dict[str, Any]:
    """Every invariant of the run in `out_dir`.

    Returns {"verdict": "ok" | "violated", "violations": total, "checks": {name: {"status": "ok" |
    "violated" | "not checked", "checked": n, "count": n, "violations": [...], "note": ...}}}. A check
    "not checked" (its records are missing) does not make the verdict "violated". Never raises for
    missing or truncated records; raises `OSError` only if `out_dir` cannot be read at all.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise OSError(f"{out} is not a directory")
    checks: dict[str, dict[str, Any]] = {"one_leader_per_term": _check_leaders(out)}

    records = _read_jsonl(out / "watch.jsonl") if (out / "watch.jsonl").exists() else []
    streams, lists = _streams(records)
    replay: _Stream | None = None
    replay_upto: int | None = None
    if (out / "watch-replay.jsonl").exists():
        replay_records = _read_jsonl(out / "watch-replay.jsonl")
        replayed, _ = _streams(replay_records)
        ends = [r for r in replay_records if r.get("kind") == "end"]
        if replayed and ends and ends[-1].get("complete"):
            replay = replayed[0]
            replay_upto = int(ends[-1]["upto"])
    final: dict[str, Any] = {}
    if (out / "final-state.json").exists():
        final = json.loads((out / "final-state.json").read_text())
    first_list = lists[0] if lists else None

    replay_from_ns = int(first_list["time"]) if first_list is not None and "time" in first_list else None
    replay_matches_list = first_list is not None and replay is not None and int(first_list["rv"]) == replay.after
    checks["no_lost_acknowledged_writes"] = _check_acknowledged(out, replay if replay_matches_list else None,
                                                                replay_from_ns)
    checks["same_state_after_heal"] = _check_same_state(out)
    versions = _versions(first_list, list(streams) + ([replay] if replay is not None else []))
    objects = final.get("objects") or {}
    reference_master = final.get("reference_master") or next(iter(sorted(objects)), None)
    final_pods = list((objects.get(reference_master) or {}).get("pods") or []) if reference_master else []
    nodes = list((objects.get(reference_master) or {}).get("nodes") or []) if reference_master else []
    checks["pod_bound_once"] = _check_bound_once(versions, final_pods)
    checks["node_capacity"] = _check_capacity(versions, nodes)
    checks["watch_streams"] = _check_watch(streams, replay, replay_upto, lists, first_list)
    total = sum(c["count"] for c in checks.values())
    return {"verdict": "violated" if total else "ok", "violations": total, "checks": checks}
