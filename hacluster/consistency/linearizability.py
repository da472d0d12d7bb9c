"""Linearizability checker for recorded histories: is there one order of the operations, consistent with
real time, in which every operation does what a single correct register would do?

The search is Wing & Gong's, with Lowe's just-in-time linearization, as Porcupine implements it
(anishathalye/porcupine, checker.go): the history is a doubly-linked list of call and return entries in
time order; the search linearizes ("lifts") any operation whose call comes before the first remaining
return, backtracks ("unlifts") when a return is reached with its operation not yet linearized, and
remembers every (set of linearized operations, model state) pair it has visited so it never explores the
same situation twice. Keys are independent registers, so each key is checked on its own
(P-compositionality) with its own time budget.

Outcomes follow the history contract (see `history`): `fail` operations are dropped; `info` operations
(and invokes never completed) may take effect at any instant after their invoke or never, so their return
is +infinity; where placed they apply if their precondition holds and are a no-op otherwise. Reads whose
outcome is unknown constrain nothing and are dropped. Entries at equal times are ordered calls first, so
operations that touch at one instant count as concurrent (the conservative choice: it never invents a
violation).

Indefinite (`info`) operations are what make the search expensive, since each stays a candidate for
ever. Beyond Porcupine, and all sound (a brute-force oracle in the tests agrees on random histories):
they need not be placed for the search to succeed and are tried after the definite candidates; equal ones
are interchangeable (only the earliest unplaced is tried) and are tried only in the state they can
change; a situation is skipped when one with the same definite set and state and fewer indefinite
operations placed was visited; values nobody reads are merged into one; and an ok read of a value nobody
wrote fails the key at once.

For an invalid key the checker finds the shortest failing prefix of that key's history (operations
invoked up to the completion of the first operation that cannot be linearized; operations still running
then count as `info`) and says in a sentence why that operation is impossible.

Called by `hacluster.consistency.explain` (`run_check`, used by the CLI), the chaos runner and
`scripts/bench-checker`. Pure: no I/O except `check_file`, which reads the history.

One file, longer than most: the search, its pruning rules and the explanation of a failure share the
entry list, the memo and the model, and none of them can be read without the others beside it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from hacluster.consistency.history import (
    Event,
    Operation,
    load_history,
    pair_operations,
)

Verdict: TypeAlias = Literal["valid", "invalid", "unknown"]
# A transition maps a model state to the next one, or to ILLEGAL when the operation cannot happen there.
Transition: TypeAlias = Callable[[Hashable], Hashable]

# How many search steps run between two looks at the clock.
_DEADLINE_CHECK_STEPS = 4096
# Most operations an explanation lists.
EXPLANATION_OPERATIONS_MAX = 40


class UnknownModelError(ValueError):
    """`model` names no model this checker knows."""


class _Sentinel:
    """A unique marker value that equals only itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# The register state of a key that does not exist (distinct from a key holding JSON null).
ABSENT: Hashable = _Sentinel("ABSENT")
# What a transition returns when the operation cannot take effect in the given state.
ILLEGAL: Hashable = _Sentinel("ILLEGAL")


# ---------------------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True, slots=True)
class Step:
    """One operation compiled for the search (`guard` None means it may change any state).

    `blind` says the result does not depend on the state (a blind write: write, or a delete whose outcome
    is unknown). The search uses it to skip orders that cannot matter: an indefinite blind step applied
    right after another indefinite step hides that step's effect entirely.
    """

    transition: Transition
    blind: bool = False
    # Steps with equal `identity` (not None) have the same transition; the search treats indefinite
    # operations with one identity as interchangeable and tries only the earliest unplaced one.
    identity: Hashable = None
    # For an indefinite step: the only state it changes, or None if it may change any. The search does
    # not try it in other states, where it would be a no-op.
    guard: Hashable = None
    # False when the operation is legal in no state the history can reach (e.g. a read of a value nobody
    # wrote): the search then answers "invalid" at once.
    possible: bool = True


@dataclass(frozen=True)
class Model:
    """A sequential specification of one key: its initial state and what each operation does to it.

    `compile(items)` turns one key's (operation, indefinite?) pairs into their `Step`s, None for those
    that constrain nothing and are dropped; it sees them all at once so it can simplify states. For an
    indefinite operation the transition must never return ILLEGAL: where it cannot take effect it leaves
    the state unchanged (it failed, or never happened).
    """

    name: str
    initial_state: Hashable
    compile: Callable[[Sequence[tuple[Operation, bool]]], list[Step | None]]
    describe_state: Callable[[Hashable], str]


# The register state holding a value that no operation of the key ever compares against.
UNOBSERVED: Hashable = _Sentinel("UNOBSERVED")


