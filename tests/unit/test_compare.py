"""`hacluster experiment compare`'s report: the figures of each run's summary, engines side by side."""

from chaos.compare import cell, markdown, table_rows


def summary(ok: int, lost: int) -> dict:
    return {"ops": {"ok": ok, "fail": 2, "info": 1}, "availability": 0.5, "longest_unavailability_s": 1.25,
            "faults": [{"recovery_after_start_s": 1.0}, {"recovery_after_start_s": 3.0}],
            "lost_acknowledged_writes": lost, "terms_with_two_leaders": [],
            "final_state_identical_on_all_masters": True,
            "checker": {"linearizable": "valid", "invariants": {"verdict": "ok"}}}


def test_cells_side_by_side():
    results = {"scenarios": ["leader-isolation"], "engines": ["pysyncobj", "etcd"], "elapsed_s": 1.0,
               "cells": [{"scenario": "leader-isolation", "engine": "pysyncobj", **cell(summary(10, 0))},
                         {"scenario": "leader-isolation", "engine": "etcd", **cell(summary(20, 0))}]}
    rows = dict((r[0], r[1:]) for r in table_rows(results, "leader-isolation"))
    assert rows["ops ok / fail / info"] == ("10 / 2 / 1", "20 / 2 / 1")
    assert rows["writes back after a fault starts (median)"] == ("2.00 s", "2.00 s")
    assert rows["linearizable / invariants"] == ("valid / ok", "valid / ok")
    assert "| acknowledged writes lost | 0 | 0 |" in markdown(results)
