"""The pure helpers behind `hacluster bench api --out` (the benchmark itself runs real masters and asserts
nothing): CPU differences and the Raft timing counters differenced over the load levels."""

from __future__ import annotations

import os

from hacluster.cli import bench_api


def test_cpu_used_is_none_when_a_master_was_gone_or_restarted() -> None:
    assert bench_api._used(1.5, 4.0) == 2.5
    assert bench_api._used(None, 4.0) is None
    assert bench_api._used(1.5, None) is None
    assert bench_api._used(9.0, 0.5) is None  # a restarted master's counter starts again


def test_cpu_of_this_process_is_read_from_proc() -> None:
    used = bench_api._cpu_s(os.getpid())
    assert used is not None and used >= 0
    assert bench_api._cpu_s(None) is None


def test_raft_timing_counters_are_differenced_over_the_load_levels() -> None:
    before = {"pre_votes_started": 2, "leader_contact_gaps_over_ms": {"100": 5, "300": 1}, "tick_gap_max_s": 0.2}
    after = {"pre_votes_started": 3, "leader_contact_gaps_over_ms": {"100": 9, "300": 1}, "tick_gap_max_s": 0.3}
    assert bench_api._gap_delta(before, after) == {"pre_votes_started": 1,
                                                   "leader_contact_gaps_over_ms": {"100": 4, "300": 0}}
    assert bench_api._gap_delta({}, {"pre_votes_started": 3}) == {}  # no reading before: nothing to difference


def test_a_level_without_any_answer_writes_null_latencies() -> None:
    from rich.table import Table

    levels: list[dict[str, object]] = []
    bench_api._add_level(Table(), levels, "create pod, stored", 1, "spread",
                         {"rate": 0.0, "p50": float("nan"), "p99": float("nan"), "codes": {"503": 4}})
    assert levels == [{"operation": "create pod, stored", "clients": 1, "target": "spread", "ops_per_s": 0.0,
                       "p50_ms": None, "p99_ms": None, "answers": {"503": 4}}]
