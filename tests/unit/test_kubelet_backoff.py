"""Back-off timing of the kubelet (hacluster.kubelet.backoff) on a fake clock: the CrashLoopBackOff and
ImagePullBackOff shapes — first restart at once, then 10 s doubling to a 300 s cap, reset after 10 minutes
of running — and the same shape at any time scale."""

from __future__ import annotations

import pytest

from hacluster.format.durations import go_duration
from hacluster.kubelet.backoff import BackOff


def restart_delays(b: BackOff, crashes: int, run_s: float) -> list[float]:
    """Simulate the kubelet's restart loop on a fake clock: a container runs `run_s`, crashes, and is
    restarted at the first instant `in_backoff_since(finishedAt)` allows; return the waits between each
    crash and its restart."""
    now, waits, key = 0.0, [], "uid/c"
    for _ in range(crashes):
        now += run_s
        finished = now
        wait = b.get(key) if b.in_backoff_since(key, finished, now) else 0.0
        if wait:
            assert b.in_backoff_since(key, finished, finished + wait * 0.999)
            assert not b.in_backoff_since(key, finished, finished + wait)
        now = finished + wait
        waits.append(round(wait, 9))
        b.next(key, now, finished)
    return waits


def test_crash_loop_shape_10s_doubling_to_300s() -> None:
    waits = restart_delays(BackOff(10.0, 300.0), crashes=9, run_s=1.0)
    assert waits == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.01, 0.001])
def test_time_scale_keeps_the_shape(scale: float) -> None:
    b = BackOff(10.0 * scale, 300.0 * scale, time_scale=scale)
    waits = restart_delays(b, crashes=9, run_s=1.0 * scale)
    assert [round(w / scale, 3) for w in waits] == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]
    assert go_duration(b.nominal_s(b.get("uid/c"))) == "5m0s"


def test_reset_after_ten_minutes_of_running() -> None:
    b = BackOff(10.0, 300.0)
    assert restart_delays(b, crashes=4, run_s=1.0)[-1] == 40.0
    # a container that ran longer than 2 × 300 s starts over at 10 s (restarted at once, then 10 s)
    key, start = "uid/c", 10_000.0
    finished = start + 601.0
    assert not b.in_backoff_since(key, finished, finished)
    b.next(key, finished, finished)
    assert b.get(key) == 10.0


def test_no_reset_before_ten_minutes() -> None:
    b = BackOff(10.0, 300.0)
    restart_delays(b, crashes=4, run_s=1.0)  # restarted after 0, 10, 20, 40 s: the next wait is 80 s
    key = "uid/c"
    last = b._entries[key].last_update
    finished = last + 599.0
    assert b.in_backoff_since(key, finished, finished + 1)
    assert b.get(key) == 80.0
    b.next(key, finished + 80, finished)
    assert b.get(key) == 160.0


def test_image_pull_backoff_counts_from_the_failure() -> None:
    b = BackOff(10.0, 300.0)
    key = "uid/nginx:nope"
    assert not b.in_backoff_since_update(key, 0.0)
    assert b.next(key, 0.0) == 10.0          # ErrImagePull at t=0
    assert b.in_backoff_since_update(key, 9.9)  # ImagePullBackOff until t=10
    assert not b.in_backoff_since_update(key, 10.0)
    assert b.next(key, 10.5) == 20.0
    assert b.ends_at_since_update(key) == 30.5
    for _ in range(10):
        b.next(key, 11.0)
    assert b.get(key) == 300.0


def test_entries_are_bounded_and_forgotten() -> None:
    b = BackOff(1.0, 10.0, max_entries=3)
    for i in range(5):
        b.next(f"pod{i}/c", 0.0)
    assert len(b) == 3
    b.forget_prefix("pod4/")
    assert len(b) == 2
    b.gc(1000.0)
    assert len(b) == 0


@pytest.mark.parametrize(("seconds", "text"), [(10, "10s"), (20, "20s"), (80, "1m20s"), (160, "2m40s"),
                                                (300, "5m0s"), (3600, "1h0m0s"), (0.25, "250ms")])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
