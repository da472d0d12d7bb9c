"""Unit tests of the linearizability checker and its explanations (hacluster.consistency.linearizability,
hacluster.consistency.explain), on hand-made histories, simulated ones, and against a brute-force oracle.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hacluster.consistency.explain import run_check, safe_key_name, write_explanation
from hacluster.consistency.history import (
    Event,
    EventValue,
    HistoryError,
    Operation,
    OpFunction,
    OpStatus,
    Scalar,
    SimulationSettings,
    dump_history,
    pair_operations,
    simulate_register_history,
)
from hacluster.consistency.linearizability import (
    CheckResult,
    UnknownModelError,
    check_file,
    check_history,
)

KEY = "default/web-1"


def op(
    process: int,
    f: OpFunction,
    start: int,
    end: int | None,
    value: EventValue = None,
    *,
    status: OpStatus = "ok",
    key: str = KEY,
) -> list[Event]:
    """The events of one operation; for a read `value` is what it returned. `end=None`: never completed."""
    invoke = Event(process, "invoke", f, key, None if f == "read" else value, start)
    if end is None:
        return [invoke]
    return [invoke, Event(process, status, f, key, value, end)]


def history(*ops: list[Event]) -> list[Event]:
    events = [event for events in ops for event in events]
    return sorted(events, key=lambda event: (event.time_ns, event.type != "invoke"))


def check(*ops: list[Event], **kwargs: float | None) -> CheckResult:
    return check_history(history(*ops), **kwargs)  # type: ignore[arg-type]


def reason_of(result: CheckResult) -> str:
    (violation,) = result.violations
    return violation.reason


# ---------------------------------------------------------------------------------------------------------
# Valid histories


def test_empty_history_is_valid() -> None:
    result = check_history([])
    assert result.verdict == "valid"
    assert result.keys == ()


def test_sequential_register_operations_are_valid() -> None:
    result = check(
        op(1, "read", 0, 1, None),
        op(1, "create", 2, 3, "a"),
        op(2, "read", 4, 5, "a"),
        op(2, "write", 6, 7, "b"),
        op(3, "cas", 8, 9, ("b", "c")),
        op(3, "read", 10, 11, "c"),
        op(4, "delete", 12, 13),
        op(4, "read", 14, 15, None),
        op(5, "create", 16, 17, "d"),
        op(5, "read", 18, 19, "d"),
    )
    assert result.verdict == "valid"
    (key_result,) = result.keys
    assert (key_result.key, key_result.verdict, key_result.operation_count) == (KEY, "valid", 10)


def test_null_value_is_present_and_reads_as_null() -> None:
    assert check(op(1, "write", 0, 1, None), op(2, "read", 2, 3, None), op(3, "delete", 4, 5)).verdict == "valid"
    # The key holds null, so it exists and a create must fail.
    assert check(op(1, "write", 0, 1, None), op(2, "create", 2, 3, "a")).verdict == "invalid"


def test_concurrent_operations_valid_in_only_one_order() -> None:
    # write a spans write b; the first read sees b, the last sees a: only b, read, a, read fits.
    result = check(
        op(1, "write", 0, 100, "a"),
        op(2, "write", 10, 40, "b"),
        op(3, "read", 20, 50, "b"),
        op(4, "read", 110, 120, "a"),
    )
    assert result.verdict == "valid"
    # The same, but a later read sees b again after a was read: no order fits.
    result = check(
        op(1, "write", 0, 100, "a"),
        op(2, "write", 10, 40, "b"),
        op(3, "read", 20, 50, "b"),
        op(4, "read", 110, 120, "a"),
        op(5, "read", 130, 140, "b"),
    )
    assert result.verdict == "invalid"


def test_operations_touching_at_one_instant_count_as_concurrent() -> None:
    # The read begins exactly when the write of b ends: it may still be ordered before it.
    assert check(op(1, "write", 0, 10, "a"), op(2, "write", 20, 30, "b"), op(3, "read", 30, 40, "a")).verdict == "valid"
    assert check(op(1, "write", 0, 10, "a"), op(2, "write", 20, 30, "b"), op(3, "read", 31, 40, "a")).verdict == (
        "invalid"
    )


def test_info_write_that_later_appears_is_valid() -> None:
    result = check(
        op(1, "write", 0, 10, "a"),
        op(2, "write", 20, 30, "b", status="info"),
        op(3, "read", 40, 50, "a"),
        op(4, "read", 60, 70, "b"),  # took effect after its client gave up
        op(5, "read", 80, 90, "b"),
    )
    assert result.verdict == "valid"


def test_info_write_that_never_appears_is_valid() -> None:
    result = check(
        op(1, "write", 0, 10, "a"),
        op(2, "write", 20, 30, "b", status="info"),
        op(3, "read", 40, 50, "a"),
        op(4, "read", 60, 70, "a"),
    )
    assert result.verdict == "valid"


def test_info_conditional_operations_may_fail_or_not_happen() -> None:
    result = check(
        op(1, "create", 0, 10, "a"),
        op(2, "create", 20, 30, "b", status="info"),  # AlreadyExists at its point: no effect
        op(3, "cas", 20, 30, ("zz", "c"), status="info"),  # expected value never there: no effect
        op(4, "delete", 20, 30, status="info"),  # never happened
        op(5, "read", 40, 50, "a"),
    )
    assert result.verdict == "valid"


def test_info_delete_that_happened_explains_a_later_create() -> None:
    result = check(
        op(1, "create", 0, 10, "a"),
        op(2, "delete", 20, 30, status="info"),
        op(3, "create", 40, 50, "b"),
        op(4, "read", 60, 70, "b"),
    )
    assert result.verdict == "valid"


def test_fail_operations_are_ignored() -> None:
    result = check(
        op(1, "write", 0, 10, "a"),
        op(2, "write", 20, 30, "b", status="fail"),
        op(3, "create", 20, 30, "c", status="fail"),
        op(4, "read", 40, 50, "a"),
    )
    assert result.verdict == "valid"
    # A failed write had no effect, so reading its value is a violation.
    result = check(op(1, "write", 0, 10, "a"), op(2, "write", 20, 30, "b", status="fail"), op(3, "read", 40, 50, "b"))
    assert result.verdict == "invalid"
    assert "no operation ever wrote 'b'" in reason_of(result)


def test_incomplete_invoke_is_treated_as_info() -> None:
    events = history(
        op(1, "write", 0, 10, "a"),
        op(2, "write", 20, None, "b"),  # the history ends with it still open
        op(3, "read", 40, 50, "b"),
    )
    assert [o.status for o in pair_operations(events)] == ["ok", "info", "ok"]
    assert check_history(events).verdict == "valid"


def test_info_reads_and_extra_fields_are_ignored() -> None:
    events = history(op(1, "write", 0, 10, "a"), op(2, "read", 20, 30, "zz", status="info"))
    events = [dataclasses.replace(event, extra={"node": "m2", "error": "timeout"}) for event in events]
    assert check_history(events).verdict == "valid"


def test_keys_are_checked_independently() -> None:
    result = check(
        op(1, "write", 0, 10, "a", key="default/a"),
        op(2, "write", 0, 10, "b", key="default/b"),
        op(3, "read", 20, 30, "a", key="default/a"),
        op(4, "read", 20, 30, "b", key="default/b"),
    )
    assert result.verdict == "valid"
    assert [k.key for k in result.keys] == ["default/a", "default/b"]


# ---------------------------------------------------------------------------------------------------------
# Invalid histories and their explanations


def test_stale_read_is_invalid_and_explained() -> None:
    result = check(
        op(1, "write", 0, 10, "v3"),
        op(2, "write", 20, 30, "v5"),
        op(3, "read", 40, 50, "v3"),
    )
    assert result.verdict == "invalid"
    (violation,) = result.violations
    assert violation.key == KEY
    assert [o.process for o in violation.first_unlinearizable] == [3]
    assert "read of default/web-1 returned 'v3'" in violation.reason
    assert "stale" in violation.reason
    assert "p2 write 'v5'" in violation.reason
    assert {o.process for o in violation.operations} >= {1, 2, 3}


def test_lost_acknowledged_write_read_absent_is_invalid() -> None:
    result = check(op(1, "write", 0, 10, "a"), op(2, "read", 20, 30, None))
    assert result.verdict == "invalid"
    assert "returned null (absent)" in reason_of(result)


def test_lost_acknowledged_write_read_older_value_is_invalid() -> None:
    result = check(
        op(1, "create", 0, 10, "v1"),
        op(2, "cas", 20, 30, ("v1", "v2")),
        op(1, "read", 40, 50, "v2"),
        op(3, "read", 60, 70, "v1"),
    )
    assert result.verdict == "invalid"
    (violation,) = result.violations
    assert [o.process for o in violation.first_unlinearizable] == [3]
    assert "stale" in violation.reason


def test_two_acknowledged_creates_are_invalid() -> None:
    concurrent = check(op(1, "create", 0, 20, "a"), op(2, "create", 10, 30, "b"))
    assert concurrent.verdict == "invalid"
    assert "two creates cannot both find the key absent" in reason_of(concurrent)
    sequential = check(op(1, "create", 0, 10, "a"), op(2, "create", 20, 30, "b"))
    assert sequential.verdict == "invalid"
    assert "already existed" in reason_of(sequential)
    # With a delete in between both may succeed.
    assert check(op(1, "create", 0, 10, "a"), op(3, "delete", 5, 25), op(2, "create", 20, 30, "b")).verdict == (
        "valid"
    )


def test_cas_against_a_wrong_value_is_invalid() -> None:
    never = check(op(1, "write", 0, 10, "a"), op(2, "cas", 20, 30, ("b", "c")))
    assert never.verdict == "invalid"
    assert "cas of default/web-1 expected 'b'" in reason_of(never)
    assert "no operation ever wrote 'b'" in reason_of(never)
    overwritten = check(op(1, "write", 0, 10, "b"), op(2, "write", 20, 30, "a"), op(3, "cas", 40, 50, ("b", "c")))
    assert overwritten.verdict == "invalid"
    assert "stale" in reason_of(overwritten)


def test_delete_of_absent_key_is_invalid() -> None:
    result = check(op(1, "delete", 0, 10))
    assert result.verdict == "invalid"
    assert "nothing had created" in reason_of(result)
    twice = check(op(1, "create", 0, 10, "a"), op(2, "delete", 20, 30), op(3, "delete", 40, 50))
    assert twice.verdict == "invalid"
    assert "already deleted" in reason_of(twice)


def test_read_of_a_value_never_written_is_invalid() -> None:
    result = check(op(1, "write", 0, 10, "v5"), op(2, "read", 20, 30, "v3"))
    assert result.verdict == "invalid"
    reason = reason_of(result)
    assert reason.startswith("read of default/web-1 returned 'v3' at t=")
    assert "no operation ever wrote 'v3'" in reason
    assert "the latest acknowledged change before it was p1 write 'v5'" in reason


def test_violation_reports_the_shortest_failing_prefix() -> None:
    ops = [
        op(1, "write", 0, 10, "a"),
        op(2, "read", 20, 30, "a"),
        op(3, "write", 40, 50, "b"),
        op(4, "read", 60, 70, "a"),  # the first operation that cannot be linearized
        op(5, "write", 80, 90, "c"),
        op(6, "read", 100, 110, "zz"),  # also impossible, but later
    ]
    (violation,) = check(*ops).violations
    assert [o.process for o in violation.first_unlinearizable] == [4]
    assert violation.prefix_end_time_ns == 70
    assert violation.prefix_operation_count == 4
    assert all(o.invoke_time_ns <= 70 for o in violation.operations)


def test_generic_reason_when_no_pattern_applies() -> None:
    # Two concurrent writes, then reads that see them in both orders: no single pattern, but no order fits.
    result = check(
        op(1, "write", 0, 10, "a"),
        op(2, "write", 0, 10, "b"),
        op(3, "read", 20, 30, "a"),
        op(4, "read", 20, 30, "b"),
    )
    assert result.verdict == "invalid"
    (violation,) = result.violations
    assert "cannot be placed" in violation.reason
    assert "longest order" in violation.reason
    assert violation.longest_order


def _hard_key(key: str, writes: int) -> list[list[Event]]:
    """Many concurrent writes, then reads of two of them in turn: every order of the writes is tried."""
    ops = [op(i, "write", 0, 1000, f"v{i}", key=key) for i in range(writes)]
    ops.append(op(writes, "read", 2000, 2001, "v0", key=key))
    ops.append(op(writes + 1, "read", 2002, 2003, "v1", key=key))
    return ops


def test_time_limit_gives_unknown_and_invalid_wins() -> None:
    result = check(*_hard_key("default/hard", 16), time_limit_s=0.0)
    assert result.verdict == "unknown"
    assert "time limit" in result.keys[0].note
    mixed = check(*_hard_key("default/hard", 16), op(50, "read", 0, 1, "x", key="default/easy"), time_limit_s=0.0)
    assert mixed.verdict == "invalid"
    assert [k.verdict for k in mixed.keys] == ["invalid", "unknown"]


def test_unknown_model_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="known models: register"):
        check_history([], model="queue")


def test_check_file_reads_and_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    dump_history(history(op(1, "write", 0, 10, "a"), op(2, "read", 20, 30, "a")), path)
    assert check_file(path).verdict == "valid"
    path.write_text(path.read_text() + '{"process": 9, "type": "ok"}\n')
    with pytest.raises(HistoryError, match=r"line 5: missing field\(s\) f, key, value, time"):
        check_file(path)


# ---------------------------------------------------------------------------------------------------------
# Explanation files and the CLI entry point


def test_write_explanation_writes_text_png_and_html(tmp_path: Path) -> None:
    events = history(
        op(1, "write", 0, 10, "v3"),
        op(2, "write", 20, 30, "v5"),
        op(4, "write", 25, 35, "v9", status="fail"),
        op(5, "write", 22, None, "v7"),
        op(3, "read", 40, 50, "v3"),
    )
    result = check_history(events)
    written = write_explanation(result, events, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["explanation.txt", "timeline-default_web-1.png", "timeline.html"]
    text = (tmp_path / "out" / "explanation.txt").read_text()
    assert text.startswith("INVALID")
    assert "read of default/web-1 returned 'v3'" in text
    assert (tmp_path / "out" / "timeline-default_web-1.png").read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "out" / "timeline.html").read_text()
    assert "data:image/png;base64," in page
    assert "v5" in page and "fail" in page


def test_run_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    valid = tmp_path / "valid.jsonl"
    dump_history(history(op(1, "write", 0, 10, "a"), op(2, "read", 20, 30, "a")), valid)
    assert run_check(str(valid)) == 0
    assert capsys.readouterr().out.startswith("VALID")

    invalid = tmp_path / "invalid.jsonl"
    dump_history(history(op(1, "write", 0, 10, "a"), op(2, "read", 20, 30, "b")), invalid)
    out_dir = tmp_path / "explained"
    assert run_check(str(invalid), out_dir=str(out_dir)) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("INVALID")
    assert "no operation ever wrote 'b'" in printed
    assert (out_dir / "timeline.html").exists()

    hard = tmp_path / "hard.jsonl"
    dump_history(history(*_hard_key(KEY, 16)), hard)
    assert run_check(str(hard), time_limit_s=0.0) == 2
    assert capsys.readouterr().out.startswith("UNKNOWN")

    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text("{}\n")
    assert run_check(str(malformed)) == 2
    assert "line 1: missing field(s)" in capsys.readouterr().err
    assert run_check(str(tmp_path / "missing.jsonl")) == 2


def test_safe_key_name() -> None:
    assert safe_key_name("default/web-1") == "default_web-1"
    assert safe_key_name("a b:c") == "a_b_c"


# ---------------------------------------------------------------------------------------------------------
# Properties


def _simulated(rng: random.Random, operation_count: int, key_count: int, concurrency: int) -> list[Event]:
    return simulate_register_history(
        rng,
        SimulationSettings(
            operation_count=operation_count,
            key_count=key_count,
            concurrency=concurrency,
            info_rate=0.1,
            injected_fail_rate=0.05,
            duration_ns_max=60_000,
            think_time_ns_max=20_000,
        ),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    operation_count=st.integers(1, 80),
    key_count=st.integers(1, 3),
    concurrency=st.integers(1, 8),
)
def test_simulated_linearizable_register_is_always_valid(
    rng: random.Random, operation_count: int, key_count: int, concurrency: int
) -> None:
    events = _simulated(rng, operation_count, key_count, concurrency)
    result = check_history(events, time_limit_s=None)
    assert result.verdict == "valid", result.violations


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    operation_count=st.integers(5, 80),
    concurrency=st.integers(1, 8),
    pick=st.integers(0, 10_000),
)
def test_reading_a_never_written_value_is_always_invalid(
    rng: random.Random, operation_count: int, concurrency: int, pick: int
) -> None:
    events = _simulated(rng, operation_count, 2, concurrency)
    reads = [i for i, event in enumerate(events) if event.type == "ok" and event.f == "read"]
    assume(reads)
    index = reads[pick % len(reads)]
    events[index] = dataclasses.replace(events[index], value="never-written")
    result = check_history(events, time_limit_s=None)
    assert result.verdict == "invalid"
    (violation,) = result.violations
    assert violation.key == events[index].key
    assert "no operation ever wrote 'never-written'" in violation.reason


_ABSENT = object()


def _legal_sequence(ops: Sequence[Operation]) -> bool:
    """Do `ops`, in this order, each take effect on one register? (The oracle's own semantics.)"""
    state: object = _ABSENT
    for o in ops:
        if o.f == "read":
            if not (o.result == state or (o.result is None and (state is _ABSENT or state is None))):
                return False
        elif o.f == "write":
            state = o.value
        elif o.f == "create":
            if state is not _ABSENT:
                return False
            state = o.value
        elif o.f == "delete":
            if state is _ABSENT:
                return False
            state = _ABSENT
        else:
            assert isinstance(o.value, tuple)
            if state is _ABSENT or state != o.value[0]:
                return False
            state = o.value[1]
    return True


def _brute_force_linearizable(ops: Sequence[Operation]) -> bool:
    """Try every subset of info operations as "took effect" and every order consistent with real time."""
    relevant = [o for o in ops if o.status != "fail" and not (o.f == "read" and o.status == "info")]
    definite = [o for o in relevant if o.status == "ok"]
    indefinite = [o for o in relevant if o.status == "info"]

    def precedes(a: Operation, b: Operation) -> bool:
        return a.status == "ok" and a.complete_time_ns is not None and a.complete_time_ns < b.invoke_time_ns

    for size in range(len(indefinite) + 1):
        for chosen in itertools.combinations(indefinite, size):
            for order in itertools.permutations(definite + list(chosen)):
                if any(precedes(order[j], order[i]) for i in range(len(order)) for j in range(i + 1, len(order))):
                    continue
                if _legal_sequence(order):
                    return True
    return False


_VALUES: list[Scalar] = ["a", "b", None]


@st.composite
def _small_histories(draw: st.DrawFn) -> list[Event]:
    """Arbitrary (mostly non-linearizable) histories of up to six operations on one key."""
    events: list[Event] = []
    for process in range(draw(st.integers(1, 6))):
        f: OpFunction = draw(st.sampled_from(["create", "read", "write", "cas", "delete"]))
        start = draw(st.integers(0, 20))
        end = start + draw(st.integers(0, 8))
        status: OpStatus = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        value: EventValue
        if f == "cas":
            value = (draw(st.sampled_from(_VALUES[:2])), draw(st.sampled_from(_VALUES[:2])))
        elif f == "delete":
            value = None
        else:
            value = draw(st.sampled_from(_VALUES))
        completes = status != "info" or draw(st.booleans())
        events.extend(op(process, f, start, end if completes else None, value, status=status))
    return sorted(events, key=lambda event: (event.time_ns, event.type != "invoke"))


@settings(max_examples=400, deadline=None)
@given(events=_small_histories())
def test_checker_agrees_with_brute_force(events: list[Event]) -> None:
    expected = _brute_force_linearizable(pair_operations(events))
    result = check_history(events, time_limit_s=None)
    assert result.verdict == ("valid" if expected else "invalid")
    if not expected:
        (violation,) = result.violations
        assert violation.first_unlinearizable
        assert all(o.status == "ok" for o in violation.first_unlinearizable)
        assert violation.reason


def test_history_round_trip_through_json_keeps_the_verdict(tmp_path: Path) -> None:
    events = _simulated(random.Random(3), 400, 4, 6)
    path = tmp_path / "h.jsonl"
    dump_history(events, path)
    assert all(json.loads(text)["time"] >= 0 for text in path.read_text().splitlines())
    assert check_file(path).verdict == "valid"