def _register_steps(items: Sequence[tuple[Operation, bool]]) -> list[Step | None]:
    """The register semantics of the history contract, for one key.

    create: only if absent; delete: only if present; cas [expected, new]: only if present and equal to
    expected; write: always (creates if absent); read: returns the value, or null when absent (a read of
    null also matches a key holding null). A definite (ok) operation is illegal where its precondition
    fails; an indefinite (info) one is then a no-op.

    Values that no read returns and no cas expects are all written as UNOBSERVED: no transition can tell
    them apart, and states that differ only in such values then meet in the search's memory.
    """
    observed: set[Hashable] = set()
    written: set[Hashable] = set()
    for op, indefinite in items:
        if op.f == "read" and not indefinite:
            observed.add(op.result)
        elif op.f == "cas" and isinstance(op.value, tuple):
            observed.add(op.value[0])
            written.add(op.value[1])
        elif op.f in ("write", "create"):
            written.add(op.value)
    return [_register_step(op, indefinite, observed, written) for op, indefinite in items]


def _never(state: Hashable) -> Hashable:
    return ILLEGAL


def _register_step(
    op: Operation, indefinite: bool, observed: set[Hashable], ever_written: set[Hashable]
) -> Step | None:
    f, value = op.f, op.value
    if f == "read":
        if indefinite:
            return None
        seen = op.result
        if seen is not None and seen not in ever_written:  # null needs no writer: the key starts absent
            return Step(_never, possible=False)
        if seen is None:
            return Step(lambda state: state if state is ABSENT or state is None else ILLEGAL)
        return Step(lambda state: state if state == seen else ILLEGAL)
    if f == "delete":
        if indefinite:
            return Step(lambda state: ABSENT, blind=True, identity=("delete",))
        return Step(lambda state: ILLEGAL if state is ABSENT else ABSENT)
    if f == "cas":
        # ABSENT equals no value, so `state == expected` also requires presence.
        if not isinstance(value, tuple):
            raise TypeError(f"cas operation {op.index} has no [expected, new] value")
        expected, new = value[0], (value[1] if value[1] in observed else UNOBSERVED)
        if not indefinite and expected not in ever_written:
            return Step(_never, possible=False)
        if indefinite:
            return Step(
                lambda state: new if state == expected else state, identity=("cas", expected, new), guard=expected
            )
        return Step(lambda state: new if state == expected else ILLEGAL)
    canonical: Hashable = value if value in observed else UNOBSERVED
    if f == "write":
        return Step(lambda state: canonical, blind=True, identity=("write", canonical))
    # create
    if indefinite:
        return Step(
            lambda state: canonical if state is ABSENT else state, identity=("create", canonical), guard=ABSENT
        )
    return Step(lambda state: canonical if state is ABSENT else ILLEGAL)


def _describe_register_state(state: Hashable) -> str:
    if state is ABSENT:
        return "absent"
    if state is UNOBSERVED:
        return "holding a value no operation reads"
    return f"holding {format_value(state)}"


REGISTER = Model(
    name="register",
    initial_state=ABSENT,
    compile=_register_steps,
    describe_state=_describe_register_state,
)
MODELS: dict[str, Model] = {REGISTER.name: REGISTER}


def get_model(name: str) -> Model:
    """The model called `name`; raises `UnknownModelError` listing the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Violation:
    """Why one key's history is not linearizable, reduced to the shortest failing prefix."""

    key: str
    reason: str  # one or two sentences for a person
    # The ok operation(s) completing at `prefix_end_time_ns`: the first that cannot be linearized.
    first_unlinearizable: tuple[Operation, ...]
    # The operations that matter to `reason`, in invoke order (at most EXPLANATION_OPERATIONS_MAX).
    operations: tuple[Operation, ...]
    prefix_end_time_ns: int
    prefix_operation_count: int  # operations of the key invoked by then (fails excluded)
    # The longest order the search could build for the prefix, and the state it leaves.
    longest_order: tuple[Operation, ...]
    state_after_longest_order: str


@dataclass(frozen=True)
class KeyResult:
    """The verdict for one key."""

    key: str
    verdict: Verdict
    operation_count: int  # operations on the key, fails included
    checked_operation_count: int  # those the search had to place (fails and unknown reads dropped)
    elapsed_s: float
    violation: Violation | None = None  # set when the verdict is "invalid"
    note: str = ""  # e.g. why the verdict is "unknown"


@dataclass(frozen=True)
class CheckResult:
    """The verdict for a whole history: invalid if any key is, else unknown if any key is, else valid."""

    verdict: Verdict
    model: str
    keys: tuple[KeyResult, ...]  # sorted by key
    operation_count: int
    elapsed_s: float
    time_origin_ns: int  # the earliest invoke; explanations give times relative to it
    time_limit_s: float | None

    def keys_with(self, verdict: Verdict) -> tuple[KeyResult, ...]:
        """The per-key results with the given verdict."""
        return tuple(result for result in self.keys if result.verdict == verdict)

    @property
    def violations(self) -> tuple[Violation, ...]:
        """The explanations of every invalid key."""
        return tuple(result.violation for result in self.keys if result.violation is not None)


