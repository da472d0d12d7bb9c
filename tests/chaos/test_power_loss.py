"""Power cuts and disk faults on real masters: the power-loss nemesis bites (fsync off loses acknowledged
writes, and the checker says so), the durable journal holds (fsync on loses none, even when every master loses
power at once), a master whose journal cannot be written fail-stops while the others go on, and a whole
cluster comes back with every acknowledged pod after a power cut of all its masters (`hacluster down` then
`hacluster up` is tested in tests/cluster/test_durability.py)."""

import errno
import json
import os
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest

from chaos.nemesis import POWER_CUT_STORAGE, FaultLog, Nemesis
from chaos.runner import run_scenario
from chaos.scenario import FaultSpec, Scenario, WorkloadSpec
from hacluster.cluster import launcher
from hacluster.config import default_config, parse_config
from tests.cluster.conftest import Cluster, pod
from tests.support import wait_for

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"


def _config(fsync: bool = True):
    base = default_config(3).model_dump(mode="json")
    base["raft"]["fsync"] = fsync
    return parse_config(base, "test")


def _names(c: Cluster, mid: str) -> set[str]:
    code, body, _ = c.req("GET", mid, PODS, timeout=15)
    assert code == 200, body
    return {p["metadata"]["name"] for p in body["items"]}


def _create_pods(c: Cluster, mid: str, names: list[str], clients: int = 16, *, retry_s: float = 0.0) -> list[str]:
    """Create the pods through `mid` (clients at once); return the names acknowledged with 201. With
    `retry_s`, a create refused definitely (503: no leader during an election, which load alone can cause
    without PreVote; 429; a refused connection) is tried again on the next master until that many seconds
    have passed; an outcome that is not known (a timeout, 504) is never retried, and never counted."""
    ids = sorted(c.status())

    def one(name: str) -> str | None:
        deadline = time.monotonic() + retry_s
        target = mid
        while True:
            try:
                code = c.req("POST", target, PODS, pod(name), timeout=10)[0]
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError):
                    return None  # sent, outcome unknown
                code = 0
            except OSError:
                return None  # sent, outcome unknown
            if code == 201:
                return name
            if code not in (0, 429, 503) or time.monotonic() >= deadline:
                return None
            target = ids[(ids.index(target) + 1) % len(ids)]
            time.sleep(0.05)  # a client's pause between attempts, not a wait for a condition

    with ThreadPoolExecutor(clients) as pool:
        return [n for n in pool.map(one, names) if n is not None]


# ------------------------------------------------------------------------- the nemesis bites, the journal holds
@pytest.mark.parametrize("fsync", [False, True], ids=["fsync-off", "fsync-on"])
def test_power_cut_of_every_master(tmp_path, fsync):
    """All three masters lose power at once near the end of a short run, and come back. The cut ends with
    the run, so the final reads show what survived rather than what was written after the restart."""
    scenario = Scenario(
        name=f"power-cut-all-fsync-{'on' if fsync else 'off'}", masters=3, seed=5, duration_s=9,
        workload=WorkloadSpec(rate_per_s=150, concurrency=8, keys=40),
        faults=(FaultSpec(at_s=6, duration_s=3, kind="power-cut-all"),),
        cluster={"raft": {"fsync": fsync}})
    s = run_scenario(scenario, tmp_path / "run").summary
    faults = [json.loads(line) for line in (tmp_path / "run" / "faults.jsonl").read_text().splitlines()]
    assert faults[0]["kind"] == "power-cut-all" and faults[0]["targets"] == ["m1", "m2", "m3"]
    assert s["ops"]["ok"] >= 100, s["ops"]
    lost_check = s["checker"]["invariants"]["checks"]["no_lost_acknowledged_writes"]
    where = f"summary: lost {s['lost_acknowledged_writes']}, checker {json.dumps(s['checker'])[:600]}"
    if fsync:
        assert s["lost_acknowledged_writes"] == 0, where
        assert lost_check["status"] == "ok" and s["checker"]["linearizable"] == "valid", where
    else:
        # Unsynced writes lived only in the masters' memory: the cut erased acknowledged writes, and both
        # the summary and the checker (the lost-write invariant, and linearizability of the final reads) see it.
        assert s["lost_acknowledged_writes"] > 0, where
        assert lost_check["status"] == "violated", where
        assert s["checker"]["linearizable"] == "invalid" and not s["checker"]["ok"], where


