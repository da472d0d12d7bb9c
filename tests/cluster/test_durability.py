"""Real master processes and their journals: a disk fault fail-stops one master without acknowledging what
it could not persist while the others go on; a whole-cluster power cut (write-back test storage, SIGKILL)
and a `hacluster down` / `hacluster up` both resume the same cluster with every acknowledged write."""

import os
import signal
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

from hacluster.cluster import launcher
from hacluster.config import default_config
from hacluster.raft.journal import FAIL_STOP_EXIT_CODE, SEGMENT_MAGIC, DurableJournal
from hacluster.raft.storage import Storage
from tests.cluster.conftest import Cluster, pod

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"


def _exit_code(pid: int, timeout_s: float) -> int | None:
    """Wait (bounded) for a master this process spawned to exit; return its exit code (None if something
    else reaped it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    raise AssertionError(f"master pid {pid} still running after {timeout_s}s")


def _names(c: Cluster, mid: str) -> set[str]:
    code, lst, _ = c.req("GET", mid, PODS)
    assert code == 200, lst
    return {p["metadata"]["name"] for p in lst["items"]}


def test_a_journal_fault_fail_stops_one_master_and_it_catches_up_after_restart(tmp_path):
    sd = tmp_path / "cluster"
    c = Cluster(launcher.up(default_config(3), sd, test_storage="write-back"))
    try:
        assert {m["storage"] for m in launcher.status_json(c.h)["masters"]} == {"write-back"}
        leader = c.leader()
        victim = next(i for i in c.status() if i != leader["id"])
        victim_pid = c.h.pid(victim)
        assert c.req("POST", leader["id"], PODS, pod("before"))[0] == 201
        code, body, _ = c.req("POST", victim, "/debug/storage/fault", {"operation": "disk", "errno": "EIO"})
        assert code == 400 and body["reason"] == "BadRequest", body
        code, body, _ = c.req("POST", victim, "/debug/storage/fault", {"operation": "fsync", "errno": "ENOSPC"})
        assert code == 200, body
        for i in range(10):
            code, body, _ = c.req("POST", leader["id"], PODS, pod(f"during-{i}"))
            assert code == 201, "the other two masters go on"
        assert _exit_code(victim_pid, 10) == FAIL_STOP_EXIT_CODE
        log_text = (sd / "logs" / f"{victim}.log").read_text()
        assert ("fatal: journal write failed: [Errno 28] No space left on device (" in log_text
                and "); stopping so that nothing unpersisted is acknowledged" in log_text), log_text[-2000:]
        match = {p["id"]: p["match_index"] for p in c.status()[leader["id"]]["peers"]}[victim]
        persisted = DurableJournal(sd / "data" / victim, Storage("disk"))[-1][1]  # what survived the process
        assert match <= persisted, f"the victim acknowledged index {match}, but only {persisted} was persisted"
        launcher.start_master(c.h, victim)  # the fault lived in the failed process only
        launcher.wait_ready(c.h, 30)
        c.wait_converged(list(c.status()), timeout_s=20)
        assert _names(c, victim) >= {"before"} | {f"during-{i}" for i in range(10)}
        journal = c.status()[victim]["journal"]
        assert journal["storage"] == "write-back" and journal["fsync"] is True and journal["fsyncs"] > 0
        req = urllib.request.Request(c.h.api(leader["id"]) + "/metrics", headers={"Authorization": f"Bearer {c.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
        count = [ln for ln in text.splitlines() if ln.startswith("hacluster_raft_journal_fsync_duration_seconds_count")]
        assert count and float(count[0].split()[-1]) > 0, count
    finally:
        launcher.down(sd)


def test_a_power_cut_of_every_master_keeps_every_acknowledged_write(tmp_path):
    sd = tmp_path / "cluster"
    c = Cluster(launcher.up(default_config(3), sd, test_storage="write-back"))
    try:
        leader = c.leader()
        acked = [f"p{i}" for i in range(60) if c.req("POST", leader["id"], PODS, pod(f"p{i}"))[0] == 201]
        assert len(acked) == 60
        for m in c.h.cfg.masters:  # all at once: write-back storage loses whatever was not fsynced
            os.kill(c.h.pid(m.id), signal.SIGKILL)
        for m in c.h.cfg.masters:
            _exit_code(c.h.pid(m.id), 10)
        c = Cluster(launcher.up(c.h.cfg, sd, resume_data=True, test_storage="write-back"))
        leader = c.leader()
        assert _names(c, leader["id"]) >= set(acked)
        launcher.down(sd)
        # Damage before the last record: that master refuses to start, in one line, without a traceback.
        seg = sorted((sd / "data" / "m1").glob("wal-*.log"))[0]
        data = bytearray(seg.read_bytes())
        first_len = struct.unpack_from("<I", data, len(SEGMENT_MAGIC))[0]
        second = len(SEGMENT_MAGIC) + 28 + first_len
        data[second + 28] ^= 0xFF
        seg.write_bytes(bytes(data))
        pid = launcher.start_master(c.h, "m1")
        assert _exit_code(pid, 20) == 1
        log_text = (sd / "logs" / "m1.log").read_text()
        assert f"journal {seg} corrupt at offset {second}: record payload checksum mismatch; refusing to start" \
            in log_text and "Traceback" not in log_text, log_text[-2000:]
    finally:
        launcher.down(sd)


def test_hacluster_down_then_up_resumes_the_same_cluster(tmp_path):
    sd = tmp_path / "sd"
    cli = [sys.executable, "-m", "hacluster.cli.main"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, "--state-dir", str(sd)], capture_output=True, text=True, timeout=90)

    try:
        r = run("up", "--masters", "3", "--detach")
        assert r.returncode == 0, r.stderr
        c = Cluster(launcher.load_handle(sd))
        for i in range(20):
            assert c.req("POST", c.leader()["id"], PODS, pod(f"keep-{i}"))[0] == 201
        assert run("down").returncode == 0
        r = run("up", "--masters", "5", "--detach")
        assert r.returncode == 1 and "--fresh" in r.stderr and "Traceback" not in r.stderr, r.stderr
        r = run("up", "--detach")
        assert r.returncode == 0, r.stderr
        assert "resuming cluster" in r.stdout
        c = Cluster(launcher.load_handle(sd))
        assert _names(c, c.leader()["id"]) >= {f"keep-{i}" for i in range(20)}
        assert run("down").returncode == 0
        r = run("up", "--masters", "3", "--detach", "--fresh")
        assert r.returncode == 0, r.stderr
        c = Cluster(launcher.load_handle(sd))
        assert not any(n.startswith("keep-") for n in _names(c, c.leader()["id"]))
    finally:
        launcher.down(sd)