# ---------------------------------------------------------------------------------------------------------
# Formatting shared with `explain`


def format_value(value: object) -> str:
    """A value as a person reads it: strings quoted ('v3'), JSON null as null."""
    if value is ABSENT:
        return "absent"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return json.dumps(value)


def format_time(time_ns: float | None, origin_ns: int) -> str:
    """A time in milliseconds after `origin_ns` (None or +inf as an open end)."""
    if time_ns is None or time_ns == math.inf:
        return "∞"
    return f"{(time_ns - origin_ns) / 1e6:.3f} ms"


def describe_call(op: Operation) -> str:
    """What the operation did, without who or when: "write 'v5'", "read → 'v3'", "cas 'a'→'b'"."""
    if op.f == "read":
        return f"read → {format_value(op.result)}" if op.status == "ok" else "read → ?"
    if op.f == "cas" and isinstance(op.value, tuple):
        return f"cas {format_value(op.value[0])}→{format_value(op.value[1])}"
    if op.f == "delete":
        return "delete"
    return f"{op.f} {format_value(op.value)}"


def describe_operation(op: Operation, origin_ns: int) -> str:
    """One operation for a person: "p3 write 'v5' [ok 1.000–2.500 ms]", "p4 delete [info from 3.000 ms]"."""
    start = f"{(op.invoke_time_ns - origin_ns) / 1e6:.3f}"
    if op.status == "info" or op.complete_time_ns is None:
        when = f"info from {start} ms"
    else:
        when = f"{op.status} {start}–{(op.complete_time_ns - origin_ns) / 1e6:.3f} ms"
    return f"p{op.process} {describe_call(op)} [{when}]"


# ---------------------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True, slots=True)
class _Placed:
    """An operation ready for the search: its step and whether its outcome is known."""

    op: Operation
    step: Step
    indefinite: bool  # info (or cut open): may take effect any time after its call, or never


@dataclass(frozen=True, slots=True)
class _SearchOutcome:
    verdict: Verdict
    longest_order: tuple[int, ...] = ()  # indexes into the placed list; filled when asked for
    state_after_longest_order: Hashable = None
    # For "invalid": the operation whose return the deepest attempt could not pass (a hint, not a proof).
    blocking: Operation | None = None


def _place(items: Iterable[tuple[Operation, bool]], model: Model) -> list[_Placed]:
    """Compile (operation, indefinite?) pairs, dropping those that constrain nothing."""
    pairs = list(items)
    return [
        _Placed(op, step, indefinite or op.complete_time_ns is None)
        for (op, indefinite), step in zip(pairs, model.compile(pairs), strict=True)
        if step is not None
    ]


