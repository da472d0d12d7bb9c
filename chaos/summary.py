"""What a chaos run measured, computed from its records alone (history, fault log, Raft samples).

Pure functions, called by the runner to write `summary.json` and by the quorum experiment; they never look
at live state. Times in the summary are seconds relative to the start of the workload.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from hacluster.consistency.history import Event, pair_operations
from hacluster.consistency.invariants import last_write_violations

MUTATIONS = ("create", "write", "cas", "delete")


def paired_ops(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Pair invokes with completions (process-ordered), skipping the final verification reads."""
    open_: dict[int, Event] = {}
    ops: list[dict[str, Any]] = []
    for ev in events:
        if ev.extra.get("final"):
            continue
        if ev.type == "invoke":
            open_[ev.process] = ev
        else:
            inv = open_.pop(ev.process, None)
            if inv is None:
                continue
            ops.append({"f": inv.f, "key": inv.key, "value": inv.value, "start": inv.time_ns, "end": ev.time_ns,
                        "type": ev.type, "result": ev.value, "node": inv.extra.get("node"),
                        "answered": ev.type == "ok" or _refused_by_state(ev)})
    for inv in open_.values():
        ops.append({"f": inv.f, "key": inv.key, "value": inv.value, "start": inv.time_ns, "end": None,
                    "type": "info", "result": None, "node": inv.extra.get("node"), "answered": False})
    ops.sort(key=lambda o: o["start"])
    return ops


def _refused_by_state(ev: Event) -> bool:
    """A definite refusal decided by the replicated state (404, 409, 422: the key was absent, present, or
    held another value) — the control plane was available and answered; unlike 503 or a refused connection."""
    err = str(ev.extra.get("error", ""))
    return ev.type == "fail" and err[:3] in ("400", "404", "409", "422")


def count_ops(events: Sequence[Event]) -> dict[str, int]:
    c = {"ok": 0, "fail": 0, "info": 0}
    for o in paired_ops(events):
        c[o["type"]] += 1
    return c


def lost_acknowledged_writes(events: Sequence[Event], final_values: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Acknowledged mutations missing from the final state, by the invariant checker's rule
    (`hacluster.consistency.invariants.last_write_violations`, one rule for both figures): on keys whose
    mutations all have a known outcome, the last acknowledged one must be what every master holds at the end.
    The final verification reads are not part of the judged history."""
    operations = pair_operations([ev for ev in events if not ev.extra.get("final")])
    violations, _ = last_write_violations(operations, final_values)
    return [dict(v.details) for v in violations]


def raft_metrics(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Leader changes, elections, highest term and split-brain evidence from the sampled Raft status."""
    leaders_by_term: dict[int, set[str]] = defaultdict(set)
    sequence: list[tuple[int, str]] = []
    terms: set[int] = set()
    for s in samples:
        term = s.get("term")
        if term is None:
            continue
        terms.add(term)
        if s.get("role") == "leader":
            leaders_by_term[term].add(s["master"])
            pair = (term, s["master"])
            if not sequence or sequence[-1] != pair:
                if pair not in sequence:
                    sequence.append(pair)
    max_term = max(terms) if terms else 0
    min_term = min(terms) if terms else 0
    return {
        "leader_changes": max(0, len(sequence) - 1),
        "elections": max(0, max_term - min_term),
        "max_term": max_term,
        "leaders": [{"term": t, "leader": m} for t, m in sequence],
        "terms_with_two_leaders": sorted(t for t, ls in leaders_by_term.items() if len(ls) > 1),
    }


def _writes(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in ops if o["f"] in MUTATIONS]


def availability(ops: list[dict[str, Any]], start_ns: int, end_ns: int) -> float | None:
    """Share of mutations invoked in [start, end) that the control plane answered: acknowledged, or refused
    by the state itself (AlreadyExists, NotFound, a failed compare-and-set) — not 503, 504, timeouts."""
    ws = [o for o in _writes(ops) if start_ns <= o["start"] < end_ns]
    if not ws:
        return None
    return sum(1 for o in ws if o["answered"]) / len(ws)


def first_ok_after(ops: list[dict[str, Any]], t_ns: int) -> float | None:
    """Seconds from t to the first answer to a mutation invoked at or after t."""
    ends = [o["end"] for o in _writes(ops) if o["answered"] and o["start"] >= t_ns and o["end"] is not None]
    return (min(ends) - t_ns) / 1e9 if ends else None


def longest_unavailability(ops: list[dict[str, Any]], start_ns: int, end_ns: int) -> float:
    """Longest time without an answered mutation (counting from the start and to the end of the run)."""
    oks = sorted(o["end"] for o in _writes(ops) if o["answered"] and o["end"] is not None)
    points = [start_ns] + [t for t in oks if start_ns <= t <= end_ns] + [end_ns]
    return max((b - a) for a, b in zip(points, points[1:], strict=False)) / 1e9 if len(points) > 1 else 0.0


def summarize(events: Sequence[Event], faults: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]],
              final_values: dict[str, dict[str, Any]], t0_ns: int, t_end_ns: int) -> dict[str, Any]:
    ops = paired_ops(events)
    per_fault = []
    starts = {r["fault"]: r for r in faults if r["event"] == "start"}
    ends = {r["fault"]: r for r in faults if r["event"] == "end"}
    for idx, s in sorted(starts.items()):
        e = ends.get(idx)
        end_ns = e["time"] if e else t_end_ns
        after_end = min(t_end_ns, end_ns + (end_ns - s["time"]))
        per_fault.append({
            "fault": idx, "kind": s["kind"], "targets": s["targets"], "partition": s.get("partition"),
            "start_s": round((s["time"] - t0_ns) / 1e9, 3), "end_s": round((end_ns - t0_ns) / 1e9, 3),
            "availability_during": availability(ops, s["time"], end_ns),
            "availability_after": availability(ops, end_ns, after_end),
            "recovery_after_start_s": first_ok_after(ops, s["time"]),
            "recovery_after_heal_s": first_ok_after(ops, end_ns),
            "longest_unavailability_s": round(longest_unavailability(ops, s["time"], end_ns), 3),
        })
    lost = lost_acknowledged_writes(events, final_values)
    raft = raft_metrics(samples)
    finals = list(final_values.values())
    converged = all(v == finals[0] for v in finals) if finals else None
    return {
        "ops": count_ops(events),
        "ops_by_f": _by_f(ops),
        "availability": availability(ops, t0_ns, t_end_ns),
        "longest_unavailability_s": round(longest_unavailability(ops, t0_ns, t_end_ns), 3),
        "lost_acknowledged_writes": len(lost),
        "lost_writes": lost[:20],
        "leader_changes": raft["leader_changes"],
        "elections": raft["elections"],
        "max_term": raft["max_term"],
        "terms_with_two_leaders": raft["terms_with_two_leaders"],
        "leaders": raft["leaders"],
        "final_state_identical_on_all_masters": converged,
        "faults": per_fault,
        "duration_s": round((t_end_ns - t0_ns) / 1e9, 3),
    }


def _by_f(ops: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"ok": 0, "fail": 0, "info": 0})
    for o in ops:
        out[o["f"]][o["type"]] += 1
    return dict(out)
