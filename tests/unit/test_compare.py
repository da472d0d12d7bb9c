"""`hacluster experiment compare`'s report: the quorum cells of both engines side by side."""

import json

from chaos.compare import conclusions, html_report, markdown, seen_during_fault, table
from chaos.quorum import answers_during


def cell(engine: str, fault: str, recovery: float | None, seen: dict) -> dict:
    return {"engine": engine, "masters": 3, "fault": fault, "availability_during": 0.5,
            "recovery_after_start_s": recovery, "elections": 1, "latency_p50_ms": 4.0, "latency_p99_ms": 1500.0,
            "lost_acknowledged_writes": 0, "linearizable": "valid", "two_leaders_in_one_term": False,
            "writes_during_fault": seen}


def seen(ok: int, refused: int, unknown: int) -> dict:
    return {"ok": ok, "answered_4xx": 0, "refused_503": refused, "no_connection": 0, "unknown": unknown, "other": 0,
            "refused_503_p50_ms": 2.0 if refused else None, "unknown_p50_ms": 1500.0 if unknown else None}


RESULTS = {"engines": ["pysyncobj", "etcd"], "masters": [3], "faults": ["kill-leader", "kill-two"],
           "elapsed_s": 10.0, "timing": {"fault_s": 2.5},
           "cells": [cell("pysyncobj", "kill-leader", 0.5, seen(100, 5, 0)),
                     cell("etcd", "kill-leader", 1.2, seen(80, 0, 4)),
                     cell("pysyncobj", "kill-two", None, seen(0, 300, 0)),
                     cell("etcd", "kill-two", None, seen(0, 0, 12))]}


def test_cells_side_by_side():
    rows = {r[0]: r[1:] for r in table(RESULTS, 3, "kill-two")}
    assert rows["what clients saw during the fault (median wait)"] == ["ok 0, 503 ×300 (2 ms)",
                                                                       "ok 0, unknown ×12 (1.50 s)"]
    assert rows["write latency p50 / p99 before the fault"] == ["4 ms / 1.50 s", "4 ms / 1.50 s"]
    assert "| acknowledged writes lost | 0 | 0 |" in markdown(RESULTS)
    assert "<th>etcd</th>" in html_report(RESULTS)


def test_conclusions_come_from_the_numbers():
    text = " ".join(conclusions(RESULTS))
    assert "none on either engine" in text
    assert "0.50 s on pysyncobj and 1.20 s on etcd" in text
    assert "pysyncobj: ok 0, 503 ×300 (2 ms); etcd: ok 0, unknown ×12 (1.50 s)" in text
    lost = {**RESULTS, "cells": [{**RESULTS["cells"][0], "lost_acknowledged_writes": 2}, *RESULTS["cells"][1:]]}
    assert "a bug" in " ".join(conclusions(lost))
    assert seen_during_fault({"writes_during_fault": None}) == "–"


def test_answers_during_a_fault_are_counted_from_the_history(tmp_path):
    ms = 1_000_000
    events = [  # (type, process, f, time, error)
        ("invoke", 1, "write", 0, None), ("ok", 1, "write", 3 * ms, None),            # before the fault
        ("invoke", 2, "write", 10 * ms, None), ("fail", 2, "write", 12 * ms, "503 Unavailable"),
        ("invoke", 3, "cas", 11 * ms, None), ("info", 3, "cas", 1511 * ms, "504 Timeout"),
        ("invoke", 4, "read", 12 * ms, None), ("fail", 4, "read", 13 * ms, "503 Unavailable"),  # not a write
        ("invoke", 5, "create", 13 * ms, None), ("ok", 5, "create", 20 * ms, None),
        ("invoke", 6, "delete", 14 * ms, None), ("fail", 6, "delete", 15 * ms, "404 NotFound"),
        ("invoke", 7, "write", 15 * ms, None), ("fail", 7, "write", 16 * ms, "connect: refused"),
        ("invoke", 8, "write", 16 * ms, None), ("fail", 8, "write", 17 * ms, "500 InternalError"),
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({"type": t, "process": p, "f": f, "time": at,
                                           **({"error": e} if e else {})}) + "\n" for t, p, f, at, e in events))
    got = answers_during(history, 10 * ms, 100 * ms)
    assert got == {"ok": 1, "answered_4xx": 1, "refused_503": 1, "no_connection": 1, "unknown": 1, "other": 1,
                   "refused_503_p50_ms": 2.0, "unknown_p50_ms": 1500.0}