def _search(
    placed: Sequence[_Placed],
    initial_state: Hashable,
    deadline: float | None,
    record_longest: bool = False,
    definite_first: bool = True,
) -> _SearchOutcome:
    """Is there a legal order of `placed` that respects real time? Porcupine's checkSingle, on arrays.

    Definite operations sit in Porcupine's doubly-linked list of call and return entries; at each point
    the candidates are the calls before the first return, and the search succeeds once every definite
    operation is placed. Indefinite operations have no return (it is +infinity) and need not happen at
    all; they are candidates once called. They are grouped into classes of interchangeable operations
    (equal `Step.identity`), of which only the earliest unplaced member is tried, and a class is only
    tried in the state its guard names. `definite_first` tries definite candidates before indefinite
    ones at each point (better at proving a history invalid) or after (often quicker on valid ones).

    Visited situations are remembered as (definite set, state) -> indefinite sets; a situation is skipped
    when one with the same definite set and state and a subset of its indefinite operations was already
    visited, since that one could do everything it can. An indefinite blind step right after another
    indefinite step is skipped: it hides that step, and the order with the blind step alone is tried
    where the first of them was placed.

    Returns "unknown" if `deadline` (time.monotonic() seconds) passes first. With `record_longest`, an
    invalid outcome carries the longest partial order found and the state after it.
    """
    # Global order of events; calls before returns at equal times (touching operations are concurrent).
    points: list[tuple[float, int, int]] = []
    for i, p in enumerate(placed):
        points.append((p.op.invoke_time_ns, 0, i))
        if not p.indefinite:
            assert p.op.complete_time_ns is not None
            points.append((p.op.complete_time_ns, 1, i))
    points.sort()

    # The list of definite entries: position 0 is the head, `tail` the tail; neither is ever lifted.
    definite_points = [(rank, kind, i) for rank, (_, kind, i) in enumerate(points) if not placed[i].indefinite]
    tail = len(definite_points) + 1
    nxt = list(range(1, tail + 2))
    prv = list(range(-1, tail + 1))
    match = [0] * (tail + 1)  # call entry -> its return entry; 0 marks a return entry
    rank_at = [0] * (tail + 1)  # entry -> rank in `points`
    bit_at = [0] * (tail + 1)  # call entry -> index of its operation in the definite bitset
    op_at = [0] * (tail + 1)  # entry -> index in `placed`
    transition_at: list[Transition | None] = [None] * (tail + 1)
    call_entry: dict[int, int] = {}
    for entry, (rank, kind, i) in enumerate(definite_points, start=1):
        rank_at[entry] = rank
        op_at[entry] = i
        if kind == 0:
            call_entry[i] = entry
            bit_at[entry] = len(call_entry) - 1
            transition_at[entry] = placed[i].step.transition
        else:
            match[call_entry[i]] = entry
    if nxt[0] == tail:
        return _SearchOutcome("valid")
    impossible = [p.op for p in placed if not p.indefinite and not p.step.possible]
    if impossible:
        first = min(impossible, key=lambda op: (op.complete_time_ns or 0, op.index))
        return _SearchOutcome("invalid", (), initial_state, first)

    # Classes of interchangeable indefinite operations; members in call order. Member j of class c is
    # placed only after members 0..j-1, so `class_placed[c]` says which member is next.
    class_of_identity: dict[Hashable, int] = {}
    class_ranks: list[list[int]] = []  # class -> call rank of each member
    class_bits: list[list[int]] = []  # class -> bit of each member in the indefinite bitset
    class_ops: list[list[int]] = []  # class -> index in `placed` of each member
    class_transition: list[Transition] = []
    class_blind: list[bool] = []
    unguarded_classes: list[int] = []
    guarded_classes: dict[Hashable, list[int]] = {}
    info_count = 0
    for rank, (_, _kind, i) in enumerate(points):
        if not placed[i].indefinite:
            continue
        step = placed[i].step
        identity = step.identity if step.identity is not None else ("operation", i)
        c = class_of_identity.get(identity)
        if c is None:
            c = class_of_identity[identity] = len(class_ranks)
            class_ranks.append([])
            class_bits.append([])
            class_ops.append([])
            class_transition.append(step.transition)
            class_blind.append(step.blind)
            if step.guard is None:
                unguarded_classes.append(c)
            else:
                guarded_classes.setdefault(step.guard, []).append(c)
        class_ranks[c].append(rank)
        class_bits[c].append(1 << info_count)
        class_ops[c].append(i)
        info_count += 1
    class_placed = [0] * len(class_ranks)
    no_classes: list[int] = []

    state = initial_state
    definite_bits = 0
    info_bits = 0
    visited: dict[tuple[int, Hashable], list[int]] = {(0, state): [0]}
    # The choices made so far: a definite call entry (> 0) or minus (1 + an indefinite class).
    stack_item: list[int] = []
    stack_state: list[Hashable] = []
    stack_limit_rank: list[int] = []  # rank of the first return at the point the choice was made
    stack_classes: list[list[int]] = []  # for indefinite choices: the classes being tried there
    stack_class_index: list[int] = []  # ... and the position of the chosen one among them
    best_depth = -1
    best_order: tuple[int, ...] = ()
    best_state: Hashable = None
    best_limit_rank = 0
    steps = 0

    def info_candidates(state: Hashable, after_info: bool) -> list[int]:
        """The indefinite classes worth trying in `state` (blind ones not right after an indefinite step)."""
        guarded = guarded_classes.get(state, no_classes) if guarded_classes else no_classes
        if not after_info:
            return unguarded_classes + guarded if guarded else unguarded_classes
        unguarded = [c for c in unguarded_classes if not class_blind[c]]
        return unguarded + guarded if guarded else unguarded

    trying_definite = definite_first
    second_phase = False
    entry = nxt[0]
    classes: list[int] = no_classes
    class_index = 0
    if not definite_first:
        classes = info_candidates(state, False)
    limit_rank = _first_return_rank(nxt, match, rank_at)
    while True:
        steps += 1
        if deadline is not None and steps % _DEADLINE_CHECK_STEPS == 0 and time.monotonic() > deadline:
            return _SearchOutcome("unknown")
        if trying_definite:
            ret = match[entry]
            if ret:
                transition = transition_at[entry]
                assert transition is not None
                new_state = transition(state)
                if new_state is not ILLEGAL:
                    new_bits = definite_bits | (1 << bit_at[entry])
                    seen = visited.get((new_bits, new_state))
                    if seen is None:
                        visited[(new_bits, new_state)] = [info_bits]
                        fresh = True
                    else:
                        fresh = all(old & ~info_bits for old in seen)
                        if fresh:
                            seen.append(info_bits)
                    if fresh:
                        stack_item.append(entry)
                        stack_state.append(state)
                        stack_limit_rank.append(limit_rank)
                        stack_classes.append(no_classes)
                        stack_class_index.append(0)
                        state = new_state
                        definite_bits = new_bits
                        # lift the call and its return out of the list
                        before, after = prv[entry], nxt[entry]
                        nxt[before] = after
                        prv[after] = before
                        before, after = prv[ret], nxt[ret]
                        nxt[before] = after
                        prv[after] = before
                        if nxt[0] == tail:
                            return _SearchOutcome("valid")
                        limit_rank = _first_return_rank(nxt, match, rank_at)
                        trying_definite, second_phase = definite_first, False
                        entry = nxt[0]
                        if not definite_first:
                            classes, class_index = info_candidates(state, False), 0
                        continue
                entry = nxt[entry]
                continue
        elif class_index < len(classes):
            c = classes[class_index]
            member = class_placed[c]
            if member < len(class_ranks[c]) and class_ranks[c][member] < limit_rank:
                new_state = class_transition[c](state)
                if new_state is not ILLEGAL:
                    new_bits = info_bits | class_bits[c][member]
                    seen = visited.get((definite_bits, new_state))
                    if seen is None:
                        visited[(definite_bits, new_state)] = [new_bits]
                        fresh = True
                    else:
                        fresh = all(old & ~new_bits for old in seen)
                        if fresh:
                            seen.append(new_bits)
                    if fresh:
                        stack_item.append(-1 - c)
                        stack_state.append(state)
                        stack_limit_rank.append(limit_rank)
                        stack_classes.append(classes)
                        stack_class_index.append(class_index)
                        state = new_state
                        info_bits = new_bits
                        class_placed[c] = member + 1
                        # placing an indefinite operation lifts no return, so limit_rank stays
                        trying_definite, second_phase = definite_first, False
                        entry = nxt[0]
                        if not definite_first:
                            classes, class_index = info_candidates(state, True), 0
                        continue
            class_index += 1
            continue

        # The candidates of the current kind are exhausted.
        if not second_phase:
            second_phase = True
            trying_definite = not definite_first
            entry = nxt[0]
            if definite_first:
                after_info = bool(stack_item) and stack_item[-1] < 0
                classes, class_index = info_candidates(state, after_info), 0
            continue
        # Dead end: nothing fits at this point. Undo the most recent choice and try its next sibling.
        if not stack_item:
            blocking = placed[points[best_limit_rank][2]].op
            return _SearchOutcome("invalid", best_order, best_state, blocking)
        if len(stack_item) > best_depth:
            best_depth = len(stack_item)
            best_state = state
            best_limit_rank = limit_rank
            if record_longest:
                best_order = _order_of(stack_item, op_at, class_ops, class_placed)
        item = stack_item.pop()
        state = stack_state.pop()
        limit_rank = stack_limit_rank.pop()
        classes = stack_classes.pop()
        class_index = stack_class_index.pop()
        if item > 0:
            entry = item
            definite_bits ^= 1 << bit_at[entry]
            # unlift in the reverse order of lift; lifted entries kept their own links
            ret = match[entry]
            nxt[prv[ret]] = ret
            prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            trying_definite = True
            second_phase = not definite_first
            entry = nxt[entry]
            if not definite_first:
                # the indefinite candidates of this point were already tried
                classes, class_index = no_classes, 0
        else:
            c = -1 - item
            class_placed[c] -= 1
            info_bits ^= class_bits[c][class_placed[c]]
            trying_definite = False
            second_phase = definite_first
            class_index += 1
            entry = nxt[0]


