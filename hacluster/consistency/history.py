"""The operation history that chaos runs record and the linearizability checker reads.

A history is a JSON-lines file, one operation event per line::

    {"process": 3, "type": "invoke", "f": "write", "key": "default/web-1", "value": "v5", "time": 123456789}

`type` is "invoke", "ok", "fail" or "info"; `f` is "create", "read", "write", "cas" or "delete"; `time` is
monotonic nanoseconds. A process runs one operation at a time: each `invoke` is followed later by that
process's `ok`, `fail` or `info` for the same operation, and a process that got an `info` is never used
again. An `invoke` that is still open at the end of the history counts as `info`. Extra fields (`node`,
`error`, ...) are allowed; they are kept in `Event.extra` and otherwise ignored.

Values: `write` and `create` carry the value written; `read` carries null on invoke and the value read
(null when absent) on `ok`; `cas` carries `[expected, new]`; `delete` carries null.

This module loads and dumps that format (`load_history`, `parse_history`, `dump_history`), pairs every
invoke with its completion into an `Operation` (`pair_operations`), and simulates histories of a correct
register (`simulate_register_history`) for the checker's tests and `scripts/bench-checker`.
Callers: the chaos recorder (dump), `hacluster.consistency.linearizability` and `.explain` (load, pair).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias, cast

EventType: TypeAlias = Literal["invoke", "ok", "fail", "info"]
OpFunction: TypeAlias = Literal["create", "read", "write", "cas", "delete"]
OpStatus: TypeAlias = Literal["ok", "fail", "info"]
Scalar: TypeAlias = str | int | float | bool | None
# A cas carries (expected, new); every other value is a scalar.
EventValue: TypeAlias = Scalar | tuple[Scalar, Scalar]

EVENT_TYPES: tuple[EventType, ...] = ("invoke", "ok", "fail", "info")
OP_FUNCTIONS: tuple[OpFunction, ...] = ("create", "read", "write", "cas", "delete")
_REQUIRED_FIELDS = ("process", "type", "f", "key", "value", "time")


class HistoryError(ValueError):
    """A history that breaks the format contract; the message names the line (1-based) when known."""

    def __init__(self, reason: str, *, line: int | None = None, source: str | None = None) -> None:
        where = ""
        if source is not None and line is not None:
            where = f"{source} line {line}: "
        elif line is not None:
            where = f"line {line}: "
        elif source is not None:
            where = f"{source}: "
        super().__init__(where + reason)
        self.reason = reason
        self.line = line
        self.source = source


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history: a process invoking an operation or learning its outcome."""

    process: int
    type: EventType
    f: OpFunction
    key: str
    value: EventValue
    time_ns: int
    # Fields beyond the contract ("node", "error", ...), kept so a dump reproduces the input.
    extra: Mapping[str, object] = field(default_factory=dict, compare=False)
    # Where the event was read from (1-based), for error messages and explanations; None if built in code.
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Operation:
    """An invoke paired with its completion: one operation a process performed on one key.

    `status` is "ok" (took effect; for a read, returned `result`), "fail" (certainly had no effect) or
    "info" (may have taken effect at any time after `invoke_time_ns`, or never). `complete_time_ns` is the
    time of the completion event, None when the history ends with the operation still open (then `status`
    is "info"). For an info operation the completion time is only when the client gave up: the operation's
    effect is not bounded by it.
    """

    index: int  # position of the invoke among all invokes of the history, from 0
    process: int
    f: OpFunction
    key: str
    value: EventValue  # the invoke's value: what is written, or (expected, new) for cas
    result: EventValue  # the completion's value: what a read returned; None without a completion
    status: OpStatus
    invoke_time_ns: int
    complete_time_ns: int | None
    invoke_line: int | None = None
    complete_line: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Parsing


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python but never a valid process id or time.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _parse_value(raw: object, event_type: str, f: str, line: int | None, source: str | None) -> EventValue:
    """Check `raw` against what the contract says `f` carries and return it as an `EventValue`."""
    if f == "cas" and event_type == "invoke":
        if not (isinstance(raw, list) and len(raw) == 2 and all(_is_scalar(v) for v in raw)):
            raise HistoryError(
                f"a cas invoke must carry [expected, new] with scalar values, got {raw!r}", line=line, source=source
            )
        return (cast(Scalar, raw[0]), cast(Scalar, raw[1]))
    if isinstance(raw, list):
        # Completions of a cas may echo [expected, new]; anything else must be a scalar.
        if f == "cas" and len(raw) == 2 and all(_is_scalar(v) for v in raw):
            return (cast(Scalar, raw[0]), cast(Scalar, raw[1]))
        raise HistoryError(f"{f} {event_type} carries a list {raw!r}; values must be JSON scalars",
                           line=line, source=source)
    if not _is_scalar(raw):
        raise HistoryError(f"{f} {event_type} carries {raw!r}; values must be JSON scalars", line=line, source=source)
    return cast(Scalar, raw)


