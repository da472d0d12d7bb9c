"""Programs for the in-process cluster: rounds of faults and concurrent client operations, as plain data
Hypothesis can generate and shrink, with short reprs so a failing example reads like a script.

`run_program` executes one program on a fresh `InProcessCluster`, heals, lets the masters converge, reads
every key back through every master, and returns what was observed (`RunRecord`); `check_record` runs the
linearizability checker and the invariants on it and returns the problems found (empty: all good).
Used by `tests/property/test_raft_cluster.py`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from hacluster.consistency.explain import format_result
from hacluster.consistency.history import pair_operations
from hacluster.consistency.invariants import acknowledged_write_violations
from hacluster.consistency.linearizability import check_operations
from hacluster.model import invariants as inv
from hacluster.model.invariants import Change
from tests.property.harness import InProcessCluster, Observations, fast_raft, value_of

MASTERS = 3
KEYS = 3
NODE_NAMES = ("node-a", "node-b")
ROUNDS_MAX = 8
OPS_PER_ROUND_MAX = 5
TRUNCATION = "truncating already-applied log entries"
COMPACTION_ENTRIES = 16  # with `compact`: snapshots every few entries, sent to lagging followers


@dataclass(frozen=True)
class Op:
    """One client operation through master `m` (0-based) on key `k`. Values are assigned at run time in
    program order (1, 2, 3, ...); a cas expects the value written `back` writes ago on that key."""

    f: str
    m: int
    k: int
    local: bool = False
    back: int = 0
    target: int = 0  # bind: which node

    def __repr__(self) -> str:
        extra = ""
        if self.f == "read" and self.local:
            extra = ", local"
        elif self.f == "cas":
            extra = f", back={self.back}"
        elif self.f == "bind":
            extra = f", {NODE_NAMES[self.target]}"
        return f"{self.f}(m{self.m + 1}, k{self.k}{extra})"


@dataclass(frozen=True)
class Fault:
    """A network or process fault between rounds. `a`/`b` are master indexes (0-based)."""

    kind: str  # cut | drop | drop-one-way | isolate | isolate-cut | isolate-leader | kill | kill-leader |
    #            restart | heal
    a: int = 0
    b: int = 1

    def __repr__(self) -> str:
        if self.kind in ("cut", "drop", "drop-one-way"):
            return f"{self.kind}(m{self.a + 1}, m{self.b + 1})"
        if self.kind in ("isolate", "isolate-cut", "kill", "restart"):
            return f"{self.kind}(m{self.a + 1})"
        return f"{self.kind}()"


@dataclass(frozen=True)
class Round:
    """A fault (or none), then these operations at once, then a pause."""

    fault: Fault | None
    ops: tuple[Op, ...]
    wait_ms: int = 0

    def __repr__(self) -> str:
        parts = [repr(self.fault)] if self.fault is not None else []
        parts.append("[" + ", ".join(map(repr, self.ops)) + "]")
        if self.wait_ms:
            parts.append(f"sleep {self.wait_ms}ms")
        return "Round(" + " ".join(parts) + ")"


@dataclass(frozen=True)
class Program:
    rounds: tuple[Round, ...]
    compact: bool = False  # snapshot the log every COMPACTION_ENTRIES entries

    def __repr__(self) -> str:
        head = "Program(compact=True, rounds=" if self.compact else "Program(rounds="
        return head + "[\n  " + ",\n  ".join(map(repr, self.rounds)) + "])"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints a falsifying example with this (it would spell out every dataclass field)."""
        printer.text(repr(self))


# ----------------------------------------------------------------------------------------- strategies
_m = st.integers(0, MASTERS - 1)
_k = st.integers(0, KEYS - 1)

ops = st.one_of(
    st.builds(Op, f=st.just("read"), m=_m, k=_k),
    st.builds(Op, f=st.just("read"), m=_m, k=_k, local=st.booleans()),
    st.builds(Op, f=st.just("write"), m=_m, k=_k),
    st.builds(Op, f=st.just("create"), m=_m, k=_k),
    st.builds(Op, f=st.just("cas"), m=_m, k=_k, back=st.integers(0, 2)),
    st.builds(Op, f=st.just("delete"), m=_m, k=_k),
    st.builds(Op, f=st.just("bind"), m=_m, k=_k, target=st.integers(0, len(NODE_NAMES) - 1)),
)


@st.composite
def _pair_fault(draw: st.DrawFn, kind: str) -> Fault:
    a = draw(_m)
    b = (a + 1 + draw(st.integers(0, MASTERS - 2))) % MASTERS
    return Fault(kind, a, b)