def _order_of(
    stack_item: Sequence[int], op_at: Sequence[int], class_ops: Sequence[list[int]], class_placed: Sequence[int]
) -> tuple[int, ...]:
    """The operations (indexes into the placed list) of a search stack, in the order they were placed."""
    taken = [0] * len(class_placed)
    order = []
    for item in stack_item:
        if item > 0:
            order.append(op_at[item])
        else:
            c = -1 - item
            order.append(class_ops[c][taken[c]])
            taken[c] += 1
    return tuple(order)


def _first_return_rank(nxt: list[int], match: list[int], rank_at: list[int]) -> int:
    """The rank of the first return entry in the definite list (the list must hold one)."""
    entry = nxt[0]
    while match[entry]:
        entry = nxt[entry]
    return rank_at[entry]


# ---------------------------------------------------------------------------------------------------------
# Explaining a violation


def _truncate(ops: Sequence[Operation], end_ns: int) -> list[tuple[Operation, bool]]:
    """The history as it stood at `end_ns`: operations invoked by then, those not completed by then as info.

    Linearizable histories stay linearizable under this cut (the order restricted to operations placed
    before the cut, plus the cut-open ones as no-ops at the end), so a failing cut proves the whole fails.
    """
    kept: list[tuple[Operation, bool]] = []
    for op in ops:
        if op.invoke_time_ns > end_ns:
            continue
        indefinite = op.status == "info" or op.complete_time_ns is None or op.complete_time_ns > end_ns
        kept.append((op, indefinite))
    return kept


