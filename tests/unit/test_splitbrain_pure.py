"""The split-brain experiment's measures and report text, from made-up records (no cluster)."""

from pathlib import Path

from chaos.splitbrain import QUICK_TIMING, RAFT, UNSAFE, final_values, leaders_at_once, scenario, writes_by_side
from chaos.splitbrain_report import conclusions
from hacluster.cli.status import unsafe_banner
from hacluster.cluster.processes import ClusterHandle
from hacluster.config import default_config, parse_config
from hacluster.consistency.history import Event

MS = 1_000_000


def sample(t_ms, master, role, commit):
    return {"time": t_ms * MS, "master": master, "role": role, "commit_index": commit}


def test_a_deposed_leader_that_commits_nothing_is_not_a_second_leader():
    samples = []
    for i in range(10):  # m1 leads and commits until t=300 ms, then is deposed but still says leader
        samples.append(sample(i * 100, "m1", "leader", min(i, 3) * 10))
        samples.append(sample(i * 100, "m2", "leader" if i >= 5 else "follower", 30 + max(0, i - 5) * 5))
    got = leaders_at_once(samples)
    assert got["max_by_role"] == 2 and got["max_acknowledging"] == 1 and got["two_leaders_s"] == 0
    assert got["spans"] == []


def test_two_primaries_acknowledging_at_once_are_counted_with_their_duration():
    samples = []
    for i in range(10):
        samples.append(sample(i * 100, "m1", "leader", i * 3))
        samples.append(sample(i * 100, "m2", "leader" if i >= 4 else "follower", 40 + i * 2))
    got = leaders_at_once(samples)
    assert got["max_acknowledging"] == 2
    assert got["spans"] == [[400 * MS, 900 * MS]] and got["two_leaders_s"] == 0.5


def test_writes_are_split_by_the_side_of_the_master_the_client_used():
    def op(node, start, kind, f="write", answered=None):
        return {"f": f, "node": node, "start": start, "type": kind, "answered": kind == "ok" if answered is None
                else answered}
    ops = [op("m1", 5, "ok"), op("m1", 6, "fail"), op("m2", 7, "ok"), op("m3", 8, "fail", answered=True),
           op("m2", 9, "ok", f="read"), op("m1", 50, "ok")]
    sides = writes_by_side(ops, ["m1"], 0, 20)
    assert sides["minority"] == {"attempted": 2, "acknowledged": 1, "answered": 1, "availability": 0.5}
    assert sides["majority"] == {"attempted": 2, "acknowledged": 1, "answered": 2, "availability": 1.0}


def test_final_values_come_from_the_final_reads():
    evs = [Event(process=9, type="ok", f="read", key="k", value=3, time_ns=1, extra={"final": True, "node": "m2"}),
           Event(process=1, type="ok", f="read", key="k", value=1, time_ns=1, extra={"node": "m1"})]
    assert final_values(evs) == {"m2": {"k": 3}}


def test_scenario_cuts_the_leader_with_a_minority_and_pins_clients():
    sc = scenario(UNSAFE, 2, 5, QUICK_TIMING)
    assert sc.faults[0].kind == "split" and sc.faults[0].target == "leader" and sc.faults[0].duration_s == 10
    assert sc.workload.stay_on_master and sc.duration_s == QUICK_TIMING.before_s + 10
    assert sc.cluster["store"]["unsafe_async_primary"]["loses_acknowledged_writes"] is True
    assert scenario(RAFT, 3, 5, QUICK_TIMING).cluster == {}


def _row(engine, minority, majority, lost, lin, leaders, avail):
    side = lambda acked, att: {"attempted": att, "acknowledged": acked, "answered": acked,
                               "availability": acked / att if att else None}
    return {"engine": engine, "masters": 2, "max_leaders_at_once": leaders, "max_leaders_at_once_by_role": leaders,
            "two_leaders_s": 8.0 if leaders > 1 else 0.0, "lost_acknowledged_writes": lost, "linearizable": lin,
            "availability": avail, "sides": {"minority": ["m1"], "majority": ["m2"]},
            "writes_during_fault": {"minority": side(*minority), "majority": side(*majority)}}


def test_conclusions_are_written_from_the_numbers():
    results = {"masters": 2, "engines": [_row(RAFT, (0, 300), (0, 300), 0, "valid", 1, 0.0),
                                         _row(UNSAFE, (200, 300), (210, 300), 12, "invalid", 2, 1.0)]}
    text = " ".join(conclusions(results))
    assert "acknowledged 0 of 300" in text and "0 acknowledged writes were lost" in text
    assert "12 acknowledged writes were lost" in text and "not linearizable" in text
    assert "Raft stalled every write until the heal" in text and "split into two primaries" in text
    # a Raft run that lost something is called a contradiction, not passed over
    results["engines"][0] = _row(RAFT, (0, 300), (100, 300), 3, "invalid", 1, 0.3)
    assert "contradicts Raft's guarantees" in " ".join(conclusions(results))


def test_status_prints_an_unsafe_banner_only_for_the_unsafe_engine(tmp_path: Path):
    base = default_config(3).model_dump(mode="json")
    unsafe = parse_config({**base, "store": {"engine": "unsafe-async-primary",
                                             "unsafe_async_primary": {"loses_acknowledged_writes": True}}})
    assert "UNSAFE" in (unsafe_banner(ClusterHandle(tmp_path, unsafe)) or "")
    assert unsafe_banner(ClusterHandle(tmp_path, default_config(3))) is None
    assert unsafe.store.summary() == {"engine": "unsafe-async-primary", "unsafe": True}
    assert default_config(3).store.summary() == {"engine": "pysyncobj"}
