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


def test_cpu_per_operation_is_split_by_thread_and_role() -> None:
    before = {"m1": {"raft": 1.0, "loop": 2.0, "other": 0.5}, "m2": {"raft": 1.0, "loop": 1.0, "other": 0.0},
              "m3": None}
    after = {"m1": {"raft": 1.5, "loop": 2.2, "other": 0.49}, "m2": {"raft": 0.1, "loop": 0.1, "other": 0.0},
             "m3": {"raft": 1.0, "loop": 1.0, "other": 0.0}}
    out = bench_api.cpu_ms_per_op(before, after, 1000, {"m1": "leader", "m2": "follower"})
    # m2 restarted (its counters went down) and m3 was not there before: both left out; `other` never < 0
    assert out == {"m1": {"role": "leader", "raft": 0.5, "loop": 0.2, "other": 0.0, "total": 0.7}}
    assert bench_api.cpu_ms_per_op(before, after, 0, {}) == {}


def test_thread_cpu_of_this_process_adds_up() -> None:
    threads = bench_api.thread_cpu_s(os.getpid())
    total = bench_api._cpu_s(os.getpid())
    assert threads is not None and total is not None
    assert set(threads) == set(bench_api.THREAD_ROLES) and threads["raft"] == 0.0
    assert abs(sum(threads.values()) - total) < 0.05


def test_fsync_percentiles_are_bucket_bounds() -> None:
    buckets = {0.001: 50.0, 0.004: 90.0, 0.016: 99.0, 0.064: 100.0, float("inf"): 100.0}
    assert bench_api.fsync_percentiles(buckets) == {"count": 100, "p50_le_ms": 1.0, "p90_le_ms": 4.0,
                                                    "p99_le_ms": 16.0}
    assert bench_api.fsync_percentiles({0.008: 1.0, float("inf"): 2.0})["p99_le_ms"] is None
    assert bench_api.fsync_percentiles({}) is None


def test_scheduled_over_stored_pairs_spread_levels_by_clients() -> None:
    levels = [{"operation": "create pod, stored", "clients": 16, "target": "spread", "ops_per_s": 400.0},
              {"operation": "create pod, stored", "clients": 16, "target": "leader", "ops_per_s": 900.0},
              {"operation": "create pod, scheduled", "clients": 16, "target": "spread", "ops_per_s": 300.0},
              {"operation": "create pod, stored", "clients": 64, "target": "spread", "ops_per_s": 500.0}]
    assert bench_api.scheduled_vs_stored(levels) == {16: 0.75}