faults = st.one_of(
    st.just(Fault("heal")),
    st.builds(Fault, kind=st.sampled_from(["isolate", "isolate-cut", "kill", "restart"]), a=_m),
    st.sampled_from([Fault("isolate-leader"), Fault("kill-leader")]),
    _pair_fault("cut"), _pair_fault("drop"), _pair_fault("drop-one-way"),
)

# Two rounds in three run without a new fault, so there is time for operations to succeed in between.
rounds = st.builds(Round, fault=st.one_of(st.none(), st.none(), faults),
                   ops=st.lists(ops, min_size=0, max_size=OPS_PER_ROUND_MAX).map(tuple),
                   wait_ms=st.sampled_from([0, 0, 60, 250]))

programs = st.builds(Program, rounds=st.lists(rounds, min_size=1, max_size=ROUNDS_MAX).map(tuple),
                     compact=st.booleans())


# ------------------------------------------------------------------------------------------ running
@dataclass
class RunRecord:
    """What one run left: the observations, each master's final change history and state."""

    program: Program
    obs: Observations
    settled: dict[str, dict[str, Any]]
    # master -> [(revision, type, resource, key, obj)] of its watch history after the heal
    changes: dict[str, list[tuple[int, str, str, str, dict[str, Any]]]]
    floors: dict[str, int]
    trace: list[str] = field(default_factory=list)
    # master -> resource -> key -> object, taken after the heal once every master applied the same index
    objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # master -> (incremental fingerprint, fingerprint recomputed from the objects), taken with `objects`
    fingerprints: dict[str, tuple[str, str]] = field(default_factory=dict)


async def _apply_fault(c: InProcessCluster, fault: Fault) -> None:
    ids = c.ids
    c.log(f"fault {fault!r}")
    kind = fault.kind
    if kind == "heal":
        await c.heal_all()
    elif kind == "cut":
        await asyncio.to_thread(c.net.cut, ids[fault.a], ids[fault.b])
    elif kind == "drop":
        await asyncio.to_thread(c.net.drop, ids[fault.a], ids[fault.b])
    elif kind == "drop-one-way":
        await asyncio.to_thread(c.net.drop, ids[fault.a], ids[fault.b], "to")
    elif kind in ("isolate", "isolate-cut", "isolate-leader"):
        target = ids[fault.a] if kind != "isolate-leader" else c.leader()
        if target is not None:
            await asyncio.to_thread(c.net.isolate, target, how="cut" if kind == "isolate-cut" else "drop")
    elif kind in ("kill", "kill-leader"):
        target = ids[fault.a] if kind == "kill" else c.leader()
        if target is not None:
            await c.kill(target)
    elif kind == "restart":
        await c.restart(ids[fault.a])


async def run_program(program: Program) -> RunRecord:
    raft = fast_raft(log_compaction_min_entries=COMPACTION_ENTRIES) if program.compact else fast_raft()
    async with InProcessCluster(MASTERS, raft=raft) as c:
        await c.bootstrap()
        written: dict[int, list[int]] = defaultdict(list)  # key -> values proposed, in program order
        counter = 0
        leader = await c.wait_leader()
        for k in range(KEYS):  # every key exists at the start, so writes and cas have something to change
            counter += 1
            written[k].append(counter)
            await c.operate(leader, "create", f"k{k}", counter)
        for rnd in program.rounds:
            if rnd.fault is not None:
                await _apply_fault(c, rnd.fault)
            calls = []
            for op in rnd.ops:
                mid, key = c.ids[op.m], f"k{op.k}"
                if op.f in ("create", "write"):
                    counter += 1
                    value: Any = counter
                    written[op.k].append(counter)
                elif op.f == "cas":
                    counter += 1
                    past = written[op.k]
                    expected = past[-1 - op.back] if op.back < len(past) else 0
                    value = [expected, counter]
                    written[op.k].append(counter)
                else:
                    value = None
                calls.append(c.operate(mid, op.f, key, value, local=op.local, node_name=NODE_NAMES[op.target]))
            await asyncio.gather(*calls)
            if rnd.wait_ms:
                await asyncio.sleep(rnd.wait_ms / 1000)
        await c.heal_all()
        settled = await c.settle()
        objects = {mid: c.read_state(mid, lambda s: {plural: dict(objs) for plural, objs in s.objects.items()})
                   for mid in c.ids}
        fingerprints = {mid: c.read_state(mid, lambda s: (s.fingerprint(), s.recomputed_fingerprint()))
                        for mid in c.ids}
        for mid in c.ids:
            for k in range(KEYS):
                await c.operate(mid, "read", f"k{k}", final=True)
        changes = {}
        floors = {}
        for mid in c.ids:
            changes[mid], floors[mid] = c.read_state(mid, lambda s: (
                [(e.revision, e.type, e.resource, e.key, e.obj) for e in s.history], s.history_floor))
        return RunRecord(program, c.obs, settled, changes, floors, list(c.obs.trace), objects, fingerprints)