# ------------------------------------------------------------------------------------------------- disk faults
def test_disk_full_leader_fail_stops_and_the_others_go_on(tmp_path):
    """ENOSPC on the leader's journal writes, through the disk-fault nemesis (a follower's fault straight
    through the endpoint is in tests/cluster/test_durability.py): the leader answers no write it could not
    persist and stops, the other two elect a leader and go on, and the nemesis's end restarts the stopped
    master, which catches up to the same state."""
    sd = tmp_path / "sd"
    # Injected disk faults exist only on the test storage (a master on real storage answers 404).
    c = Cluster(launcher.up(_config(), sd, test_storage=POWER_CUT_STORAGE))
    try:
        leader = c.leader()["id"]
        target = leader
        before = set(_create_pods(c, leader, [f"before-{i}" for i in range(20)], retry_s=20))
        assert len(before) == 20
        nemesis = Nemesis(c.h, None, seed=1, log=FaultLog(tmp_path / "faults.jsonl"))
        nemesis.start(0, FaultSpec(at_s=0, duration_s=60, kind="disk-fault", target=target, errno="ENOSPC",
                                   operation="write"))
        pid = c.h.pid(target)
        # The next journal write fails: the master stops rather than acknowledge it.
        acked_by_target = _create_pods(c, target, [f"to-faulty-{i}" for i in range(5)], clients=1)
        assert acked_by_target == [], f"{target} acknowledged writes it could not persist: {acked_by_target}"
        wait_for(lambda: not launcher.pid_alive(pid), 15, f"{target} to fail-stop on the ENOSPC journal write")
        log = (sd / "logs" / f"{target}.log").read_text(errors="replace")
        fatal = [line for line in log.splitlines() if "fatal: journal" in line]
        assert len(fatal) == 1 and os.strerror(errno.ENOSPC) in fatal[0], log[-2000:]
        # The others go on: a leader among them, and writes acknowledged.
        others = [m for m in sorted(c.status()) if m != target]
        new_leader = c.leader(timeout_s=15, exclude=(target,))["id"]
        after = _create_pods(c, new_leader, [f"after-{i}" for i in range(20)], retry_s=20)
        assert len(after) == 20
        # Cleared and started again, the stopped master catches up to the same state.
        nemesis.end(0)
        records = [json.loads(line) for line in (tmp_path / "faults.jsonl").read_text().splitlines()]
        assert records[-1]["fail_stopped"] == [target]
        launcher.wait_ready(c.h, 30)
        c.wait_converged(others + [target], timeout_s=30)
        assert before | set(after) <= _names(c, target)
    finally:
        launcher.down(sd)
    assert not launcher.processes_of(sd)


# ------------------------------------------------------------------------------------- whole-cluster restart
def test_every_acknowledged_pod_survives_a_power_cut_of_the_whole_cluster(tmp_path):
    sd = tmp_path / "sd"
    c = Cluster(launcher.up(_config(), sd, test_storage=POWER_CUT_STORAGE))
    try:
        assert {r.get("storage") for r in launcher.status_json(c.h)["masters"]} == {POWER_CUT_STORAGE}
        leader = c.leader()["id"]
        acked = _create_pods(c, leader, [f"p-{i:04d}" for i in range(1000)], retry_s=20)
        assert len(acked) >= 990, f"only {len(acked)} of 1000 creates acknowledged on a healthy cluster"
        nemesis = Nemesis(c.h, None, seed=1, log=FaultLog(None))
        fault = nemesis.start(0, FaultSpec(at_s=0, duration_s=1, kind="power-cut-all"))
        assert fault.targets == ["m1", "m2", "m3"]
        assert not any(launcher.pid_alive(p) for p in (c.h.pid(m) for m in fault.targets) if p)
        nemesis.end(0)
        launcher.wait_ready(c.h, 30)
        c.wait_converged(["m1", "m2", "m3"], timeout_s=30)
        for mid in ("m1", "m2", "m3"):
            missing = set(acked) - _names(c, mid)
            assert not missing, f"{mid} lost {len(missing)} acknowledged pods, e.g. {sorted(missing)[:5]}"
    finally:
        launcher.down(sd)
