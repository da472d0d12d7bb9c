"""Unit tests of the history format: parsing, dumping and pairing (hacluster.consistency.history)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hacluster.consistency.history import (
    Event,
    HistoryError,
    SimulationSettings,
    dump_history,
    event_to_json,
    load_history,
    pair_operations,
    parse_history,
    simulate_register_history,
)


def line(**fields: object) -> str:
    base: dict[str, object] = {"process": 1, "type": "invoke", "f": "write", "key": "default/a", "value": "v1",
                               "time": 10}
    base.update(fields)
    return json.dumps(base)


def test_round_trip_keeps_values_and_extra_fields(tmp_path: Path) -> None:
    events = [
        Event(1, "invoke", "cas", "default/a", ("v1", "v2"), 10),
        Event(1, "ok", "cas", "default/a", ("v1", "v2"), 20, {"node": "m2"}),
        Event(2, "invoke", "read", "default/a", None, 30),
        Event(2, "fail", "read", "default/a", None, 40, {"error": "NotLeader"}),
    ]
    path = tmp_path / "history.jsonl"
    dump_history(events, path)
    loaded = load_history(path)
    assert loaded == events
    assert loaded[1].extra == {"node": "m2"}
    assert [event.line for event in loaded] == [1, 2, 3, 4]
    assert json.loads(event_to_json(events[0]))["value"] == ["v1", "v2"]


def test_blank_lines_are_skipped_but_counted() -> None:
    events = parse_history([line(), "", "  ", line(type="ok", time=20)])
    assert [event.line for event in events] == [1, 4]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"process": 1, "type": "invoke", "f": "write", "key": "a", "value": 1}), "missing field(s) time"),
        (line(process="p1"), "process must be an integer"),
        (line(process=True), "process must be an integer"),
        (line(type="start"), "type must be one of"),
        (line(f="append"), "f must be one of"),
        (line(key=""), "key must be a non-empty string"),
        (line(time=1.5), "time must be integer nanoseconds"),
        (line(f="cas", value="v1"), "cas invoke must carry [expected, new]"),
        (line(value={"a": 1}), "values must be JSON scalars"),
        (line(value=[1, 2]), "values must be JSON scalars"),
    ],
)
def test_malformed_line_names_its_line_number(text: str, fragment: str) -> None:
    with pytest.raises(HistoryError) as caught:
        parse_history([line(), line(type="ok", time=20), text], source="h.jsonl")
    assert caught.value.line == 3
    assert str(caught.value).startswith("h.jsonl line 3: ")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_load_history_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line() + "\n" + "oops\n")
    with pytest.raises(HistoryError, match=r"bad.jsonl line 2: not valid JSON"):
        load_history(path)


def test_pairing_matches_invokes_with_completions_in_invoke_order() -> None:
    events = parse_history([
        line(process=1, time=10, value="a"),
        line(process=2, f="read", value=None, time=11),
        line(process=2, type="ok", f="read", value="a", time=15),
        line(process=1, type="ok", time=20, value="a", node="m1"),
    ])
    first, second = pair_operations(events)
    assert (first.process, first.f, first.value, first.status) == (1, "write", "a", "ok")
    assert (first.invoke_time_ns, first.complete_time_ns, first.invoke_line, first.complete_line) == (10, 20, 1, 4)
    assert (second.f, second.result, second.status) == ("read", "a", "ok")


def test_invoke_without_completion_is_info() -> None:
    (op,) = pair_operations(parse_history([line()]))
    assert op.status == "info"
    assert op.complete_time_ns is None
    assert op.complete_line is None


@pytest.mark.parametrize(
    ("lines", "fragment", "bad_line"),
    [
        ([line(type="ok")], "with no open invoke", 1),
        ([line(), line(time=11)], "still open", 2),
        ([line(), line(type="ok", f="create", time=11)], "does not match", 2),
        ([line(), line(type="ok", key="default/b", time=11)], "does not match", 2),
        ([line(time=10), line(type="ok", time=9)], "earlier than its invoke", 2),
        ([line(), line(type="info", time=11), line(time=12)], "used again after its 'info' at line 2", 3),
    ],
)
def test_pairing_errors_name_the_line(lines: list[str], fragment: str, bad_line: int) -> None:
    with pytest.raises(HistoryError) as caught:
        pair_operations(parse_history(lines))
    assert caught.value.line == bad_line
    assert fragment in str(caught.value)


def test_simulation_is_deterministic_and_well_formed() -> None:
    settings = SimulationSettings(operation_count=300, key_count=3, concurrency=5, info_rate=0.1)
    first = simulate_register_history(random.Random(7), settings)
    second = simulate_register_history(random.Random(7), settings)
    assert first == second
    ops = pair_operations(first)
    assert len(ops) == 300
    assert {op.status for op in ops} == {"ok", "fail", "info"}
    assert [event.time_ns for event in first] == sorted(event.time_ns for event in first)