# ----------------------------------------------------------------------------------------- checking
def check_record(rec: RunRecord) -> list[str]:
    """Every problem with one run, as sentences (empty: linearizable and every invariant holds)."""
    # A follower must never drop entries it acknowledged and applied (RaftStore keeps the entries that match
    # the leader's; test_raft_cluster pins it). pysyncobj's other warnings — e.g. clamping a commit index
    # after an in-process "crash" lost journal pages — are not failures by themselves: the checks below judge.
    problems: list[str] = [f"pysyncobj: {w}" for w in rec.obs.raft_warnings if TRUNCATION in w]
    operations = pair_operations(rec.obs.events)
    result = check_operations(operations, time_limit_s=20.0)
    if result.verdict != "valid":
        problems.append(format_result(result))

    violations: list[inv.InvariantViolation] = []
    violations += inv.leader_violations(rec.obs.views)
    violations += inv.same_state_violations(rec.settled.values())
    violations += inv.bind_acknowledgement_violations(rec.obs.binds)

    problems += object_content_problems(rec.objects)
    problems += [f"{mid}: fingerprint {kept} kept by apply, but its objects digest to {recomputed} (changed "
                 "outside the log)" for mid, (kept, recomputed) in rec.fingerprints.items() if kept != recomputed]
    # Every master holds the same change history (over the revisions all of them still keep).
    floor = max(rec.floors.values())
    common = {mid: [(r, t, res, k) for r, t, res, k, _ in ch if r > floor] for mid, ch in rec.changes.items()}
    first = next(iter(common))
    for mid, ch in common.items():
        if ch != common[first]:
            problems.append(f"change history of {mid} differs from {first}'s after rv {floor}")
    # The most complete history: revisions are contiguous, pods bound once, resourceVersions rise.
    fullest = min(rec.floors, key=lambda m: rec.floors[m])
    history = rec.changes[fullest]
    revisions = [r for r, *_ in history]
    if revisions and revisions != list(range(revisions[0], revisions[0] + len(revisions))):
        problems.append(f"{fullest}: change history revisions are not contiguous: {revisions}")
    pods = [obj for _, _, res, _, obj in history if res == "pods"]
    violations += inv.binding_violations(pods)
    violations += inv.resource_version_violations(pods)
    violations += inv.rising_violations(revisions, what=f"{fullest} change history")

    # Acknowledged writes are in the change history (when it goes back far enough).
    if rec.floors[fullest] == 0:
        key_changes = [Change(r, t, k, value_of(obj)) for r, t, res, k, obj in history if res == "pods"]
        violations += acknowledged_write_violations(operations, key_changes)
        problems += _local_read_problems(rec, history)
    problems += [v.message for v in violations]
    return problems


def object_content_problems(objects: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[str]:
    """Every master holds the same objects, compared by full content (not only key and resourceVersion)."""
    problems = []
    if not objects:
        return problems
    first = next(iter(objects))
    for mid, objs in objects.items():
        for plural in sorted(set(objs) | set(objects[first])):
            mine, theirs = objs.get(plural, {}), objects[first].get(plural, {})
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if differing:
                problems.append(f"{mid} holds different {plural} from {first}'s after the heal: {differing[:5]}")
    return problems


def _local_read_problems(rec: RunRecord, history: list[tuple[int, str, str, str, dict[str, Any]]]) -> list[str]:
    """Local reads may be stale, but each must show the committed state at the master's revision then,
    and one master's local reads never go back in time (within one incarnation)."""
    problems = []
    by_key: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for r, t, res, k, obj in history:
        if res == "pods":
            by_key[k].append((r, None if t == "DELETED" else value_of(obj)))
    last_rev: dict[tuple[str, int], int] = {}
    for read in rec.obs.local_reads:
        key = f"default/{read.key}"
        expected = None
        for r, v in by_key[key]:
            if r > read.revision:
                break
            expected = v
        if read.value != expected:
            problems.append(f"local read of {key} on {read.node} at revision {read.revision} returned "
                            f"{read.value!r}; the committed log has {expected!r} there")
        ident = (read.node, read.incarnation)
        if read.revision < last_rev.get(ident, 0):
            problems.append(f"local reads on {read.node} went back from revision {last_rev[ident]} to "
                            f"{read.revision}")
        last_rev[ident] = max(read.revision, last_rev.get(ident, 0))
    return problems
