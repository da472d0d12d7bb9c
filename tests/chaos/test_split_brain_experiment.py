"""`hacluster experiment split-brain --quick` on real processes behind Toxiproxy, with a fixed seed: the unsafe
engine loses acknowledged writes and the checker says so; Raft under the same cut loses none."""

import json

import pytest
from click.testing import CliRunner

from hacluster.cli.main import main

pytestmark = pytest.mark.slow

KEYS = {"engine", "masters", "max_leaders_at_once", "acknowledged_writes", "lost_acknowledged_writes", "linearizable",
        "availability"}


def test_quick_split_brain_shows_the_unsafe_engine_losing_what_raft_keeps(tmp_path):
    result = CliRunner().invoke(main, ["experiment", "split-brain", "--quick", "--seed", "5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["engine"]: r for r in results["engines"]}
    assert set(rows) == {"pysyncobj", "unsafe-async-primary"}
    for r in rows.values():
        assert KEYS <= set(r), KEYS - set(r)
        assert r["masters"] == 3 and r["acknowledged_writes"] > 0

    unsafe = rows["unsafe-async-primary"]
    assert unsafe["max_leaders_at_once"] == 2
    assert unsafe["writes_during_fault"]["minority"]["acknowledged"] > 0  # the cut-off primary kept acknowledging
    assert unsafe["writes_during_fault"]["majority"]["acknowledged"] > 0
    assert unsafe["lost_acknowledged_writes"] > 0
    assert unsafe["lost_writes"] and {"key", "master", "expected", "found"} <= set(unsafe["lost_writes"][0])
    assert unsafe["linearizable"] == "invalid"
    assert "NOT LINEARIZABLE" in unsafe["first_violation"]

    raft = rows["pysyncobj"]
    assert raft["lost_acknowledged_writes"] == 0 and raft["lost_writes"] == []
    assert raft["linearizable"] == "valid" and raft["first_violation"] is None
    assert raft["max_leaders_at_once"] == 1
    assert raft["writes_during_fault"]["minority"]["acknowledged"] == 0  # the cut-off leader refused
    assert raft["writes_during_fault"]["majority"]["acknowledged"] > 0

    md = (tmp_path / "report.md").read_text()
    assert "Conclusions (from the measured numbers)" in md and "not linearizable" in md
    assert (tmp_path / "report.html").stat().st_size > 10_000  # timelines embedded
    assert (tmp_path / "timeline-unsafe-async-primary.png").stat().st_size > 1000
    assert (tmp_path / "timeline-pysyncobj.png").stat().st_size > 1000
