"""Consistency checking of recorded histories: the history format, the linearizability checker and its
explanations. See `history`, `linearizability` and `explain`; the CLI calls `run_check`."""

from hacluster.consistency.explain import run_check, write_explanation
from hacluster.consistency.history import Event, HistoryError, Operation, dump_history, load_history, pair_operations
from hacluster.consistency.linearizability import (
    CheckResult,
    KeyResult,
    UnknownModelError,
    Violation,
    check_file,
    check_history,
    check_operations,
)

__all__ = [
    "CheckResult",
    "Event",
    "HistoryError",
    "KeyResult",
    "Operation",
    "UnknownModelError",
    "Violation",
    "check_file",
    "check_history",
    "check_operations",
    "dump_history",
    "load_history",
    "pair_operations",
    "run_check",
    "write_explanation",
]