_ChangeValue: TypeAlias = Hashable


def _new_value(op: Operation) -> _ChangeValue:
    """The value `op` leaves when it takes effect: ABSENT for delete, ILLEGAL for a read (sets nothing)."""
    if op.f in ("write", "create"):
        return op.value
    if op.f == "cas" and isinstance(op.value, tuple):
        return op.value[1]
    if op.f == "delete":
        return ABSENT
    return ILLEGAL


def _may_act_after(op: Operation, start_ns: int, end_ns: int) -> bool:
    """Could `op` take effect in (start_ns, end_ns]? Info operations may take effect any time after invoke."""
    if op.invoke_time_ns > end_ns:
        return False
    if op.status != "ok" or op.complete_time_ns is None:
        return True
    return op.complete_time_ns > start_ns


def _list_ops(ops: Sequence[Operation], origin_ns: int, limit: int = 3) -> str:
    shown = [describe_operation(op, origin_ns) for op in ops[-limit:]]
    more = f" and {len(ops) - limit} earlier" if len(ops) > limit else ""
    return "; ".join(shown) + more


def _specific_reason(
    key: str,
    blocked: Operation,
    prefix: Sequence[Operation],
    key_ops: Sequence[Operation],
    origin_ns: int,
) -> tuple[str, list[Operation]] | None:
    """A sentence naming the facts that rule `blocked` out, when one of the common patterns applies.

    Returns (sentence, operations it cites) or None. Every claim is checked against the history, so a
    sentence is only given when it is a proof on its own.
    """
    assert blocked.complete_time_ns is not None
    end_ns = blocked.complete_time_ns
    at = f"t={format_time(blocked.invoke_time_ns, origin_ns)}–{format_time(end_ns, origin_ns)}"
    effective = [op for op in key_ops if op.status != "fail" and op is not blocked]
    changes_before = [
        op
        for op in prefix
        if op.status == "ok" and op.f != "read" and op is not blocked
        and op.complete_time_ns is not None and op.complete_time_ns < blocked.invoke_time_ns
    ]
    last_ack = max(changes_before, key=lambda op: (op.complete_time_ns or 0, op.index), default=None)
    last_text = (
        f"the latest acknowledged change before it was {describe_operation(last_ack, origin_ns)}"
        if last_ack is not None
        else "no change to it was acknowledged before it began"
    )
    makers = [op for op in effective if op.f in ("write", "create", "cas")]
    deleters = [op for op in effective if op.f == "delete"]
    # What can make a read return null: a delete, or setting the value null.
    nullers = [op for op in effective if _new_value(op) is ABSENT or _new_value(op) is None]

    def nothing_undid(last: Operation, undoers: Sequence[Operation]) -> bool:
        return not any(_may_act_after(op, last.invoke_time_ns, end_ns) for op in undoers if op is not last)

    wanted: Hashable
    if blocked.f in ("read", "cas"):
        if blocked.f == "read":
            wanted, verb, what = blocked.result, "returned", "the read"
        else:
            assert isinstance(blocked.value, tuple)
            wanted, verb, what = blocked.value[0], "expected", "the cas"
        if wanted is None and blocked.f == "read":
            if (
                last_ack is not None
                and last_ack.f != "delete"
                and _new_value(last_ack) is not None
                and nothing_undid(last_ack, nullers)
            ):
                return (
                    (f"read of {key} returned null (absent) at {at}, but "
                    f"{describe_operation(last_ack, origin_ns)} was acknowledged before the read began "
                    f"and no delete of {key} could have taken effect after it"),
                    [last_ack],
                )
            return None
        writers = [op for op in effective if _new_value(op) == wanted]
        label = f"{blocked.f} of {key} {verb} {format_value(wanted)} at {at}"
        if not writers:
            return f"{label}, but no operation ever wrote {format_value(wanted)}; {last_text}", (
                [last_ack] if last_ack else []
            )
        early = [op for op in writers if op.invoke_time_ns <= end_ns]
        if not early:
            return (
                (f"{label}, but the only writes of {format_value(wanted)} ({_list_ops(writers, origin_ns)}) "
                f"began after {what} completed; {last_text}"),
                writers[:3] + ([last_ack] if last_ack else []),
            )
        if (
            last_ack is not None
            and _new_value(last_ack) != wanted
            and all(
                op.status == "ok" and op.complete_time_ns is not None
                and op.complete_time_ns < last_ack.invoke_time_ns
                for op in early
            )
        ):
            return (
                (f"{label}, but every write of {format_value(wanted)} ({_list_ops(early, origin_ns)}) was "
                f"acknowledged before {describe_operation(last_ack, origin_ns)} began, and that was "
                f"acknowledged before {what} began: {what} saw a stale value"),
                early[-3:] + [last_ack],
            )
        return None
    if blocked.f == "create":
        if last_ack is not None and last_ack.f != "delete" and nothing_undid(last_ack, deleters):
            return (
                (f"create of {key} succeeded at {at}, but {key} already existed: "
                f"{describe_operation(last_ack, origin_ns)} was acknowledged before the create began and "
                f"no delete of {key} could have taken effect in between"),
                [last_ack],
            )
        other_creates = [
            op for op in prefix
            if op.f == "create" and op.status == "ok" and op is not blocked
            and op.complete_time_ns is not None and op.complete_time_ns <= end_ns
        ]
        if other_creates and not any(op.invoke_time_ns <= end_ns for op in deleters):
            return (
                (f"create of {key} succeeded at {at}, but {describe_operation(other_creates[-1], origin_ns)} "
                f"also succeeded and no delete of {key} was attempted before then: two creates cannot both "
                "find the key absent"),
                [other_creates[-1]],
            )
        return None
    if blocked.f == "delete":
        if not any(op.invoke_time_ns <= end_ns for op in makers):
            return f"delete of {key} succeeded at {at}, but nothing had created {key} by then", []
        if last_ack is not None and last_ack.f == "delete" and nothing_undid(last_ack, makers):
            return (
                (f"delete of {key} succeeded at {at}, but {describe_operation(last_ack, origin_ns)} had "
                f"already deleted it before the delete began and nothing could have re-created it in between"),
                [last_ack],
            )
        return None
    return None


