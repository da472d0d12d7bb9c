"""The power-cut and disk-fault nemeses on stand-in processes: who is cut, that every target dies before any is
restarted, what faults.jsonl records, and that a power cut is refused on masters with real storage (where a
SIGKILL would lose nothing). The real runs on masters are in tests/chaos/test_power_loss.py."""

import json
import subprocess

import pytest

from chaos.nemesis import POWER_CUT_STORAGE, FaultLog, Nemesis
from chaos.scenario import FaultSpec, load_scenario
from hacluster.cluster import launcher
from hacluster.config import default_config


class Stand:
    """Three `sleep` processes recorded as masters m1..m3, and a status that says who leads on what storage."""

    def __init__(self, tmp_path, monkeypatch, storage=POWER_CUT_STORAGE, leader="m2"):
        self.handle = launcher.prepare(default_config(3), tmp_path / "sd")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.storage = storage
        self.leader = leader
        self.started: list[str] = []
        for mid in ("m1", "m2", "m3"):
            self._spawn(mid)
        monkeypatch.setattr(launcher, "cluster_status", self.status)
        monkeypatch.setattr(launcher, "start_master", self.start_master)
        self.log = FaultLog(tmp_path / "faults.jsonl")
        self.nemesis = Nemesis(self.handle, None, seed=3, log=self.log)

    def _spawn(self, mid):
        proc = subprocess.Popen(["sleep", "60"])
        self.procs[mid] = proc
        launcher.record_pid(self.handle.state_dir, mid, proc.pid)
        return proc.pid

    def status(self, handle, timeout_s=1.0):
        rows = []
        for mid, proc in sorted(self.procs.items()):
            up = proc.poll() is None
            rows.append({"id": mid, "role": ("leader" if mid == self.leader else "follower") if up else "down",
                         "term": 2, "storage": self.storage})
        return rows

    def start_master(self, handle, mid):
        self.started.append(mid)
        return self._spawn(mid)

    def alive(self):
        return sorted(mid for mid, p in self.procs.items() if p.poll() is None)

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def stand(tmp_path, monkeypatch):
    s = Stand(tmp_path, monkeypatch)
    yield s
    s.close()


def test_power_cut_of_all_masters_kills_every_one_then_restarts_them(stand, tmp_path):
    fault = stand.nemesis.start(0, FaultSpec(at_s=0, duration_s=1, kind="power-cut-all"))
    assert fault.targets == ["m1", "m2", "m3"] and stand.alive() == [] and stand.started == []
    stand.nemesis.end(0)
    assert stand.started == ["m1", "m2", "m3"] and stand.alive() == ["m1", "m2", "m3"]
    records = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
    assert [(r["event"], r["kind"], r["targets"]) for r in records] == [
        ("start", "power-cut-all", ["m1", "m2", "m3"]), ("end", "power-cut-all", ["m1", "m2", "m3"])]
    assert records[0]["storage"] == POWER_CUT_STORAGE


@pytest.mark.parametrize(("kind", "target", "expected"), [
    ("power-cut", "m3", ["m3"]), ("power-cut-leader", "", ["m2"]), ("power-cut-minority", "", None),
    ("power-cut-follower", "", None)])
def test_power_cut_targets(stand, kind, target, expected):
    fault = stand.nemesis.start(0, FaultSpec(at_s=0, duration_s=1, kind=kind, target=target))
    assert len(fault.targets) == 1
    if expected is not None:
        assert fault.targets == expected
    if kind == "power-cut-follower":
        assert fault.targets != ["m2"]
    assert stand.alive() == sorted({"m1", "m2", "m3"} - set(fault.targets))
    stand.nemesis.heal_all()
    assert stand.alive() == ["m1", "m2", "m3"] and stand.started == fault.targets


def test_power_cut_is_refused_on_real_storage(tmp_path, monkeypatch):
    s = Stand(tmp_path, monkeypatch, storage="disk")
    try:
        with pytest.raises(RuntimeError, match="power cut of m1: it runs on disk storage"):
            s.nemesis.start(0, FaultSpec(at_s=0, duration_s=1, kind="power-cut", target="m1"))
        assert s.alive() == ["m1", "m2", "m3"], "a refused power cut killed a master"
    finally:
        s.close()


def test_disk_fault_is_cleared_on_a_running_master_and_a_stopped_one_is_restarted(stand, monkeypatch, tmp_path):
    posted: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(Nemesis, "_storage_fault", lambda self, mid, body: posted.append((mid, body)))
    stand.nemesis.start(0, FaultSpec(at_s=0, duration_s=1, kind="disk-fault", target="m1", errno="EIO",
                                     operation="fsync"))
    stand.nemesis.start(1, FaultSpec(at_s=0, duration_s=1, kind="disk-fault", target="leader"))
    assert posted == [("m1", {"operation": "fsync", "errno": "EIO"}),
                      ("m2", {"operation": "write", "errno": "ENOSPC"})]
    stand.procs["m2"].kill()  # the leader fail-stops on its failed journal write
    stand.procs["m2"].wait()
    stand.nemesis.end(0)
    stand.nemesis.end(1)
    assert posted[2:] == [("m1", {"clear": True})] and stand.started == ["m2"]
    ends = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()][2:]
    assert [(r["targets"], r["fail_stopped"]) for r in ends] == [(["m1"], []), (["m2"], ["m2"])]


def test_power_loss_scenario_starts_on_write_back_storage():
    sc = load_scenario("power-loss")
    assert sc.has_power_faults and sc.masters == 3
    assert [f.kind for f in sc.faults] == ["power-cut-follower", "power-cut-leader", "power-cut-all"]
    assert not load_scenario("kill-leader-loop").has_power_faults
