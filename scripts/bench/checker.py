"""Benchmark of the linearizability checker (hacluster.consistency.linearizability).

Simulates a correct register per key (random overlapping operations from `--concurrency` clients, with
some `info` and `fail` outcomes), checks the history and prints wall time and operations per second; then
plants one stale read in a copy, checks that too and prints the explanation. Deterministic by `--seed`.
Exits 1 if the valid history is not judged valid or the planted violation is missed.

    scripts/bench-checker [--seed 1] [--operations 10000] [--keys 100] [--concurrency 10]
                                           [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project root, for a run without install

from hacluster.consistency.explain import format_result, write_explanation  # noqa: E402
from hacluster.consistency.history import (  # noqa: E402
    Event,
    Operation,
    SimulationSettings,
    dump_history,
    load_history,
    pair_operations,
    simulate_register_history,
)
from hacluster.consistency.linearizability import CheckResult, check_operations  # noqa: E402


def _new_value(op: Operation) -> object:
    if op.f in ("write", "create"):
        return op.value
    if op.f == "cas" and isinstance(op.value, tuple):
        return op.value[1]
    return None


def plant_stale_read(events: list[Event], rng: random.Random) -> tuple[list[Event], str]:
    """A copy of `events` where one ok read returns a value overwritten before the read began.

    Picks a read R and two acknowledged changes W1 then W2 of R's key, W1 completed before W2 began and
    W2 completed before R began, and makes R return W1's value (if W1's value is never written again).
    Falls back to a read of a value nobody wrote. Returns the events and a description of the change.
    """
    ops = pair_operations(events)
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    rng.shuffle(reads)
    chosen: tuple[Operation, object] | None = None
    for read in reads:
        acked = [
            op for op in by_key[read.key]
            if op.status == "ok" and op.f in ("write", "create", "cas") and op.complete_time_ns is not None
            and op.complete_time_ns < read.invoke_time_ns
        ]
        for newer in reversed(acked):
            older = [op for op in acked if op.complete_time_ns is not None
                     and op.complete_time_ns < newer.invoke_time_ns and _new_value(op) != _new_value(newer)]
            if older:
                stale = _new_value(older[-1])
                if sum(1 for op in by_key[read.key] if op.status != "fail" and _new_value(op) == stale) == 1:
                    chosen = (read, stale)
                break
        if chosen:
            break
    if chosen is None:
        read, stale = reads[0], "never-written"
    else:
        read, stale = chosen
    # pair_operations numbers events by position when they were not loaded from a file
    planted = [
        dataclasses.replace(event, value=stale)  # type: ignore[arg-type]
        if (event.line if event.line is not None else position) == read.complete_line
        else event
        for position, event in enumerate(events, start=1)
    ]
    return planted, f"p{read.process} read of {read.key} (history line {read.complete_line}) now returns {stale!r}"


def timed_check(events: list[Event], time_limit_s: float) -> tuple[CheckResult, float]:
    ops = pair_operations(events)
    started = time.perf_counter()
    result = check_operations(ops, time_limit_s=time_limit_s)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-checker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--time-limit-s", type=float, default=60.0, help="per-key search budget")
    parser.add_argument("--out", type=Path, help="write both histories and the explanation here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    settings = SimulationSettings(
        operation_count=args.operations,
        key_count=args.keys,
        concurrency=args.concurrency,
        info_rate=0.02,
        injected_fail_rate=0.03,
    )
    started = time.perf_counter()
    events = simulate_register_history(rng, settings)
    generated_s = time.perf_counter() - started

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-checker-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    valid_path = out_dir / "valid.jsonl"
    dump_history(events, valid_path)
    started = time.perf_counter()
    events = load_history(valid_path)  # so events carry line numbers, as from a real run
    loaded_s = time.perf_counter() - started

    ops = pair_operations(events)
    statuses = {status: sum(1 for op in ops if op.status == status) for status in ("ok", "fail", "info")}
    print(
        f"history: {len(ops)} operations ({statuses['ok']} ok, {statuses['fail']} fail, {statuses['info']} info) "
        f"on {args.keys} keys, concurrency {args.concurrency}, seed {args.seed}; "
        f"generated in {generated_s:.2f} s, loaded in {loaded_s:.2f} s"
    )

    valid_result, valid_s = timed_check(events, args.time_limit_s)
    print(f"valid history:   verdict {valid_result.verdict:<8} {valid_s:7.3f} s  {len(ops) / valid_s:12,.0f} ops/s")

    planted, change = plant_stale_read(events, random.Random(args.seed))
    dump_history(planted, out_dir / "invalid.jsonl")
    invalid_result, invalid_s = timed_check(planted, args.time_limit_s)
    print(
        f"invalid history: verdict {invalid_result.verdict:<8} {invalid_s:7.3f} s  "
        f"{len(ops) / invalid_s:12,.0f} ops/s  (includes finding and explaining the violation)"
    )
    print(f"planted: {change}")
    print()
    print(format_result(invalid_result, source=str(out_dir / "invalid.jsonl")))
    if args.out:
        written = write_explanation(invalid_result, planted, args.out)
        print("\nexplanation written to " + ", ".join(str(p) for p in written))
    ok = valid_result.verdict == "valid" and invalid_result.verdict == "invalid"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