def parse_event(obj: object, *, line: int | None = None, source: str | None = None) -> Event:
    """Turn one decoded JSON object into an `Event`; raises `HistoryError` naming `line` if it is malformed."""
    if not isinstance(obj, dict):
        raise HistoryError(f"expected a JSON object, got {type(obj).__name__}", line=line, source=source)
    missing = [name for name in _REQUIRED_FIELDS if name not in obj]
    if missing:
        raise HistoryError(f"missing field(s) {', '.join(missing)}", line=line, source=source)
    process, event_type, f, key, time_ns = obj["process"], obj["type"], obj["f"], obj["key"], obj["time"]
    if not _is_int(process):
        raise HistoryError(f"process must be an integer, got {process!r}", line=line, source=source)
    if event_type not in EVENT_TYPES:
        raise HistoryError(f"type must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}",
                           line=line, source=source)
    if f not in OP_FUNCTIONS:
        raise HistoryError(f"f must be one of {', '.join(OP_FUNCTIONS)}, got {f!r}", line=line, source=source)
    if not isinstance(key, str) or not key:
        raise HistoryError(f"key must be a non-empty string, got {key!r}", line=line, source=source)
    if not _is_int(time_ns):
        raise HistoryError(f"time must be integer nanoseconds, got {time_ns!r}", line=line, source=source)
    value = _parse_value(obj["value"], event_type, f, line, source)
    extra = {name: v for name, v in obj.items() if name not in _REQUIRED_FIELDS}
    return Event(
        process=process,
        type=event_type,
        f=f,
        key=key,
        value=value,
        time_ns=time_ns,
        extra=extra,
        line=line,
    )


def parse_history(lines: Iterable[str], *, source: str | None = None) -> list[Event]:
    """Parse JSON lines into events (blank lines are skipped but still counted for line numbers).

    Raises `HistoryError` naming the first malformed line. Pairing is checked by `pair_operations`.
    """
    events: list[Event] = []
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise HistoryError(f"not valid JSON: {err.msg} (column {err.colno})", line=line_no, source=source) from err
        events.append(parse_event(obj, line=line_no, source=source))
    return events


def load_history(path: str | Path) -> list[Event]:
    """Read a JSON-lines history file; raises `HistoryError` (malformed) or `OSError` (unreadable)."""
    path = Path(path)
    with path.open(encoding="utf-8") as stream:
        return parse_history(stream, source=str(path))


def event_to_json(event: Event) -> str:
    """One event as a JSON line (without the newline), contract fields first, then the extra ones."""
    value: object = list(event.value) if isinstance(event.value, tuple) else event.value
    obj: dict[str, object] = {
        "process": event.process,
        "type": event.type,
        "f": event.f,
        "key": event.key,
        "value": value,
        "time": event.time_ns,
    }
    for name, extra_value in event.extra.items():
        obj.setdefault(name, extra_value)
    return json.dumps(obj, separators=(", ", ": "))


def dump_history(events: Iterable[Event], path: str | Path) -> None:
    """Write events as a JSON-lines history file (overwriting it)."""
    with Path(path).open("w", encoding="utf-8") as stream:
        for event in events:
            stream.write(event_to_json(event))
            stream.write("\n")


# ---------------------------------------------------------------------------------------------------------
# Pairing