def _involved(
    prefix: Sequence[Operation], blocked: Sequence[Operation], cited: Sequence[Operation], end_ns: int
) -> tuple[Operation, ...]:
    """The operations to show: the blocked ones, those cited, and those overlapping the window they span."""
    start_ns = min(op.invoke_time_ns for op in [*blocked, *cited])
    must = {op.index for op in [*blocked, *cited]}
    window = [
        op for op in prefix
        if op.index in must or (op.status != "ok" or op.complete_time_ns is None or op.complete_time_ns >= start_ns)
    ]
    if len(window) > EXPLANATION_OPERATIONS_MAX:
        # Keep what the reason names, then the operations nearest the failure.
        rest = sorted((op for op in window if op.index not in must), key=lambda op: -op.invoke_time_ns)
        room = max(0, EXPLANATION_OPERATIONS_MAX - len(must))
        keep = must | {op.index for op in rest[:room]}
        window = [op for op in window if op.index in keep]
    return tuple(sorted(window, key=lambda op: (op.invoke_time_ns, op.index)))


def _find_violation(
    key: str,
    key_ops: Sequence[Operation],
    model: Model,
    origin_ns: int,
    deadline: float | None,
    hint: Operation | None = None,
) -> Violation:
    """Explain an invalid key: find the shortest failing prefix and say why its last operation fails.

    Cuts at each ok completion are monotone (see `_truncate`), so the first one that fails is found by
    testing the cut at `hint`'s completion (where the full search got stuck) and the one before it, and
    by a binary search when that does not settle it. A cut whose search runs out of time counts as
    passing, so the prefix returned is always proven to fail (at worst it is the whole history).
    """
    candidates = [op for op in key_ops if op.status != "fail"]
    ends = sorted({op.complete_time_ns for op in candidates if op.status == "ok" and op.complete_time_ns is not None})
    assert ends, "a history without ok operations cannot be invalid"

    def fails(index: int) -> bool:
        cut = _place(_truncate(candidates, ends[index]), model)
        return _search(cut, model.initial_state, deadline).verdict == "invalid"

    low, high = 0, len(ends) - 1
    if hint is not None and hint.complete_time_ns in ends and hint.status == "ok":
        guess = ends.index(hint.complete_time_ns)
        if guess == high or fails(guess):
            high = guess
            if guess == 0 or not fails(guess - 1):
                low = guess
            else:
                high = guess - 1
        else:
            low = guess + 1
    while low < high:
        middle = (low + high) // 2
        if fails(middle):
            high = middle
        else:
            low = middle + 1
    end_ns = ends[high]
    cut = _truncate(candidates, end_ns)
    placed = _place(cut, model)
    outcome = _search(placed, model.initial_state, deadline, record_longest=True)
    prefix = [op for op, _ in cut]
    blocked = tuple(op for op in prefix if op.status == "ok" and op.complete_time_ns == end_ns)
    longest = tuple(placed[i].op for i in outcome.longest_order)
    state_text = (
        model.describe_state(outcome.state_after_longest_order) if outcome.verdict == "invalid" else "unknown"
    )

    reason: str | None = None
    cited: list[Operation] = []
    for op in blocked:
        found = _specific_reason(key, op, prefix, key_ops, origin_ns)
        if found is not None:
            reason, cited = found
            break
    if reason is None:
        first = blocked[0]
        longest_text = (
            f"the longest order the checker found places {len(longest)} of them and leaves {key} {state_text}"
            if outcome.verdict == "invalid"
            else "the search for the longest order ran out of time"
        )
        reason = (
            f"{describe_operation(first, origin_ns)} cannot be placed: no order of the {len(prefix)} operations "
            f"on {key} invoked by t={format_time(end_ns, origin_ns)} fits a single register; {longest_text}"
        )
    return Violation(
        key=key,
        reason=reason,
        first_unlinearizable=blocked,
        operations=_involved(prefix, blocked, cited, end_ns),
        prefix_end_time_ns=end_ns,
        prefix_operation_count=len(prefix),
        longest_order=longest,
        state_after_longest_order=state_text,
    )


