"""Real master processes: replication, failover, restart from the journal, a paused leader, no quorum."""

import os
import signal
import threading
import time

import pytest

from hacluster.cluster import launcher
from tests.cluster.conftest import pod

pytestmark = pytest.mark.slow
PODS = "/api/v1/namespaces/default/pods"


def test_write_through_a_follower_is_read_back_everywhere(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()
    follower = next(i for i in c.status() if i != leader["id"])
    code, body, _ = c.req("POST", follower, PODS, pod("via-follower"))
    assert code == 201, body
    for mid in c.status():
        code, got, _ = c.req("GET", mid, f"{PODS}/via-follower")
        assert code == 200 and got["metadata"]["uid"] == body["metadata"]["uid"]


def test_leader_kill_then_survivors_write_and_restarted_master_catches_up(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()
    for i in range(20):
        assert c.req("POST", leader["id"], PODS, pod(f"before-{i}"))[0] == 201
    os.kill(leader["pid"], signal.SIGKILL)
    survivors = [m for m in c.status() if m != leader["id"]]
    deadline = time.monotonic() + 10
    acked = None
    while time.monotonic() < deadline and acked is None:
        for mid in survivors:
            code, _, _ = c.req("POST", mid, PODS, pod("after-kill"), timeout=3)
            if code in (201, 409):  # 409: an earlier attempt of ours committed
                acked = mid
                break
    assert acked, "no survivor acknowledged a write after the leader was killed"
    new_leader = c.leader(exclude=(leader["id"],))
    assert new_leader["term"] > leader["term"]
    launcher.start_master(c.h, leader["id"])
    fp = c.wait_converged(list(c.status()))
    assert fp
    code, got, _ = c.req("GET", leader["id"], f"{PODS}/after-kill")
    assert code == 200, "the restarted master replayed its journal and caught up"
    code, lst, _ = c.req("GET", leader["id"], PODS + "?resourceVersion=0")
    assert {p["metadata"]["name"] for p in lst["items"]} >= {f"before-{i}" for i in range(20)} | {"after-kill"}


def test_paused_leader_acknowledges_nothing_and_rejoins_as_follower(cluster_factory):
    c = cluster_factory(3)
    old = c.leader()
    answers = {}

    def write_to_paused():
        answers["result"] = c.req("POST", old["id"], PODS, pod("sent-to-paused"), timeout=30)
        answers["at"] = time.monotonic()

    os.kill(old["pid"], signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        t = threading.Thread(target=write_to_paused)
        t.start()
        new = c.leader(exclude=(old["id"],))
        assert new["id"] != old["id"] and new["term"] > old["term"]
        acked = []
        for i in range(10):
            code, _, _ = c.req("POST", new["id"], PODS, pod(f"during-pause-{i}"))
            assert code == 201
            acked.append(f"during-pause-{i}")
        assert "result" not in answers, "a paused leader answered a write while stopped"
        resumed_at = time.monotonic()
    finally:
        os.kill(old["pid"], signal.SIGCONT)
    t.join(40)
    assert answers["at"] >= resumed_at > stopped_at
    code = answers["result"][0]
    assert code in (201, 503, 504), answers["result"]
    if code == 201:
        acked.append("sent-to-paused")
    deadline = time.monotonic() + 10
    while c.status()[old["id"]]["role"] != "follower" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.status()[old["id"]]["role"] == "follower"
    c.wait_converged(list(c.status()))
    for mid in c.status():
        code, lst, _ = c.req("GET", mid, PODS)
        names = {p["metadata"]["name"] for p in lst["items"]}
        assert set(acked) <= names, f"{mid} lost acknowledged writes: {set(acked) - names}"


def test_two_masters_with_one_down_refuse_writes_fast(cluster_factory):
    c = cluster_factory(2)
    rows = c.status()
    victim, survivor = sorted(rows)
    os.kill(rows[victim]["pid"], signal.SIGKILL)
    # A write racing the kill may be in the log already (504: outcome unknown); once the survivor has
    # noticed that it lacks a quorum, every write is refused at once, never proposed.
    deadline = time.monotonic() + 5
    while c.status()[survivor].get("quorum") and time.monotonic() < deadline:
        time.sleep(0.02)
    bound = c.h.cfg.api.proposal_timeout_s + 0.5
    for i in range(5):
        code, body, dt = c.req("POST", survivor, PODS, pod(f"nq-{i}"), timeout=15)
        assert code == 503 and body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
        assert dt <= bound
    code, body, _ = c.req("GET", survivor, PODS)
    assert code == 503
    code, body, _ = c.req("GET", survivor, PODS + "?resourceVersion=0")
    assert code == 200


def test_single_master_works_without_peers(cluster_factory):
    c = cluster_factory(1)
    assert c.req("POST", "m1", PODS, pod("solo"))[0] == 201
    assert c.req("GET", "m1", f"{PODS}/solo")[0] == 200
    assert c.status()["m1"]["role"] == "leader"


def test_large_objects_replicate(cluster_factory):
    """Objects far above pysyncobj's 64 KiB chunking threshold (up to the API's body limit) replicate whole."""
    c = cluster_factory(3)
    leader = c.leader()
    for i, size in enumerate((70_000, 250_000)):
        p = pod(f"big-{i}")
        p["metadata"]["annotations"] = {"blob": "x" * size}
        assert c.req("POST", leader["id"], PODS, p)[0] == 201
    big_env = pod("big-env")
    big_env["spec"]["containers"][0]["env"] = [{"name": f"E{j}", "value": "v" * 1000} for j in range(2500)]
    assert c.req("POST", leader["id"], PODS, big_env, timeout=20)[0] == 201
    c.wait_converged(list(c.status()))
    for mid in c.status():
        code, got, _ = c.req("GET", mid, f"{PODS}/big-env")
        assert code == 200 and len(got["spec"]["containers"][0]["env"]) == 2500


def test_log_compaction_snapshots_restarts_and_catch_up(tmp_path):
    """With a small compaction threshold the masters snapshot often (in a forked writer); a master that
    was stopped while the others compacted past its log catches up from a snapshot, and a restarted one
    restores from its own."""
    from hacluster.config import default_config

    cfg = default_config(3)
    cfg = cfg.model_copy(update={"raft": cfg.raft.model_copy(update={"log_compaction_min_entries": 200})})
    from tests.cluster.conftest import Cluster

    sd = tmp_path / "compact"
    c = Cluster(launcher.up(cfg, sd))
    try:
        leader = c.leader()
        lagging = next(m for m in c.status() if m != leader["id"])
        os.kill(c.status()[lagging]["pid"], signal.SIGSTOP)
        try:
            for i in range(700):
                assert c.req("POST", leader["id"], PODS, pod(f"c-{i}"))[0] == 201
            deadline = time.monotonic() + 10
            while not (sd / "data" / leader["id"] / "raft.snapshot").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert (sd / "data" / leader["id"] / "raft.snapshot").exists(), "the leader compacted its log"
        finally:
            os.kill(c.status()[lagging]["pid"], signal.SIGCONT)
        c.wait_converged(list(c.status()), timeout_s=30)
        os.kill(c.status()[leader["id"]]["pid"], signal.SIGKILL)
        launcher.start_master(c.h, leader["id"])
        c.wait_converged(list(c.status()), timeout_s=30)
        code, lst, _ = c.req("GET", leader["id"], PODS + "?resourceVersion=0&limit=1")
        assert code == 200 and lst["metadata"]["remainingItemCount"] == 699
    finally:
        launcher.down(sd)