def pair_operations(events: Sequence[Event], *, source: str | None = None) -> list[Operation]:
    """Pair each invoke with its process's next completion, in invoke order.

    Invokes still open at the end become "info" operations with no completion. Raises `HistoryError`
    (naming the line) for: an invoke while the same process has an operation open, a completion with no
    open invoke, a completion whose f or key differs from its invoke, a completion earlier than its invoke,
    and a process used again after an "info".
    """
    open_invokes: dict[int, tuple[int, Event, int | None]] = {}  # process -> (op index, invoke, line)
    retired_at_line: dict[int, int | None] = {}  # process -> line of its "info"
    slots: list[Operation | None] = []
    invokes: list[tuple[Event, int | None]] = []
    for position, event in enumerate(events, start=1):
        line = event.line if event.line is not None else position
        process = event.process
        if process in retired_at_line:
            raise HistoryError(
                f"process {process} is used again after its 'info' at line {retired_at_line[process]}; "
                "a process with an indeterminate operation must not be reused",
                line=line,
                source=source,
            )
        if event.type == "invoke":
            if process in open_invokes:
                _, _, open_line = open_invokes[process]
                raise HistoryError(
                    f"process {process} invokes {event.f} while its invoke at line {open_line} is still open",
                    line=line,
                    source=source,
                )
            open_invokes[process] = (len(slots), event, line)
            slots.append(None)
            invokes.append((event, line))
            continue
        if process not in open_invokes:
            raise HistoryError(f"'{event.type}' from process {process} with no open invoke", line=line, source=source)
        index, invoke, invoke_line = open_invokes.pop(process)
        if event.f != invoke.f or event.key != invoke.key:
            raise HistoryError(
                f"'{event.type}' {event.f} {event.key!r} does not match process {process}'s invoke at line "
                f"{invoke_line} ({invoke.f} {invoke.key!r})",
                line=line,
                source=source,
            )
        if event.time_ns < invoke.time_ns:
            raise HistoryError(
                f"completion at time {event.time_ns} is earlier than its invoke at line {invoke_line} "
                f"(time {invoke.time_ns})",
                line=line,
                source=source,
            )
        if event.type == "info":
            retired_at_line[process] = line
        slots[index] = Operation(
            index=index,
            process=process,
            f=invoke.f,
            key=invoke.key,
            value=invoke.value,
            result=event.value,
            status=event.type,
            invoke_time_ns=invoke.time_ns,
            complete_time_ns=event.time_ns,
            invoke_line=invoke_line,
            complete_line=line,
        )
    operations: list[Operation] = []
    for index, slot in enumerate(slots):
        if slot is None:
            invoke, invoke_line = invokes[index]
            slot = Operation(
                index=index,
                process=invoke.process,
                f=invoke.f,
                key=invoke.key,
                value=invoke.value,
                result=None,
                status="info",
                invoke_time_ns=invoke.time_ns,
                complete_time_ns=None,
                invoke_line=invoke_line,
                complete_line=None,
            )
        operations.append(slot)
    return operations


# ---------------------------------------------------------------------------------------------------------
# Simulation of a correct register, for tests and benchmarks


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """How `simulate_register_history` shapes a history."""

    operation_count: int = 1000
    key_count: int = 10
    concurrency: int = 10  # processes running at once
    info_rate: float = 0.02  # share of operations whose outcome the client never learns
    injected_fail_rate: float = 0.02  # share refused outright (e.g. "not leader"), besides precondition fails
    duration_ns_min: int = 1_000
    duration_ns_max: int = 200_000
    think_time_ns_max: int = 50_000  # pause between a process's operations
    key_prefix: str = "default/k"
    # Weights of read, write, create, cas, delete.
    f_weights: tuple[float, float, float, float, float] = (0.4, 0.2, 0.1, 0.2, 0.1)


_SIM_FUNCTIONS: tuple[OpFunction, ...] = ("read", "write", "create", "cas", "delete")


@dataclass(slots=True)
class _SimulatedOp:
    process: int
    f: OpFunction
    key: str
    invoke_time_ns: int
    effect_time_ns: int  # the linearization point, between invoke and completion
    complete_time_ns: int
    fate: Literal["normal", "info_applied", "info_dropped", "info_silent", "refused"]
    value: EventValue = None
    result: EventValue = None
    status: OpStatus = "ok"