# ---------------------------------------------------------------------------------------------------------
# Entry points


def check_key(
    key: str,
    key_ops: Sequence[Operation],
    *,
    model: Model = REGISTER,
    time_limit_s: float | None = 10.0,
    origin_ns: int = 0,
    explain: bool = True,
) -> KeyResult:
    """Check one key's operations. `time_limit_s` bounds the search, and separately the explanation."""
    started = time.monotonic()
    deadline = None if time_limit_s is None else started + time_limit_s
    placed = _place(((op, op.status == "info") for op in key_ops if op.status != "fail"), model)
    outcome = _search(placed, model.initial_state, deadline)
    violation = None
    note = ""
    if outcome.verdict == "invalid" and explain:
        explain_deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        violation = _find_violation(key, key_ops, model, origin_ns, explain_deadline, outcome.blocking)
    elif outcome.verdict == "unknown":
        note = f"search exceeded the time limit of {time_limit_s} s"
    return KeyResult(
        key=key,
        verdict=outcome.verdict,
        operation_count=len(key_ops),
        checked_operation_count=len(placed),
        elapsed_s=time.monotonic() - started,
        violation=violation,
        note=note,
    )


def check_operations(
    operations: Sequence[Operation],
    *,
    time_limit_s: float | None = 10.0,
    model: str = "register",
    explain: bool = True,
) -> CheckResult:
    """Check paired operations key by key; `time_limit_s` is each key's budget (None: no limit).

    Raises `UnknownModelError` for an unknown `model`.
    """
    chosen = get_model(model)
    started = time.monotonic()
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    origin_ns = min((op.invoke_time_ns for op in operations), default=0)
    results = tuple(
        check_key(key, by_key[key], model=chosen, time_limit_s=time_limit_s, origin_ns=origin_ns, explain=explain)
        for key in sorted(by_key)
    )
    verdicts = {result.verdict for result in results}
    verdict: Verdict = "invalid" if "invalid" in verdicts else "unknown" if "unknown" in verdicts else "valid"
    return CheckResult(
        verdict=verdict,
        model=chosen.name,
        keys=results,
        operation_count=len(operations),
        elapsed_s=time.monotonic() - started,
        time_origin_ns=origin_ns,
        time_limit_s=time_limit_s,
    )


def check_history(
    events: Sequence[Event],
    *,
    time_limit_s: float | None = 10.0,
    model: str = "register",
    explain: bool = True,
) -> CheckResult:
    """Check a history of events (see `history`); raises `HistoryError` if the events do not pair up."""
    return check_operations(pair_operations(events), time_limit_s=time_limit_s, model=model, explain=explain)


def check_file(
    path: str | Path,
    *,
    time_limit_s: float | None = 10.0,
    model: str = "register",
    explain: bool = True,
) -> CheckResult:
    """Load and check a JSON-lines history file; raises `HistoryError` naming the first bad line."""
    events = load_history(path)
    operations = pair_operations(events, source=str(path))
    return check_operations(operations, time_limit_s=time_limit_s, model=model, explain=explain)


__all__ = [
    "ABSENT",
    "MODELS",
    "REGISTER",
    "CheckResult",
    "KeyResult",
    "Model",
    "UnknownModelError",
    "Verdict",
    "Violation",
    "check_file",
    "check_history",
    "check_key",
    "check_operations",
    "describe_call",
    "describe_operation",
    "format_time",
    "format_value",
    "get_model",
]