def simulate_register_history(rng: random.Random, settings: SimulationSettings | None = None) -> list[Event]:
    """A history of clients using one linearizable register per key, so the checker must call it valid.

    Timings come first (each of `concurrency` slots runs operations back to back, with random durations
    and pauses); then each operation takes effect at a random instant inside its interval, in instant
    order, against an exact register. Preconditions that do not hold give `fail`; some operations are
    refused (`fail`, no effect) and some end `info` (applied or not, with or without a completion
    event); a slot whose process got an `info` continues under a new process id.
    """
    settings = settings or SimulationSettings()
    keys = [f"{settings.key_prefix}{i}" for i in range(settings.key_count)]
    slot_free_ns = [rng.randrange(0, settings.duration_ns_max) for _ in range(settings.concurrency)]
    slot_process = list(range(settings.concurrency))
    next_process = settings.concurrency
    ops: list[_SimulatedOp] = []
    for _ in range(settings.operation_count):
        slot = min(range(settings.concurrency), key=slot_free_ns.__getitem__)
        invoke_ns = slot_free_ns[slot]
        complete_ns = invoke_ns + rng.randint(settings.duration_ns_min, settings.duration_ns_max)
        roll = rng.random()
        fate: Literal["normal", "info_applied", "info_dropped", "info_silent", "refused"] = "normal"
        if roll < settings.info_rate:
            fate = rng.choice(("info_applied", "info_dropped", "info_silent"))
        elif roll < settings.info_rate + settings.injected_fail_rate:
            fate = "refused"
        ops.append(
            _SimulatedOp(
                process=slot_process[slot],
                f=rng.choices(_SIM_FUNCTIONS, weights=settings.f_weights)[0],
                key=rng.choice(keys),
                invoke_time_ns=invoke_ns,
                effect_time_ns=rng.randint(invoke_ns, complete_ns),
                complete_time_ns=complete_ns,
                fate=fate,
            )
        )
        slot_free_ns[slot] = complete_ns + 1 + rng.randint(0, settings.think_time_ns_max)
        if fate.startswith("info"):
            slot_process[slot] = next_process
            next_process += 1

    absent = object()
    registers: dict[str, object] = {key: absent for key in keys}
    written: dict[str, list[Scalar]] = {key: [] for key in keys}
    value_counter = 0
    for op in sorted(ops, key=lambda o: o.effect_time_ns):
        state = registers[op.key]
        if op.fate == "info_silent":
            takes_effect = rng.random() < 0.5
        else:
            takes_effect = op.fate in ("normal", "info_applied")
        if op.f in ("write", "create"):
            value_counter += 1
            op.value = f"v{value_counter}"
        elif op.f == "cas":
            value_counter += 1
            if state is not absent and rng.random() < 0.75:
                expected = cast(Scalar, state)
            elif written[op.key]:
                expected = rng.choice(written[op.key])
            else:
                expected = "never"
            op.value = (expected, f"v{value_counter}")
        if op.fate == "refused":
            op.status = "fail"
        elif op.fate != "normal":
            op.status = "info"
        if op.f == "read":
            op.result = None if state is absent else cast(Scalar, state)
            continue
        if op.f == "create":
            precondition = state is absent
            new_state: object = op.value
        elif op.f == "delete":
            precondition = state is not absent
            new_state = absent
        elif op.f == "cas":
            assert isinstance(op.value, tuple)
            precondition = state is not absent and state == op.value[0]
            new_state = op.value[1]
        else:  # write
            precondition = True
            new_state = op.value
        if not precondition and op.status == "ok":
            op.status = "fail"
        if precondition and takes_effect:
            registers[op.key] = new_state
            if new_state is not absent:
                written[op.key].append(cast(Scalar, new_state))
        op.result = op.value if op.f != "delete" else None

    timed: list[tuple[int, int, int, Event]] = []
    for index, op in enumerate(ops):
        invoke_value: EventValue = None if op.f == "read" else op.value
        timed.append((op.invoke_time_ns, 0, index, Event(op.process, "invoke", op.f, op.key, invoke_value,
                                                         op.invoke_time_ns)))
        if op.fate == "info_silent":
            continue  # the client never reported back
        extra: dict[str, object] = {"node": f"m{rng.randint(1, 3)}"}
        if op.status == "fail":
            extra["error"] = "refused" if op.fate == "refused" else "precondition failed"
        elif op.status == "info":
            extra["error"] = "timeout"
        result = op.result if op.status != "info" or op.f != "read" else None
        timed.append((op.complete_time_ns, 1, index, Event(op.process, op.status, op.f, op.key, result,
                                                           op.complete_time_ns, extra)))
    timed.sort(key=lambda item: item[:3])
    return [event for _, _, _, event in timed]
